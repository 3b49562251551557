//! protocol.md, "Address policies": flood control (also with a client
//! whose socket fills while lines are held, and with bursts from one and
//! from eight addresses that must not cost readers at a reasonable rate
//! their lines or their connection), the idle and incomplete-line
//! timeouts, connections per address, the connect rate and the nick rate.
//!
//! Those do not apply to loopback peers unless the server is started with
//! `--limit-loopback`, which every check here passes ([`start_limited`]).
//! Times are only ever checked from below ("not before the bound"): a
//! policy must not act earlier than configured, and may act late on a
//! loaded machine.

use std::collections::HashMap;
use std::io::{ErrorKind, Read, Write};
use std::net::{IpAddr, Ipv4Addr};
use std::panic::{self, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, mpsc};
use std::thread;
use std::time::{Duration, Instant};

use super::{
    clients, connect_once_admitted, expect_numbered, is_numbered, kernel_buffer_bound, labelled,
    push_numbered,
};
use crate::{
    Client, ClientStream, Endpoint, ReadPace, Received, ServerProcess, TIMEOUT, Target,
    is_join_or_leave, join, join_all, join_from, marker, sync,
};

/// The line a connection over `--max-per-ip` or the connect rate gets.
const TOO_MANY: &str = "* error: too many connections from your address";

/// Flood control in the flood checks: `--flood-burst` and `--flood-rate`.
const BURST: usize = 5;
const RATE: f64 = 20.0;

/// A server with `--limit-loopback`, flood control at [`BURST`] and
/// [`RATE`], and `excess` as `--flood-excess`.
fn start_flood(target: &Target, excess: usize) -> ServerProcess {
    let (burst, rate, excess) = (BURST.to_string(), RATE.to_string(), excess.to_string());
    start_limited(
        target,
        &[
            "--flood-burst",
            &burst,
            "--flood-rate",
            &rate,
            "--flood-excess",
            &excess,
        ],
    )
}

/// Starts the target's binary with `--limit-loopback EXTRA...`.
fn start_limited(target: &Target, extra: &[&str]) -> ServerProcess {
    let mut args = vec!["--limit-loopback"];
    args.extend_from_slice(extra);
    ServerProcess::start_with(target, &args)
}

/// All of `texts` as LF-terminated lines in one buffer, for one write.
fn lines_of(texts: impl IntoIterator<Item = String>) -> Vec<u8> {
    let mut bytes = Vec::new();
    for text in texts {
        bytes.extend_from_slice(text.as_bytes());
        bytes.push(b'\n');
    }
    bytes
}

/// A policy must not act before `bound`: `elapsed` (measured by the check
/// from before the client could have triggered it) is at least `bound`.
fn assert_not_before(what: &str, elapsed: Duration, bound: Duration) {
    assert!(
        elapsed >= bound,
        "{what} after {elapsed:?}, before the configured {bound:?}"
    );
}

/// Flood control lets through at most `burst` lines at once and `per_second`
/// after that: `count` lines of one sender seen `elapsed` after it sent
/// them (all at once) are within that, give or take one line for the
/// server's timer.
fn assert_within_rate(what: &str, count: usize, burst: usize, per_second: f64, elapsed: Duration) {
    // Truncation intended: whole lines earned so far.
    let earned = (elapsed.as_secs_f64() * per_second) as usize;
    assert!(
        count <= burst + earned + 1,
        "{what}: {count} lines within {elapsed:?}; flood control allows {burst} at once, \
         then {per_second} a second"
    );
}

/// A new connection gets [`TOO_MANY`] and is closed.
fn expect_refused(addr: &Endpoint, label: &str) {
    Client::connect_raw(addr, label).expect_error_and_close(TOO_MANY);
}

/// Address policies (flood control, `--flood-burst 5 --flood-rate 20`):
/// a client that sends 40 lines at once gets 5 through at once and the rest
/// at 20 a second, none lost, in order, and nobody is disconnected; then,
/// while it has a flood held that lasts longer than [`TIMEOUT`] at the rate,
/// a line of another client passes ahead of the flooder's last line (once).
///
/// Why this cannot fail on a slow machine: the rate is checked from below
/// (no more lines than the rate allows by then), and the other client's
/// line has the whole held flood, at least [`TIMEOUT`], to overtake it: the
/// same guard as for any line. That flood is not waited out: the check ends
/// once the line has overtaken it.
pub fn policies_flood_control_delays_only_the_flooder(target: &Target) {
    const LINES: usize = 40;
    let server = start_flood(target, 1000);
    let [mut f, mut c, mut o] = labelled(&server, ["F", "C", "O"]);
    let nf = f.nick().to_owned();
    let flood = |i: usize| format!("{nf}: flood {i:02} of {LINES}");

    let start = Instant::now();
    f.send(&lines_of(
        (0..LINES).map(|i| format!("flood {i:02} of {LINES}")),
    ));
    for next in 0..LINES {
        o.expect_line(&flood(next));
        assert_within_rate(
            "O, the flooder's lines",
            next + 1,
            BURST,
            RATE,
            start.elapsed(),
        );
    }
    for i in 0..LINES {
        c.expect_line(&flood(i));
    }
    // Everyone is still in, and F's lines still pass.
    sync(&mut o, &mut [&mut f, &mut c]);
    sync(&mut f, &mut [&mut c, &mut o]);

    // More lines held than the rate lets through in TIMEOUT.
    let held = BURST + 1 + (RATE * TIMEOUT.as_secs_f64()).ceil() as usize;
    let flood = |i: usize| format!("{nf}: held {i:03} of {held}");
    let start = Instant::now();
    f.send(&lines_of(
        (0..held).map(|i| format!("held {i:03} of {held}")),
    ));
    // The flood has begun: now C speaks once.
    o.expect_line(&flood(0));
    let probe = marker();
    c.send_line(&probe);
    let probe = format!("{}: {probe}", c.nick());
    let mut next = 1;
    loop {
        let line = o.read_line();
        if line == probe {
            break;
        }
        assert!(
            next + 1 < held,
            "O: C's line did not come before the flooder's last line: flood control \
             delays the other clients' lines"
        );
        assert_eq!(line, flood(next), "O: the flooder's held lines, in order");
        next += 1;
        assert_within_rate("O, the held lines", next, BURST, RATE, start.elapsed());
    }
    // C's line came once: the flood goes on after it.
    o.expect_line(&flood(next));
    f.expect_line(&probe);
}

/// Address policies (flood control, `--flood-burst 5 --flood-rate 20
/// --flood-excess 10`): a client that sends 100 lines at once has more than
/// 10 lines waiting, gets `* error: disconnected (excess flood)` and EOF;
/// the others see at most the lines the rate let through, in order, then
/// `* NICK left (excess flood)`. A client that sends 15 lines at once (10
/// waiting: not more than the limit) and then EOF stays until all 15 are
/// handled at the rate, and leaves without a reason.
pub fn policies_excess_flood_disconnects(target: &Target) {
    const EXCESS: usize = 10;
    let server = start_flood(target, EXCESS);
    let [mut f, mut o] = labelled(&server, ["F", "O"]);
    let nf = f.nick().to_owned();
    let start = Instant::now();
    f.send(&lines_of((0..100).map(|i| format!("flood {i:03}"))));
    let delivered = expect_flood(&mut o, &nf, &format!("* {nf} left (excess flood)"));
    assert_within_rate(
        "O, the flooder's lines",
        delivered,
        BURST,
        RATE,
        start.elapsed(),
    );
    f.expect_error_and_close("* error: disconnected (excess flood)");

    let mut g = join(server.addr(), "G", &mut [&mut o]);
    let ng = g.nick().to_owned();
    let start = Instant::now();
    g.send(&lines_of(
        (0..BURST + EXCESS).map(|i| format!("flood {i:03}")),
    ));
    g.shutdown_write();
    let delivered = expect_flood(&mut o, &ng, &format!("* {ng} left"));
    assert_eq!(
        delivered,
        BURST + EXCESS,
        "O: all the lines of a client that had no more than --flood-excess waiting"
    );
    assert_within_rate("O, G's lines", delivered, BURST, RATE, start.elapsed());
    g.assert_closed();
    // The others go on.
    let mut n = join(server.addr(), "N", &mut [&mut o]);
    sync(&mut o, &mut [&mut n]);
}

/// Reads `NICK: flood 000`, `NICK: flood 001`, ... until `last`; returns how
/// many flood lines came.
fn expect_flood(observer: &mut Client, nick: &str, last: &str) -> usize {
    let mut delivered = 0;
    loop {
        let line = observer.read_line();
        if line == last {
            return delivered;
        }
        assert_eq!(
            line,
            format!("{nick}: flood {delivered:03}"),
            "{}: before `{last}`, the flooder's lines in order",
            observer.label()
        );
        delivered += 1;
    }
}

/// Address policies, flood control with a client that has stopped
/// reading: lines that flood control holds are broadcast when they are due,
/// by the server's timer rather than as they are read; they still reach
/// everyone, at the rate, while the socket of a client that never reads
/// fills up (and the server starts queueing for it) in the middle of them.
///
/// One line at once, then one per millisecond, so nearly every line goes
/// out from the timer; more than the kernel can buffer for the stuck client
/// (`kernel_buffer_bound`), so its socket surely fills; both output limits
/// out of reach, so nobody is dropped; no flood budget per address, so the
/// line rate is the only one.
pub fn policies_held_lines_reach_everyone_while_a_socket_fills(target: &Target) {
    const LEN: usize = 4000;
    let lines = kernel_buffer_bound() / LEN + 16;
    let limit = (4 * lines * LEN).to_string();
    let mut server = start_limited(
        target,
        &[
            "--flood-burst=1",
            "--flood-rate=1000",
            "--flood-excess=100000",
            "--ip-flood-rate=0",
            "--max-queue",
            &limit,
            "--soft-queue",
            &limit,
        ],
    );
    let [mut a, mut b, mut stuck] = labelled(&server, ["A", "B", "S"]);
    sync(&mut a, &mut [&mut b, &mut stuck]);
    let mut burst = Vec::with_capacity(lines * LEN);
    for i in 0..lines {
        push_numbered(&mut burst, i, b'h', LEN);
    }
    // Written from another thread: the server reads it only at the rate.
    let start = Instant::now();
    let mut writer = a.try_clone_stream();
    let sending = thread::spawn(move || {
        writer.write_all(&burst)?;
        writer.flush()
    });
    let prefix = format!("{}: ", a.nick());
    for i in 0..lines {
        let line = match b.receive(TIMEOUT) {
            Received::Line(line) => String::from_utf8(line).expect("UTF-8"),
            other => panic!("B: {other:?} after {i} of {lines} held lines"),
        };
        expect_numbered(&line, &prefix, i, LEN);
    }
    // Not before the rate allows: the lines did go through flood control.
    let took = start.elapsed();
    let bound = Duration::from_millis(lines as u64 - 1);
    assert!(
        took >= bound,
        "{lines} lines in {took:?}, faster than the rate allows ({bound:?})"
    );
    sending.join().expect("writer thread").expect("A's write");
    sync(&mut b, &mut [&mut a]);
    server.assert_running();
}

/// Address policies (incomplete line timeout, `--line-timeout 2`): a
/// client that sends one byte every half second and never an LF gets
/// `* error: disconnected (incomplete line timeout)` and EOF, not before 2 s
/// after its first byte; the others see `* NICK left (incomplete line
/// timeout)` and none of its partial line.
pub fn policies_incomplete_line_timeout(target: &Target) {
    const BOUND: Duration = Duration::from_secs(2);
    const PACE: Duration = Duration::from_millis(500);
    let server = start_limited(target, &["--line-timeout", "2"]);
    let [mut s, mut o] = labelled(&server, ["S", "O"]);
    let error = "* error: disconnected (incomplete line timeout)";

    let start = Instant::now();
    let mut writing = true;
    loop {
        assert!(
            start.elapsed() < BOUND + TIMEOUT,
            "S: still connected {:?} into its unterminated line",
            start.elapsed()
        );
        // A failed write means the server has closed: its last line is
        // read next.
        writing = writing && s.try_send(b"z").is_ok();
        // Waiting for that line paces the bytes.
        match s.receive(PACE) {
            Received::TimedOut => {}
            Received::Line(line) => {
                assert_eq!(String::from_utf8_lossy(&line), error, "S: unexpected line");
                break;
            }
            other => panic!("S: expected `{error}`, got {other:?}"),
        }
    }
    assert_not_before(
        "S was disconnected for its incomplete line",
        start.elapsed(),
        BOUND,
    );
    s.assert_closed();
    o.expect_line(&format!("* {} left (incomplete line timeout)", s.nick()));
    let mut n = join(server.addr(), "N", &mut [&mut o]);
    sync(&mut n, &mut [&mut o]);
}

/// Address policies (idle timeout, `--idle-timeout 5`): a client that
/// sends nothing gets `* error: disconnected (idle)` and EOF, not before 5 s
/// after it connected, while one that connected before it and sends a line
/// every 300 ms stays (it would otherwise have been dropped first) and sees
/// `* NICK left (idle)`.
///
/// Why this cannot fail on a slow machine: the silent client's time is
/// checked only from below, and the keepalive client only needs its lines
/// (and, after the drop, the check's next steps) to reach the server within
/// 5 s of each other, 300 ms apart: a stall of the whole test of several
/// seconds, far more than any loaded machine shows, would be needed to break
/// that, not a slow reader or writer.
pub fn policies_idle_timeout(target: &Target) {
    const BOUND: Duration = Duration::from_secs(5);
    const PACE: Duration = Duration::from_millis(300);
    let server = start_limited(target, &["--idle-timeout", "5"]);
    let (mut o, _) = Client::connect_welcomed(server.addr(), "O");
    let start = Instant::now();
    let mut idle = join(server.addr(), "I", &mut [&mut o]);
    let error = "* error: disconnected (idle)";

    let mut sent = 0;
    let mut seen = 0;
    let mut next_send = Instant::now();
    loop {
        let now = Instant::now();
        assert!(
            now < start + BOUND + TIMEOUT,
            "I: still connected after {:?} of silence",
            start.elapsed()
        );
        if now >= next_send {
            o.send_line(&format!("keepalive {sent}"));
            sent += 1;
            next_send = now + PACE;
        }
        match idle.receive(next_send.saturating_duration_since(Instant::now())) {
            Received::TimedOut => {}
            Received::Line(line) if line == error.as_bytes() => break,
            Received::Line(line) => {
                assert_eq!(
                    String::from_utf8_lossy(&line),
                    format!("{}: keepalive {seen}", o.nick()),
                    "I: unexpected line"
                );
                seen += 1;
            }
            other => panic!("I: expected `{error}`, got {other:?}"),
        }
    }
    assert_not_before("I was disconnected as idle", start.elapsed(), BOUND);
    // O, in before I, is still in: its lines kept it.
    o.expect_line(&format!("* {} left (idle)", idle.nick()));
    idle.assert_closed();
    let mut n = join(server.addr(), "N", &mut [&mut o]);
    sync(&mut o, &mut [&mut n]);
}

/// Address policies (`--max-per-ip`, default 16, with `--connect-rate 0`
/// so that every refusal is this limit's): a 17th connection from the same
/// address gets `* error: too many connections from your address` and EOF,
/// and nobody hears of it; once one of the 16 has left, a new connection
/// gets in, and the 17th is refused again.
pub fn policies_max_per_ip(target: &Target) {
    const MAX: usize = 16;
    let server = start_limited(target, &["--connect-rate", "0"]);
    let addr = server.addr();
    let mut all = join_all(addr, MAX);
    expect_refused(addr, "Q1");
    sync_all(&mut all);

    let mut leaver = all.pop().expect("16 clients");
    leaver.send_line("/quit");
    leaver.expect_error_and_close("* bye");
    let left = format!("* {} left", leaver.nick());
    for client in &mut all {
        client.expect_line(&left);
    }

    // The slot frees when the server has finished closing the leaver,
    // which no client can observe: a refusal until then is retried (the
    // connect rate is off, so attempts cost nothing).
    let (newcomer, online) = connect_once_admitted(addr, "E", TOO_MANY);
    assert_eq!(
        online, MAX,
        "the welcome of the client taking the freed slot"
    );
    let joined = format!("* {} joined", newcomer.nick());
    for client in &mut all {
        client.expect_line(&joined);
    }
    all.push(newcomer);
    expect_refused(addr, "Q2");
    sync_all(&mut all);
}

/// Address policies (connect rate, `--connect-burst 3 --connect-rate
/// 1`, a minute): a fourth connection in a row gets
/// `* error: too many connections from your address` and EOF although only
/// three are open, and still after one of them has left; nobody hears of it.
pub fn policies_connect_rate(target: &Target) {
    let server = start_limited(target, &["--connect-burst", "3", "--connect-rate", "1"]);
    let addr = server.addr();
    let [mut a, mut b, mut c] = clients(&server);
    expect_refused(addr, "D");
    b.send_line("/quit");
    b.expect_error_and_close("* bye");
    let left = format!("* {} left", b.nick());
    a.expect_line(&left);
    c.expect_line(&left);
    expect_refused(addr, "E");
    sync(&mut a, &mut [&mut c]);
    sync(&mut c, &mut [&mut a]);
}

/// Address policies (nick rate, `--nick-burst 2 --nick-rate 1`, a
/// minute): two renames in a row work, the third gets
/// `* error: nick changes too fast, try again in N s` with N the true wait
/// (at most 60, not less than what is left of the minute), the nick is
/// unchanged and nobody else hears of it; a change that fails (an invalid
/// nick) does not count; another client still has its own budget.
pub fn policies_nick_rate(target: &Target) {
    let server = start_limited(target, &["--nick-burst", "2", "--nick-rate", "1"]);
    let [mut a, mut b] = clients(&server);
    // A failed change does not count.
    a.send_line("/nick not!valid");
    a.expect_line("* error: invalid nick not!valid: use 1-32 letters, digits, _ or -");
    let start = Instant::now();
    rename(&mut a, "rate-a1", &mut b);
    rename(&mut a, "rate-a2", &mut b);
    a.send_line("/nick rate-a3");
    let line = a.read_line();
    let waited = start.elapsed().as_secs();
    let wait: u64 = line
        .strip_prefix("* error: nick changes too fast, try again in ")
        .and_then(|rest| rest.strip_suffix(" s"))
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| {
            panic!("A: expected `* error: nick changes too fast, try again in N s`, got {line:?}")
        });
    assert!(
        (1..=60).contains(&wait) && wait + waited + 1 >= 60,
        "A: told to wait {wait} s, {waited} s after the first of two renames at 1 a minute"
    );
    rename(&mut b, "rate-b1", &mut a);
    // Nothing else came, and A is still rate-a2.
    sync(&mut a, &mut [&mut b]);
    sync(&mut b, &mut [&mut a]);
}

/// `client` renames itself to `new`, which succeeds; `other` is told.
fn rename(client: &mut Client, new: &str, other: &mut Client) {
    let old = client.nick().to_owned();
    client.send_line(&format!("/nick {new}"));
    client.expect_line(&format!("* you are now known as {new}"));
    other.expect_line(&format!("* {old} is now known as {new}"));
    client.set_nick(new);
}

/// [`sync`] from the first client to all the others.
fn sync_all(all: &mut [Client]) {
    let (first, rest) = all.split_first_mut().expect("at least one client");
    let mut rest: Vec<&mut Client> = rest.iter_mut().collect();
    sync(first, &mut rest);
}

/// Readers in the burst checks, from [`READER_IPS`] in turn.
const BURST_READERS: usize = 20;
/// Addresses of the burst checks' readers, and of its control client:
/// others than the senders', so that per-address limits leave them alone.
const READER_IPS: [IpAddr; 2] = [
    IpAddr::V4(Ipv4Addr::new(127, 0, 1, 1)),
    IpAddr::V4(Ipv4Addr::new(127, 0, 1, 2)),
];
const CONTROL_IP: IpAddr = IpAddr::V4(Ipv4Addr::new(127, 0, 2, 1));
/// Senders per address: `--max-per-ip`'s default, all one address may open.
const SENDERS_PER_IP: u8 = 16;
/// Lines each sender writes at once: `--flood-burst`'s default, as many as
/// a client may send at once.
const BURST_LINES: usize = 50;
/// Bytes per burst line, LF included: near `--max-line`'s default.
const BURST_LEN: usize = 4000;
/// The readers' rate, bytes per second: a slow link, well above the 32 KiB/s
/// a server must let any reader keep up at.
const READ_RATE: usize = 100 * 1024;
/// The readers' `SO_RCVBUF`: small, so that what they have not read waits
/// in the server, where its output limits apply, not in the kernel.
const READER_RCVBUF: usize = 64 * 1024;
/// How long the senders stay once they have written their burst: the
/// attack goes on this long, and then its clients leave. This is the
/// scenario, not a wait for the server; whatever the server does within it
/// (hold the senders back, drop readers) is what is checked after.
const ATTACK: Duration = Duration::from_secs(3);
/// How often blocked sender and drain threads look whether to stop.
const POLL: Duration = Duration::from_millis(100);

/// Address policies, flood control with a burst from one address: 16
/// clients from 127.0.0.1 each write 50 lines of 4000 bytes at once (within
/// flood control's burst, 3.2 MB for every other client) and stay 3 s
/// ([`ATTACK`]), while 20 readers from two other addresses read at
/// 100 KiB/s; none of the readers is disconnected, and each gets every
/// sender's lines in order without a gap, up to a line sent after the
/// senders left. See [`burst_keeps_every_reader`].
pub fn policies_burst_from_one_address_keeps_every_reader(target: &Target) {
    burst_keeps_every_reader(target, 1);
}

/// Address policies, flood control with a burst from eight addresses:
/// [`policies_burst_from_one_address_keeps_every_reader`] with 16 senders
/// from each of 127.0.0.1 to 127.0.0.8 (128 senders, 25.6 MB for every other
/// client), so that no per-address limit alone can hold them.
pub fn policies_burst_from_eight_addresses_keeps_every_reader(target: &Target) {
    burst_keeps_every_reader(target, 8);
}

/// The burst checks, with [`SENDERS_PER_IP`] senders from each of
/// 127.0.0.1 to 127.0.0.`addresses`, on a server with `--limit-loopback`
/// and otherwise its defaults.
///
/// A control client (from [`CONTROL_IP`]), the readers (each with
/// [`READER_RCVBUF`]) and the senders join, each seeing everyone who joins
/// after it. Then each sender writes its [`BURST_LINES`] numbered lines in
/// one write (from a thread of its own: the server may stop reading it)
/// while it drains whatever it receives, as does the control client, and
/// every reader reads at [`READ_RATE`]. After [`ATTACK`] the senders close
/// with a reset, and whatever the server still holds of their input is
/// dropped with them; then the control client sends a marker, which each
/// reader must read, still at its rate, having been disconnected by nobody
/// and having got each sender's lines 0, 1, 2, ... in order: a sender's lines
/// may stop early (the server may have held the rest when it left), but
/// none may be missing before the last one a reader got. The check fails
/// at once if the control client sees a reader leave, rather than after
/// that reader has read out at its rate what the kernel still holds for it.
///
/// Why this cannot fail on a slow machine: the readers' 100 KiB/s is a
/// pace any machine keeps (a 10 KiB read every 100 ms or so), and reading
/// what the server holds for them is guarded on progress (no line for
/// [`TIMEOUT`]), not on its total time. The attack's length decides only
/// how much the senders get to send, not a verdict.
fn burst_keeps_every_reader(target: &Target, addresses: u8) {
    let mut server = start_limited(target, &[]);
    let (control, readers, senders) = join_for_burst(server.addr(), addresses);
    let marker = marker();
    let plan = Arc::new(BurstPlan {
        senders: senders
            .iter()
            .enumerate()
            .map(|(i, s)| (s.nick().to_owned(), i))
            .collect(),
        end: format!("{}: {marker}", control.nick()),
    });
    let reader_labels: HashMap<String, String> = readers
        .iter()
        .map(|r| (r.nick().to_owned(), r.label().to_owned()))
        .collect();
    let (seen, reports) = mpsc::channel();
    for mut reader in readers {
        let (plan, seen) = (Arc::clone(&plan), seen.clone());
        thread::spawn(move || {
            let label = format!("{} ({})", reader.label(), reader.nick());
            let read = panic::catch_unwind(AssertUnwindSafe(|| read_burst(&mut reader, &plan)));
            let result = match read {
                Ok(result) => result.map_err(|e| format!("{label}: {e}")),
                Err(_) => Err(format!("{label}: its thread panicked")),
            };
            // The connection stays open until the verdict: C would see it
            // leave.
            let _ = seen.send(Seen::Reader(result, Box::new(reader)));
        });
    }
    let mut control_out = control.try_clone_stream();
    let control_stop = Arc::new(AtomicBool::new(false));
    let watching = {
        let stop = Arc::clone(&control_stop);
        thread::spawn(move || watch_readers(control, &reader_labels, &seen, &stop))
    };

    let senders_dropped = attack(senders);
    let mut failures = Vec::new();
    let sent = control_out
        .write_all(format!("{marker}\n").as_bytes())
        .and_then(|()| control_out.flush());
    if let Err(e) = sent {
        failures.push(format!("C: cannot send the marker: {e}"));
    }
    // Every reader reads up to the marker, unless the control client has
    // seen one leave: a reader the server dropped would only see EOF after
    // reading, at its rate, what the kernel still holds for it (the
    // server's send buffer: megabytes), and the check has failed already.
    let mut done = Vec::with_capacity(BURST_READERS);
    while done.len() < BURST_READERS {
        match reports.recv().expect("the reader threads report") {
            Seen::Reader(result, reader) => {
                done.push(reader);
                failures.extend(result.err());
            }
            left @ Seen::ReaderLeft(..) => {
                failures.extend(left.failure());
                failures.extend(reports.try_iter().filter_map(Seen::failure));
                break;
            }
        }
    }
    control_stop.store(true, Ordering::Relaxed);
    if watching.join().unwrap_or(true) {
        failures.push("C: disconnected".to_owned());
    }
    assert!(
        failures.is_empty(),
        "a burst from {addresses} address(es) ({} senders, {senders_dropped} of them \
         disconnected) cost readers at {READ_RATE} B/s their connection or lines:\n{}",
        usize::from(addresses) * usize::from(SENDERS_PER_IP),
        failures.join("\n")
    );
    server.assert_running();
}

/// Joins the burst checks' clients, each seeing everyone who joins after
/// it: the control client, the readers, then [`SENDERS_PER_IP`] senders
/// from each of 127.0.0.1 to 127.0.0.`addresses`.
fn join_for_burst(addr: &Endpoint, addresses: u8) -> (Client, Vec<Client>, Vec<Client>) {
    let mut all: Vec<Client> = Vec::new();
    let mut enter = |label: String, source: IpAddr, recv_buffer: Option<usize>| {
        let mut existing: Vec<&mut Client> = all.iter_mut().collect();
        let client = join_from(addr, source, recv_buffer, &label, &mut existing);
        all.push(client);
    };
    enter("C".to_owned(), CONTROL_IP, None);
    for (i, &ip) in READER_IPS.iter().cycle().take(BURST_READERS).enumerate() {
        enter(format!("R{i}@{ip}"), ip, Some(READER_RCVBUF));
    }
    for a in 1..=addresses {
        let ip = IpAddr::V4(Ipv4Addr::new(127, 0, 0, a));
        for i in 0..SENDERS_PER_IP {
            enter(format!("S{i}@{ip}"), ip, None);
        }
    }
    let senders = all.split_off(1 + BURST_READERS);
    let readers = all.split_off(1);
    let control = all.pop().expect("the control client");
    (control, readers, senders)
}

/// The attack: each sender writes its [`BURST_LINES`] numbered lines in one
/// write (from a thread of its own: the server may stop reading it) while
/// it drains whatever it receives; after [`ATTACK`] the senders close with
/// a reset. Returns how many of them the server had disconnected.
fn attack(senders: Vec<Client>) -> usize {
    let stop = Arc::new(AtomicBool::new(false));
    let (mut writing, mut draining) = (Vec::new(), Vec::new());
    for sender in &senders {
        let mut burst = Vec::with_capacity(BURST_LINES * BURST_LEN);
        for i in 0..BURST_LINES {
            push_numbered(&mut burst, i, b's', BURST_LEN);
        }
        let (stream, stop_writing) = (sender.try_clone_stream(), Arc::clone(&stop));
        writing.push(thread::spawn(move || {
            write_until_stopped(stream, &burst, &stop_writing);
        }));
        draining.push(drain_in_thread(sender, &stop));
    }
    thread::sleep(ATTACK);
    stop.store(true, Ordering::Relaxed);
    for thread in writing {
        thread.join().expect("a sender's writing thread");
    }
    // Each sender's drain thread says whether its connection had ended.
    let dropped = draining
        .into_iter()
        .filter_map(|thread| thread.join().ok())
        .filter(|&ended| ended)
        .count();
    // Their threads' handles are closed: the reset goes out now.
    senders.into_iter().for_each(Client::close_with_reset);
    dropped
}

/// What the burst checks' threads tell it.
#[derive(Debug)]
enum Seen {
    /// A reader read up to the marker, or what went wrong; and the reader,
    /// still connected.
    Reader(Result<(), String>, Box<Client>),
    /// The control client saw a reader leave: its label and the notice.
    ReaderLeft(String, String),
}

impl Seen {
    /// What it says went wrong, if anything.
    fn failure(self) -> Option<String> {
        match self {
            Seen::Reader(result, _) => result.err(),
            Seen::ReaderLeft(label, line) => Some(format!("C saw {label} leave: {line:?}")),
        }
    }
}

/// Reads whatever `control` receives until `stop` (a client that keeps up
/// with the chat however much comes), telling `seen` of every reader that
/// leaves (`readers`: their labels by nick); returns whether its own
/// connection ended first.
fn watch_readers(
    mut control: Client,
    readers: &HashMap<String, String>,
    seen: &mpsc::Sender<Seen>,
    stop: &AtomicBool,
) -> bool {
    while !stop.load(Ordering::Relaxed) {
        match control.receive(POLL) {
            Received::Line(line) => {
                let line = String::from_utf8_lossy(&line);
                if let Some(label) = leaver(&line).and_then(|nick| readers.get(nick)) {
                    let _ = seen.send(Seen::ReaderLeft(label.clone(), line.into_owned()));
                }
            }
            Received::TimedOut => {}
            Received::Closed | Received::Cut(_) => return true,
        }
    }
    false
}

/// The nick in a `* NICK left` or `* NICK left (REASON)` notice.
fn leaver(line: &str) -> Option<&str> {
    let (nick, what) = line.strip_prefix("* ")?.split_once(' ')?;
    (what == "left" || what.starts_with("left (") && what.ends_with(')')).then_some(nick)
}

/// What a reader of the burst checks expects.
#[derive(Debug)]
struct BurstPlan {
    /// Each sender's index, by nick.
    senders: HashMap<String, usize>,
    /// The control client's marker line, after which the reader stops.
    end: String,
}

/// Reads at [`READ_RATE`] up to `plan.end`; each sender's lines must come
/// as its numbered lines 0, 1, 2, ... in order, whole, and nothing but join
/// and leave notices may come between them. Returns what went wrong.
fn read_burst(reader: &mut Client, plan: &BurstPlan) -> Result<(), String> {
    let mut pace = ReadPace::new(READ_RATE);
    let mut next = vec![0; plan.senders.len()];
    let got = |next: &[usize]| {
        let (min, max) = (next.iter().min(), next.iter().max());
        format!(
            "after {} of the senders' lines (from each, {} to {} of its {BURST_LINES})",
            next.iter().sum::<usize>(),
            min.unwrap_or(&0),
            max.unwrap_or(&0)
        )
    };
    loop {
        let line = match reader.receive_paced(&mut pace, TIMEOUT) {
            Received::Line(line) => String::from_utf8_lossy(&line).into_owned(),
            Received::Closed | Received::Cut(_) => {
                return Err(format!("disconnected (EOF) {}", got(&next)));
            }
            Received::TimedOut => {
                return Err(format!("no line for {TIMEOUT:?} {}", got(&next)));
            }
        };
        if line == plan.end {
            return Ok(());
        }
        if line.starts_with("* error: disconnected (") {
            return Err(format!("disconnected: {line:?} {}", got(&next)));
        }
        if is_join_or_leave(&line) {
            continue;
        }
        let sender = line
            .split_once(": ")
            .and_then(|(nick, body)| Some((*plan.senders.get(nick)?, body)));
        let Some((s, body)) = sender else {
            return Err(format!("unexpected line {line:?} {}", got(&next)));
        };
        if !is_numbered(body, next[s], BURST_LEN) {
            return Err(format!(
                "from sender {s}, expected its line {} whole, got one starting {:?} {}",
                next[s],
                &body[..body.len().min(12)],
                got(&next)
            ));
        }
        next[s] += 1;
    }
}

/// Writes all of `bytes` to `stream` (one write of it all, as
/// `write_all`, and a flush), unless `stop` comes first: the server may stop
/// reading a sender that is over a budget, and the writer must end with the
/// scenario.
fn write_until_stopped(mut stream: ClientStream, mut bytes: &[u8], stop: &AtomicBool) {
    stream
        .set_write_timeout(Some(POLL))
        .expect("set_write_timeout");
    while !stop.load(Ordering::Relaxed) {
        // Once all is written, what TLS still holds of it must go out too.
        let step = if bytes.is_empty() {
            stream.flush().map(|()| None)
        } else {
            stream.write(bytes).map(Some)
        };
        match step {
            Ok(None | Some(0)) => return,
            Ok(Some(n)) => bytes = &bytes[n..],
            Err(e) if is_timeout(&e) => {}
            // The server closed the connection.
            Err(_) => return,
        }
    }
}

/// Starts a thread that reads and drops whatever `client` receives until
/// `stop` (a client that keeps up with the chat however much comes); it
/// returns whether the connection ended (EOF or error) first.
fn drain_in_thread(client: &Client, stop: &Arc<AtomicBool>) -> thread::JoinHandle<bool> {
    let (mut stream, stop) = (client.try_clone_stream(), Arc::clone(stop));
    thread::spawn(move || {
        stream
            .set_read_timeout(Some(POLL))
            .expect("set_read_timeout");
        let mut buf = vec![0; 64 * 1024];
        while !stop.load(Ordering::Relaxed) {
            match stream.read(&mut buf) {
                Ok(0) => return true,
                Ok(_) => {}
                Err(e) if is_timeout(&e) => {}
                Err(_) => return true,
            }
        }
        false
    })
}

/// Whether `e` is a socket timeout (or an interrupted call): try again.
fn is_timeout(e: &std::io::Error) -> bool {
    matches!(
        e.kind(),
        ErrorKind::WouldBlock | ErrorKind::TimedOut | ErrorKind::Interrupted
    )
}
