//! Property tests of the whole protocol (protocol.md, all sections): random
//! sessions checked step by step against the reference model in
//! `chat_core::testkit`, sessions with the address policies on checked for
//! the invariants, split invariance of framing, and determinism. The
//! policies themselves are checked against an oracle in `policies.rs`.

use std::net::SocketAddr;
use std::time::Instant;

use chat_core::testkit::{Harness, Step, check_lines, policy_config, small_config};
use chat_core::{Bytes, Config, Output, Server};
use proptest::prelude::*;

/// Lines that hit the interesting rules: commands and their errors, nick
/// edge cases (Unicode look-alikes among them), CR, control characters,
/// split UTF-8, over-long lines.
fn fragment() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        Just(b"hi\n".to_vec()),
        Just(b"/nick bob\n".to_vec()),
        Just(b"/nick BOB\n".to_vec()),
        Just(b"/nick a b\n".to_vec()),
        Just(b"/nick no.pe\n".to_vec()),
        // Unicode variants of bob: fullwidth and digit look-alikes (same
        // key), Cyrillic o (mixed scripts), a Hangul filler (invisible).
        Just("/nick \u{ff42}\u{ff4f}\u{ff42}\n".as_bytes().to_vec()),
        Just("/nick b0b\n".as_bytes().to_vec()),
        Just("/nick b\u{43e}b\n".as_bytes().to_vec()),
        Just("/nick bob\u{3164}\n".as_bytes().to_vec()),
        Just("/msg \u{ff22}\u{ff2f}\u{ff22} psst\n".as_bytes().to_vec()),
        Just(b"/me waves\n".to_vec()),
        Just(b"/me\n".to_vec()),
        Just(b"/msg bob psst\n".to_vec()),
        Just(b"/msg bob\n".to_vec()),
        Just(b"/who\n".to_vec()),
        Just(b"/help\n".to_vec()),
        Just(b"/quit bye all\n".to_vec()),
        Just(b"/QUIT\n".to_vec()),
        Just(b"//slash\n".to_vec()),
        Just(b"/\n".to_vec()),
        Just(b"/dance\n".to_vec()),
        Just(b"x\r\n".to_vec()),
        Just(b"\r".to_vec()),
        Just(b"\n".to_vec()),
        Just(b"  \t\n".to_vec()),
        Just(b"\x1b[31mred\x07\n".to_vec()),
        Just("\u{202e}evil\u{85}\n".as_bytes().to_vec()),
        // Sanitizing 2-4: invisibles, joiners in and out of place, a pile of
        // marks longer than the cap, a Hangul filler, a tag character.
        Just("a\u{200b}\u{feff}\u{2028}\n".as_bytes().to_vec()),
        Just("\u{1f469}\u{200d}\u{1f4bb}\n".as_bytes().to_vec()),
        Just("\u{6cc}\u{200c}\u{62e}".as_bytes().to_vec()),
        Just("\u{200d}".as_bytes().to_vec()),
        Just(
            "e\u{301}\u{301}\u{301}\u{301}\u{301}\u{301}"
                .as_bytes()
                .to_vec()
        ),
        Just("\u{301}\u{302}\u{fe0f}".as_bytes().to_vec()),
        Just("\u{3164}\u{e0041}\n".as_bytes().to_vec()),
        Just(vec![0xe2, 0x82]),
        Just(vec![0xac, b'\n']),
        Just(vec![0xff, 0xfe, b'\n']),
        Just(b"0123456789abcdef".to_vec()),
        Just(b"0123456789abcdefg\n".to_vec()),
        prop::collection::vec(any::<u8>(), 0..24),
        "[a-z /]{0,20}\n".prop_map(String::into_bytes),
    ]
}

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        3 => Just(Step::Connect),
        1 => Just(Step::Accept),
        2 => (0..8usize).prop_map(|client| Step::Ready { client }),
        10 => (0..8usize, prop::collection::vec(fragment(), 1..4))
            .prop_map(|(client, parts)| Step::Bytes { client, bytes: parts.concat() }),
        1 => (0..8usize).prop_map(|client| Step::Eof { client }),
        1 => (0..8usize).prop_map(|client| Step::Close { client }),
        2 => (0..8usize, any::<bool>()).prop_map(|(client, stalled)| Step::Stall { client, stalled }),
        2 => (0..8usize, 0..200usize).prop_map(|(client, max)| Step::Write { client, max }),
        1 => (0..100_000u64).prop_map(|millis| Step::Tick { millis }),
        1 => Just(Step::Shutdown).prop_filter("rare", |_| true),
    ]
}

/// Steps for sessions with the policies on: more short ticks, so that
/// flood releases and timeouts happen between the other steps.
fn policy_step() -> impl Strategy<Value = Step> {
    prop_oneof![
        9 => step(),
        2 => (0..6_000u64).prop_map(|millis| Step::Tick { millis }),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    /// Model-based: every step of a random session agrees with the reference
    /// model, and the invariants (unique nicks, no echo, exactly-once ordered
    /// delivery, nothing to closed ids, queue limits, clean lines) hold.
    #[test]
    fn sessions_agree_with_the_model(seed: u64, steps in prop::collection::vec(step(), 1..60)) {
        let mut harness = Harness::new(small_config(), seed);
        for step in &steps {
            harness.step(step);
        }
    }

    /// protocol.md, "Address policies" and the soft output limit: with the
    /// policies on, peers that are not loopback (`Harness::with_policies`),
    /// every invariant of the harness holds after every step and every
    /// timeout: clean whole lines, nothing to closed clients, queue, held
    /// line and buffer limits, `poll_timeout` after `now`, reading stopped
    /// exactly while lines are held, unique nicks, `max_per_ip`.
    #[test]
    fn sessions_with_policies_keep_the_invariants(
        seed: u64,
        steps in prop::collection::vec(policy_step(), 1..60),
    ) {
        let mut harness = Harness::with_policies(policy_config(), seed);
        for step in &steps {
            harness.step(step);
        }
    }

    /// protocol.md, "Framing": any partition of a byte stream into reads
    /// gives the same outputs.
    #[test]
    fn framing_is_split_invariant(
        parts in prop::collection::vec(fragment(), 1..12),
        cuts in prop::collection::vec(any::<prop::sample::Index>(), 0..12),
    ) {
        let stream = parts.concat();
        let mut cut_points: Vec<usize> = cuts.iter().map(|c| c.index(stream.len() + 1)).collect();
        cut_points.sort_unstable();
        let whole = session_outputs(&[&stream]);
        let mut reads = Vec::new();
        let mut start = 0;
        for cut in cut_points {
            reads.push(&stream[start..cut]);
            start = cut;
        }
        reads.push(&stream[start..]);
        prop_assert_eq!(session_outputs(&reads), whole);
    }

    /// The same seed and inputs give byte-identical outputs.
    #[test]
    fn runs_replay_exactly(seed: u64, steps in prop::collection::vec(step(), 1..40)) {
        let run = || {
            let mut harness = Harness::new(small_config(), seed);
            for step in &steps {
                harness.step(step);
            }
            harness.received().into_iter().map(<[u8]>::to_vec).collect::<Vec<_>>()
        };
        prop_assert_eq!(run(), run());
    }
}

/// What two clients receive when the first sends `reads`, then EOF.
fn session_outputs(reads: &[&[u8]]) -> Vec<(u64, Vec<u8>)> {
    let now = Instant::now();
    let peer = SocketAddr::from(([127, 0, 0, 1], 4000));
    let mut server = Server::new(small_config(), 1);
    let sender = server.handle_connect(now, peer);
    let _listener = server.handle_connect(now, peer);
    for read in reads {
        server.handle_bytes(now, sender, read);
    }
    server.handle_eof(now, sender);
    let mut received = Vec::new();
    while let Some(output) = server.poll_output() {
        if let Output::Transmit(conn) = output {
            let mut chunks: Vec<Bytes> = Vec::new();
            server.poll_transmit(conn, &mut chunks);
            let bytes: Vec<u8> = chunks.concat();
            check_lines(&bytes);
            received.push((conn.0, bytes));
        }
    }
    received
}

#[test]
fn default_config_session_agrees_with_the_model() {
    // The small config above reaches every limit; this one checks that
    // nothing in the model depends on it.
    let mut harness = Harness::new(Config::default(), 3);
    for step in [
        Step::Connect,
        Step::Connect,
        Step::Bytes {
            client: 0,
            bytes: b"hello\n/nick Ann\n/me waves\n".to_vec(),
        },
        Step::Bytes {
            client: 1,
            bytes: b"/msg ann hi\n/who\n".to_vec(),
        },
        Step::Eof { client: 0 },
    ] {
        harness.step(&step);
    }
}

/// The room's limits in [`room_session`]: behind past 2000 bytes, readers
/// of 10 KB/s or more waited for, a generous max queue, no address policy.
fn room_config() -> Config {
    Config {
        max_line: 64,
        max_queue: 30_000,
        soft_queue: 30_000,
        room_queue: Some(2000),
        min_read_rate: 10_000,
        flood: None,
        ip_flood: None,
        idle_timeout: None,
        line_timeout: None,
        ..Config::default()
    }
}

/// One reader of [`room_session`]: bytes it reads each 10 ms tick.
#[derive(Debug, Clone)]
struct RoomReader {
    per_tick: usize,
}

/// A sender's bursts: (tick, lines of that many bytes of text).
type Bursts = Vec<(u16, Vec<u8>)>;

/// What a reader of [`room_session`] ended with: still in the chat, and
/// the lines it got.
type ReaderEnd = (bool, Vec<String>);

/// Runs senders' `bursts` (in the first half second, 10 ms ticks) past
/// `readers` that read at their rate (and `stuck` clients that never read),
/// then lets the readers drain, 20 s in all. Returns, per reader, whether it is still in the chat and
/// the lines it got, and the lines each sender sent.
fn room_session(
    readers: &[RoomReader],
    stuck: usize,
    bursts: &[Bursts],
) -> (Vec<ReaderEnd>, Vec<Vec<String>>) {
    use chat_core::testkit::Driver;
    use chat_core::testkit::rules::ms;

    let mut s = Driver::timed(room_config());
    let mut ids = Vec::new();
    for _ in 0..readers.len() + stuck {
        let id = s.connect();
        s.stall(id, true);
        ids.push(id);
    }
    let senders: Vec<_> = bursts.iter().map(|_| s.connect()).collect();
    let mut sent = vec![Vec::new(); senders.len()];
    let mut counts = vec![0usize; senders.len()];
    for tick in 0..2000u16 {
        for (reader, &id) in readers.iter().zip(&ids) {
            s.write(id, reader.per_tick);
        }
        if tick < 50 {
            for (i, (bursts, &id)) in bursts.iter().zip(&senders).enumerate() {
                for (_, lens) in bursts.iter().filter(|(at, _)| *at == tick) {
                    let mut bytes = Vec::new();
                    for &len in lens {
                        let text = format!("{i}.{:<1$}", counts[i], usize::from(len));
                        counts[i] += 1;
                        sent[i].push(text.trim_end().to_owned());
                        bytes.extend_from_slice(text.as_bytes());
                        bytes.push(b'\n');
                    }
                    s.send_input(id, chat_core::testkit::Input::Bytes(bytes));
                }
            }
        }
        s.advance(ms(10));
    }
    let got = ids[..readers.len()]
        .iter()
        .map(|&id| {
            let joined = s.server().nick(id).is_some();
            let lines = s.client(id).lines.iter().map(|(_, l)| l.clone()).collect();
            (joined, lines)
        })
        .collect();
    (got, sent)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    /// Limits and policies, room backpressure: however the senders burst,
    /// every reader that reads faster than min_read_rate stays in the chat
    /// and gets every line of every sender, in order; clients that never
    /// read do not stop that.
    #[test]
    fn room_keeps_every_reader_that_reads(
        readers in prop::collection::vec((13_000usize..40_000).prop_map(|rate| RoomReader { per_tick: rate / 100 }), 1..4),
        stuck in 0..3usize,
        bursts in prop::collection::vec(
            prop::collection::vec((0..50u16, prop::collection::vec(1..60u8, 1..100)), 1..8),
            1..4,
        ),
    ) {
        let (got, sent) = room_session(&readers, stuck, &bursts);
        for (r, (joined, lines)) in got.iter().enumerate() {
            prop_assert!(joined, "reader {} was dropped", r);
            for (i, sent) in sent.iter().enumerate() {
                let from: Vec<String> = lines
                    .iter()
                    .filter_map(|line| line.split_once(": ").map(|(_, text)| text))
                    .filter(|text| text.starts_with(&format!("{i}.")))
                    .map(str::to_owned)
                    .collect();
                prop_assert_eq!(&from, sent, "reader {} from sender {}", r, i);
            }
        }
    }
}
