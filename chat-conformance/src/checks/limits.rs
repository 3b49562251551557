//! protocol.md, "Limits and policies": `--max-clients`, `--max-queue` and
//! the soft output limit (`--soft-queue`, `--soft-queue-grace`).

use std::time::{Duration, Instant};

use super::{
    clients, connect_once_admitted, expect_numbered, kernel_buffer_bound, labelled, push_numbered,
};
use crate::{Client, Received, ServerProcess, TIMEOUT, Target, join, sync};

/// Limits and policies (`--max-clients 3`): a fourth client gets
/// `* error: server full` and EOF, and nobody hears of it; once one client
/// has left, a new one can join.
pub fn limits_max_clients(target: &Target) {
    let server = ServerProcess::start_with(target, &["--max-clients", "3"]);
    let [mut a, mut b, mut c] = clients(&server);
    for attempt in 0..2 {
        let mut d = Client::connect_raw(server.addr(), &format!("D{attempt}"));
        d.expect_line("* error: server full");
        d.assert_closed();
    }
    sync(&mut a, &mut [&mut b, &mut c]);

    c.send_line("/quit");
    c.expect_line("* bye");
    c.assert_closed();
    a.expect_line(&format!("* {} left", c.nick()));
    b.expect_line(&format!("* {} left", c.nick()));

    // The slot frees when the server has finished closing C, which no
    // client can observe: a refusal until then is retried.
    let (mut e, online) = connect_once_admitted(server.addr(), "E", "* error: server full");
    assert_eq!(online, 3, "the welcome of the client taking the freed slot");
    let joined = format!("* {} joined", e.nick());
    a.expect_line(&joined);
    b.expect_line(&joined);
    sync(&mut e, &mut [&mut a, &mut b]);
    // Full again.
    let mut f = Client::connect_raw(server.addr(), "F");
    f.expect_line("* error: server full");
    f.assert_closed();
}

/// Limits and policies (`--max-queue 65536`): a client that never reads
/// while another sends megabytes is disconnected once its pending output
/// would go over the limit; the others see `* NICK left (too slow)` once,
/// the reading client gets every line in order, and the server's RSS stays
/// bounded (grows by less than 16 MiB).
pub fn limits_slow_reader_is_disconnected(target: &Target) {
    /// Lines in flight at once: 8 KiB, well under the limit, so that the
    /// reading client is never the slow one, even when the server learns
    /// late that earlier batches were written (a few batches may count
    /// against B for a moment after B has read them).
    const WINDOW: usize = 8;
    /// Guard: the slow client must be gone before this much was sent.
    const MAX_BYTES: usize = 64 << 20;
    const SLACK: u64 = 16 << 20;
    let server = ServerProcess::start_with(target, &["--max-queue", "65536"]);
    let [mut a, mut b] = clients(&server);
    let mut slow = join(server.addr(), "S", &mut [&mut a, &mut b]);
    sync(&mut a, &mut [&mut b, &mut slow]);
    let before = server.rss_bytes();

    let too_slow = format!("* {} left (too slow)", slow.nick());
    let prefix = format!("{}: ", a.nick());
    let mut sent = 0;
    let mut gone = false;
    while !gone {
        assert!(
            sent * LINE < MAX_BYTES,
            "the client that never reads was not disconnected after {sent} lines of {LINE} bytes"
        );
        let mut batch = Vec::with_capacity(WINDOW * LINE);
        for i in sent..sent + WINDOW {
            push_numbered(&mut batch, i, b'q', LINE);
        }
        a.send(&batch);
        for i in sent..sent + WINDOW {
            loop {
                let line = b.read_line();
                if line == too_slow {
                    assert!(!gone, "B: `{too_slow}` came twice");
                    gone = true;
                    continue;
                }
                expect_numbered(&line, &prefix, i, LINE);
                break;
            }
        }
        sent += WINDOW;
    }
    a.expect_line(&too_slow);
    sync(&mut a, &mut [&mut b]);
    sync(&mut b, &mut [&mut a]);
    slow.drain_until_closed();
    let after = server.rss_bytes();
    assert!(
        after < before + SLACK,
        "server RSS grew from {before} to {after} bytes (sent {} bytes)",
        sent * LINE
    );
}

/// Limits and policies (`--soft-queue 262144`, a `--soft-queue-grace` sized
/// from the burst, and a hard `--max-queue` no client here can reach): while
/// one client sends a burst of several MiB, a client that reads nothing until
/// the server has handled the whole burst is over the soft limit, then reads
/// it all within the grace and stays; a client that never reads is
/// disconnected, not before the grace, and the others see
/// `* NICK left (too slow)`.
///
/// The server's queue for a client is what the kernel buffers do not hold,
/// so the burst is the soft limit plus a bound on those buffers
/// (`kernel_buffer_bound`) plus 1 MiB: both non-reading clients are then
/// surely over the soft limit once the server has handled the burst, which
/// the sender learns from the reply to a `/who` sent after it. The hard
/// limit is twice the burst, more than any client is ever sent, so only the
/// soft limit can drop anyone.
///
/// Why this cannot fail on a slow machine: the only race is the reading
/// client's, which must catch up within the grace, so the grace is sized
/// from the bytes it must move (`grace_for`), with a margin no loaded
/// machine comes near, instead of being a fixed few seconds. The other side
/// of the rule, that a client over the limit for the grace is dropped, is
/// proved by a client that never reads, so it holds however slow the machine
/// is; and its time is checked only from below (not before the grace).
pub fn limits_soft_queue_grace(target: &Target) {
    const SOFT: usize = 256 * 1024;
    let lines = (SOFT + kernel_buffer_bound() + (1 << 20)).div_ceil(LINE);
    let hard = 2 * lines * LINE;
    let grace = grace_for(lines * LINE);
    let server = ServerProcess::start_with(
        target,
        &[
            "--soft-queue",
            &SOFT.to_string(),
            "--soft-queue-grace",
            &grace.as_secs().to_string(),
            "--max-queue",
            &hard.to_string(),
        ],
    );
    let [mut a, mut bursty] = labelled(&server, ["A", "B"]);
    let mut stuck = join(server.addr(), "S", &mut [&mut a, &mut bursty]);
    sync(&mut a, &mut [&mut bursty, &mut stuck]);
    let mut nicks = [a.nick(), bursty.nick(), stuck.nick()].map(str::to_owned);
    nicks.sort_by_key(|nick| nick.to_lowercase());
    let who = format!("* 3 users online: {}", nicks.join(", "));

    let mut burst = Vec::with_capacity(lines * LINE + 5);
    for i in 0..lines {
        push_numbered(&mut burst, i, b'b', LINE);
    }
    burst.extend_from_slice(b"/who\n");
    let start = Instant::now();
    a.send(&burst);
    // The server has handled every line of the burst: B and S are over the
    // soft limit now.
    a.expect_line_within(&who, grace);
    let handled = start.elapsed();
    let prefix = format!("{}: ", a.nick());
    for i in 0..lines {
        let line = match bursty.receive(TIMEOUT) {
            Received::Line(line) => String::from_utf8(line).expect("UTF-8"),
            other => panic!(
                "B: {other:?} after {i} of {lines} lines, {:?} after the burst began \
                 (handled after {handled:?}, grace {grace:?}): a client that catches up \
                 within the grace must stay",
                start.elapsed()
            ),
        };
        expect_numbered(&line, &prefix, i, LINE);
    }
    let caught_up = start.elapsed();

    let too_slow = format!("* {} left (too slow)", stuck.nick());
    a.expect_line_within(&too_slow, grace + TIMEOUT);
    let dropped = start.elapsed();
    assert!(
        dropped >= grace,
        "S was dropped {dropped:?} after the burst began, before the grace of {grace:?} \
         (B caught up after {caught_up:?})"
    );
    bursty.expect_line(&too_slow);
    sync(&mut a, &mut [&mut bursty]);
    sync(&mut bursty, &mut [&mut a]);
    let got = stuck.drain_until_closed();
    assert!(
        got < lines,
        "S read {got} of {lines} lines, then was closed"
    );
}

/// The slowest a check assumes bytes move between a server and the test
/// over loopback, the server handling them and the test reading them
/// included. On the 2-core CI machine, with debug builds, the soft-queue
/// check's reader caught up on its 5.7 MB in 0.15 s alone and in at most
/// 1.2 s with four busy loops beside the three suites: over 4 MB/s, sixteen
/// times this.
const SLOWEST_BYTES_PER_SEC: usize = 256 * 1024;

/// A grace long enough for a reading client to take `bytes` even at
/// [`SLOWEST_BYTES_PER_SEC`], and never shorter than [`TIMEOUT`]: a time
/// that only a hung server or test can run out, like every other guard.
fn grace_for(bytes: usize) -> Duration {
    let secs = bytes.div_ceil(SLOWEST_BYTES_PER_SEC);
    TIMEOUT.max(Duration::from_secs(secs as u64))
}

/// Bytes of each numbered line the output-limit checks send, LF included.
const LINE: usize = 1024;

/// Limits and policies, logs: the log never stops the server. Nobody reads
/// the server's stderr here, so the pipe is full after a few hundred log
/// lines (64 KiB on Linux); 1500 clients then join and quit one after the
/// other, each logged twice, and every one is welcomed and said goodbye to.
pub fn limits_a_full_log_pipe_never_stops_serving(target: &Target) {
    let server = ServerProcess::start_with_stderr_unread(target, &[]);
    for i in 0..1500 {
        let (mut client, online) = Client::connect_welcomed(server.addr(), &format!("C{i}"));
        assert_eq!(online, 1, "client {i} is alone");
        client.send_line("/quit");
        client.expect_line("* bye");
        client.assert_closed();
    }
}
