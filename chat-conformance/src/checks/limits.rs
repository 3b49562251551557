//! protocol.md, "Limits and policies": `--max-clients` and `--max-queue`.

use std::path::Path;
use std::thread;
use std::time::Duration;

use super::clients;
use crate::{Client, ServerProcess, TIMEOUT, join, sync};

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
    const LINE: usize = 1024;
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
            let head = format!("{i:08} ");
            batch.extend_from_slice(head.as_bytes());
            batch.resize(batch.len() + LINE - head.len() - 1, b'q');
            batch.push(b'\n');
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
                let body = line
                    .strip_prefix(&prefix)
                    .unwrap_or_else(|| panic!("B: unexpected line {line:?}"));
                assert!(
                    body.starts_with(&format!("{i:08} ")) && body.len() == LINE - 1,
                    "B: expected line {i} complete, got one starting {:?}",
                    &body[..body.len().min(20)]
                );
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
