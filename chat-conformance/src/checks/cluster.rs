//! One room across several servers through Redis (docs/cluster.md): lines
//! in one order for every client of every node, `/who` and `/msg` across
//! nodes, nicks unique across them, a node's users leaving everywhere when
//! it is killed or stops, Redis restarting mid-chat. Each check starts its
//! own `redis-server` and nodes of the binary under test, and skips
//! (outside CI) without `redis-server`.
//!
//! A welcome counts the users its node has read of so far, which may miss
//! a join in flight on another node; the checks here let clients in one at
//! a time, each once every client before it has seen the previous join, so
//! their welcomes count the whole room.

use std::time::{Duration, Instant};

use crate::{Client, Endpoint, RedisProcess, ServerProcess, TIMEOUT, Target, join, marker, sync};

/// What the clients of a node that cannot reach Redis are told, after 2 s.
const SPLIT: &str =
    "* room split: the other servers cannot be reached; your lines wait until the room is whole";
/// ... and when it can again.
const WHOLE: &str = "* room whole again";
/// ... and when Redis came back empty.
const HISTORY_LOST: &str =
    "* room history was lost (Redis restarted empty); recent lines may be missing";

/// Redis and `n` nodes of the target's binary sharing one room.
struct Room {
    redis: RedisProcess,
    nodes: Vec<ServerProcess>,
}

impl Room {
    /// The room, or `None` where there is no `redis-server` (outside CI).
    fn start(target: &Target, n: usize) -> Option<Room> {
        Some(Room::on(target, n, RedisProcess::start()?))
    }

    /// The room on `redis`.
    fn on(target: &Target, n: usize, redis: RedisProcess) -> Room {
        let url = redis.url();
        let nodes = (0..n)
            .map(|i| {
                let node = format!("node{i}");
                ServerProcess::start_with(target, &["--redis", &url, "--node", &node])
            })
            .collect();
        Room { redis, nodes }
    }

    fn addr(&self, node: usize) -> &Endpoint {
        self.nodes[node].addr()
    }
}

/// One client on each node given, in order, each seen joining by the ones
/// before, on any node ([`join`]: a node welcomes a client once it has read
/// the client's own join, after every join before it, so the count is the
/// whole room).
fn enter_all(room: &Room, nodes: &[usize]) -> Vec<Client> {
    let mut clients: Vec<Client> = Vec::new();
    for (i, &node) in nodes.iter().enumerate() {
        let label = format!("{}{i}", char::from(b'A' + node as u8));
        let mut existing: Vec<&mut Client> = clients.iter_mut().collect();
        let client = join(room.addr(node), &label, &mut existing);
        clients.push(client);
    }
    clients
}

/// `/nick NEW` by `client`, seen by `others`.
fn rename(client: &mut Client, new: &str, others: &mut [&mut Client]) {
    let old = client.nick().to_string();
    client.send_line(&format!("/nick {new}"));
    client.expect_line(&format!("* you are now known as {new}"));
    client.set_nick(new);
    for other in others.iter_mut() {
        other.expect_line(&format!("* {old} is now known as {new}"));
    }
}

/// Three nodes, two clients on each; one client per node sends lines as
/// fast as it can: every client gets every line but its own, all of them
/// in one order, and that order has each sender's lines once, in the order
/// sent.
pub fn cluster_lines_reach_every_node_in_one_order(target: &Target) {
    const LINES: usize = 30;
    let Some(room) = Room::start(target, 3) else {
        return;
    };
    let mut clients = enter_all(&room, &[0, 1, 2, 0, 1, 2]);
    let mut sent: Vec<Vec<String>> = vec![Vec::new(); clients.len()];
    for round in 0..LINES {
        for (sender, lines) in sent.iter_mut().enumerate().take(3) {
            let text = format!("{}-{round}", marker());
            clients[sender].send_line(&text);
            lines.push(format!("{}: {text}", clients[sender].nick()));
        }
    }
    let mut seen: Vec<Vec<String>> = Vec::new();
    for (i, client) in clients.iter_mut().enumerate() {
        let expected = if i < 3 { 2 * LINES } else { 3 * LINES };
        let lines: Vec<String> = (0..expected).map(|_| client.read_line()).collect();
        for line in &lines {
            assert!(
                !sent[i].contains(line),
                "{} got its own line {line:?}",
                client.label()
            );
        }
        seen.push(lines);
    }
    // The clients that sent nothing saw everything, in the room's order;
    // everyone's lines are that order without their own.
    let order = &seen[3];
    for (i, lines) in seen.iter().enumerate() {
        let expected: Vec<&String> = order.iter().filter(|l| !sent[i].contains(l)).collect();
        let got: Vec<&String> = lines.iter().collect();
        assert_eq!(got, expected, "{}: the room's order", clients[i].label());
    }
    for (sender, lines) in sent.iter().enumerate().take(3) {
        let in_order: Vec<&String> = order.iter().filter(|l| lines.contains(l)).collect();
        let sent: Vec<&String> = lines.iter().collect();
        assert_eq!(
            in_order,
            sent,
            "{}'s lines in the room",
            clients[sender].label()
        );
    }
}

/// `/who` lists the whole room with its count, and `/msg` reaches a client
/// of another node.
pub fn cluster_who_and_msg_reach_across_nodes(target: &Target) {
    let Some(room) = Room::start(target, 2) else {
        return;
    };
    let [mut a, mut b]: [Client; 2] = enter_all(&room, &[0, 1]).try_into().expect("two");
    rename(&mut a, "alice", &mut [&mut b]);
    rename(&mut b, "bob", &mut [&mut a]);
    a.send_line("/who");
    a.expect_line("* 2 users online: alice, bob");
    b.send_line("/msg alice across the room");
    a.expect_line("*bob* across the room");
    b.send_line("/msg nobody hello");
    b.expect_line("* error: no such nick nobody");
}

/// A nick held on one node is refused on another, by the same comparison
/// as on one server, and comes free when its holder leaves.
pub fn cluster_nick_held_on_one_node_is_refused_on_another(target: &Target) {
    let Some(room) = Room::start(target, 2) else {
        return;
    };
    let [mut a, mut b]: [Client; 2] = enter_all(&room, &[0, 1]).try_into().expect("two");
    rename(&mut a, "alice", &mut [&mut b]);
    for taken in ["ALICE", "Alice"] {
        b.send_line(&format!("/nick {taken}"));
        b.expect_line(&format!("* error: nick {taken} is already taken"));
    }
    a.send_line("/quit");
    b.expect_line("* alice left");
    rename(&mut b, "ALICE", &mut []);
}

/// A node killed with SIGKILL: within 10 s every client of the other nodes
/// sees each of its users leave, once, and their nicks are free again.
pub fn cluster_killed_node_leaves_within_ten_seconds(target: &Target) {
    let Some(room) = Room::start(target, 2) else {
        return;
    };
    let [mut a, b, c]: [Client; 3] = enter_all(&room, &[0, 1, 1]).try_into().expect("three");
    let lost: Vec<String> = [&b, &c].iter().map(|x| x.nick().to_string()).collect();
    let killed = Instant::now();
    room.nodes[1].kill();
    let mut left = Vec::new();
    for _ in &lost {
        let line = a.read_line_within(Duration::from_secs(10));
        left.push(line);
    }
    let after = killed.elapsed();
    left.sort();
    let mut expected: Vec<String> = lost
        .iter()
        .map(|n| format!("* {n} left (server lost)"))
        .collect();
    expected.sort();
    assert_eq!(left, expected, "the killed node's users leave once each");
    assert!(
        after <= Duration::from_secs(10),
        "they left {after:?} after the kill"
    );
    rename(&mut a, &lost[0], &mut []);
}

/// A node stopped with SIGTERM: its users leave everywhere at once.
pub fn cluster_stopped_node_says_its_users_leave(target: &Target) {
    let Some(room) = Room::start(target, 2) else {
        return;
    };
    let [mut a, b]: [Client; 2] = enter_all(&room, &[0, 1]).try_into().expect("two");
    room.nodes[1].sigterm();
    a.expect_line(&format!("* {} left (server shutting down)", b.nick()));
}

/// Redis stops mid-chat and starts again, empty: the clients are told the
/// room is split, then that its history was lost and that it is whole
/// again, and a line said while it was split reaches the other node.
pub fn cluster_redis_restarting_mid_chat_loses_nothing_said_meanwhile(target: &Target) {
    let Some(mut room) = Room::start(target, 2) else {
        return;
    };
    let [mut a, mut b]: [Client; 2] = enter_all(&room, &[0, 1]).try_into().expect("two");
    room.redis.stop();
    let text = marker();
    a.send_line(&text);
    a.expect_line_within(SPLIT, TIMEOUT);
    b.expect_line_within(SPLIT, TIMEOUT);
    room.redis.start_again();
    for client in [&mut a, &mut b] {
        client.expect_line_within(HISTORY_LOST, TIMEOUT);
        client.expect_line(WHOLE);
    }
    b.expect_line(&format!("{}: {text}", a.nick()));
}

/// Redis with persistence stops mid-chat and starts again with what it
/// had: the nodes catch up, the room goes on from where it was (no history
/// lost, no line twice), and a line said while it was away reaches the
/// other node.
pub fn cluster_redis_restarting_with_its_data_loses_nothing(target: &Target) {
    let Some(redis) = RedisProcess::start_persistent() else {
        return;
    };
    let mut room = Room::on(target, 2, redis);
    let [mut a, mut b]: [Client; 2] = enter_all(&room, &[0, 1]).try_into().expect("two");
    sync(&mut a, &mut [&mut b]);
    room.redis.stop();
    let during = marker();
    a.send_line(&during);
    a.expect_line_within(SPLIT, TIMEOUT);
    b.expect_line_within(SPLIT, TIMEOUT);
    room.redis.start_again();
    a.expect_line_within(WHOLE, TIMEOUT);
    b.expect_line_within(WHOLE, TIMEOUT);
    b.expect_line(&format!("{}: {during}", a.nick()));
    // Nothing else came, to either: the next line is the next said.
    sync(&mut b, &mut [&mut a]);
    sync(&mut a, &mut [&mut b]);
}
