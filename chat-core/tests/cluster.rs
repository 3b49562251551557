//! The cluster's parts that exist so far (docs/design/cluster.md): the
//! shared log's entries and the Redis scripts, simulated. Tests are named
//! `cluster_*`.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use chat_core::ConnId;
use chat_core::cluster::entry::MAX_ENTRY_LINE;
use chat_core::cluster::{Decoded, Entry, EntryError, Gone, Origin, Token};
use chat_core::framing::sanitize;
use chat_core::testkit::script_cases;
use proptest::prelude::*;

/// Every script case holds on the simulated Redis (the same table runs
/// against the Lua on a real redis-server).
#[test]
fn cluster_script_cases_hold_on_the_simulated_redis() {
    let cases = script_cases();
    assert!(cases.len() >= 8, "the table lost cases");
    for case in &cases {
        case.run_simulated();
    }
}

fn decode(fields: &[(&str, &str)]) -> Result<Decoded, EntryError> {
    Decoded::from_fields(fields.iter().map(|(k, v)| (k.as_bytes(), v.as_bytes())))
}

const NODE: [(&str, &str); 3] = [("k", "s"), ("o", "a/1f"), ("n", "3")];

fn say<'a>(extra: &[(&'a str, &'a str)]) -> Vec<(&'a str, &'a str)> {
    NODE.iter().copied().chain(extra.iter().copied()).collect()
}

#[test]
fn cluster_entries_read_what_a_node_wrote() {
    let decoded = decode(&say(&[("c", "5"), ("v", "alice: hi")])).unwrap();
    assert_eq!(
        decoded,
        Decoded {
            origin: Some(Origin {
                node: Token::new("a", 0x1f).unwrap(),
                n: 3
            }),
            entry: Entry::Say {
                conn: ConnId(5),
                line: "alice: hi".into()
            },
        }
    );
    // Fields of a later version are ignored.
    assert_eq!(
        decode(&say(&[("c", "5"), ("v", "alice: hi"), ("zz", "new")])),
        Ok(decoded)
    );
}

/// An entry is untrusted: what a client could not send, or a server would
/// not render, is refused field by field.
#[test]
fn cluster_entries_refuse_what_no_node_would_write() {
    let cases: &[(&[(&str, &str)], EntryError)] = &[
        (&[("c", "5")], EntryError::Missing("v")),
        (&[("c", "5"), ("v", "")], EntryError::Invalid("v")),
        (
            &[("c", "5"), ("v", "hi\n* admin: x")],
            EntryError::Invalid("v"),
        ),
        (
            &[("c", "5"), ("v", "hi\u{1b}[2J")],
            EntryError::Invalid("v"),
        ),
        (&[("c", "5"), ("v", "hi\u{202e}")], EntryError::Invalid("v")),
        (&[("c", "5"), ("v", "trailing ")], EntryError::Invalid("v")),
        (&[("c", "05"), ("v", "hi")], EntryError::Invalid("c")),
        (&[("c", "+5"), ("v", "hi")], EntryError::Invalid("c")),
        (
            &[("c", "5"), ("v", "a"), ("v", "b")],
            EntryError::Repeated("v"),
        ),
    ];
    for (extra, error) in cases {
        assert_eq!(decode(&say(extra)), Err(*error), "{extra:?}");
    }
    let long = "x".repeat(MAX_ENTRY_LINE + 1);
    assert_eq!(
        decode(&say(&[("c", "5"), ("v", long.as_str())])),
        Err(EntryError::Invalid("v"))
    );
    let join = |nick| {
        decode(&[
            ("k", "j"),
            ("o", "a/1"),
            ("n", "1"),
            ("c", "1"),
            ("a", nick),
        ])
    };
    // Mixed scripts (a Cyrillic а), invisible filler, not a nick at all.
    for nick in ["\u{430}lice", "al\u{3164}ice", "al ice", ""] {
        assert_eq!(join(nick), Err(EntryError::Invalid("a")), "{nick:?}");
    }
    // A node's entries say who wrote them; numbers start at 1.
    assert_eq!(
        decode(&[("k", "s"), ("c", "1"), ("v", "hi")]),
        Err(EntryError::Missing("n"))
    );
    assert_eq!(
        decode(&[
            ("k", "s"),
            ("o", "a/1"),
            ("n", "0"),
            ("c", "1"),
            ("v", "hi")
        ]),
        Err(EntryError::Invalid("n"))
    );
    assert_eq!(
        decode(&[
            ("k", "s"),
            ("o", "a b/1"),
            ("n", "1"),
            ("c", "1"),
            ("v", "hi")
        ]),
        Err(EntryError::Invalid("o"))
    );
    assert_eq!(decode(&[("k", "q")]), Err(EntryError::Invalid("k")));
    assert_eq!(
        decode(&[("k", "x"), ("d", "a/1"), ("w", "bored"), ("a", "")]),
        Err(EntryError::Invalid("w"))
    );
    assert_eq!(
        decode(&[("k", "y"), ("d", "a/1"), ("a", "1\tamy\n2 zed")]),
        Err(EntryError::Invalid("a"))
    );
}

#[test]
fn cluster_tokens_are_a_name_and_an_incarnation() {
    let token = Token::new("node-1.eu_west", 0xdead_beef).unwrap();
    assert_eq!(token.as_str(), "node-1.eu_west/deadbeef");
    assert_eq!(token.name(), "node-1.eu_west");
    assert_eq!(Token::parse(token.as_str()), Some(token));
    for bad in ["", "a b", "a/b", "é", &"n".repeat(65)] {
        assert_eq!(Token::new(bad, 1), None, "{bad:?}");
    }
    for bad in [
        "a",
        "a/",
        "a/0x1",
        "a/01",
        "a/1/2",
        "/1",
        "a/10000000000000000",
    ] {
        assert_eq!(Token::parse(bad), None, "{bad:?}");
    }
}

fn nick() -> impl Strategy<Value = String> {
    prop_oneof![
        "[A-Za-z0-9_-]{1,16}",
        Just("José".to_string()),
        Just("東京".to_string()),
        Just("Ὀδυσσεύς".to_string()),
    ]
}

fn line() -> impl Strategy<Value = String> {
    any::<Vec<u8>>().prop_filter_map("sanitizes to nothing", |raw| {
        let clean = sanitize(&raw).into_owned();
        (!clean.is_empty()).then_some(clean)
    })
}

fn token() -> impl Strategy<Value = Token> {
    ("[A-Za-z0-9_.-]{1,8}", any::<u64>()).prop_map(|(name, n)| Token::new(&name, n).unwrap())
}

fn conn() -> impl Strategy<Value = ConnId> {
    any::<u64>().prop_map(ConnId)
}

fn entry() -> impl Strategy<Value = Entry> {
    prop_oneof![
        (conn(), nick()).prop_map(|(conn, nick)| Entry::Join { conn, nick }),
        (conn(), nick(), proptest::option::of(line()))
            .prop_map(|(conn, nick, reason)| Entry::Leave { conn, nick, reason }),
        (conn(), nick(), nick()).prop_map(|(conn, from, to)| Entry::Rename { conn, from, to }),
        (conn(), line()).prop_map(|(conn, line)| Entry::Say { conn, line }),
        (conn(), token(), conn(), line()).prop_map(|(conn, to, to_conn, line)| Entry::Msg {
            conn,
            to,
            to_conn,
            line
        }),
        (token(), any::<bool>(), prop::collection::vec(nick(), 0..5)).prop_map(
            |(node, lost, nicks)| Entry::NodeGone {
                node,
                why: if lost { Gone::Lost } else { Gone::Shutdown },
                nicks
            }
        ),
        (token(), prop::collection::vec((conn(), nick()), 0..5))
            .prop_map(|(node, members)| Entry::Sync { node, members }),
    ]
}

proptest! {
    /// Every entry a node or a script writes reads back as itself.
    #[test]
    fn cluster_entries_read_back_as_written(entry in entry(), node in token(), n in 1..u64::MAX) {
        let by_node = !matches!(entry, Entry::NodeGone { .. } | Entry::Sync { .. });
        let origin = by_node.then_some(Origin { node, n });
        let fields = entry.to_fields(origin.as_ref());
        let decoded = Decoded::from_fields(fields.iter().map(|(k, v)| (k.as_bytes(), v.as_bytes())));
        prop_assert_eq!(decoded, Ok(Decoded { origin, entry }));
    }
}
