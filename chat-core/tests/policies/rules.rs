//! The rule tests of "Address policies": one deterministic test (or a few)
//! per rule, each named `policies_*` and citing its rule, driven by
//! `chat_core::testkit::Driver` on a virtual clock.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::ops::RangeInclusive;
use std::time::Duration;

use chat_core::testkit::rules::{GRACE, SOFT, fill_to, ms, no_policies, secs, soft_config};
use chat_core::testkit::{Driver, NS};
use chat_core::{Config, ConnId, Event, Rate, Reason};

/// 203.0.113.N (TEST-NET-3): a public address, which the address policies
/// limit.
fn public(n: u8) -> IpAddr {
    Ipv4Addr::new(203, 0, 113, n).into()
}

/// `addr` as an IPv4-mapped IPv6 address (`::ffff:a.b.c.d`).
fn mapped(addr: IpAddr) -> IpAddr {
    match addr {
        IpAddr::V4(v4) => v4.to_ipv6_mapped().into(),
        IpAddr::V6(_) => addr,
    }
}

fn rate_of(burst: u32, interval: Duration) -> Rate {
    Rate { burst, interval }
}

/// A client from a public address, which the address policies limit, and
/// a loopback one, which they do not: (a, a's nick, b, b's nick).
fn limited_pair(s: &mut Driver) -> (ConnId, String, ConnId, String) {
    let (b, bn) = s.join(&[]);
    let (a, an) = s.join_from(public(1), &[b]);
    s.events();
    (a, an, b, bn)
}

/// The lines `1\n2\n...` for the numbers in `range`.
fn numbered(range: RangeInclusive<u32>) -> String {
    range.map(|n| format!("{n}\n")).collect()
}

/// The chat lines `NICK: N` for the numbers in `range`.
fn said(nick: &str, range: RangeInclusive<u32>) -> Vec<String> {
    range.map(|n| format!("{nick}: {n}")).collect()
}

/// The `/who` reply listing `nicks`.
fn who_line(nicks: &[&str]) -> String {
    let mut nicks = nicks.to_vec();
    nicks.sort_by_key(|n| (n.to_lowercase(), *n));
    format!("* {} users online: {}", nicks.len(), nicks.join(", "))
}

/// Checks that `b` gets `a`'s held chat lines numbered `range`, the first
/// at `t0 + interval` and one more each interval, each exactly on time and
/// not a nanosecond before, while reading `a` stays stopped.
fn released_at_rate(
    s: &mut Driver,
    (a, an): (ConnId, &str),
    b: ConnId,
    t0: Duration,
    interval: Duration,
    range: RangeInclusive<u32>,
) {
    for (k, n) in (1..).zip(range) {
        let at = t0 + interval * k;
        assert_eq!(s.deadline(), Some(at), "when line {n} is due");
        assert!(s.is_paused(a), "reading stopped before line {n}");
        s.quiet_until(at, &[a, b]);
        assert_eq!(s.lines(b), said(an, n..=n), "line {n}");
    }
}

/// Checks that `a` (nick `an`) was just disconnected by an address policy:
/// its last line `* error: disconnected (WHY)` and a flushing Close for
/// `reason`, `* AN left (WHY)` to each of `others`, a Left event; and that
/// nothing more happens.
fn assert_policy_disconnect(
    s: &mut Driver,
    (a, an): (ConnId, &str),
    others: &[ConnId],
    reason: Reason,
    why: &str,
) {
    assert_eq!(s.lines(a), [format!("* error: disconnected ({why})")]);
    for &other in others {
        assert_eq!(s.lines(other), [format!("* {an} left ({why})")]);
    }
    assert_eq!(s.closes(), [(a, reason.clone(), true)]);
    assert_eq!(
        s.events(),
        [Event::Left {
            conn: a,
            nick: an.to_owned(),
            reason,
            quiet: false,
        }]
    );
    assert_eq!(s.server().nick(a), None);
    s.advance(secs(3600));
    let mut all = others.to_vec();
    all.push(a);
    s.assert_quiet(&all);
}

/// Flood control for the flood tests: 3 lines at once, then one a second.
const FLOOD: Rate = Rate {
    burst: 3,
    interval: Duration::from_secs(1),
};

fn flood_config() -> Config {
    Config {
        flood: Some(FLOOD),
        ..no_policies()
    }
}

/// Address policies, flood control: a client at exactly the rate (the whole
/// burst at once, then one line each interval, on the interval) is never
/// held back: every line is delivered at once and reading never stops. The
/// budget is then exactly used up: one line more waits.
#[test]
fn policies_flood_at_exactly_the_rate_never_held() {
    let mut s = Driver::timed(flood_config());
    let (a, an, b, _) = limited_pair(&mut s);
    let t0 = s.elapsed();
    s.send(a, numbered(1..=3));
    assert_eq!(s.lines(b), said(&an, 1..=3));
    for k in 1..=20 {
        s.advance_to(t0 + FLOOD.interval * k);
        let n = 3 + k;
        s.send(a, numbered(n..=n));
        assert_eq!(s.lines(b), said(&an, n..=n), "line {n}, on time");
        assert!(!s.is_paused(a));
        assert_eq!(s.server().held_lines(a), Some(0));
        assert_eq!(s.deadline(), None);
    }
    s.send(a, "over\n");
    assert_eq!(s.lines(b), Vec::<String>::new());
    assert!(s.is_paused(a));
    assert_eq!(s.server().held_lines(a), Some(1));
}

/// Address policies, flood control: a line over the burst is not dropped: it
/// waits, the server stops reading the client (StopReading), and it is
/// handled exactly when the budget allows, one interval later, not a
/// nanosecond before; reading resumes (ResumeReading) once nothing waits.
#[test]
fn policies_flood_over_the_burst_waits_one_interval() {
    let mut s = Driver::timed(flood_config());
    let (a, an, b, _) = limited_pair(&mut s);
    let t0 = s.elapsed();
    s.send(a, numbered(1..=4));
    assert_eq!(s.lines(b), said(&an, 1..=3));
    assert!(s.is_paused(a));
    assert_eq!(s.server().held_lines(a), Some(1));
    released_at_rate(&mut s, (a, &an), b, t0, FLOOD.interval, 4..=4);
    assert!(!s.is_paused(a));
    assert_eq!(s.server().held_lines(a), Some(0));
    assert_eq!(s.deadline(), None);
    s.assert_quiet(&[a, b]);
}

/// Address policies, flood control: waiting lines are handled in order, one
/// each interval, none lost, including lines of a read that was under way
/// when reading stopped; reading resumes only with the last of them.
#[test]
fn policies_flood_waiting_lines_in_order_none_lost() {
    let mut s = Driver::timed(flood_config());
    let (a, an, b, _) = limited_pair(&mut s);
    let t0 = s.elapsed();
    s.send(a, numbered(1..=12));
    assert_eq!(s.lines(b), said(&an, 1..=3));
    s.advance_to(t0 + ms(500));
    s.send_in_flight(a, numbered(13..=14));
    s.assert_quiet(&[a, b]);
    assert_eq!(s.server().held_lines(a), Some(11));
    released_at_rate(&mut s, (a, &an), b, t0, FLOOD.interval, 4..=14);
    assert!(!s.is_paused(a));
    assert_eq!(s.deadline(), None);
}

/// Address policies, flood control: every line counts: commands, empty and
/// too-long lines take from the budget like chat lines, and wait their turn
/// in order when over it (a waiting command is answered, a waiting too-long
/// line gets its error, when its turn comes).
#[test]
fn policies_flood_every_line_counts() {
    let config = Config {
        max_line: 16,
        ..flood_config()
    };
    let mut s = Driver::timed(config);
    let (a, an, b, bn) = limited_pair(&mut s);
    let too_long = "* error: line too long (max 16 bytes), discarded";
    let t0 = s.elapsed();
    // A command, a too-long line and an empty line use up the burst.
    s.send(a, format!("/who\n{}\n\nhi\n", "x".repeat(20)));
    assert_eq!(s.lines(a), [who_line(&[&an, &bn]), too_long.to_owned()]);
    assert_eq!(s.lines(b), Vec::<String>::new());
    assert!(s.is_paused(a));
    s.quiet_until(t0 + FLOOD.interval, &[a, b]);
    assert_eq!(s.lines(b), [format!("{an}: hi")]);
    assert!(!s.is_paused(a));
    // Over the budget, they wait like chat lines, in order.
    s.send(a, format!("/me waves\n{}\n/who\n", "y".repeat(20)));
    s.assert_quiet(&[a, b]);
    assert_eq!(s.server().held_lines(a), Some(3));
    s.quiet_until(t0 + FLOOD.interval * 2, &[a, b]);
    assert_eq!(s.lines(b), [format!("* {an} waves")]);
    s.quiet_until(t0 + FLOOD.interval * 3, &[a, b]);
    assert_eq!(s.lines(a), [too_long]);
    assert!(s.is_paused(a));
    s.quiet_until(t0 + FLOOD.interval * 4, &[a, b]);
    assert_eq!(s.lines(a), [who_line(&[&an, &bn])]);
    assert!(!s.is_paused(a));
}

/// Address policies, flood control: loopback peers (127.0.0.0/8, ::1,
/// ::ffff:127.0.0.0/104) are exempt unless `limit_loopback` is set; an
/// IPv4-mapped public address is not loopback.
#[test]
fn policies_flood_loopback_exempt_unless_limit_loopback() {
    let loopbacks: [IpAddr; 4] = [
        Ipv4Addr::LOCALHOST.into(),
        Ipv4Addr::new(127, 45, 6, 7).into(),
        Ipv6Addr::LOCALHOST.into(),
        mapped(Ipv4Addr::LOCALHOST.into()),
    ];
    let cases = loopbacks
        .iter()
        .flat_map(|&ip| [(ip, false, false), (ip, true, true)])
        .chain([(mapped(public(9)), false, true)]);
    for (ip, limit_loopback, limited) in cases {
        let config = Config {
            flood: Some(rate_of(1, secs(1))),
            limit_loopback,
            ..no_policies()
        };
        let mut s = Driver::timed(config);
        let (b, _) = s.join(&[]);
        let (a, an) = s.join_from(ip, &[b]);
        s.send(a, numbered(1..=5));
        let case = format!("{ip}, limit_loopback {limit_loopback}");
        let delivered = if limited { 1 } else { 5 };
        assert_eq!(s.lines(b), said(&an, 1..=delivered), "{case}");
        assert_eq!(s.is_paused(a), limited, "{case}");
    }
}

/// Address policies, flood control: `--flood-rate 0` (no flood rate) turns
/// it off: hundreds of lines at once from a public address all pass, more
/// than the excess flood limit.
#[test]
fn policies_flood_off() {
    let mut s = Driver::timed(Config {
        flood_excess: 10,
        ..no_policies()
    });
    let (a, an, b, _) = limited_pair(&mut s);
    s.send(a, numbered(1..=300));
    assert_eq!(s.lines(b), said(&an, 1..=300));
    assert!(!s.is_paused(a));
    assert_eq!(s.deadline(), None);
}

/// Excess flood for the tests: 2 lines at once, then one a second; at
/// most 3 waiting.
fn excess_config() -> Config {
    Config {
        flood: Some(rate_of(2, secs(1))),
        flood_excess: 3,
        ..no_policies()
    }
}

/// Address policies, excess flood: exactly `--flood-excess` lines waiting
/// is fine: they are all handled, at the rate.
#[test]
fn policies_excess_flood_at_the_limit_is_fine() {
    let mut s = Driver::timed(excess_config());
    let (a, an, b, _) = limited_pair(&mut s);
    let t0 = s.elapsed();
    s.send(a, numbered(1..=5));
    assert_eq!(s.lines(b), said(&an, 1..=2));
    assert_eq!(s.server().held_lines(a), Some(3));
    released_at_rate(&mut s, (a, &an), b, t0, secs(1), 3..=5);
    assert!(!s.is_paused(a));
}

/// Address policies, excess flood: one line more than `--flood-excess`
/// waiting disconnects the client, whether it came in the same read or in
/// a read under way: its last line `* error: disconnected (excess flood)`,
/// the others `* NICK left (excess flood)`; the waiting lines are dropped.
#[test]
fn policies_excess_flood_one_more_disconnects() {
    let reads: [&[&str]; 2] = [&["1\n2\n3\n4\n5\n6\n"], &["1\n2\n3\n4\n5\n", "6\n"]];
    for reads in reads {
        let mut s = Driver::timed(excess_config());
        let (a, an, b, _) = limited_pair(&mut s);
        for read in reads {
            s.send_in_flight(a, read);
        }
        // b gets the burst, then the notice; nothing of the waiting lines.
        let mut lines = said(&an, 1..=2);
        lines.push(format!("* {an} left (excess flood)"));
        assert_eq!(s.lines(b), lines, "reads {reads:?}");
        assert_eq!(
            s.lines(a),
            ["* error: disconnected (excess flood)"],
            "reads {reads:?}"
        );
        assert_eq!(s.closes(), [(a, Reason::ExcessFlood, true)]);
        assert_eq!(
            s.events(),
            [Event::Left {
                conn: a,
                nick: an.clone(),
                reason: Reason::ExcessFlood,
                quiet: false,
            }]
        );
        assert_eq!(s.deadline(), None);
        s.advance(secs(60));
        s.assert_quiet(&[a, b]);
    }
}

/// Address policies, EOF while lines wait: the client stays joined until its
/// waiting lines and then its unterminated last line have been handled, at
/// the rate; then it leaves (`* NICK left`, a flushing Close for EOF). With
/// no last line it leaves with its last waiting line; the rest of a line
/// being discarded is no line (but its too-long error waits its turn).
#[test]
fn policies_flood_eof_while_lines_wait() {
    let long = "x".repeat(20);
    let too_long = "* error: line too long (max 16 bytes), discarded";
    // The bytes after the last LF; what their turn (at 3 s) gives a and b.
    let cases = [
        ("last", vec![], vec!["last"]),
        (long.as_str(), vec![too_long], vec![]),
        ("", vec![], vec![]),
    ];
    for (tail, to_a, to_b) in cases {
        let mut s = Driver::timed(Config {
            max_line: 16,
            flood: Some(rate_of(2, secs(1))),
            ..no_policies()
        });
        let (a, an, b, bn) = limited_pair(&mut s);
        let t0 = s.elapsed();
        s.send(a, format!("1\n2\n3\n4\n{tail}"));
        s.eof_in_flight(a);
        assert_eq!(s.lines(b), said(&an, 1..=2));
        s.assert_quiet(&[a, b]);
        // Still in the chat.
        s.send(b, "/who\n");
        assert_eq!(s.lines(b), [who_line(&[&an, &bn])]);
        released_at_rate(&mut s, (a, &an), b, t0, secs(1), 3..=3);
        s.quiet_until(t0 + secs(2), &[a, b]);
        let mut expected = said(&an, 4..=4);
        if !tail.is_empty() {
            assert_eq!(s.lines(b), expected, "tail {tail:?}");
            s.quiet_until(t0 + secs(3), &[a, b]);
            expected = to_b.iter().map(|t| format!("{an}: {t}")).collect();
        }
        expected.push(format!("* {an} left"));
        assert_eq!(s.lines(b), expected, "tail {tail:?}");
        assert_eq!(s.lines(a), to_a, "tail {tail:?}");
        assert_eq!(s.closes(), [(a, Reason::Eof, true)]);
        assert_eq!(s.server().nick(a), None);
        assert_eq!(s.deadline(), None);
    }
}

/// Address policies, EOF while lines wait: an unterminated last line over
/// the budget waits too (reading need not stop: the client is done), and
/// the client leaves after it.
#[test]
fn policies_flood_eof_last_line_over_the_budget() {
    let mut s = Driver::timed(Config {
        flood: Some(rate_of(2, secs(1))),
        ..no_policies()
    });
    let (a, an, b, _) = limited_pair(&mut s);
    let t0 = s.elapsed();
    s.send(a, "1\n2\nlast");
    s.eof(a);
    assert_eq!(s.lines(b), said(&an, 1..=2));
    assert_eq!(s.server().held_lines(a), Some(1));
    s.quiet_until(t0 + secs(1), &[a, b]);
    assert_eq!(s.lines(b), [format!("{an}: last"), format!("* {an} left")]);
    assert_eq!(s.closes(), [(a, Reason::Eof, true)]);
}

/// Address policies, incomplete line (default 60 s): a client holding an
/// unterminated line is disconnected exactly 60 s after its first byte,
/// not before, however slowly it trickles more: its last line
/// `* error: disconnected (incomplete line timeout)`, the others
/// `* NICK left (incomplete line timeout)`; the partial line goes nowhere.
#[test]
fn policies_line_timeout_from_the_first_byte() {
    let config = Config::default();
    assert_eq!(config.line_timeout, Some(secs(60)));
    let mut s = Driver::timed(config);
    let (a, an, b, _) = limited_pair(&mut s);
    let t0 = s.elapsed();
    for k in 0..60 {
        s.advance_to(t0 + secs(k));
        s.send(a, "z");
        assert_eq!(s.deadline(), Some(t0 + secs(60)));
    }
    s.advance_to(t0 + secs(60) - NS);
    s.send(a, "z");
    s.quiet_until(t0 + secs(60), &[a, b]);
    let why = "incomplete line timeout";
    assert_policy_disconnect(&mut s, (a, &an), &[b], Reason::IncompleteLine, why);
}

/// The incomplete-line timeout of the tests.
fn line_timeout_config() -> Config {
    Config {
        line_timeout: Some(secs(10)),
        ..no_policies()
    }
}

/// Address policies, incomplete line: a line that ends stops the time; the
/// next line's time starts at its own first byte; no line, no timeout.
#[test]
fn policies_line_timeout_restarts_with_each_line() {
    let mut s = Driver::timed(line_timeout_config());
    let (a, an, b, _) = limited_pair(&mut s);
    assert_eq!(s.deadline(), None);
    s.send(a, "ab");
    assert_eq!(s.deadline(), Some(secs(10)));
    s.advance_to(secs(6));
    assert_eq!(s.relayed(a, &an, b, b"c\nd"), ["abc"]);
    assert_eq!(s.deadline(), Some(secs(16)));
    s.advance_to(secs(12));
    assert_eq!(s.relayed(a, &an, b, b"e\n"), ["de"]);
    assert_eq!(s.deadline(), None);
    s.advance_to(secs(100));
    s.send(a, "f");
    s.quiet_until(secs(110), &[a, b]);
    let why = "incomplete line timeout";
    assert_policy_disconnect(&mut s, (a, &an), &[b], Reason::IncompleteLine, why);
}

/// Address policies, incomplete line: the rest of a too-long line being
/// discarded is an unterminated line too, timed from its first byte; its LF
/// ends it.
#[test]
fn policies_line_timeout_counts_a_discarded_line() {
    let mut s = Driver::timed(Config {
        max_line: 16,
        ..line_timeout_config()
    });
    let (b, _) = s.join(&[]);
    let (a, an) = s.join_from(public(1), &[b]);
    let (c, _) = s.join_from(public(2), &[b, a]);
    s.events();
    let too_long = "* error: line too long (max 16 bytes), discarded";
    for conn in [a, c] {
        s.send(conn, "x".repeat(20));
        assert_eq!(s.lines(conn), [too_long]);
    }
    assert_eq!(
        s.server().buffered_bytes(a),
        Some(0),
        "discarding, not buffering"
    );
    assert_eq!(s.deadline(), Some(secs(10)));
    s.advance_to(secs(5));
    s.send(a, "x".repeat(20));
    s.send(c, format!("{}\n", "x".repeat(20)));
    s.assert_quiet(&[a, b, c]);
    s.quiet_until(secs(10), &[a, b, c]);
    let why = "incomplete line timeout";
    assert_policy_disconnect(&mut s, (a, &an), &[b, c], Reason::IncompleteLine, why);
}

/// Address policies, incomplete line: a too-long line ends at its LF like
/// any other, so the time of the line after it starts at that line's first
/// byte: whether the LF ends the discarded rest of a too-long line, or a
/// line that turns out too long once its LF comes.
#[test]
fn policies_line_timeout_restarts_after_a_too_long_line() {
    let mut s = Driver::timed(Config {
        max_line: 16,
        ..line_timeout_config()
    });
    let (a, an, b, _) = limited_pair(&mut s);
    let too_long = "* error: line too long (max 16 bytes), discarded";
    // The rest of a too-long line, discarded, then a new line.
    s.send(a, "x".repeat(20));
    assert_eq!(s.lines(a), [too_long]);
    assert_eq!(s.deadline(), Some(secs(10)));
    s.advance_to(secs(5));
    s.send(a, "\nd");
    assert_eq!(s.deadline(), Some(secs(15)), "d's first byte came at 5 s");
    s.advance_to(secs(6));
    assert_eq!(s.relayed(a, &an, b, b"\n"), ["d"]);
    assert_eq!(s.deadline(), None);
    // A line found too long at its LF, then a new line.
    s.advance_to(secs(20));
    s.send(a, "ab");
    s.advance_to(secs(25));
    s.send(a, format!("{}\ne", "x".repeat(20)));
    assert_eq!(s.lines(a), [too_long]);
    assert_eq!(s.deadline(), Some(secs(35)), "e's first byte came at 25 s");
    s.quiet_until(secs(35), &[a, b]);
    let why = "incomplete line timeout";
    assert_policy_disconnect(&mut s, (a, &an), &[b], Reason::IncompleteLine, why);
}

/// Address policies, incomplete line: time during which the server does not
/// read the client (flood control) does not count: the line's time starts
/// again when reading resumes.
#[test]
fn policies_line_timeout_paused_time_does_not_count() {
    let mut s = Driver::timed(Config {
        flood: Some(rate_of(1, secs(4))),
        ..line_timeout_config()
    });
    let (a, an, b, _) = limited_pair(&mut s);
    s.send(a, "1\n2\n3\n4\npart");
    assert_eq!(s.lines(b), said(&an, 1..=1));
    // Paused from 0 to 12 s, longer than the line timeout.
    released_at_rate(&mut s, (a, &an), b, Duration::ZERO, secs(4), 2..=4);
    assert!(!s.is_paused(a));
    assert_eq!(s.deadline(), Some(secs(22)));
    s.quiet_until(secs(22), &[a, b]);
    let why = "incomplete line timeout";
    assert_policy_disconnect(&mut s, (a, &an), &[b], Reason::IncompleteLine, why);
}

/// Address policies, idle: off by default: a client that sends nothing for
/// a day stays.
#[test]
fn policies_idle_off_by_default() {
    let config = Config::default();
    assert_eq!(config.idle_timeout, None);
    let mut s = Driver::timed(config);
    let (a, an, b, _) = limited_pair(&mut s);
    assert_eq!(s.relayed(a, &an, b, b"hi\n"), ["hi"]);
    assert_eq!(s.deadline(), None);
    s.advance(secs(24 * 3600));
    s.assert_quiet(&[a, b]);
    assert_eq!(s.server().nick(a), Some(an.as_str()));
}

/// Address policies, idle: a client that sends no byte for the idle time
/// (from its connection, then from its last byte; any byte counts, a whole
/// line or not) is disconnected exactly then: `* error: disconnected (idle)`,
/// the others `* NICK left (idle)`.
#[test]
fn policies_idle_from_the_last_byte() {
    let mut s = Driver::timed(Config {
        idle_timeout: Some(secs(30)),
        ..no_policies()
    });
    let (a, an, b, _) = limited_pair(&mut s);
    assert_eq!(s.deadline(), Some(secs(30)));
    s.advance_to(secs(20));
    s.send(a, "x");
    assert_eq!(s.deadline(), Some(secs(50)));
    s.advance_to(secs(50) - NS);
    assert_eq!(s.relayed(a, &an, b, b"\n"), ["x"]);
    let last = s.elapsed();
    assert_eq!(s.deadline(), Some(last + secs(30)));
    s.quiet_until(last + secs(30), &[a, b]);
    assert_policy_disconnect(&mut s, (a, &an), &[b], Reason::Idle, "idle");
}

/// Address policies, idle: handling one of its waiting lines counts as the
/// client sending, and it is not idle while lines wait.
#[test]
fn policies_idle_handling_a_waiting_line_counts() {
    let mut s = Driver::timed(Config {
        idle_timeout: Some(secs(5)),
        flood: Some(rate_of(1, secs(4))),
        ..no_policies()
    });
    let (a, an, b, _) = limited_pair(&mut s);
    s.send(a, numbered(1..=3));
    assert_eq!(s.lines(b), said(&an, 1..=1));
    // Its last byte came at 0, but its lines wait until 8 s.
    released_at_rate(&mut s, (a, &an), b, Duration::ZERO, secs(4), 2..=3);
    assert_eq!(s.deadline(), Some(secs(13)));
    s.quiet_until(secs(13), &[a, b]);
    assert_policy_disconnect(&mut s, (a, &an), &[b], Reason::Idle, "idle");
}

const TOO_MANY: &str = "* error: too many connections from your address";

/// Connects from `ip`, checks that it was refused as too many from its
/// address (exactly its line, a flushing Close, a Rejected event unless
/// the address had one logged in the last minute) with nobody in `others`
/// seeing anything, and reports it closed.
fn assert_refused_from(s: &mut Driver, ip: IpAddr, others: &[ConnId]) {
    let conn = s.connect_from(ip);
    assert_eq!(s.lines(conn), [TOO_MANY], "from {ip}");
    assert_eq!(s.closes(), [(conn, Reason::TooManyFromAddress, true)]);
    let events = s.events();
    assert!(
        events.is_empty()
            || matches!(
                &events[..],
                [Event::Rejected { conn: c, peer, reason: Reason::TooManyFromAddress, .. }]
                    if *c == conn && peer.ip() == ip
            ),
        "{events:?}"
    );
    s.assert_quiet(others);
    assert_eq!(s.server().nick(conn), None);
    s.close(conn);
    s.assert_quiet(others);
}

/// Address policies, connections per address: `--max-per-ip` open
/// connections from one address are admitted, one more is refused with
/// `* error: too many connections from your address` and nobody else sees
/// anything of it; a connection counts from its welcome until its socket is
/// closed (a client that has left still counts until then); other addresses
/// are unaffected.
#[test]
fn policies_max_per_ip() {
    let mut s = Driver::timed(Config {
        max_per_ip: Some(2),
        ..no_policies()
    });
    let (local, _) = s.join(&[]);
    let (a1, a1n) = s.join_from(public(1), &[local]);
    let (a2, _) = s.join_from(public(1), &[local, a1]);
    let (c, _) = s.join_from(public(2), &[local, a1, a2]);
    s.events();
    let all = [local, a1, a2, c];
    assert_refused_from(&mut s, public(1), &all);
    // Closing the refused one frees nothing.
    assert_refused_from(&mut s, public(1), &all);
    // Left, but not yet reported closed: still counts.
    s.send(a1, "/quit\n");
    assert_eq!(s.lines(a1), ["* bye"]);
    for conn in [local, a2, c] {
        assert_eq!(s.lines(conn), [format!("* {a1n} left")]);
    }
    s.closes();
    s.events();
    let all = [local, a2, c];
    assert_refused_from(&mut s, public(1), &all);
    s.close(a1);
    s.events();
    let (a3, _) = s.join_from(public(1), &all);
    s.events();
    assert_refused_from(&mut s, public(1), &[local, a2, c, a3]);
    // The other address has room for one more; loopback is not limited.
    let (c2, _) = s.join_from(public(2), &[local, a2, c, a3]);
    s.events();
    assert_refused_from(&mut s, public(2), &[local, a2, c, a3, c2]);
    for _ in 0..3 {
        s.join(&[]);
    }
    assert_eq!(s.server().admitted(), 8);
}

/// Address policies, connections per address: an IPv4-mapped IPv6 address
/// counts as its IPv4 address; another IPv6 address is another address.
#[test]
fn policies_max_per_ip_ipv4_mapped_is_ipv4() {
    let mut s = Driver::timed(Config {
        max_per_ip: Some(1),
        ..no_policies()
    });
    let (a, _) = s.join_from(public(7), &[]);
    s.events();
    assert_refused_from(&mut s, mapped(public(7)), &[a]);
    s.close(a);
    s.events();
    let (b, _) = s.join_from(mapped(public(7)), &[]);
    s.events();
    assert_refused_from(&mut s, public(7), &[b]);
    let v6: IpAddr = "2001:db8::7".parse().unwrap();
    let (c, _) = s.join_from(v6, &[b]);
    s.events();
    assert_refused_from(&mut s, v6, &[b, c]);
}

/// Address policies, connections per address: an IPv6 peer counts under
/// its /64, so two addresses of one /64 count together against
/// `--max-per-ip`, and one of another /64 does not; `--ipv6-prefix 128`
/// counts each address alone, `--ipv6-prefix 48` groups the /64s of a /48.
#[test]
fn policies_max_per_ip_ipv6_by_prefix() {
    let ip = |text: &str| -> IpAddr { text.parse().unwrap() };
    let (first, same_64, next_64) = (
        ip("2001:db8:1:2::1"),
        ip("2001:db8:1:2:ffff:0:0:7"),
        ip("2001:db8:1:3::1"),
    );
    let config = |ipv6_prefix| Config {
        max_per_ip: Some(1),
        ipv6_prefix,
        ..no_policies()
    };
    let mut s = Driver::timed(config(64));
    let (a, _) = s.join_from(first, &[]);
    s.events();
    assert_refused_from(&mut s, same_64, &[a]);
    let (b, _) = s.join_from(next_64, &[a]);
    s.events();
    assert_refused_from(&mut s, first, &[a, b]);
    // Closing one frees its /64 for any address in it.
    s.close(a);
    s.lines(b);
    s.events();
    s.join_from(same_64, &[b]);

    let mut s = Driver::timed(config(128));
    let (a, _) = s.join_from(first, &[]);
    s.join_from(same_64, &[a]);
    s.events();
    assert_refused_from(&mut s, first, &[a]);

    let mut s = Driver::timed(config(48));
    let (a, _) = s.join_from(first, &[]);
    s.events();
    assert_refused_from(&mut s, next_64, &[a]);
    s.join_from(ip("2001:db8:2::1"), &[a]);
}

/// Connect rate for the tests: 3 at once, then one each 10 s.
const CONNECT: Rate = Rate {
    burst: 3,
    interval: Duration::from_secs(10),
};

/// Admits `n` connections from `ip` in turn (each welcomed), taking every
/// line they cause.
fn admit_from(s: &mut Driver, ip: IpAddr, n: usize) {
    for _ in 0..n {
        let conn = s.connect_from(ip);
        let lines = s.lines(conn);
        assert!(lines[0].starts_with("* welcome"), "from {ip}: {lines:?}");
    }
    for conn in s.server().connections().collect::<Vec<_>>() {
        s.lines(conn);
    }
    s.events();
}

/// Address policies, connect rate: the burst from one address at once, then
/// one each interval, exactly on the interval and not a nanosecond before;
/// the whole burst again after a quiet spell; other addresses unaffected.
#[test]
fn policies_connect_rate() {
    // Connections stay open: only the rate limits them here.
    let config = Config {
        connect_rate: Some(CONNECT),
        ..no_policies()
    };
    // Two sessions, so that no attempt is refused by the rate before the
    // boundary checked in the second.
    let mut s = Driver::timed(config.clone());
    let (local, _) = s.join(&[]);
    admit_from(&mut s, public(1), 3);
    s.advance_to(CONNECT.interval - NS);
    assert_refused_from(&mut s, public(1), &[local]);
    let mut fresh = Driver::timed(config);
    admit_from(&mut fresh, public(1), 3);
    fresh.advance_to(CONNECT.interval);
    admit_from(&mut fresh, public(1), 1);
    assert_refused_from(&mut fresh, public(1), &[]);
    fresh.advance_to(CONNECT.interval * 2);
    admit_from(&mut fresh, public(1), 1);
    // Another address has its own budget.
    admit_from(&mut fresh, public(2), 3);
    assert_refused_from(&mut fresh, public(2), &[]);
    // The whole burst again once the budget is full: at the time it
    // stood ahead of the steady rate by the burst (5 intervals).
    fresh.advance_to(CONNECT.interval * 5);
    admit_from(&mut fresh, public(1), 3);
    assert_refused_from(&mut fresh, public(1), &[]);
}

/// Address policies, connect rate: every attempt counts, refused ones
/// included: two attempts refused for `--max-per-ip` use up the burst, so
/// that once there is room the next is refused for the rate until the
/// interval has passed.
#[test]
fn policies_connect_rate_refused_attempts_count() {
    let mut s = Driver::timed(Config {
        connect_rate: Some(CONNECT),
        max_per_ip: Some(1),
        ..no_policies()
    });
    let (a, _) = s.join_from(public(1), &[]);
    s.events();
    assert_refused_from(&mut s, public(1), &[a]);
    assert_refused_from(&mut s, public(1), &[a]);
    s.close(a);
    s.events();
    assert_refused_from(&mut s, public(1), &[]);
    s.advance_to(CONNECT.interval);
    s.join_from(public(1), &[]);
}

/// Address policies, connections per address and connect rate: the count
/// and budget of each address hold however many other addresses come and
/// go (thousands, so that the server sweeps its table of addresses).
#[test]
fn policies_per_address_state_survives_many_addresses() {
    let mut s = Driver::timed(Config {
        max_per_ip: Some(1),
        connect_rate: Some(rate_of(1, secs(60))),
        ..no_policies()
    });
    let open = public(1);
    let (a, _) = s.join_from(open, &[]);
    let spent = public(2);
    let b = s.connect_from(spent);
    s.close(b);
    // 3000 addresses 198.N.x.y, each connecting once.
    let many = |s: &mut Driver, n: u8| {
        for i in 0..3000u32 {
            let [_, _, x, y] = i.to_be_bytes();
            let conn = s.connect_from(Ipv4Addr::new(198, n, x, y).into());
            s.close(conn);
        }
        s.lines(a);
        s.events();
        s.closes();
    };
    many(&mut s, 18);
    assert_refused_from(&mut s, open, &[a]);
    assert_refused_from(&mut s, spent, &[a]);
    // Once the old budgets are back, a sweep may drop those addresses.
    s.advance_to(secs(61));
    let c = s.connect_from(spent);
    s.lines(c);
    many(&mut s, 19);
    s.events();
    assert_refused_from(&mut s, spent, &[a]);
    s.close(c);
    s.lines(a);
    s.events();
    assert_refused_from(&mut s, spent, &[a]);
    assert_refused_from(&mut s, open, &[a]);
}

/// `/nick NICK` from `a` over its budget: only `a` hears of it, told to try
/// again in `wait` seconds, and its nick stays.
fn nick_too_fast(s: &mut Driver, a: ConnId, nick: &str, wait: u64, others: &[ConnId]) {
    let before = s.server().nick(a).unwrap().to_owned();
    s.send(a, format!("/nick {nick}\n"));
    let error = format!("* error: nick changes too fast, try again in {wait} s");
    assert_eq!(s.lines(a), [error], "at {:?}", s.elapsed());
    s.assert_quiet(others);
    assert_eq!(s.server().nick(a), Some(before.as_str()));
}

/// Address policies, nick changes (default 5 per 20 s): 5 at once, then
/// `* error: nick changes too fast, try again in N s` (changing nothing,
/// telling nobody else), N the wait rounded up to whole seconds; one more
/// each 4 s, exactly on time.
#[test]
fn policies_nick_rate_burst_then_too_fast() {
    let config = Config {
        nick_rate: Config::default().nick_rate,
        ..no_policies()
    };
    assert_eq!(config.nick_rate, Some(rate_of(5, secs(4))));
    let mut s = Driver::timed(config);
    let (a, _, b, _) = limited_pair(&mut s);
    for n in 1..=5 {
        s.rename(a, &format!("n{n}"), &[b]);
    }
    nick_too_fast(&mut s, a, "n6", 4, &[b]);
    s.advance_to(NS);
    nick_too_fast(&mut s, a, "n6", 4, &[b]);
    s.advance_to(secs(3));
    nick_too_fast(&mut s, a, "n6", 1, &[b]);
    s.advance_to(secs(4) - NS);
    nick_too_fast(&mut s, a, "n6", 1, &[b]);
    s.advance_to(secs(4));
    s.rename(a, "n6", &[b]);
    nick_too_fast(&mut s, a, "n7", 4, &[b]);
    s.advance_to(secs(8));
    s.rename(a, "n7", &[b]);
}

/// Address policies, nick changes: N is the wait rounded up to whole
/// seconds (2.5 s is 3 s; 1 s and a nanosecond is 2 s).
#[test]
fn policies_nick_rate_wait_rounded_up() {
    let mut s = Driver::timed(Config {
        nick_rate: Some(rate_of(2, ms(2500))),
        ..no_policies()
    });
    let (a, _, b, _) = limited_pair(&mut s);
    s.rename(a, "n1", &[b]);
    s.rename(a, "n2", &[b]);
    nick_too_fast(&mut s, a, "n3", 3, &[b]);
    s.advance_to(ms(1500) - NS);
    nick_too_fast(&mut s, a, "n3", 2, &[b]);
    s.advance_to(ms(1500));
    nick_too_fast(&mut s, a, "n3", 1, &[b]);
    s.advance_to(ms(2500) - NS);
    nick_too_fast(&mut s, a, "n3", 1, &[b]);
    s.advance_to(ms(2500));
    s.rename(a, "n3", &[b]);
}

/// Address policies, nick changes: only changes that succeed count: a
/// rename to one's own nick, an invalid or taken nick, a usage error take
/// nothing from the budget.
#[test]
fn policies_nick_rate_only_changes_that_succeed_count() {
    let config = Config {
        nick_rate: Config::default().nick_rate,
        ..no_policies()
    };
    let mut s = Driver::timed(config);
    let (a, _, b, _) = limited_pair(&mut s);
    // b is on loopback: not limited.
    for n in 1..=10 {
        s.rename(b, &format!("bob{n}"), &[a]);
    }
    for n in 1..=4 {
        s.rename(a, &format!("n{n}"), &[b]);
    }
    let failures = [
        ("/nick n4\n", "* you are now known as n4"),
        (
            "/nick bad!\n",
            "* error: invalid nick bad!: use 1-32 letters, digits, _ or -",
        ),
        ("/nick BOB10\n", "* error: nick BOB10 is already taken"),
        ("/nick\n", "* error: usage: /nick NAME"),
        ("/nick x y\n", "* error: usage: /nick NAME"),
    ];
    for (line, reply) in failures {
        s.send(a, line);
        assert_eq!(s.lines(a), [reply], "{line:?}");
        s.assert_quiet(&[b]);
    }
    s.rename(a, "n5", &[b]);
    nick_too_fast(&mut s, a, "n6", 4, &[b]);
}

/// Address policies: loopback peers are exempt from every address policy
/// (connections per address, connect rate, nick changes, incomplete line,
/// idle) unless `limit_loopback` is set. (Flood control:
/// `policies_flood_loopback_exempt_unless_limit_loopback`.)
#[test]
fn policies_loopback_exempt_unless_limit_loopback() {
    for limit_loopback in [false, true] {
        let mut s = Driver::timed(Config {
            max_per_ip: Some(1),
            connect_rate: Some(rate_of(1, secs(60))),
            nick_rate: Some(rate_of(1, secs(60))),
            line_timeout: Some(secs(10)),
            idle_timeout: Some(secs(30)),
            limit_loopback,
            ..no_policies()
        });
        let ip: IpAddr = Ipv6Addr::LOCALHOST.into();
        let (a, _) = s.join_from(ip, &[]);
        assert_eq!(s.deadline(), limit_loopback.then_some(secs(30)), "idle");
        let second = s.connect_from(ip);
        let refused = s.lines(second) == [TOO_MANY];
        assert_eq!(refused, limit_loopback, "connections per address");
        s.close(second);
        s.lines(a);
        s.send(a, "/nick one\n/nick two\n");
        let lines = s.lines(a);
        let too_fast = lines[1].starts_with("* error: nick changes too fast");
        assert_eq!(too_fast, limit_loopback, "nick changes: {lines:?}");
        s.send(a, "part");
        let line = limit_loopback.then_some(s.elapsed() + secs(10));
        assert_eq!(s.deadline(), line, "incomplete line");
    }
}

/// Address policies: `poll_timeout` is exactly the earliest pending deadline
/// of any client (here idle and incomplete-line times of two clients, as
/// they move), never a stale one, and `None` once nothing is pending.
#[test]
fn policies_poll_timeout_is_the_earliest_deadline() {
    let mut s = Driver::timed(Config {
        idle_timeout: Some(secs(30)),
        line_timeout: Some(secs(10)),
        ..no_policies()
    });
    let (a, an) = s.join_from(public(1), &[]);
    assert_eq!(s.deadline(), Some(secs(30)), "a idle");
    s.advance_to(secs(1));
    let (b, _) = s.join_from(public(2), &[a]);
    assert_eq!(s.deadline(), Some(secs(30)), "a idle");
    s.advance_to(secs(2));
    s.send(b, "p");
    assert_eq!(s.deadline(), Some(secs(12)), "b's line");
    s.advance_to(secs(5));
    assert_eq!(s.relayed(a, &an, b, b"x\n"), ["x"]);
    assert_eq!(s.deadline(), Some(secs(12)), "b's line");
    s.advance_to(secs(6));
    s.send(b, "\n");
    assert_eq!(s.lines(a).len(), 1);
    assert_eq!(s.deadline(), Some(secs(35)), "a idle (b idle at 36 s)");
    s.advance_to(secs(7));
    s.send(a, "q");
    assert_eq!(s.deadline(), Some(secs(17)), "a's line");
    s.send(a, "\n/quit\n");
    s.lines(a);
    s.lines(b);
    s.closes();
    s.events();
    assert_eq!(s.deadline(), Some(secs(36)), "b idle");
    s.close(a);
    assert_eq!(s.deadline(), Some(secs(36)), "b idle");
    s.quiet_until(secs(36), &[b]);
    assert_eq!(s.closes(), [(b, Reason::Idle, true)]);
    assert_eq!(s.deadline(), None);
}

/// Limits and policies (soft output limit), Address policies (flood
/// control): `poll_timeout` with a held line on one client and a grace on
/// another is the earlier, then the other.
#[test]
fn policies_poll_timeout_flood_and_soft_limit() {
    let mut s = Driver::timed(Config {
        flood: Some(rate_of(1, secs(3))),
        ..soft_config()
    });
    let [(a, an), (b, _), (slow, slow_nick)] = s.trio();
    let (f, fnick) = s.join_from(public(1), &[a, b, slow]);
    s.events();
    s.stall(slow, true);
    fill_to(&mut s, a, &an, slow, SOFT);
    s.lines(b);
    s.lines(f);
    // Private messages from f: nothing for slow.
    let t0 = s.elapsed();
    s.send(f, format!("/msg {an} 1\n/msg {an} 2\n"));
    assert_eq!(s.lines(a), [format!("*{fnick}* 1")]);
    assert_eq!(s.deadline(), Some(t0 + secs(3)), "f's held line");
    s.advance_to(t0 + secs(1));
    s.send(a, "over\n");
    s.lines(b);
    s.lines(f);
    assert_eq!(s.deadline(), Some(t0 + secs(3)), "f's held line");
    s.quiet_until(t0 + secs(3), &[b, f]);
    assert_eq!(s.lines(a), [format!("*{fnick}* 2")]);
    assert_eq!(s.deadline(), Some(t0 + secs(1) + GRACE), "slow's grace");
    s.quiet_until(t0 + secs(1) + GRACE, &[a, b, f]);
    assert_eq!(s.closes(), [(slow, Reason::TooSlow, false)]);
    assert_eq!(s.lines(f), [format!("* {slow_nick} left (too slow)")]);
    assert_eq!(s.deadline(), None);
}

/// Address policies: `poll_timeout` is `None` while nothing is pending:
/// loopback clients (exempt), a public client with no unterminated line
/// and idle off; a deadline only while it holds a line or lines wait.
#[test]
fn policies_poll_timeout_none_when_nothing_pending() {
    let mut s = Driver::timed(Config::default());
    assert_eq!(s.deadline(), None);
    let (a, _, b, _) = limited_pair(&mut s);
    s.send(b, "loopback partial");
    assert_eq!(s.deadline(), None);
    s.send(a, "part");
    assert_eq!(s.deadline(), Some(s.elapsed() + secs(60)));
    s.send(a, "\n");
    assert_eq!(s.deadline(), None);
    // "part" was the first line of the burst of 50.
    s.send(a, numbered(1..=50));
    assert_eq!(s.deadline(), Some(s.elapsed() + ms(200)));
    s.advance(ms(200));
    assert_eq!(s.deadline(), None);
}

/// Flood control per address alone: 1000 bytes at once, then one byte a
/// millisecond, for each address; no line budget. A line of 36 bytes costs
/// 100 (its bytes and LINE_COST): ten go at once, then one each 100 ms.
fn ip_flood_config() -> Config {
    Config {
        ip_flood: Some(rate_of(1000, ms(1))),
        ..no_policies()
    }
}

/// A line of 36 bytes of text, `tag` first.
fn line36(tag: &str) -> String {
    format!("{tag:x<36}")
}

/// Address policies, flood control per address: the clients of one
/// address share one budget in bytes, each line costing its bytes and
/// LINE_COST; a line over it waits (the client is no longer read) until one
/// byte fits again; a client of another address is not held back.
#[test]
fn policies_ip_flood_shared_by_an_address() {
    assert_eq!(36 + chat_core::LINE_COST, 100);
    let mut s = Driver::timed(ip_flood_config());
    let (o, _) = s.join(&[]);
    let (a, an) = s.join_from(public(1), &[o]);
    let (b, bn) = s.join_from(public(1), &[o, a]);
    let (c, cn) = s.join_from(public(2), &[o, a, b]);
    s.lines(a);
    s.lines(b);
    s.events();
    for i in 0..5 {
        s.send(a, format!("{}\n", line36(&format!("a{i}"))));
        s.send(b, format!("{}\n", line36(&format!("b{i}"))));
    }
    assert_eq!(s.lines(o).len(), 10, "1000 bytes at once");
    s.send(a, format!("{}\n", line36("late")));
    assert!(s.is_paused(a), "over the address's budget: not read");
    s.send(c, format!("{}\n", line36("other")));
    assert_eq!(s.lines(o), [format!("{cn}: {}", line36("other"))]);
    // The budget was 1000 bytes over: the first byte fits again in 1 ms.
    s.quiet_until(ms(1), &[o]);
    assert_eq!(s.lines(o), [format!("{an}: {}", line36("late"))]);
    assert!(!s.is_paused(a));
    assert_ne!(an, bn);
}

/// Address policies, flood control per address: clients of one address
/// whose lines wait for its budget take turns, one line each.
#[test]
fn policies_ip_flood_clients_of_an_address_take_turns() {
    let mut s = Driver::timed(ip_flood_config());
    let (o, _) = s.join(&[]);
    let (a, an) = s.join_from(public(1), &[o]);
    let (b, bn) = s.join_from(public(1), &[o, a]);
    s.lines(a);
    s.lines(b);
    s.events();
    let burst: String = (0..10)
        .map(|i| format!("{}\n", line36(&format!("x{i}"))))
        .collect();
    s.send(a, burst);
    s.lines(o);
    let three = |who: &str| -> String {
        (1..=3)
            .map(|i| format!("{}\n", line36(&format!("{who}{i}"))))
            .collect()
    };
    s.send(a, three("a"));
    s.send(b, three("b"));
    let said = |nick: &str, tag: &str| format!("{nick}: {}", line36(tag));
    // The first line fits 1 ms on, then one each 100 ms, in turns.
    let order = [
        (ms(1), said(&an, "a1")),
        (ms(101), said(&bn, "b1")),
        (ms(201), said(&an, "a2")),
        (ms(301), said(&bn, "b2")),
        (ms(401), said(&an, "a3")),
        (ms(501), said(&bn, "b3")),
    ];
    for (at, line) in order {
        s.quiet_until(at, &[o]);
        assert_eq!(s.lines(o), [line], "at {at:?}");
    }
    assert!(!s.is_paused(a) && !s.is_paused(b));
    assert_eq!(s.lines(a).len(), 3, "b's lines");
    assert_eq!(s.lines(b).len(), 13, "a's lines");
    s.advance(secs(10));
    s.assert_quiet(&[o, a, b]);
}

/// Address policies, flood control per address: a `/who` reply costs the
/// asker's address its bytes (each line and LINE_COST), so that asking
/// for a long list again and again is paced like sending one.
#[test]
fn policies_ip_flood_who_costs_its_bytes() {
    let mut s = Driver::timed(ip_flood_config());
    let (o, _) = s.join(&[]);
    let (a, an) = s.join_from(public(1), &[o]);
    s.lines(a);
    s.send(a, "/who\n");
    let reply = s.lines(a);
    assert_eq!(reply.len(), 1);
    let who_cost = 5 + 64 + reply[0].len() + 1 + 64;
    // What is left of the burst, in 36-byte lines: then one waits.
    let fit = (1000 - who_cost).div_ceil(100);
    for i in 0..fit {
        s.send(a, format!("{}\n", line36(&format!("{i}"))));
    }
    assert_eq!(s.lines(o).len(), fit);
    s.send(a, format!("{}\n", line36("waits")));
    assert!(s.is_paused(a));
    assert_eq!(s.lines(o), Vec::<String>::new());
    let _ = an;
}
