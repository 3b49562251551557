//! Entries of the room's shared log: what one node tells every node, and
//! how it is written as a Redis stream entry's fields.
//!
//! Every node reads every entry back, its own included, so the log is the
//! one order of the room. Entries are untrusted on the way in: Redis is
//! shared, and a node may run another version. [`Decoded::from_fields`]
//! checks every field the way the core checks a client's input (nicks by
//! [`nick::check`], text by [`sanitize`]), and refuses what does not pass.
//!
//! | `k` | fields | written by |
//! |---|---|---|
//! | `j` join | `c` conn, `a` nick | the node of `c` |
//! | `l` leave | `c`, `a` nick, `r` reason (optional) | the node of `c` |
//! | `r` rename | `c`, `a` old nick, `b` new nick | the node of `c` |
//! | `s` say | `c`, `v` the line every client is sent | the node of `c` |
//! | `m` private message | `c`, `t` node, `u` conn, `v` the line `u` is sent | the node of `c` |
//! | `x` node gone | `d` node, `w` `lost` or `shutdown`, `a` its nicks, one per line | the reap script |
//! | `y` node's members | `d` node, `a` `CONN<TAB>NICK` per member, one per line | the hello script |
//!
//! Entries a node writes also carry `o`, the node's [`Token`], and `n`, its
//! own count of entries (from 1, never reused), so that a publish retried
//! after a lost reply is recognised and written once. Numbers are decimal
//! without leading zeros. Fields with other names are ignored, so a later
//! version may add some.
//!
//! In the stream an entry is one field, `e`, that packs its fields
//! ([`pack`]): each field's one-letter name, its value's length in bytes
//! in decimal, `:`, the value. One field instead of five or six makes
//! each entry a third of the RESP elements to write, send and parse, for
//! Redis and for every node reading it.

use std::fmt;

use crate::ConnId;
use crate::framing::sanitize;
use crate::nick;

/// The longest line an entry may carry, in bytes. A node's own lines are
/// bounded by its `max_line`; this bounds what another node's may cost.
pub const MAX_ENTRY_LINE: usize = 64 * 1024;

/// The longest node name (`--node`), in bytes.
pub const MAX_NODE_NAME: usize = 64;

/// One run of one node: its name and the incarnation drawn when it started
/// (or was cut off and came back), written `NAME/INCARNATION-HEX`. Names
/// are for people and may repeat; the incarnation keeps two runs apart.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Token(String);

impl Token {
    /// The token of run `incarnation` of the node named `name`; `None` if
    /// the name is empty, longer than [`MAX_NODE_NAME`], or holds other than
    /// ASCII letters, digits, `_`, `-` and `.`.
    pub fn new(name: &str, incarnation: u64) -> Option<Token> {
        is_node_name(name).then(|| Token(format!("{name}/{incarnation:x}")))
    }

    /// Reads a token as [`Token::new`] writes it.
    pub fn parse(text: &str) -> Option<Token> {
        let (name, incarnation) = text.split_once('/')?;
        let incarnation = u64::from_str_radix(incarnation, 16).ok()?;
        let token = Token::new(name, incarnation)?;
        (token.0 == text).then_some(token)
    }

    /// The token of another run (`incarnation`) of the same node.
    pub fn next_run(&self, incarnation: u64) -> Token {
        Token(format!("{}/{incarnation:x}", self.name()))
    }

    /// The node's name.
    pub fn name(&self) -> &str {
        self.0.split_once('/').map_or(&self.0, |(name, _)| name)
    }

    /// The token as written in the log and in Redis keys.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Token {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Whether `name` may name a node (see [`Token::new`]).
pub fn is_node_name(name: &str) -> bool {
    (1..=MAX_NODE_NAME).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.'))
}

/// Why a node's users left all at once.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Gone {
    /// The node stopped beating and another node reaped it.
    Lost,
    /// The node shut down and said so.
    Shutdown,
}

impl Gone {
    fn as_str(self) -> &'static str {
        match self {
            Gone::Lost => "lost",
            Gone::Shutdown => "shutdown",
        }
    }
}

/// One event of the room, as every node reads it from the log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Entry {
    /// `nick` (connection `conn` of the writing node) joined.
    Join {
        /// The connection, on the node that wrote the entry.
        conn: ConnId,
        /// Its nick, claimed before the entry was written.
        nick: String,
    },
    /// `nick` left, for `reason` if it was disconnected.
    Leave {
        /// The connection, on the node that wrote the entry.
        conn: ConnId,
        /// The nick it held.
        nick: String,
        /// Why it was disconnected (`Reason`'s notice), if it was.
        reason: Option<String>,
    },
    /// `from` is now known as `to`.
    Rename {
        /// The connection, on the node that wrote the entry.
        conn: ConnId,
        /// The nick it held.
        from: String,
        /// The nick it holds now, claimed before the entry was written.
        to: String,
    },
    /// A line for everyone in the room but its sender: chat or `/me`,
    /// rendered by the sender's node.
    Say {
        /// The sender, on the node that wrote the entry.
        conn: ConnId,
        /// The line, without its line feed.
        line: String,
    },
    /// A private line for one connection of one node.
    Msg {
        /// The sender, on the node that wrote the entry.
        conn: ConnId,
        /// The node of the receiver.
        to: Token,
        /// The receiver, on that node.
        to_conn: ConnId,
        /// The line, without its line feed.
        line: String,
    },
    /// Every user of `node` left at once.
    NodeGone {
        /// The node that is gone.
        node: Token,
        /// Why.
        why: Gone,
        /// The nicks its users held.
        nicks: Vec<String>,
    },
    /// What `node` holds now, after Redis lost what it knew of it.
    Sync {
        /// The node.
        node: Token,
        /// Its members: connection and nick.
        members: Vec<(ConnId, String)>,
    },
}

/// Who wrote an entry: a node's token and its count of entries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Origin {
    /// The node that wrote the entry.
    pub node: Token,
    /// The node's count of its entries, from 1.
    pub n: u64,
}

/// An entry read from the log, with who wrote it: a node (`Some`) for the
/// entries nodes write, Redis (`None`) for [`Entry::NodeGone`] and
/// [`Entry::Sync`], which scripts write.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decoded {
    /// Who wrote it, if a node did.
    pub origin: Option<Origin>,
    /// The entry.
    pub entry: Entry,
}

/// Why fields read from the log are not an entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EntryError {
    /// The field is missing.
    Missing(&'static str),
    /// The field appears more than once.
    Repeated(&'static str),
    /// The field's value is not what it must be.
    Invalid(&'static str),
}

impl fmt::Display for EntryError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            EntryError::Missing(field) => write!(f, "field {field} missing"),
            EntryError::Repeated(field) => write!(f, "field {field} repeated"),
            EntryError::Invalid(field) => write!(f, "field {field} invalid"),
        }
    }
}

impl std::error::Error for EntryError {}

/// Packs `fields` into the value of a stream entry's one field `e`: each
/// field's name, its value's length, `:`, the value.
pub fn pack(fields: &[(&str, String)]) -> String {
    let mut packed = String::new();
    for (name, value) in fields {
        packed.push_str(name);
        packed.push_str(&value.len().to_string());
        packed.push(':');
        packed.push_str(value);
    }
    packed
}

/// The fields packed in `packed` (see [`pack`]), or `None` if it is not
/// such a packing.
fn unpack(mut packed: &[u8]) -> Option<Vec<(&[u8], &[u8])>> {
    let mut fields = Vec::new();
    while !packed.is_empty() {
        let (name, rest) = packed.split_at(1);
        if !name[0].is_ascii_alphabetic() {
            return None;
        }
        // Lengths are at most 7 digits (an entry is far below 10 MB).
        let colon = rest.iter().take(8).position(|&b| b == b':')?;
        let digits = std::str::from_utf8(&rest[..colon]).ok()?;
        let len: usize = digits.parse().ok()?;
        (len.to_string() == digits).then_some(())?;
        let start = colon + 1;
        let value = rest.get(start..start.checked_add(len)?)?;
        fields.push((name, value));
        packed = &rest[start + len..];
    }
    Some(fields)
}

/// The field names this version reads, in the order they are written.
const FIELDS: [&str; 12] = ["k", "o", "n", "c", "a", "b", "r", "t", "u", "v", "d", "w"];

impl Entry {
    /// The entry's kind, the value of its `k` field.
    pub fn kind(&self) -> char {
        match self {
            Entry::Join { .. } => 'j',
            Entry::Leave { .. } => 'l',
            Entry::Rename { .. } => 'r',
            Entry::Say { .. } => 's',
            Entry::Msg { .. } => 'm',
            Entry::NodeGone { .. } => 'x',
            Entry::Sync { .. } => 'y',
        }
    }

    /// The fields to write for this entry: with `origin` when a node writes
    /// it, without when a script does (`NodeGone`, `Sync`).
    pub fn to_fields(&self, origin: Option<&Origin>) -> Vec<(&'static str, String)> {
        let mut fields = vec![("k", self.kind().to_string())];
        if let Some(origin) = origin {
            fields.push(("o", origin.node.to_string()));
            fields.push(("n", origin.n.to_string()));
        }
        let conn = |c: &ConnId| c.0.to_string();
        match self {
            Entry::Join { conn: c, nick } => {
                fields.extend([("c", conn(c)), ("a", nick.clone())]);
            }
            Entry::Leave {
                conn: c,
                nick,
                reason,
            } => {
                fields.extend([("c", conn(c)), ("a", nick.clone())]);
                fields.extend(reason.iter().map(|r| ("r", r.clone())));
            }
            Entry::Rename { conn: c, from, to } => {
                fields.extend([("c", conn(c)), ("a", from.clone()), ("b", to.clone())]);
            }
            Entry::Say { conn: c, line } => fields.extend([("c", conn(c)), ("v", line.clone())]),
            Entry::Msg {
                conn: c,
                to,
                to_conn,
                line,
            } => fields.extend([
                ("c", conn(c)),
                ("t", to.to_string()),
                ("u", conn(to_conn)),
                ("v", line.clone()),
            ]),
            Entry::NodeGone { node, why, nicks } => fields.extend([
                ("d", node.to_string()),
                ("w", why.as_str().to_string()),
                ("a", nicks.join("\n")),
            ]),
            Entry::Sync { node, members } => {
                let members: Vec<String> = members
                    .iter()
                    .map(|(c, nick)| format!("{}\t{nick}", c.0))
                    .collect();
                fields.extend([("d", node.to_string()), ("a", members.join("\n"))]);
            }
        }
        fields
    }

    /// The entry as the one field of a stream entry: `e`, its fields packed.
    pub fn to_packed(&self, origin: Option<&Origin>) -> String {
        pack(&self.to_fields(origin))
    }

    /// The key ([`nick::key`]) of the nick the entry gives up, which the
    /// publish script needs and cannot compute: a leave's nick, a rename's
    /// old one unless the new nick is a variant of it (the same key, kept).
    pub fn given_up_key(&self) -> Option<String> {
        match self {
            Entry::Leave { nick, .. } => Some(nick::key(nick)),
            Entry::Rename { from, to, .. } => {
                let from = nick::key(from);
                (from != nick::key(to)).then_some(from)
            }
            _ => None,
        }
    }

    /// The change to its node's members: the connection and, for a join or
    /// a rename, its nick now (`None`: it left). `None` for the entries
    /// that are no member's.
    pub fn member_change(&self) -> Option<(ConnId, Option<&str>)> {
        match self {
            Entry::Join { conn, nick } | Entry::Rename { conn, to: nick, .. } => {
                Some((*conn, Some(nick.as_str())))
            }
            Entry::Leave { conn, .. } => Some((*conn, None)),
            _ => None,
        }
    }
}

impl Decoded {
    /// Reads an entry from a stream entry's fields as written: one field,
    /// `e`, that packs the entry's fields (see [`pack`]).
    pub fn from_stream<K, V>(fields: &[(K, V)]) -> Result<Decoded, EntryError>
    where
        K: AsRef<[u8]>,
        V: AsRef<[u8]>,
    {
        let packed = fields
            .iter()
            .find(|(name, _)| name.as_ref() == b"e")
            .ok_or(EntryError::Missing("e"))?;
        Decoded::from_packed(packed.1.as_ref())
    }

    /// Reads an entry from its packed fields (see [`pack`]).
    pub fn from_packed(packed: &[u8]) -> Result<Decoded, EntryError> {
        let fields = unpack(packed).ok_or(EntryError::Invalid("e"))?;
        Decoded::from_fields(fields)
    }

    /// Reads an entry from its fields, checking each one.
    pub fn from_fields<K, V>(
        fields: impl IntoIterator<Item = (K, V)>,
    ) -> Result<Decoded, EntryError>
    where
        K: AsRef<[u8]>,
        V: AsRef<[u8]>,
    {
        let mut found: [Option<V>; FIELDS.len()] = Default::default();
        for (name, value) in fields {
            let Some(i) = FIELDS.iter().position(|f| f.as_bytes() == name.as_ref()) else {
                continue;
            };
            if found[i].replace(value).is_some() {
                return Err(EntryError::Repeated(FIELDS[i]));
            }
        }
        let fields = Fields(found.each_ref().map(|v| v.as_ref().map(AsRef::as_ref)));
        fields.decode()
    }
}

/// The known fields of one stream entry, by their index in [`FIELDS`].
struct Fields<'a>([Option<&'a [u8]>; FIELDS.len()]);

impl<'a> Fields<'a> {
    fn get(&self, name: &'static str) -> Option<&'a [u8]> {
        let i = FIELDS.iter().position(|f| *f == name)?;
        self.0[i]
    }

    fn text(&self, name: &'static str) -> Result<&'a str, EntryError> {
        let value = self.get(name).ok_or(EntryError::Missing(name))?;
        std::str::from_utf8(value).map_err(|_| EntryError::Invalid(name))
    }

    fn number(&self, name: &'static str) -> Result<u64, EntryError> {
        let text = self.text(name)?;
        let n: u64 = text.parse().map_err(|_| EntryError::Invalid(name))?;
        // One way to write each number: no sign, no leading zero.
        (n.to_string() == text)
            .then_some(n)
            .ok_or(EntryError::Invalid(name))
    }

    fn conn(&self, name: &'static str) -> Result<ConnId, EntryError> {
        self.number(name).map(ConnId)
    }

    fn nick(&self, name: &'static str) -> Result<String, EntryError> {
        let text = self.text(name)?;
        valid_nick(text).ok_or(EntryError::Invalid(name))
    }

    fn token(&self, name: &'static str) -> Result<Token, EntryError> {
        Token::parse(self.text(name)?).ok_or(EntryError::Invalid(name))
    }

    /// A line as a client would be sent it: not empty, within
    /// [`MAX_ENTRY_LINE`], and unchanged by [`sanitize`].
    fn line(&self, name: &'static str) -> Result<String, EntryError> {
        let value = self.get(name).ok_or(EntryError::Missing(name))?;
        let clean = !value.is_empty()
            && value.len() <= MAX_ENTRY_LINE
            && sanitize(value).as_bytes() == value;
        let text = std::str::from_utf8(value).ok().filter(|_| clean);
        text.map(str::to_string).ok_or(EntryError::Invalid(name))
    }

    /// `name`'s lines, none if it is empty.
    fn lines(&self, name: &'static str) -> Result<Vec<&'a str>, EntryError> {
        let text = self.text(name)?;
        Ok(if text.is_empty() {
            Vec::new()
        } else {
            text.split('\n').collect()
        })
    }

    fn decode(&self) -> Result<Decoded, EntryError> {
        let kind = self.text("k")?;
        let writes_origin = matches!(kind, "j" | "l" | "r" | "s" | "m");
        let origin = if writes_origin {
            let n = self.number("n")?;
            if n == 0 {
                return Err(EntryError::Invalid("n"));
            }
            Some(Origin {
                node: self.token("o")?,
                n,
            })
        } else {
            None
        };
        let entry = match kind {
            "j" => Entry::Join {
                conn: self.conn("c")?,
                nick: self.nick("a")?,
            },
            "l" => Entry::Leave {
                conn: self.conn("c")?,
                nick: self.nick("a")?,
                reason: match self.get("r") {
                    None => None,
                    Some(_) => Some(self.line("r")?),
                },
            },
            "r" => Entry::Rename {
                conn: self.conn("c")?,
                from: self.nick("a")?,
                to: self.nick("b")?,
            },
            "s" => Entry::Say {
                conn: self.conn("c")?,
                line: self.line("v")?,
            },
            "m" => Entry::Msg {
                conn: self.conn("c")?,
                to: self.token("t")?,
                to_conn: self.conn("u")?,
                line: self.line("v")?,
            },
            "x" => Entry::NodeGone {
                node: self.token("d")?,
                why: match self.text("w")? {
                    "lost" => Gone::Lost,
                    "shutdown" => Gone::Shutdown,
                    _ => return Err(EntryError::Invalid("w")),
                },
                nicks: self
                    .lines("a")?
                    .into_iter()
                    .map(|nick| valid_nick(nick).ok_or(EntryError::Invalid("a")))
                    .collect::<Result<_, _>>()?,
            },
            "y" => Entry::Sync {
                node: self.token("d")?,
                members: self
                    .lines("a")?
                    .into_iter()
                    .map(|member| member_of(member).ok_or(EntryError::Invalid("a")))
                    .collect::<Result<_, _>>()?,
            },
            _ => return Err(EntryError::Invalid("k")),
        };
        Ok(Decoded { origin, entry })
    }
}

fn valid_nick(text: &str) -> Option<String> {
    nick::is_valid(text).then(|| text.to_string())
}

/// One line of a `Sync` entry's members: `CONN<TAB>NICK`.
fn member_of(line: &str) -> Option<(ConnId, String)> {
    let (conn, nick) = line.split_once('\t')?;
    let n: u64 = conn.parse().ok()?;
    (n.to_string() == conn).then_some(())?;
    Some((ConnId(n), valid_nick(nick)?))
}
