//! Rule tests for `docs/protocol.md`, "Limits and policies": one
//! deterministic test (or a few) per rule, each named `limits_*` and citing
//! its rule. The soft output limit is `limits_soft_queue_*`; config
//! validation is here too.
//!
//! The tests drive one `chat_core::Server` through
//! `chat_core::testkit::Driver`, the simulated driver that follows the run
//! loop of the crate docs on a virtual clock.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::net::IpAddr;

use chat_core::testkit::rules::{
    GRACE, SOFT, fill_to, line_config, ms, no_policies, secs, soft_config,
};
use chat_core::testkit::{Driver, NS};
use chat_core::{Config, ConfigError, ConnId, Event, LINE_COST, Reason};

/// Limits, max clients: a connection over the limit gets
/// `* error: server full` and a flushing Close, is logged as Rejected, and
/// nobody else sees anything of it.
#[test]
fn limits_max_clients_refuses_over_the_limit() {
    let config = Config {
        max_clients: 2,
        ..Config::default()
    };
    let mut s = Driver::untimed(config, 1);
    let (a, _, b, _) = s.pair();
    let c = s.connect();
    assert_eq!(s.lines(c), ["* error: server full"]);
    assert_eq!(s.closes(), [(c, Reason::ServerFull, true)]);
    assert!(matches!(
        &s.events()[..],
        [Event::Rejected { conn, reason: Reason::ServerFull, .. }] if *conn == c
    ));
    s.assert_quiet(&[a, b]);
    assert_eq!(s.server().nick(c), None);
    // Its input goes nowhere; its closing frees no slot.
    s.send(c, "hello?\n/who\n");
    s.eof(c);
    s.close(c);
    s.assert_quiet(&[a, b, c]);
    let d = s.connect();
    assert_eq!(s.lines(d), ["* error: server full"]);
    s.closes();
    s.events();
    s.send(a, "/who\n");
    assert!(s.lines(a)[0].starts_with("* 2 users online"));
}

/// Limits, max clients: a slot frees when a leaver's connection is closed
/// (`handle_closed`), not when its Close is asked for.
#[test]
fn limits_max_clients_slot_frees_on_closed() {
    let config = Config {
        max_clients: 2,
        ..Config::default()
    };
    let mut s = Driver::untimed(config, 1);
    let (a, _, b, _) = s.pair();
    s.send(a, "/quit\n");
    assert_eq!(s.closes().len(), 1);
    s.lines(a);
    s.lines(b);
    let c = s.connect();
    assert_eq!(s.lines(c), ["* error: server full"], "a is still open");
    s.closes();
    s.events();
    s.close(a);
    s.assert_quiet(&[a, b]);
    let (_, dn) = s.join(&[b]);
    assert_eq!(dn.len(), 4);
    // EOF and failures free their slot on handle_closed the same way.
    s.eof(b);
    s.closes();
    let e = s.connect();
    assert_eq!(s.lines(e), ["* error: server full"]);
    s.close(b);
    s.close(e);
    let f = s.connect();
    assert!(s.lines(f)[0].starts_with("* welcome"));
}

/// Refuses a connection from `ip` as `server full`, reports it closed, and
/// returns the events that caused.
fn refused_full(s: &mut Driver, ip: IpAddr) -> Vec<Event> {
    let conn = s.connect_from(ip);
    assert_eq!(s.lines(conn), ["* error: server full"], "from {ip}");
    assert_eq!(s.closes(), [(conn, Reason::ServerFull, true)]);
    s.close(conn);
    s.events()
}

/// Whether `events` is exactly one Rejected event for `ip` carrying
/// `unlogged`.
fn is_rejected(events: &[Event], ip: IpAddr, unlogged: u64) -> bool {
    matches!(
        events,
        [Event::Rejected { peer, reason: Reason::ServerFull, unlogged: n, .. }]
            if peer.ip() == ip && *n == unlogged
    )
}

/// Limits, logs: per address, a refusal is logged (an event) at once, the
/// refusals of that address in the next 60 s are only counted, and the
/// first after them is logged with their count: 1000 refused connects in
/// a minute give one Rejected event, the next, at the minute, reports the
/// 999 left out. Other addresses have their own minute; an IPv6 /64 is one
/// address; loopback peers count too.
#[test]
fn limits_logs_refusals_once_a_minute_per_address() {
    let mut s = Driver::timed(Config {
        max_clients: 1,
        ..Config::default()
    });
    let (a, _) = s.join(&[]);
    s.events();
    let ip: IpAddr = "2001:db8::1".parse().unwrap();
    let same_64: IpAddr = "2001:db8::2:0:0:1".parse().unwrap();
    let events = refused_full(&mut s, ip);
    assert!(is_rejected(&events, ip, 0), "{events:?}");
    let minute = secs(60);
    for k in 1..999 {
        s.advance_to(minute * k / 1000);
        let from = if k % 2 == 0 { ip } else { same_64 };
        assert_eq!(refused_full(&mut s, from), [], "refusal {k}");
    }
    s.advance_to(minute - NS);
    assert_eq!(refused_full(&mut s, same_64), [], "the last in the minute");
    // Another address, and loopback, each once in that minute.
    for other in ["203.0.113.1", "127.0.0.1"] {
        let other: IpAddr = other.parse().unwrap();
        assert!(is_rejected(&refused_full(&mut s, other), other, 0));
        assert_eq!(refused_full(&mut s, other), []);
    }
    s.advance_to(minute);
    let events = refused_full(&mut s, ip);
    assert!(is_rejected(&events, ip, 999), "{events:?}");
    // And the next minute starts.
    assert_eq!(refused_full(&mut s, ip), []);
    s.assert_quiet(&[a]);
}

/// Limits, logs: per address, the first two joins of a minute are logged,
/// the others (and their leaves) are quiet, and the first logged after the
/// minute says how many were quiet. An address connecting in a loop is two
/// join and two leave lines a minute.
#[test]
fn limits_logs_joins_twice_a_minute_per_address() {
    let mut s = Driver::timed(Config::default());
    let ip: IpAddr = "203.0.113.9".parse().unwrap();
    let mut quiet = Vec::new();
    let mut ids = Vec::new();
    for k in 0..6u64 {
        s.advance_to(secs(10 * k));
        let (id, _) = s.join_from(ip, &ids);
        let events = s.events();
        let [
            Event::Joined {
                conn,
                quiet: q,
                unlogged: 0,
                ..
            },
        ] = &events[..]
        else {
            panic!("join {k}: {events:?}");
        };
        assert_eq!(*conn, id);
        quiet.push(*q);
        ids.push(id);
    }
    assert_eq!(quiet, [false, false, true, true, true, true]);
    // Leaves follow their joins.
    for (id, was_quiet) in ids.iter().zip(&quiet).take(3) {
        s.eof(*id);
        let events = s.events();
        assert!(
            matches!(&events[..], [Event::Left { conn, quiet, .. }] if conn == id && quiet == was_quiet),
            "{events:?}"
        );
        for other in &ids {
            s.lines(*other);
        }
    }
    // A quiet client dropped for a policy is reported all the same.
    let flood: String = (0..200).map(|i| format!("{i}\n")).collect();
    s.send(ids[3], flood);
    assert!(matches!(
        &s.events()[..],
        [Event::Left {
            reason: Reason::ExcessFlood,
            quiet: false,
            ..
        }]
    ));
    for other in &ids[4..] {
        s.lines(*other);
    }
    s.advance_to(secs(60));
    let (_, _) = s.join_from(ip, &ids[4..]);
    assert!(matches!(
        &s.events()[..],
        [Event::Joined {
            quiet: false,
            unlogged: 4,
            ..
        }]
    ));
}

/// Limits, max queue: a client that is never written to is disconnected as
/// `too slow` (a non-flushing Close) when its pending bytes (each line its
/// bytes and LINE_COST) would exceed max_queue, not before; its pending bytes never exceed it; the others get
/// `* NICK left (too slow)` and keep receiving.
#[test]
fn limits_max_queue_drops_slow_client() {
    let config = line_config(64);
    let max_queue = config.max_queue;
    let mut s = Driver::untimed(config, 2);
    let [(a, an), (b, _), (slow, slow_nick)] = s.trio();
    s.stall(slow, true);
    s.lines(slow);
    let text = "m".repeat(60);
    let line_len = an.len() + 2 + text.len() + 1 + LINE_COST;
    let mut sent = 0;
    loop {
        let pending = s.server().pending_bytes(slow).unwrap();
        let overflows = pending + line_len > max_queue;
        s.send(a, format!("{text}\n"));
        sent += 1;
        if overflows {
            assert_eq!(s.closes(), [(slow, Reason::TooSlow, false)]);
            break;
        }
        assert_eq!(s.lines(b), [format!("{an}: {text}")]);
        assert_eq!(s.closes(), [], "dropped before going over");
        assert_eq!(s.server().pending_bytes(slow), Some(pending + line_len));
        assert!(sent < 1000);
    }
    assert!(sent > 10);
    assert_eq!(s.lines(a), [format!("* {slow_nick} left (too slow)")]);
    assert_eq!(
        s.lines(b),
        [
            format!("{an}: {text}"),
            format!("* {slow_nick} left (too slow)")
        ]
    );
    assert!(
        s.lines(slow)
            .iter()
            .all(|l| l.starts_with(&format!("{an}: ")))
    );
    assert!(matches!(
        &s.events()[..],
        [Event::Left { conn, reason: Reason::TooSlow, .. }] if *conn == slow
    ));
    // The others keep receiving; the slow one gets nothing more.
    s.send(a, "after\n");
    assert_eq!(s.lines(b), [format!("{an}: after")]);
    assert_eq!(s.lines(slow), Vec::<String>::new());
    s.send(slow, "ignored\n");
    s.assert_quiet(&[a, b, slow]);
}

/// Limits, max queue: a queue filled to exactly max_queue (each line its
/// bytes and LINE_COST) is not over it; one byte more is.
#[test]
fn limits_max_queue_exact_boundary() {
    let config = line_config(64);
    let max_queue = config.max_queue;
    let mut s = Driver::untimed(config, 2);
    let [(a, an), (b, _), (slow, slow_nick)] = s.trio();
    s.stall(slow, true);
    // `NICK: `, the LF and what a line costs beyond its bytes.
    let prefix = an.len() + 3 + LINE_COST;
    let room = |s: &Driver| max_queue - s.server().pending_bytes(slow).unwrap();
    while room(&s) > 2 * prefix + 100 {
        s.send(a, format!("{}\n", "e".repeat(50)));
    }
    let first = (room(&s) - 2 * prefix) / 2;
    s.send(a, format!("{}\n", "e".repeat(first)));
    let last = room(&s) - prefix;
    assert!((1..=64).contains(&last));
    s.send(a, format!("{}\n", "e".repeat(last)));
    assert_eq!(s.server().pending_bytes(slow), Some(max_queue));
    assert_eq!(s.closes(), [], "exactly full is not over");
    assert!(s.server().nick(slow).is_some());
    s.send(a, "e\n");
    assert_eq!(s.closes(), [(slow, Reason::TooSlow, false)]);
    assert_eq!(
        s.lines(b).last().unwrap(),
        &format!("* {slow_nick} left (too slow)")
    );
}

/// Limits, max queue: a client that goes over its limit with its own
/// replies (and never reads) is dropped as too slow too.
#[test]
fn limits_max_queue_own_replies() {
    let config = line_config(64);
    let mut s = Driver::untimed(config, 2);
    let (a, an, b, _) = s.pair();
    s.stall(a, true);
    for _ in 0..100 {
        s.send(a, "/help\n");
        if !s.closes().is_empty() {
            break;
        }
    }
    assert_eq!(s.lines(b), [format!("* {an} left (too slow)")]);
    assert!(s.server().nick(a).is_none());
}

/// Limits, max queue: a client whose queue a leave notice overflows is
/// disconnected at once, whoever left and however (/quit, EOF, failure).
#[test]
fn limits_max_queue_overflow_by_join_notice() {
    let config = line_config(64);
    let max_queue = config.max_queue;
    let mut s = Driver::untimed(config, 2);
    let (a, an, slow, slow_nick) = s.pair();
    s.stall(slow, true);
    // Fill slow's queue to the brim with lines from a.
    fill_to_brim(&mut s, a, &an, slow, max_queue);
    s.connect();
    assert_eq!(s.closes(), [(slow, Reason::TooSlow, false)]);
    assert!(
        s.lines(a)
            .contains(&format!("* {slow_nick} left (too slow)"))
    );
}

/// Sends chat lines from `a` until `slow` holds more than `max_queue - 12
/// - LINE_COST` bytes, so that any notice overflows it.
fn fill_to_brim(s: &mut Driver, a: ConnId, an: &str, slow: ConnId, max_queue: usize) {
    let prefix = an.len() + 3 + LINE_COST;
    loop {
        let room = max_queue - s.server().pending_bytes(slow).unwrap();
        if room <= 12 + LINE_COST {
            break;
        }
        let len = (room - prefix).min(60);
        s.send(a, format!("{}\n", "f".repeat(len.max(1))));
    }
    assert_eq!(s.closes(), []);
}

/// Limits, max queue: a leave notice that overflows a slow client
/// disconnects it at once, whoever leaves and however.
#[test]
fn limits_max_queue_overflow_by_leave_notice() {
    type Leave = fn(&mut Driver, ConnId);
    let leaves: [(&str, Leave); 3] = [
        ("/quit", |s, b| s.send(b, "/quit bye bye\n")),
        ("EOF", |s, b| s.eof(b)),
        ("handle_closed", |s, b| s.close(b)),
    ];
    for (how, leave) in leaves {
        let config = line_config(64);
        let max_queue = config.max_queue;
        let mut s = Driver::untimed(config, 2);
        let [(a, an), (b, _), (slow, _)] = s.trio();
        s.stall(slow, true);
        fill_to_brim(&mut s, a, &an, slow, max_queue);
        leave(&mut s, b);
        let closes = s.closes();
        assert!(
            closes.contains(&(slow, Reason::TooSlow, false)),
            "leaving by {how}: {closes:?}"
        );
    }
}

/// Limits, max queue: a client whose writes are reported is never dropped,
/// however much passes through it.
#[test]
fn limits_max_queue_reading_client_never_dropped() {
    let config = line_config(64);
    let max_queue = config.max_queue;
    let mut s = Driver::untimed(config, 2);
    let (a, _, b, _) = s.pair();
    let mut received = 0;
    for i in 0..2000 {
        s.send(a, format!("{i:064}\n"));
        received += s.lines(b).len();
    }
    assert_eq!(received, 2000);
    assert!(2000 * 64 > 10 * max_queue);
    assert_eq!(s.closes(), []);
    assert_eq!(s.server().pending_bytes(b), Some(0));
}

/// Limits, max queue: the longest possible line (max line invalid bytes from
/// a 32-character nick of 4-byte characters) fits a minimal max_queue.
#[test]
fn limits_max_queue_holds_longest_line() {
    let config = line_config(140);
    let mut s = Driver::untimed(config, 2);
    let (a, _, b, _) = s.pair();
    let nick = "\u{1d49c}".repeat(32);
    s.rename(a, &nick, &[b]);
    s.send(a, [0xffu8; 140]);
    s.send(a, "\n");
    assert_eq!(s.lines(b), [format!("{nick}: {}", "\u{fffd}".repeat(140))]);
    assert_eq!(s.closes(), []);
}

/// Three loopback clients; the last, `slow`, does not read and holds
/// exactly [`SOFT`] bytes (not over the soft limit). Every line is taken.
fn soft_setup(s: &mut Driver) -> [(ConnId, String); 3] {
    let [(a, an), (b, bn), (slow, slow_nick)] = s.trio();
    s.stall(slow, true);
    fill_to(s, a, &an, slow, SOFT);
    s.lines(b);
    s.lines(slow);
    assert_eq!(s.deadline(), None, "at the soft limit is not over it");
    [(a, an), (b, bn), (slow, slow_nick)]
}

/// Limits and policies, soft output limit: a client whose queue stays above
/// the soft limit for the whole grace time is disconnected as `too slow`
/// exactly when the grace ends (counted from when it went over), without a
/// last line (a non-flushing Close, nothing left for it), and the others get
/// `* NICK left (too slow)`. It applies to loopback peers.
#[test]
fn limits_soft_queue_over_for_the_grace_is_too_slow() {
    let mut s = Driver::timed(soft_config());
    let [(a, an), (b, _), (slow, slow_nick)] = soft_setup(&mut s);
    s.advance(secs(3));
    let over = s.elapsed();
    assert_eq!(s.relayed(a, &an, b, b"x\n"), ["x"]);
    assert!(s.server().pending_bytes(slow).unwrap() > SOFT);
    assert_eq!(s.deadline(), Some(over + GRACE));
    // More lines while it is over do not move the deadline.
    s.advance(secs(5));
    assert_eq!(s.relayed(a, &an, b, b"y\n"), ["y"]);
    assert_eq!(s.deadline(), Some(over + GRACE));
    assert_eq!(s.lines(slow), [format!("{an}: x"), format!("{an}: y")]);
    s.quiet_until(over + GRACE, &[a, b, slow]);
    assert_eq!(s.closes(), [(slow, Reason::TooSlow, false)]);
    for conn in [a, b] {
        assert_eq!(s.lines(conn), [format!("* {slow_nick} left (too slow)")]);
    }
    assert!(matches!(
        &s.events()[..],
        [Event::Left { conn, reason: Reason::TooSlow, .. }] if *conn == slow
    ));
    // No last line: nothing is left to write to it.
    assert_eq!(s.server().pending_bytes(slow), Some(0));
    assert_eq!(s.server_mut().poll_transmit(slow, &mut Vec::new()), 0);
    assert_eq!(s.deadline(), None);
}

/// Limits and policies, soft output limit: a client that drops to the soft
/// limit (or below) before its grace ends stays, dropping to just above it
/// is not enough, and the grace starts again the next time it goes over.
#[test]
fn limits_soft_queue_read_down_in_time_stays() {
    let mut s = Driver::timed(soft_config());
    let [(a, an), (b, _), (slow, slow_nick)] = soft_setup(&mut s);
    s.advance(secs(3));
    let over = s.elapsed();
    assert_eq!(s.relayed(a, &an, b, b"x\n"), ["x"]);
    s.lines(slow);
    // Written down to as little above the soft limit as a write can leave
    // (a line's cost goes with its last byte): still over it.
    s.advance(secs(4));
    let client = s.client(slow);
    let most = (0..client.in_flight.len())
        .rev()
        .find(|&n| client.in_flight_cost_after(n) > SOFT)
        .unwrap();
    s.write(slow, most);
    assert!(s.server().pending_bytes(slow).unwrap() > SOFT);
    assert_eq!(s.deadline(), Some(over + GRACE));
    // At the soft limit or below, one nanosecond before the grace ends, is not.
    s.advance_to(over + GRACE - NS);
    s.write(slow, 1);
    assert!(s.server().pending_bytes(slow).unwrap() <= SOFT);
    assert_eq!(s.deadline(), None);
    s.advance(secs(3600));
    s.assert_quiet(&[a, b, slow]);
    assert_eq!(s.server().nick(slow), Some(slow_nick.as_str()));
    // Over again: a whole new grace.
    let again = s.elapsed();
    assert_eq!(s.relayed(a, &an, b, b"z\n"), ["z"]);
    assert_eq!(s.deadline(), Some(again + GRACE));
    s.lines(slow);
    s.quiet_until(again + GRACE, &[a, b, slow]);
    assert_eq!(s.closes(), [(slow, Reason::TooSlow, false)]);
    assert_eq!(s.lines(b), [format!("* {slow_nick} left (too slow)")]);
}

/// Limits and policies, soft output limit: a soft limit equal to the max
/// queue turns it off: a client holding exactly max queue bytes is never
/// dropped for it, however long.
#[test]
fn limits_soft_queue_equal_to_max_queue_is_off() {
    let config = line_config(64);
    assert_eq!(config.soft_queue, config.max_queue);
    let max_queue = config.max_queue;
    let mut s = Driver::timed(config);
    let [(a, an), (b, _), (slow, slow_nick)] = s.trio();
    s.stall(slow, true);
    fill_to(&mut s, a, &an, slow, max_queue);
    s.lines(b);
    s.lines(slow);
    assert_eq!(s.deadline(), None);
    s.advance(secs(24 * 3600));
    s.assert_quiet(&[a, b, slow]);
    assert_eq!(s.server().nick(slow), Some(slow_nick.as_str()));
}

/// Limits and policies: a soft limit above the max queue is refused.
#[test]
fn limits_soft_queue_above_max_queue_refused() {
    let config = Config {
        soft_queue: Config::default().max_queue + 1,
        ..Config::default()
    };
    assert_eq!(config.validate(), Err(ConfigError::SoftQueueAboveHard));
}

/// Limits and policies: the server refuses configurations that cannot work:
/// no clients, a max line below 16, a max queue below `3 * max-line + 1219`.
#[test]
fn limits_config_validate() {
    let base = Config::default();
    assert_eq!(base.max_clients, 10_000);
    assert_eq!(base.max_line, 4096);
    assert_eq!(base.max_queue, 1 << 20);
    assert_eq!(base.validate(), Ok(()));
    assert_eq!(
        Config {
            max_clients: 0,
            ..base.clone()
        }
        .validate(),
        Err(ConfigError::NoClients)
    );
    assert_eq!(
        Config {
            max_line: 15,
            ..base.clone()
        }
        .validate(),
        Err(ConfigError::LineTooShort)
    );
    for max_line in [16, 100, 4096, 65_536] {
        let min = 3 * max_line + 1219;
        let at = |max_queue| Config {
            max_clients: 1,
            max_line,
            max_queue,
            soft_queue: max_queue,
            room_queue: None,
            ..Config::default()
        };
        assert_eq!(at(min).validate(), Ok(()), "max line {max_line}");
        assert_eq!(
            at(min - 1).validate(),
            Err(ConfigError::QueueTooSmall { min }),
            "max line {max_line}"
        );
    }
    assert!(
        ConfigError::QueueTooSmall { min: 1234 }
            .to_string()
            .contains("1234")
    );
}

// ---------------------------------------------------------------------------
// Room backpressure: `limits_room_*`.

/// What a client over which the room waits holds: `room_queue` in
/// [`room_config`].
const ROOM: usize = 2000;
/// The slowest reading the room waits for in [`room_config`], bytes a second.
const READ_RATE: u32 = 1000;

/// Room backpressure at [`ROOM`] bytes for readers of at least
/// [`READ_RATE`] bytes a second; lines of up to 64 bytes; output limits far
/// above the room's (20000 bytes, no soft limit); no address policy.
fn room_config() -> Config {
    Config {
        max_line: 64,
        max_queue: 20_000,
        soft_queue: 20_000,
        room_queue: Some(ROOM),
        min_read_rate: READ_RATE,
        ..no_policies()
    }
}

/// Three clients: a sender, a reader that keeps up and `slow`, which does
/// not read (its socket is full) and holds more than `fill` bytes (at
/// least [`ROOM`]), in lines of 60 bytes of text.
fn room_setup(s: &mut Driver, fill: usize) -> [(ConnId, String); 3] {
    let [(a, an), (b, bn), (slow, slow_nick)] = s.trio();
    s.stall(slow, true);
    let mut sent = 0;
    while s.server().pending_bytes(slow).unwrap() <= fill.max(ROOM) {
        let line = format!("{sent:060}\n");
        assert_eq!(s.relayed(a, &an, b, line.as_bytes()).len(), 1);
        sent += 1;
    }
    s.lines(slow);
    [(a, an), (b, bn), (slow, slow_nick)]
}

/// Limits and policies, room backpressure: a client that has fallen behind
/// and does not read (its socket full, nothing written) never makes the room
/// wait: the others' lines keep flowing, and it is dropped at max_queue.
#[test]
fn limits_room_never_waits_for_a_client_that_does_not_read() {
    let mut s = Driver::timed(room_config());
    let [(a, an), (b, _), (slow, slow_nick)] = room_setup(&mut s, ROOM);
    let mut lines = 0;
    while s.closes().is_empty() {
        assert_eq!(s.server().room_holders(), 0);
        assert!(!s.is_paused(a));
        s.advance(ms(10));
        let line = format!("{lines:060}");
        s.send(a, format!("{line}\n"));
        assert_eq!(s.lines(b)[0], format!("{an}: {line}"));
        lines += 1;
        assert!(lines < 1000);
    }
    assert_eq!(s.closes(), [], "one close only");
    assert!(s.server().nick(slow).is_none(), "dropped at the limit");
    assert_eq!(s.lines(a), [format!("* {slow_nick} left (too slow)")]);
}

/// The `slow` client of [`room_config`] falls behind in one burst (40 lines
/// from `a` handled in one call, as when a hold ends) while its socket
/// still takes everything, and then its socket fills.
fn fall_behind_then_fill(s: &mut Driver, a: ConnId, slow: ConnId) {
    let burst: String = (0..40).map(|i| format!("{i:060}\n")).collect();
    s.handle_bytes(a, burst.as_bytes());
    assert!(s.server().pending_bytes(slow).unwrap() > ROOM, "behind");
    s.stall(slow, true);
}

/// Limits and policies, room backpressure: a client never seen reading
/// (no write reported while its socket was full) whose socket fills while
/// it is behind does not hold the room at all: the others' lines flow.
#[test]
fn limits_room_a_client_never_seen_reading_never_holds_it() {
    let mut s = Driver::timed(room_config());
    let [(a, _), (b, _), (slow, _)] = s.trio();
    fall_behind_then_fill(&mut s, a, slow);
    assert_eq!(s.server().room_holders(), 0);
    assert_eq!(s.lines(b).len(), 40);
    s.send(a, "flows\n");
    assert_eq!(s.lines(b).len(), 1);
}

/// Limits and policies, room backpressure: a client seen reading before
/// whose socket fills while it is behind holds the room for 50 ms, for its
/// next read to come; then, not seen reading, it no longer does.
#[test]
fn limits_room_a_reader_whose_socket_fills_while_behind_holds_it_50_ms() {
    let mut s = Driver::timed(room_config());
    let [(a, _), (b, _), (slow, _)] = s.trio();
    // Seen reading once: a write while its socket was full.
    s.stall(slow, true);
    s.send(a, "once\n");
    s.write(slow, 1);
    s.stall(slow, false);
    assert_eq!(s.server().pending_bytes(slow), Some(0));
    s.lines(b);
    let start = s.elapsed();
    fall_behind_then_fill(&mut s, a, slow);
    assert_eq!(s.server().room_holders(), 1);
    assert_eq!(s.deadline(), Some(start + ms(50)));
    s.quiet_until(start + ms(50), &[]);
    assert_eq!(s.server().room_holders(), 0);
}

/// Limits and policies, room backpressure: a client behind whose socket is
/// full holds the room for what it is seen to read, the bytes written at
/// `min_read_rate` from the write, to the nanosecond: input of every client
/// waits meanwhile (the sender is no longer read), and is handled when the
/// hold runs out.
#[test]
fn limits_room_waits_for_what_a_reader_reads() {
    let mut s = Driver::timed(room_config());
    let [(a, an), (b, _), (slow, _)] = room_setup(&mut s, ROOM);
    s.advance(secs(1));
    let start = s.elapsed();
    // 250 bytes at 1000 a second: a quarter of a second.
    s.write(slow, 250);
    assert!(s.server().pending_bytes(slow).unwrap() > ROOM / 2);
    assert_eq!(s.server().room_holders(), 1);
    assert_eq!(s.deadline(), Some(start + ms(250)));
    s.send(a, "waits\n");
    assert!(
        s.is_paused(a),
        "the sender is not read while the room waits"
    );
    assert_eq!(s.server().held_bytes(a), Some(6));
    s.quiet_until(start + ms(250), &[b]);
    assert_eq!(s.lines(b), [format!("{an}: waits")]);
    assert!(!s.is_paused(a));
    assert_eq!(s.server().room_holders(), 0);
}

/// Limits and policies, room backpressure: a write proves reading only over
/// the time since the socket was reported full, or since the write before:
/// it holds the room at most twice that time (a kernel growing its buffers
/// takes bytes a moment after the socket filled, from a client that never
/// reads), however much was written.
#[test]
fn limits_room_a_write_holds_it_at_most_twice_the_time_it_was_read_in() {
    let mut s = Driver::timed(room_config());
    let [(a, an), (b, _), (slow, _)] = room_setup(&mut s, 2 * ROOM);
    s.advance(ms(3));
    let start = s.elapsed();
    // Half a second's worth at the rate, 3 ms after the socket filled.
    s.write(slow, READ_RATE as usize / 2);
    assert!(s.server().pending_bytes(slow).unwrap() > ROOM / 2);
    assert_eq!(s.server().room_holders(), 1);
    assert_eq!(s.deadline(), Some(start + ms(6)));
    s.send(a, "waits\n");
    s.quiet_until(start + ms(6), &[b]);
    assert_eq!(s.lines(b), [format!("{an}: waits")]);
    assert_eq!(s.server().room_holders(), 0);
    // The next write counts from this one, not from the fill: 10 ms after
    // it (13 ms after the fill), half a second's worth holds 20 ms.
    s.advance(ms(4));
    let start = s.elapsed();
    s.write(slow, READ_RATE as usize / 2);
    assert!(s.server().pending_bytes(slow).unwrap() > ROOM / 2);
    assert_eq!(s.deadline(), Some(start + ms(20)));
}

/// Limits and policies, room backpressure: a hold never runs more than a
/// second past the write that earned it, however much was written.
#[test]
fn limits_room_holds_at_most_a_second_after_a_read() {
    let mut s = Driver::timed(room_config());
    let [(a, an), (b, _), (slow, _)] = room_setup(&mut s, 6 * ROOM);
    // Full for a second: a write proves up to two seconds' reading.
    s.advance(secs(1));
    let start = s.elapsed();
    // Five seconds' worth at the rate.
    s.write(slow, 5 * READ_RATE as usize);
    assert!(s.server().pending_bytes(slow).unwrap() > ROOM / 2);
    assert_eq!(s.server().room_holders(), 1);
    assert_eq!(s.deadline(), Some(start + secs(1)));
    s.send(a, "late\n");
    s.quiet_until(s.deadline().unwrap(), &[b]);
    assert_eq!(s.lines(b), [format!("{an}: late")]);
}

/// Limits and policies, room backpressure: a client back to half of
/// room_queue no longer holds the room: what waited is handled at once.
#[test]
fn limits_room_opens_when_the_reader_is_back_to_half() {
    let mut s = Driver::timed(room_config());
    let [(a, an), (b, _), (slow, _)] = room_setup(&mut s, ROOM);
    s.advance(secs(1));
    s.write(slow, 100);
    assert_eq!(s.server().room_holders(), 1);
    s.send(a, "one\n");
    s.send_in_flight(a, "two\n");
    assert_eq!(s.lines(b), Vec::<String>::new());
    let pending = s.server().pending_bytes(slow).unwrap();
    let client = s.client(slow);
    let to_half = (1..=client.in_flight.len())
        .find(|&n| client.in_flight_cost_after(n) <= ROOM / 2)
        .unwrap();
    assert!(pending > ROOM / 2);
    s.write(slow, to_half);
    assert_eq!(s.server().room_holders(), 0);
    assert_eq!(s.lines(b), [format!("{an}: one"), format!("{an}: two")]);
    assert!(!s.is_paused(a));
}

/// Limits and policies, room backpressure: while the room waits, the
/// clients that sent least are handled first when it opens, so that the one
/// that floods is the one held back; each client's lines stay in order.
#[test]
fn limits_room_the_lightest_sender_goes_first() {
    let mut s = Driver::timed(room_config());
    let [(a, an), (b, bn), (slow, _)] = room_setup(&mut s, ROOM);
    let (c, cn) = s.join(&[a, b, slow]);
    s.lines(slow);
    s.advance(secs(1));
    s.write(slow, 100);
    assert_eq!(s.server().room_holders(), 1);
    let flood: String = (0..20).map(|i| format!("flood {i}\n")).collect();
    s.send(a, &flood);
    s.send(c, "light\n");
    s.advance(ms(100));
    let got = s.lines(b);
    assert_eq!(got[0], format!("{cn}: light"));
    let flood_got: Vec<String> = (0..20).map(|i| format!("{an}: flood {i}")).collect();
    assert_eq!(got[1..], flood_got[..got.len() - 1]);
    assert_ne!(an, bn);
}

/// Limits and policies, room backpressure: a client behind whose socket
/// still has room (the server's own writing is behind) holds the room, but
/// never more than a second after it fell behind or was last written to.
#[test]
fn limits_room_waits_at_most_a_second_for_the_server() {
    use std::net::SocketAddr;

    use chat_core::{Output, Server};

    let start = std::time::Instant::now();
    let mut server = Server::new(room_config(), 3);
    let peer: SocketAddr = "127.0.0.1:9".parse().unwrap();
    let (a, r) = (
        server.handle_connect(start, peer),
        server.handle_connect(start, peer),
    );
    let drain = |server: &mut Server| {
        let mut outputs = Vec::new();
        while let Some(output) = server.poll_output() {
            if let Output::Transmit(conn) = output {
                if conn == a {
                    let len = server.poll_transmit(a, &mut Vec::new());
                    server.handle_written(start, a, len);
                }
            }
            outputs.push(output);
        }
        outputs
    };
    drain(&mut server);
    // Nothing is written to r: the driver has not got to it yet.
    while server.pending_bytes(r).unwrap() <= ROOM {
        server.handle_bytes(start, a, b"not yet written\n");
        drain(&mut server);
    }
    assert_eq!(server.room_holders(), 1);
    server.handle_bytes(start, a, b"waits\n");
    assert!(drain(&mut server).contains(&Output::StopReading(a)));
    assert_eq!(server.poll_timeout(), Some(start + secs(1)));
    server.handle_timeout(start + secs(1));
    assert_eq!(server.room_holders(), 0);
    assert!(drain(&mut server).contains(&Output::ResumeReading(a)));
}
