//! protocol.md, "Address policies": flood control (also with a client
//! whose socket fills while lines are held), the idle and incomplete-line
//! timeouts, connections per address, the connect rate and the nick rate.
//!
//! Those do not apply to loopback peers unless the server is started with
//! `--limit-loopback`, which every check here passes ([`start_limited`]).
//! Times are only ever checked from below ("not before the bound"): a
//! policy must not act earlier than configured, and may act late on a
//! loaded machine.

use std::net::SocketAddr;
use std::path::Path;
use std::thread;
use std::time::{Duration, Instant};

use super::{
    clients, connect_once_admitted, expect_numbered, kernel_buffer_bound, labelled, push_numbered,
};
use crate::{Client, Received, ServerProcess, TIMEOUT, join, join_all, marker, sync};

/// The line a connection over `--max-per-ip` or the connect rate gets.
const TOO_MANY: &str = "* error: too many connections from your address";

/// Flood control in the flood checks: `--flood-burst` and `--flood-rate`.
const BURST: usize = 5;
const RATE: f64 = 20.0;

/// A server with `--limit-loopback`, flood control at [`BURST`] and
/// [`RATE`], and `excess` as `--flood-excess`.
fn start_flood(binary: &Path, excess: usize) -> ServerProcess {
    let (burst, rate, excess) = (BURST.to_string(), RATE.to_string(), excess.to_string());
    start_limited(
        binary,
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

/// Starts `binary --limit-loopback EXTRA...`.
fn start_limited(binary: &Path, extra: &[&str]) -> ServerProcess {
    let mut args = vec!["--limit-loopback"];
    args.extend_from_slice(extra);
    ServerProcess::start_with(binary, &args)
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
fn expect_refused(addr: SocketAddr, label: &str) {
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
pub fn policies_flood_control_delays_only_the_flooder(binary: &Path) {
    const LINES: usize = 40;
    let server = start_flood(binary, 1000);
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
pub fn policies_excess_flood_disconnects(binary: &Path) {
    const EXCESS: usize = 10;
    let server = start_flood(binary, EXCESS);
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
/// out of reach, so nobody is dropped.
pub fn policies_held_lines_reach_everyone_while_a_socket_fills(binary: &Path) {
    const LEN: usize = 4000;
    let lines = kernel_buffer_bound() / LEN + 16;
    let limit = (4 * lines * LEN).to_string();
    let mut server = start_limited(
        binary,
        &[
            "--flood-burst=1",
            "--flood-rate=1000",
            "--flood-excess=100000",
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
    let sending = thread::spawn(move || std::io::Write::write_all(&mut writer, &burst));
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
pub fn policies_incomplete_line_timeout(binary: &Path) {
    const BOUND: Duration = Duration::from_secs(2);
    const PACE: Duration = Duration::from_millis(500);
    let server = start_limited(binary, &["--line-timeout", "2"]);
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
pub fn policies_idle_timeout(binary: &Path) {
    const BOUND: Duration = Duration::from_secs(5);
    const PACE: Duration = Duration::from_millis(300);
    let server = start_limited(binary, &["--idle-timeout", "5"]);
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
pub fn policies_max_per_ip(binary: &Path) {
    const MAX: usize = 16;
    let server = start_limited(binary, &["--connect-rate", "0"]);
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
pub fn policies_connect_rate(binary: &Path) {
    let server = start_limited(binary, &["--connect-burst", "3", "--connect-rate", "1"]);
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
pub fn policies_nick_rate(binary: &Path) {
    let server = start_limited(binary, &["--nick-burst", "2", "--nick-rate", "1"]);
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
