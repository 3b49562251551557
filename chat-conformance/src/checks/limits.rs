//! protocol.md, "Limits and policies": `--max-clients`, `--max-queue` and
//! the soft output limit (`--soft-queue`, `--soft-queue-grace`).

use std::path::Path;
use std::thread;
use std::time::{Duration, Instant};

use super::{clients, labelled};
use crate::{Client, Received, ServerProcess, TIMEOUT, join, sync};

/// Limits and policies (`--max-clients 3`): a fourth client gets
/// `* error: server full` and EOF, and nobody hears of it; once one client
/// has left, a new one can join.
pub fn limits_max_clients(binary: &Path) {
    let server = ServerProcess::start_with(binary, &["--max-clients", "3"]);
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

    // The slot is freed when the server has finished closing C, which no
    // client can observe; so a refusal here is retried (bounded), and the
    // check is that a new client does get in.
    let mut e = None;
    for attempt in 0..200 {
        let mut client = Client::connect_raw(server.addr(), &format!("E{attempt}"));
        let line = client.read_line();
        if line == "* error: server full" {
            client.assert_closed();
            thread::sleep(Duration::from_millis(10));
            continue;
        }
        let online = client.take_welcome(&line);
        assert_eq!(online, 3, "the welcome of the client taking the freed slot");
        e = Some(client);
        break;
    }
    let mut e = e.expect("no client could join after one of three left");
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
pub fn limits_slow_reader_is_disconnected(binary: &Path) {
    /// Lines in flight at once: 8 KiB, well under the limit, so that the
    /// reading client is never the slow one, even when the server learns
    /// late that earlier batches were written (a few batches may count
    /// against B for a moment after B has read them).
    const WINDOW: usize = 8;
    /// Guard: the slow client must be gone before this much was sent.
    const MAX_BYTES: usize = 64 << 20;
    const SLACK: u64 = 16 << 20;
    let server = ServerProcess::start_with(binary, &["--max-queue", "65536"]);
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
    slow.drain_until_closed(TIMEOUT);
    let after = server.rss_bytes();
    assert!(
        after < before + SLACK,
        "server RSS grew from {before} to {after} bytes (sent {} bytes)",
        sent * LINE
    );
}

/// Limits and policies (`--soft-queue 262144 --soft-queue-grace 2`, with a
/// hard `--max-queue` no client here can reach): while one client sends a
/// burst of several MiB, a client that reads nothing until the burst is sent
/// goes over the soft limit, then reads it all within the grace and stays; a
/// client that never reads is disconnected, not before the grace, and the
/// others see `* NICK left (too slow)`.
///
/// The server's queue for a client is what the kernel buffers do not hold,
/// so the burst is the soft limit plus a bound on those buffers
/// ([`kernel_buffer_bound`]) plus 1 MiB: both non-reading clients are then
/// surely over the soft limit. The hard limit is twice the burst, more than
/// any client is ever sent, so only the soft limit can drop anyone.
pub fn limits_soft_queue_grace(binary: &Path) {
    const SOFT: usize = 256 * 1024;
    const GRACE: Duration = Duration::from_secs(2);
    let lines = (SOFT + kernel_buffer_bound() + (1 << 20)).div_ceil(LINE);
    let hard = 2 * lines * LINE;
    let server = ServerProcess::start_with(
        binary,
        &[
            "--soft-queue",
            &SOFT.to_string(),
            "--soft-queue-grace",
            &GRACE.as_secs().to_string(),
            "--max-queue",
            &hard.to_string(),
        ],
    );
    let [mut a, mut bursty] = labelled(&server, ["A", "B"]);
    let mut stuck = join(server.addr(), "S", &mut [&mut a, &mut bursty]);
    sync(&mut a, &mut [&mut bursty, &mut stuck]);

    let mut burst = Vec::with_capacity(lines * LINE);
    for i in 0..lines {
        push_numbered(&mut burst, i, b'b', LINE);
    }
    let start = Instant::now();
    a.send(&burst);
    let sent = start.elapsed();
    let prefix = format!("{}: ", a.nick());
    for i in 0..lines {
        let line = match bursty.receive(TIMEOUT) {
            Received::Line(line) => String::from_utf8(line).expect("UTF-8"),
            other => panic!(
                "B: {other:?} after {i} of {lines} lines, {:?} after the burst began \
                 (sent in {sent:?}, grace {GRACE:?}): a client that catches up within \
                 the grace must stay",
                start.elapsed()
            ),
        };
        expect_numbered(&line, &prefix, i, LINE);
    }
    let caught_up = start.elapsed();

    let too_slow = format!("* {} left (too slow)", stuck.nick());
    a.expect_line(&too_slow);
    let dropped = start.elapsed();
    assert!(
        dropped >= GRACE,
        "S was dropped {dropped:?} after the burst began, before the grace of {GRACE:?} \
         (B caught up after {caught_up:?})"
    );
    bursty.expect_line(&too_slow);
    sync(&mut a, &mut [&mut bursty]);
    sync(&mut bursty, &mut [&mut a]);
    let got = stuck.drain_until_closed(TIMEOUT);
    assert!(
        got < lines,
        "S read {got} of {lines} lines, then was closed"
    );
}

/// Limits and policies, flood control with a client that has stopped
/// reading: lines that flood control holds are broadcast when they are due,
/// by the server's timer rather than as they are read; they still reach
/// everyone, at the rate, while the socket of a client that never reads
/// fills up (and the server starts queueing for it) in the middle of them.
///
/// One line at once, then one per millisecond, so nearly every line goes
/// out from the timer; more than the kernel can buffer for the stuck client
/// ([`kernel_buffer_bound`]), so its socket surely fills; both output limits
/// out of reach, so nobody is dropped.
pub fn limits_held_lines_reach_everyone_while_a_socket_fills(binary: &Path) {
    const LEN: usize = 4000;
    let lines = kernel_buffer_bound() / LEN + 16;
    let limit = (4 * lines * LEN).to_string();
    let mut server = ServerProcess::start_with(
        binary,
        &[
            "--limit-loopback",
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

/// An upper bound on the chat bytes the kernel holds for one connection
/// that has not read: the server's send buffer (autotuned at most to the
/// third field of `tcp_wmem`; the servers do not set `SO_SNDBUF`) and the
/// client's receive buffer (the second field of `tcp_rmem`: it grows only as
/// the client reads). Linux defaults if those cannot be read.
fn kernel_buffer_bound() -> usize {
    let field = |name: &str, index: usize, default: usize| {
        std::fs::read_to_string(format!("/proc/sys/net/ipv4/{name}"))
            .ok()
            .and_then(|text| text.split_whitespace().nth(index)?.parse().ok())
            .unwrap_or(default)
    };
    field("tcp_wmem", 2, 4 << 20) + field("tcp_rmem", 1, 128 << 10)
}

/// Bytes of each numbered line the output-limit checks send, LF included.
const LINE: usize = 1024;

/// Appends line `i` of a numbered stream: its number, then `fill` up to
/// `len` bytes with the LF.
fn push_numbered(out: &mut Vec<u8>, i: usize, fill: u8, len: usize) {
    let head = format!("{i:08} ");
    out.extend_from_slice(head.as_bytes());
    out.resize(out.len() + len - head.len() - 1, fill);
    out.push(b'\n');
}

/// Checks that B received line `i` of a numbered stream (of `len`-byte
/// lines) whole, after the sender's `prefix`.
fn expect_numbered(line: &str, prefix: &str, i: usize, len: usize) {
    let body = line
        .strip_prefix(prefix)
        .unwrap_or_else(|| panic!("B: unexpected line {line:?}"));
    assert!(
        body.starts_with(&format!("{i:08} ")) && body.len() == len - 1,
        "B: expected line {i} complete, got one starting {:?}",
        &body[..body.len().min(20)]
    );
}
