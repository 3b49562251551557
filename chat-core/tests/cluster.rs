//! The cluster's parts that exist so far (docs/design/cluster.md): the
//! shared log's entries and the Redis scripts, simulated. Tests are named
//! `cluster_*`.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use chat_core::Config;
use chat_core::ConnId;
use chat_core::cluster::entry::MAX_ENTRY_LINE;
use chat_core::cluster::{Decoded, Entry, EntryError, Gone, Origin, Token};
use chat_core::framing::sanitize;
use chat_core::testkit::{NICKS, NodeLine, NodeStep, Nodes, rules, script_cases};
use proptest::prelude::*;

/// Every script case holds on the simulated Redis (the same table runs
/// against the Lua on a real redis-server).
#[test]
fn cluster_script_cases_hold_on_the_simulated_redis() {
    let cases = script_cases();
    assert!(cases.len() >= 8, "the table lost cases");
    for case in &cases {
        case.run_simulated();
    }
}

fn decode(fields: &[(&str, &str)]) -> Result<Decoded, EntryError> {
    Decoded::from_fields(fields.iter().map(|(k, v)| (k.as_bytes(), v.as_bytes())))
}

const NODE: [(&str, &str); 3] = [("k", "s"), ("o", "a/1f"), ("n", "3")];

fn say<'a>(extra: &[(&'a str, &'a str)]) -> Vec<(&'a str, &'a str)> {
    NODE.iter().copied().chain(extra.iter().copied()).collect()
}

#[test]
fn cluster_entries_read_what_a_node_wrote() {
    let decoded = decode(&say(&[("c", "5"), ("v", "alice: hi")])).unwrap();
    assert_eq!(
        decoded,
        Decoded {
            origin: Some(Origin {
                node: Token::new("a", 0x1f).unwrap(),
                n: 3
            }),
            entry: Entry::Say {
                conn: ConnId(5),
                line: "alice: hi".into()
            },
        }
    );
    // Fields of a later version are ignored.
    assert_eq!(
        decode(&say(&[("c", "5"), ("v", "alice: hi"), ("zz", "new")])),
        Ok(decoded)
    );
}

/// An entry is untrusted: what a client could not send, or a server would
/// not render, is refused field by field.
#[test]
fn cluster_entries_refuse_what_no_node_would_write() {
    let cases: &[(&[(&str, &str)], EntryError)] = &[
        (&[("c", "5")], EntryError::Missing("v")),
        (&[("c", "5"), ("v", "")], EntryError::Invalid("v")),
        (
            &[("c", "5"), ("v", "hi\n* admin: x")],
            EntryError::Invalid("v"),
        ),
        (
            &[("c", "5"), ("v", "hi\u{1b}[2J")],
            EntryError::Invalid("v"),
        ),
        (&[("c", "5"), ("v", "hi\u{202e}")], EntryError::Invalid("v")),
        (&[("c", "5"), ("v", "trailing ")], EntryError::Invalid("v")),
        (&[("c", "05"), ("v", "hi")], EntryError::Invalid("c")),
        (&[("c", "+5"), ("v", "hi")], EntryError::Invalid("c")),
        (
            &[("c", "5"), ("v", "a"), ("v", "b")],
            EntryError::Repeated("v"),
        ),
    ];
    for (extra, error) in cases {
        assert_eq!(decode(&say(extra)), Err(*error), "{extra:?}");
    }
    let long = "x".repeat(MAX_ENTRY_LINE + 1);
    assert_eq!(
        decode(&say(&[("c", "5"), ("v", long.as_str())])),
        Err(EntryError::Invalid("v"))
    );
    let join = |nick| {
        decode(&[
            ("k", "j"),
            ("o", "a/1"),
            ("n", "1"),
            ("c", "1"),
            ("a", nick),
        ])
    };
    // Mixed scripts (a Cyrillic а), invisible filler, not a nick at all.
    for nick in ["\u{430}lice", "al\u{3164}ice", "al ice", ""] {
        assert_eq!(join(nick), Err(EntryError::Invalid("a")), "{nick:?}");
    }
    // A node's entries say who wrote them; numbers start at 1.
    assert_eq!(
        decode(&[("k", "s"), ("c", "1"), ("v", "hi")]),
        Err(EntryError::Missing("n"))
    );
    assert_eq!(
        decode(&[
            ("k", "s"),
            ("o", "a/1"),
            ("n", "0"),
            ("c", "1"),
            ("v", "hi")
        ]),
        Err(EntryError::Invalid("n"))
    );
    assert_eq!(
        decode(&[
            ("k", "s"),
            ("o", "a b/1"),
            ("n", "1"),
            ("c", "1"),
            ("v", "hi")
        ]),
        Err(EntryError::Invalid("o"))
    );
    assert_eq!(decode(&[("k", "q")]), Err(EntryError::Invalid("k")));
    assert_eq!(
        decode(&[("k", "x"), ("d", "a/1"), ("w", "bored"), ("a", "")]),
        Err(EntryError::Invalid("w"))
    );
    assert_eq!(
        decode(&[("k", "y"), ("d", "a/1"), ("a", "1\tamy\n2 zed")]),
        Err(EntryError::Invalid("a"))
    );
}

/// In the stream an entry is one field `e` packing its fields: name,
/// length, `:`, value; anything else is refused.
#[test]
fn cluster_entries_are_packed_in_one_field() {
    let entry = Entry::Say {
        conn: ConnId(5),
        line: "alice: hi:there".into(),
    };
    let origin = Origin {
        node: Token::new("a", 0x1f).unwrap(),
        n: 3,
    };
    let packed = entry.to_packed(Some(&origin));
    assert_eq!(packed, "k1:so4:a/1fn1:3c1:5v15:alice: hi:there");
    let fields = [("e", packed.as_str())];
    assert_eq!(
        Decoded::from_stream(&fields),
        Ok(Decoded {
            origin: Some(origin),
            entry
        })
    );
    assert_eq!(
        Decoded::from_stream(&[("k", "s")]),
        Err(EntryError::Missing("e"))
    );
    for bad in [
        "k1",
        "k1:",
        "k2:s",
        "k01:s",
        "1k:s",
        "k1:sv",
        "k+1:s",
        "k99999999:s",
    ] {
        assert_eq!(
            Decoded::from_packed(bad.as_bytes()),
            Err(EntryError::Invalid("e")),
            "{bad:?}"
        );
    }
}

#[test]
fn cluster_tokens_are_a_name_and_an_incarnation() {
    let token = Token::new("node-1.eu_west", 0xdead_beef).unwrap();
    assert_eq!(token.as_str(), "node-1.eu_west/deadbeef");
    assert_eq!(token.name(), "node-1.eu_west");
    assert_eq!(Token::parse(token.as_str()), Some(token));
    for bad in ["", "a b", "a/b", "é", &"n".repeat(65)] {
        assert_eq!(Token::new(bad, 1), None, "{bad:?}");
    }
    for bad in [
        "a",
        "a/",
        "a/0x1",
        "a/01",
        "a/1/2",
        "/1",
        "a/10000000000000000",
    ] {
        assert_eq!(Token::parse(bad), None, "{bad:?}");
    }
}

fn nick() -> impl Strategy<Value = String> {
    prop_oneof![
        "[A-Za-z0-9_-]{1,16}",
        Just("José".to_string()),
        Just("東京".to_string()),
        Just("Ὀδυσσεύς".to_string()),
    ]
}

fn clean_line() -> impl Strategy<Value = String> {
    any::<Vec<u8>>().prop_filter_map("sanitizes to nothing", |raw| {
        let clean = sanitize(&raw).into_owned();
        (!clean.is_empty()).then_some(clean)
    })
}

fn token() -> impl Strategy<Value = Token> {
    ("[A-Za-z0-9_.-]{1,8}", any::<u64>()).prop_map(|(name, n)| Token::new(&name, n).unwrap())
}

fn conn() -> impl Strategy<Value = ConnId> {
    any::<u64>().prop_map(ConnId)
}

fn entry() -> impl Strategy<Value = Entry> {
    prop_oneof![
        (conn(), nick()).prop_map(|(conn, nick)| Entry::Join { conn, nick }),
        (conn(), nick(), proptest::option::of(clean_line()))
            .prop_map(|(conn, nick, reason)| Entry::Leave { conn, nick, reason }),
        (conn(), nick(), nick()).prop_map(|(conn, from, to)| Entry::Rename { conn, from, to }),
        (conn(), clean_line()).prop_map(|(conn, line)| Entry::Say { conn, line }),
        (conn(), token(), conn(), clean_line()).prop_map(|(conn, to, to_conn, line)| Entry::Msg {
            conn,
            to,
            to_conn,
            line
        }),
        (token(), any::<bool>(), prop::collection::vec(nick(), 0..5)).prop_map(
            |(node, lost, nicks)| Entry::NodeGone {
                node,
                why: if lost { Gone::Lost } else { Gone::Shutdown },
                nicks
            }
        ),
        (token(), prop::collection::vec((conn(), nick()), 0..5))
            .prop_map(|(node, members)| Entry::Sync { node, members }),
    ]
}

proptest! {
    /// Every entry a node or a script writes reads back as itself.
    #[test]
    fn cluster_entries_read_back_as_written(entry in entry(), node in token(), n in 1..u64::MAX) {
        let by_node = !matches!(entry, Entry::NodeGone { .. } | Entry::Sync { .. });
        let origin = by_node.then_some(Origin { node, n });
        let fields = entry.to_fields(origin.as_ref());
        let decoded = Decoded::from_fields(fields.iter().map(|(k, v)| (k.as_bytes(), v.as_bytes())));
        let packed = Decoded::from_packed(entry.to_packed(origin.as_ref()).as_bytes());
        prop_assert_eq!(&packed, &decoded);
        prop_assert_eq!(decoded, Ok(Decoded { origin, entry }));
    }
}

fn node_line() -> impl Strategy<Value = NodeLine> {
    prop_oneof![
        4 => Just(NodeLine::Chat),
        1 => Just(NodeLine::Me),
        3 => (0..NICKS.len()).prop_map(NodeLine::Nick),
        1 => any::<usize>().prop_map(NodeLine::Msg),
        1 => Just(NodeLine::Who),
        1 => Just(NodeLine::Quit),
    ]
}

fn node_step() -> impl Strategy<Value = NodeStep> {
    prop_oneof![
        3 => (0..3usize).prop_map(|node| NodeStep::Connect { node }),
        8 => (0..3usize, 0..8usize, node_line())
            .prop_map(|(node, client, line)| NodeStep::Line { node, client, line }),
        1 => (0..3usize, 0..8usize).prop_map(|(node, client)| NodeStep::Eof { node, client }),
        5 => (0..3usize, 1..4usize).prop_map(|(node, calls)| NodeStep::Apply { node, calls }),
        4 => (0..3usize).prop_map(|node| NodeStep::Read { node }),
        1 => Just(NodeStep::Settle),
        1 => (0..3usize, any::<bool>())
            .prop_map(|(node, applied)| NodeStep::LinkDown { node, applied }),
        1 => (0..3usize).prop_map(|node| NodeStep::LinkUp { node }),
        1 => prop_oneof![
            3 => (0..3usize).prop_map(|node| NodeStep::Crash { node }),
            1 => (0..3usize).prop_map(|node| NodeStep::Shutdown { node }),
            1 => Just(NodeStep::Restart),
        ],
        2 => prop_oneof![50..3_000u64, 6_000..12_000u64]
            .prop_map(|millis| NodeStep::Tick { millis }),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    /// Three nodes, their calls reaching Redis and their reads answered in
    /// any interleaving, with links failing (their last calls run or not),
    /// Redis restarting empty, nodes dying and time passing: after every
    /// step, nicks are unique across the nodes whose link is up, every
    /// client's room lines follow the log's one order from its join on, and
    /// no node is reaped twice; once quiet, every client in the room got
    /// every line since its join exactly once (unless Redis lost them),
    /// every roster and every node's members are what Redis holds, and a
    /// node dead for 10 s was reaped. The same seed and steps give the
    /// same trace on every node.
    #[test]
    fn cluster_nodes_share_one_order(seed: u64, steps in prop::collection::vec(node_step(), 1..80)) {
        let run = || {
            let mut nodes = Nodes::new(3, &Config::default(), seed);
            for step in &steps {
                nodes.step(step);
            }
            nodes.step(&NodeStep::Settle);
            nodes
        };
        let (first, second) = (run(), run());
        prop_assert_eq!(first.traces(), second.traces());
    }

    /// The same with a log of 6 entries: nodes that fall behind miss lines
    /// (and say so), and every other check still holds.
    #[test]
    fn cluster_nodes_share_one_order_when_the_log_is_trimmed(
        seed: u64,
        steps in prop::collection::vec(node_step(), 1..80),
    ) {
        let mut nodes = Nodes::with_history(3, &Config::default(), seed, 6);
        for step in &steps {
            nodes.step(step);
        }
        nodes.step(&NodeStep::Settle);
    }
}

/// Two nodes, settled after every step, for the rule tests.
fn two_nodes(steps: &[NodeStep]) -> Nodes {
    let mut nodes = Nodes::new(2, &Config::default(), 7);
    for step in steps {
        nodes.step(step);
        nodes.step(&NodeStep::Settle);
    }
    nodes
}

fn line(node: usize, client: usize, line: NodeLine) -> NodeStep {
    NodeStep::Line { node, client, line }
}

fn welcome_nick(nodes: &Nodes, node: usize, client: usize) -> String {
    rules::welcome_nick(&nodes.lines(node, client)[0])
}

#[test]
fn cluster_a_line_on_one_node_reaches_the_clients_of_every_node() {
    let nodes = two_nodes(&[
        NodeStep::Connect { node: 0 },
        NodeStep::Connect { node: 1 },
        NodeStep::Connect { node: 1 },
        line(0, 0, NodeLine::Chat),
        line(1, 0, NodeLine::Me),
    ]);
    let (a, b, c) = (
        welcome_nick(&nodes, 0, 0),
        welcome_nick(&nodes, 1, 0),
        welcome_nick(&nodes, 1, 1),
    );
    // The welcome counts the whole room.
    assert!(
        nodes.lines(1, 1)[0].contains("3 users online"),
        "{:?}",
        nodes.lines(1, 1)
    );
    assert_eq!(
        nodes.lines(0, 0)[1..],
        [
            format!("* {b} joined"),
            format!("* {c} joined"),
            format!("* {b} m2")
        ]
    );
    assert_eq!(
        nodes.lines(1, 1)[1..],
        [format!("{a}: m1"), format!("* {b} m2")]
    );
    assert_eq!(
        nodes.lines(1, 0)[1..],
        [format!("* {c} joined"), format!("{a}: m1")]
    );
}

#[test]
fn cluster_a_nick_held_on_one_node_is_refused_on_another() {
    let nodes = two_nodes(&[
        NodeStep::Connect { node: 0 },
        NodeStep::Connect { node: 1 },
        line(0, 0, NodeLine::Nick(0)), // alice
        line(1, 0, NodeLine::Nick(1)), // Alice: the same nick
        line(1, 0, NodeLine::Nick(2)), // bob
        line(0, 0, NodeLine::Nick(3)), // b0b: confusable with bob
    ]);
    let b = welcome_nick(&nodes, 1, 0);
    assert_eq!(
        nodes.lines(1, 0)[1..],
        [
            format!("* {} is now known as alice", welcome_nick(&nodes, 0, 0)),
            "* error: nick Alice is already taken".to_string(),
            "* you are now known as bob".to_string(),
        ]
    );
    assert_eq!(
        nodes.lines(0, 0)[1..],
        [
            format!("* {b} joined"),
            "* you are now known as alice".to_string(),
            format!("* {b} is now known as bob"),
            "* error: nick b0b is already taken".to_string(),
        ]
    );
}

#[test]
fn cluster_who_and_msg_reach_across_nodes() {
    let nodes = two_nodes(&[
        NodeStep::Connect { node: 0 },
        NodeStep::Connect { node: 1 },
        line(0, 0, NodeLine::Nick(0)), // alice
        line(1, 0, NodeLine::Nick(2)), // bob
        line(0, 0, NodeLine::Who),
        line(1, 0, NodeLine::Msg(0)), // to alice, on node 0
    ]);
    let on_a = nodes.lines(0, 0);
    assert!(
        on_a.contains(&"* 2 users online: alice, bob".to_string()),
        "{on_a:?}"
    );
    assert_eq!(on_a.last().map(String::as_str), Some("*bob* m4"));
}

#[test]
fn cluster_leaves_reach_every_node_and_free_the_nick() {
    let nodes = two_nodes(&[
        NodeStep::Connect { node: 0 },
        NodeStep::Connect { node: 1 },
        line(0, 0, NodeLine::Nick(0)), // alice
        line(0, 0, NodeLine::Quit),
        line(1, 0, NodeLine::Nick(1)), // Alice: free again
    ]);
    assert_eq!(
        nodes.lines(1, 0)[1..],
        [
            format!("* {} is now known as alice", welcome_nick(&nodes, 0, 0)),
            "* alice left".to_string(),
            "* you are now known as Alice".to_string(),
        ]
    );
}

/// A nick given up is released in Redis when the rename is written: the
/// client cannot take it back before that, or the release would take its
/// new claim with it (and another node could then be granted the nick).
#[test]
fn cluster_a_nick_given_up_is_not_claimed_back_before_the_log_has_the_rename() {
    let mut nodes = Nodes::new(2, &Config::default(), 7);
    for step in [
        NodeStep::Connect { node: 0 },
        NodeStep::Settle,
        line(0, 0, NodeLine::Nick(2)), // bob
        NodeStep::Settle,
        line(0, 0, NodeLine::Nick(0)), // alice: its claim waits for Redis
        NodeStep::Apply { node: 0, calls: 1 },
        line(0, 0, NodeLine::Nick(2)), // bob again, its rename not written
        NodeStep::Settle,
        line(0, 0, NodeLine::Nick(2)),
        NodeStep::Settle,
    ] {
        nodes.step(&step);
    }
    assert_eq!(
        nodes.lines(0, 0)[1..],
        [
            "* you are now known as bob",
            "* you are now known as alice",
            "* error: nick bob not changed: you gave it up a moment ago, try again",
            "* you are now known as bob",
        ]
    );
}

/// When client `client` of node `node` got `line`.
fn got_at(nodes: &Nodes, node: usize, client: usize, line: &str) -> Option<Duration> {
    let clients = nodes.driver(node).clients();
    clients[client]
        .lines
        .iter()
        .find(|(_, l)| l == line)
        .map(|(at, _)| *at)
}

#[test]
fn cluster_a_split_is_told_after_two_seconds_and_lines_wait_until_the_room_is_whole() {
    let mut nodes = two_nodes(&[NodeStep::Connect { node: 0 }, NodeStep::Connect { node: 1 }]);
    let a = welcome_nick(&nodes, 0, 0);
    let split = "* room split: the other servers cannot be reached; your lines wait until the room is whole";
    for step in [
        NodeStep::LinkDown {
            node: 0,
            applied: false,
        },
        NodeStep::Tick { millis: 1_900 },
        line(0, 0, NodeLine::Chat),
        line(0, 0, NodeLine::Nick(0)),
    ] {
        nodes.step(&step);
    }
    // A blip tells nobody; nick changes wait for the whole room.
    assert_eq!(
        nodes.lines(0, 0)[1..],
        [
            format!("* {} joined", welcome_nick(&nodes, 1, 0)),
            "* error: nick changes need the whole room; try again when it is whole".to_string(),
        ]
    );
    nodes.step(&NodeStep::Tick { millis: 200 });
    assert_eq!(nodes.lines(0, 0).last().map(String::as_str), Some(split));
    assert!(!nodes.lines(1, 0).contains(&format!("{a}: m1")));
    for step in [NodeStep::LinkUp { node: 0 }, NodeStep::Tick { millis: 200 }] {
        nodes.step(&step);
    }
    assert_eq!(
        nodes.lines(0, 0).last().map(String::as_str),
        Some("* room whole again")
    );
    assert_eq!(nodes.lines(1, 0).last(), Some(&format!("{a}: m1")));
}

#[test]
fn cluster_a_dead_nodes_users_leave_everywhere_within_ten_seconds() {
    let mut nodes = two_nodes(&[
        NodeStep::Connect { node: 0 },
        NodeStep::Connect { node: 1 },
        NodeStep::Connect { node: 1 },
        NodeStep::Tick { millis: 3_000 },
    ]);
    let (b, c) = (welcome_nick(&nodes, 1, 0), welcome_nick(&nodes, 1, 1));
    let died = nodes.elapsed();
    for step in [
        NodeStep::Crash { node: 1 },
        NodeStep::Tick { millis: 10_000 },
    ] {
        nodes.step(&step);
    }
    for nick in [&b, &c] {
        let at = got_at(&nodes, 0, 0, &format!("* {nick} left (server lost)"))
            .unwrap_or_else(|| panic!("{nick}'s leave: {:?}", nodes.lines(0, 0)));
        assert!(
            at - died <= Duration::from_secs(8),
            "{nick} left {:?} after",
            at - died
        );
    }
    // Its nicks are free again.
    nodes.step(&line(0, 0, NodeLine::Who));
    assert_eq!(
        nodes.lines(0, 0).last().map(String::as_str),
        Some(format!("* 1 user online: {}", welcome_nick(&nodes, 0, 0)).as_str())
    );
}

#[test]
fn cluster_a_node_that_shuts_down_says_its_users_leave() {
    let mut nodes = two_nodes(&[
        NodeStep::Connect { node: 0 },
        NodeStep::Connect { node: 1 },
        line(1, 0, NodeLine::Chat),
    ]);
    let b = welcome_nick(&nodes, 1, 0);
    for step in [NodeStep::Shutdown { node: 1 }, NodeStep::Settle] {
        nodes.step(&step);
    }
    assert_eq!(
        nodes.lines(0, 0)[2..],
        [
            format!("{b}: m1"),
            format!("* {b} left (server shutting down)")
        ]
    );
}

#[test]
fn cluster_redis_restarting_empty_is_told_and_the_room_goes_on() {
    let mut nodes = two_nodes(&[
        NodeStep::Connect { node: 0 },
        NodeStep::Connect { node: 1 },
        line(1, 0, NodeLine::Nick(2)), // bob
    ]);
    for step in [
        NodeStep::Restart,
        NodeStep::Settle,
        line(1, 0, NodeLine::Chat),
        NodeStep::Settle,
    ] {
        nodes.step(&step);
    }
    let lost = "* room history was lost (Redis restarted empty); recent lines may be missing";
    assert_eq!(
        nodes.lines(0, 0)[3..],
        [lost.to_string(), "bob: m2".to_string()]
    );
    // bob's claim was made again: the nick is still bob's.
    nodes.step(&line(0, 0, NodeLine::Nick(3))); // b0b
    nodes.step(&NodeStep::Settle);
    assert_eq!(
        nodes.lines(0, 0).last().map(String::as_str),
        Some("* error: nick b0b is already taken")
    );
}

/// A node cut off while the room said more than Redis keeps tells its
/// clients how many lines they missed, then goes on from what is kept.
#[test]
fn cluster_a_node_that_fell_behind_the_history_says_how_many_lines_were_missed() {
    let mut nodes = Nodes::with_history(2, &Config::default(), 7, 4);
    for step in [
        NodeStep::Connect { node: 0 },
        NodeStep::Connect { node: 1 },
        NodeStep::Settle,
        NodeStep::LinkDown {
            node: 1,
            applied: false,
        },
    ] {
        nodes.step(&step);
    }
    for _ in 0..6 {
        nodes.step(&line(0, 0, NodeLine::Chat));
        nodes.step(&NodeStep::Settle);
    }
    let a = welcome_nick(&nodes, 0, 0);
    for step in [NodeStep::LinkUp { node: 1 }, NodeStep::Tick { millis: 500 }] {
        nodes.step(&step);
    }
    // Six lines said, four kept: two missed.
    assert_eq!(
        nodes.lines(1, 0)[1..],
        [
            "* missed 2 lines (this server fell behind)".to_string(),
            format!("{a}: m3"),
            format!("{a}: m4"),
            format!("{a}: m5"),
            format!("{a}: m6"),
        ]
    );
}
