//! Test support shared by the rule tests, the policy tests, the property
//! tests, the fuzz targets and the corpus replay test. Enabled by the
//! `testkit` feature.
//!
//! - [`Driver`] is the one simulated driver: it follows the run loop of the
//!   crate docs on a virtual clock, records what every client received, and
//!   checks after every call what must hold for any server. Layers hook into
//!   every call through an [`Observer`].
//! - [`Harness`] wraps the driver for model checking: random [`Step`]s,
//!   checked after every step against a reference model of the protocol
//!   written straight from `docs/protocol.md` ([`Harness::new`]), or for the
//!   invariants alone with the address policies on
//!   ([`Harness::with_policies`]), where timing makes the naive model
//!   useless.
//! - [`rules`] holds the helpers the rule tests share (joining, renaming,
//!   configs).
//!
//! The model is deliberately naive (whole lines, plain loops, no sharing) so
//! that it is easy to check against the spec by eye; the server must agree
//! with it byte for byte on what every client receives.
//!
//! Every check panics with a description of the broken invariant, which is
//! how both proptest and libFuzzer report a failure.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::Duration;

use crate::{Config, Event, Rate};

mod client;
mod cluster;
mod driver;
mod harness;
mod model;
mod nodes;
mod observer;
pub mod rules;

pub use client::Client;
pub use cluster::{CASE_TTL, ScriptCase, ScriptStep, Scripts, SimRedis, normalized, script_cases};
pub use driver::{Driver, NS, Take};
pub use harness::Harness;
pub use model::{
    reference_forbidden, reference_nick_key, reference_nick_refusal, reference_sanitize,
};
pub use nodes::{Line as NodeLine, NICKS, NodeStep, Nodes};
pub use observer::{Call, Input, Observer, Seen};

/// One step of a simulated session. Client numbers pick among every
/// connection opened so far (modulo their count), closed ones included, so
/// input for closed ids is exercised too.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    /// A new connection is accepted.
    Connect,
    /// A new connection is accepted whose bytes cannot carry chat yet, as
    /// for a TLS handshake (`handle_accept`).
    Accept,
    /// A client's bytes can carry chat now (`handle_ready`): for one taken
    /// with [`Step::Accept`], its handshake is over; for any other, the
    /// server must ignore it.
    Ready {
        /// Which client.
        client: usize,
    },
    /// Bytes arrive from a client.
    Bytes {
        /// Which client.
        client: usize,
        /// What it sent.
        bytes: Vec<u8>,
    },
    /// A client closes its side.
    Eof {
        /// Which client.
        client: usize,
    },
    /// A client's connection fails (reset, error).
    Close {
        /// Which client.
        client: usize,
    },
    /// A client stops (or resumes) reading: the driver stops writing to it.
    Stall {
        /// Which client.
        client: usize,
        /// Whether it stops reading.
        stalled: bool,
    },
    /// The driver writes at most `max` bytes to a client, even a stalled one
    /// (a partial write).
    Write {
        /// Which client.
        client: usize,
        /// Most bytes written.
        max: usize,
    },
    /// Time passes. The driver calls `handle_timeout` at every
    /// `poll_timeout` on the way, exactly then.
    Tick {
        /// How much, in milliseconds.
        millis: u64,
    },
    /// The server shuts down.
    Shutdown,
}

/// The small limits the simulated sessions run with, so that every limit is
/// reached by short inputs. `max_queue` is below what [`Config::validate`]
/// accepts on purpose: clients go over it often, and at every offset.
///
/// The room never waits here (`room_queue` is off): the model hands every
/// client its input at once, and room backpressure is checked with the
/// policies ([`policy_config`]) and by its own property tests.
pub fn small_config() -> Config {
    Config {
        max_clients: 4,
        max_line: 16,
        max_queue: 300,
        soft_queue: 300,
        room_queue: None,
        ..Config::default()
    }
}

/// Small limits with every policy on, for [`Harness::with_policies`]: a
/// flood budget of 3 lines, then 2 a second, with 4 more waiting at most,
/// and 300 bytes an address, then one every 5 ms (about one short line
/// every 400 ms: two clients of one address are held by it);
/// 5 s to finish a line, 30 s idle; 2 connections open per address (an
/// IPv6 /64 being one address), and 3 connects at once, then one per 10 s;
/// 2 nick changes at once, then one per 2.5 s; a soft output limit of half
/// the (small) queue for 2 s; a client behind the room past 120 bytes,
/// which holds it for what it writes at 1000 bytes a second. `max_queue` is below what
/// [`Config::validate`] accepts, as in [`small_config`].
pub fn policy_config() -> Config {
    Config {
        max_clients: 6,
        max_line: 16,
        max_queue: 300,
        soft_queue: 150,
        soft_queue_grace: Duration::from_secs(2),
        room_queue: Some(120),
        min_read_rate: 1000,
        flood: Some(Rate {
            burst: 3,
            interval: Duration::from_millis(500),
        }),
        flood_excess: 4,
        ip_flood: Some(Rate {
            burst: 300,
            interval: Duration::from_millis(5),
        }),
        idle_timeout: Some(Duration::from_secs(30)),
        line_timeout: Some(Duration::from_secs(5)),
        max_per_ip: Some(2),
        connect_rate: Some(Rate {
            burst: 3,
            interval: Duration::from_secs(10),
        }),
        ipv6_prefix: 64,
        nick_rate: Some(Rate {
            burst: 2,
            interval: Duration::from_millis(2500),
        }),
        limit_loopback: false,
    }
}

/// The peer of the `index`th connection (from 0) of
/// [`Harness::with_policies`]: in turn 203.0.113.1, 203.0.113.2, the first
/// again as `::ffff:203.0.113.1`, an IPv6 address (2001:db8::1, the next
/// time 2001:db8::2, in the same /64) and loopback 127.0.0.1, so that three
/// in five count under one address, one in five under a /64 of two, and
/// one in five is exempt.
pub fn policy_peer(index: usize) -> SocketAddr {
    let ip = match index % 5 {
        0 => IpAddr::V4(Ipv4Addr::new(203, 0, 113, 1)),
        1 => IpAddr::V4(Ipv4Addr::new(203, 0, 113, 2)),
        2 => IpAddr::V6(Ipv4Addr::new(203, 0, 113, 1).to_ipv6_mapped()),
        3 => {
            let host = 1 + (index / 5 % 2) as u16;
            IpAddr::V6(Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, host))
        }
        _ => IpAddr::V4(Ipv4Addr::LOCALHOST),
    };
    SocketAddr::new(ip, 10_000 + (index % 50_000) as u16)
}

/// The address `ip` counts under for the per-address limits, from
/// protocol.md: an IPv4-mapped IPv6 address is the IPv4 address it maps;
/// any other IPv6 address is its first `ipv6_prefix` bits, the rest zero.
pub fn counted_as(ip: IpAddr, ipv6_prefix: u8) -> IpAddr {
    match ip {
        IpAddr::V6(v6) if v6.to_ipv4_mapped().is_none() => {
            let mut octets = v6.octets();
            for (i, octet) in octets.iter_mut().enumerate() {
                let kept = usize::from(ipv6_prefix).saturating_sub(8 * i).min(8);
                *octet &= !0xffu8.checked_shr(kept as u32).unwrap_or(0);
            }
            IpAddr::V6(Ipv6Addr::from(octets))
        }
        other => other.to_canonical(),
    }
}

/// Every line a client receives is valid UTF-8, ends with LF (never CRLF)
/// and is clean (protocol.md, "Sanitizing"): no control character but TAB,
/// no format character (bidi controls, tags, U+200B, U+FEFF, ...), line or
/// paragraph separator or Hangul filler; a ZWJ or ZWNJ only right after a
/// visible character (a mark included) and right before a visible one that
/// is not a mark; no more than four combining marks in a row.
pub fn check_lines(received: &[u8]) {
    // A partial write may end mid-line: its tail is checked when the rest
    // of the line arrives.
    let complete = match received.iter().rposition(|&b| b == b'\n') {
        Some(last) => &received[..=last],
        None => return,
    };
    let text = std::str::from_utf8(complete).expect("output must be valid UTF-8");
    for line in text.split_inclusive('\n') {
        let body = &line[..line.len() - 1];
        check_line(body);
    }
}

/// One line of [`check_lines`], without its LF. The [`Driver`] checks each
/// line as its last byte is written, so every line anyone receives is checked
/// once.
pub(crate) fn check_line(body: &str) {
    use unicode_properties::{GeneralCategory as Gc, UnicodeGeneralCategory};
    let chars: Vec<char> = body.chars().collect();
    let mut marks = 0;
    for (i, &c) in chars.iter().enumerate() {
        assert!(
            !(c.is_control() && c != '\t'),
            "control character {c:?} in {body:?}"
        );
        let gc = c.general_category();
        assert!(
            !matches!(gc, Gc::LineSeparator | Gc::ParagraphSeparator),
            "separator {c:?} in {body:?}"
        );
        assert!(
            !model::HANGUL_FILLERS.contains(&c),
            "Hangul filler {c:?} in {body:?}"
        );
        if c == '\u{200c}' || c == '\u{200d}' {
            let visible = |c: char| {
                !c.is_whitespace() && c.general_category() != Gc::Format && !c.is_control()
            };
            let before = i.checked_sub(1).map(|j| chars[j]);
            let after = chars.get(i + 1).copied();
            assert!(
                before.is_some_and(visible)
                    && after.is_some_and(|a| visible(a) && !model::is_mark(a)),
                "joiner {c:?} not between visible characters in {body:?}"
            );
        } else {
            assert!(gc != Gc::Format, "format character {c:?} in {body:?}");
        }
        marks = if model::is_mark(c) { marks + 1 } else { 0 };
        assert!(
            marks <= crate::framing::MAX_MARKS,
            "more than {} combining marks in a row in {body:?}",
            crate::framing::MAX_MARKS
        );
    }
}

/// Protocol.md intro / "Lines the server sends": what the server sends (say
/// one `poll_transmit`) is whole LF-terminated lines (never CRLF), valid
/// UTF-8, and clean by [`check_lines`].
pub fn check_sent_bytes(bytes: &[u8]) {
    if bytes.is_empty() {
        return;
    }
    assert_eq!(bytes.last(), Some(&b'\n'), "a chunk ends mid-line");
    assert!(!bytes.contains(&b'\r'), "CR sent: {bytes:?}");
    check_lines(bytes);
}

/// Events are for logs: a generated nick is four ASCII letters or digits.
fn check_event(event: &Event) {
    // Events are for logs: they name people, never carry chat text.
    if let Event::Joined { nick, .. } = event {
        assert_eq!(nick.chars().count(), 4, "generated nick {nick:?}");
        assert!(
            nick.chars().all(|c| c.is_ascii_alphanumeric()),
            "generated nick {nick:?}"
        );
    }
}
