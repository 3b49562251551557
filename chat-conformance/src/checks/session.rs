//! protocol.md, "Session events": welcome, joins and leaves, and the server
//! shutting down.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::thread;

use super::clients;
use crate::{Client, ServerProcess, TIMEOUT, Target, is_join_or_leave, join, sync};

/// Session events: the newcomer gets one welcome line
/// `* welcome, you are NICK; N users online; type /help for commands` (N
/// counts it, "1 user" when alone), the others `* NICK joined`; a client
/// that closes its connection or quits is announced as `* NICK left`.
pub fn session_welcome_join_and_leave(target: &Target) {
    let server = ServerProcess::start(target);
    let (mut a, online) = Client::connect_welcomed(server.addr(), "A");
    assert_eq!(online, 1, "alone: `1 user online`");
    let mut b = join(server.addr(), "B", &mut [&mut a]);
    let mut c = join(server.addr(), "C", &mut [&mut a, &mut b]);
    // Nothing else came before: the next lines are these markers.
    sync(&mut c, &mut [&mut a, &mut b]);

    c.shutdown_write();
    c.assert_closed();
    a.expect_line(&format!("* {} left", c.nick()));
    b.expect_line(&format!("* {} left", c.nick()));
    drop(c);

    b.send_line("/quit");
    b.expect_line("* bye");
    b.assert_closed();
    a.expect_line(&format!("* {} left", b.nick()));

    // Those who left no longer count.
    let mut d = join(server.addr(), "D", &mut [&mut a]);
    sync(&mut a, &mut [&mut d]);
    sync(&mut d, &mut [&mut a]);
}

/// Session events: while clients join and leave in a loop (closing, or
/// quitting with and without a reason), two others ping-pong chat lines and
/// each sees every line of the other, in order, among the notices.
pub fn session_churn_loses_no_lines(target: &Target) {
    const MIN_ROUNDS: usize = 200;
    const MIN_CHURNS: usize = 50;
    const MAX_ROUNDS: usize = 100_000;
    let server = ServerProcess::start(target);
    let [mut a, mut b] = clients(&server);
    let addr = server.addr().clone();
    let stop = Arc::new(AtomicBool::new(false));
    let churns = Arc::new(AtomicUsize::new(0));
    let churner = {
        let (stop, churns) = (Arc::clone(&stop), Arc::clone(&churns));
        thread::spawn(move || {
            let mut i = 0usize;
            while !stop.load(Ordering::Relaxed) && i < 10 * MAX_ROUNDS {
                let (mut c, _) = Client::connect_welcomed(&addr, &format!("churn{i}"));
                match i % 3 {
                    0 => c.shutdown_write(),
                    1 => c.send_line("/quit"),
                    _ => c.send_line("/quit churning"),
                }
                // Read until closed: the server is done with this client.
                c.drain_until_closed();
                i += 1;
                churns.store(i, Ordering::Relaxed);
            }
        })
    };

    let (na, nb) = (a.nick().to_owned(), b.nick().to_owned());
    let ponger = thread::spawn(move || {
        let mut round = 0;
        loop {
            let expected = format!("{na}: ping {round}");
            let done = format!("{na}: done");
            let (line, _) =
                b.expect_line_matching(&expected, |l| l == expected || l == done, is_join_or_leave);
            if line == done {
                return round;
            }
            b.send_line(&format!("pong {round}"));
            round += 1;
        }
    });
    let mut round = 0;
    while round < MIN_ROUNDS || churns.load(Ordering::Relaxed) < MIN_CHURNS {
        assert!(round < MAX_ROUNDS, "the churn loop made no progress");
        a.send_line(&format!("ping {round}"));
        let expected = format!("{nb}: pong {round}");
        a.expect_line_matching(&expected, |l| l == expected, is_join_or_leave);
        round += 1;
    }
    a.send_line("done");
    stop.store(true, Ordering::Relaxed);
    assert_eq!(ponger.join().expect("ponger thread"), round);
    churner.join().expect("churn thread");
}

/// Session events (shutdown on SIGTERM): every client gets
/// `* server shutting down` as its last line, then EOF; the process exits
/// with status 0. How soon it exits is not checked: every client has seen
/// EOF before the wait starts, so the wait ([`TIMEOUT`]) is only a guard
/// against a server that never exits.
pub fn session_sigterm_shuts_down_cleanly(target: &Target) {
    shuts_down_cleanly(target, ServerProcess::sigterm);
}

/// Session events (shutdown on SIGINT): as for SIGTERM.
pub fn session_sigint_shuts_down_cleanly(target: &Target) {
    shuts_down_cleanly(target, ServerProcess::sigint);
}

fn shuts_down_cleanly(target: &Target, signal: fn(&ServerProcess)) {
    let mut server = ServerProcess::start(target);
    let [mut a, mut b, mut c] = clients(&server);
    sync(&mut a, &mut [&mut b, &mut c]);
    // One client is in the middle of a line: it does not hold things up.
    c.send(b"half a li");
    signal(&server);
    for client in [&mut a, &mut b, &mut c] {
        client.expect_line("* server shutting down");
        client.assert_closed();
    }
    let status = server.wait_exit(TIMEOUT);
    assert!(status.success(), "exit status after the signal: {status}");
}
