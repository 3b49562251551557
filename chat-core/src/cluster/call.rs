//! The calls a node makes on Redis, and their replies.
//!
//! Each [`Call`] but [`Call::Read`] is one Lua script, run atomically; the
//! driver runs it and hands back the [`Reply`], sorted as documented here
//! (Redis returns hashes in no order). `chat_core::testkit::SimRedis` is
//! the same scripts in Rust, for the simulated cluster, and
//! `testkit::script_cases` is the table both are tested against, so the
//! simulation cannot drift from the Lua.
//!
//! What Redis holds (every key behind the prefix `{chat}:`, one hash slot):
//!
//! | key | type | holds |
//! |---|---|---|
//! | `meta` | hash | `epoch` (drawn by the node that created it), `seq` (the last entry's) |
//! | `log` | stream | the room's [`Entry`]s, id `SEQ-0`, the last `history` of them |
//! | `origins` | hash | node token → the last `n` it published (retries are written once) |
//! | `nodes` | hash | node token → beat counter |
//! | `members:TOKEN` | hash | conn → nick, the node's users in the room |
//! | `claims:TOKEN` | hash | nick key → conn, the nicks the node holds |
//! | `nick:KEY` | string, with a TTL | `TOKEN CONN`, the holder of a nick key |
//! | `reaped` | set | tokens of the nodes reaped: such a node never registers again (it comes back as another incarnation) |
//!
//! A nick key is [`nick::key`](crate::nick::key): the core's own comparison,
//! computed by the node and passed in, since a script cannot.

use std::time::Duration;

use super::entry::{Entry, Gone, Token};
use crate::ConnId;

/// A call on Redis. All but `Read` change what Redis holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Call {
    /// Run on every link-up, first: registers the node if it starts or if
    /// Redis lost what it knew (`reset`, then also writes an
    /// [`Entry::Sync`] of its members), makes its members and claims what
    /// the hello says (claims taken again, those given up meanwhile
    /// released, those someone else took meanwhile reported as conflicts),
    /// and says where the log is.
    Hello(Hello),
    /// Appends entries to the log, in order, each once however often it is
    /// retried, and updates the members and claims they change.
    Publish {
        /// The node publishing.
        node: Token,
        /// Its entries with their `n`, increasing.
        entries: Vec<(u64, Entry)>,
    },
    /// Claims nicks for connections: `SET nick:KEY "TOKEN CONN" NX PX ttl`.
    Claim {
        /// The node claiming.
        node: Token,
        /// How long a claim lives unless the node's beats extend it.
        ttl: Duration,
        /// The connections and the nicks they want.
        claims: Vec<(ConnId, String)>,
    },
    /// Gives a claim back if the connection still holds it
    /// (compare-and-delete): a join given up, a late grant.
    Release {
        /// The node releasing.
        node: Token,
        /// The connection that claimed it.
        conn: ConnId,
        /// The nick claimed.
        nick: String,
    },
    /// Every beat interval: counts the node alive, and extends its claims
    /// when asked (compare-and-extend; a claim that expired is taken again
    /// unless someone else holds it).
    Beat {
        /// The node beating.
        node: Token,
        /// The epoch the node knows.
        epoch: u64,
        /// The last seq the node read.
        cursor: u64,
        /// Extend the node's claims to this TTL.
        extend: Option<Duration>,
    },
    /// Removes a node and everything it held, and writes one
    /// [`Entry::NodeGone`] for it. With a `counter`, only if the node's beat
    /// counter is still that (it did not beat since it was found dead), so
    /// of all the nodes that reap it, one does.
    Reap {
        /// The node to remove.
        node: Token,
        /// Its beat counter when it was found dead; `None` when a node
        /// removes itself on shutdown.
        counter: Option<u64>,
        /// Why its users leave.
        why: Gone,
    },
    /// Reads up to `count` entries after seq `after` (`XREAD`).
    Read {
        /// The last seq already read.
        after: u64,
        /// The most entries to return.
        count: usize,
    },
}

/// What [`Call::Hello`] carries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hello {
    /// The node saying hello.
    pub node: Token,
    /// The epoch the node knew, `None` when it starts.
    pub known_epoch: Option<u64>,
    /// The last seq the node read.
    pub cursor: u64,
    /// The epoch to use if Redis holds no room (random, drawn by the node).
    pub new_epoch: u64,
    /// The node's members (none at a start), claimed again.
    pub members: Vec<(ConnId, String)>,
    /// Claims made again live this long.
    pub ttl: Duration,
    /// Return the roster even without a start or a reset (the node missed
    /// entries).
    pub want_roster: bool,
}

/// What Redis answered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reply {
    /// To [`Call::Hello`].
    Hello(HelloReply),
    /// To [`Call::Publish`], one per entry.
    Published(Vec<Published>),
    /// To [`Call::Claim`], one per claim.
    Claimed(Vec<Claimed>),
    /// To [`Call::Release`]: whether the claim was held and is gone.
    Released(bool),
    /// To [`Call::Beat`].
    Beat(BeatReply),
    /// To [`Call::Reap`]: whether this call removed the node.
    Reaped(bool),
    /// To [`Call::Read`]: entries by increasing seq, fields as read.
    Read(Vec<RawEntry>),
}

/// An entry as read from the log, before it is checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RawEntry {
    /// Its place in the log.
    pub seq: u64,
    /// Its fields, in the order written.
    pub fields: Vec<(Vec<u8>, Vec<u8>)>,
}

/// The answer to [`Call::Hello`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HelloReply {
    /// This node was reaped (or, saying hello as a node that knew the
    /// room, Redis does not know it).
    Reaped,
    /// Where the room is.
    Room(Room),
}

/// The room as [`Call::Hello`] found it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Room {
    /// The room's epoch.
    pub epoch: u64,
    /// The oldest seq still in the log, `None` if it is empty.
    pub first: Option<u64>,
    /// The last seq assigned.
    pub top: u64,
    /// Redis had lost what the node knew (another epoch, or a seq behind
    /// the node's cursor), and the node was registered again.
    pub reset: bool,
    /// Every node's beat counter, by token.
    pub nodes: Vec<(Token, u64)>,
    /// Every member of the room, by node and conn: on a start, a reset, or
    /// when asked.
    pub roster: Option<Vec<(Token, ConnId, String)>>,
    /// The node's members whose nick someone else took meanwhile, by conn.
    pub conflicts: Vec<ConnId>,
}

/// The answer for one entry of [`Call::Publish`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Published {
    /// Written with this seq.
    Seq(u64),
    /// Written before (a retry); not written again.
    Dup,
    /// Redis holds no room (it restarted empty): say hello again.
    Reset,
    /// Redis does not know this node: not written.
    Reaped,
}

/// The answer for one claim of [`Call::Claim`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Claimed {
    /// The connection holds the nick (now, or already).
    Granted,
    /// Someone else holds a nick with the same key.
    Taken,
    /// Redis does not know this node: nothing claimed.
    Reaped,
}

/// The answer to [`Call::Beat`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BeatReply {
    /// Redis lost what the node knew: say hello again.
    Reset,
    /// Redis does not know this node: it was reaped.
    Reaped,
    /// Counted.
    Alive {
        /// Every node's beat counter, by token.
        nodes: Vec<(Token, u64)>,
        /// When extending: the connections whose claim had expired and
        /// was taken by someone else, by conn.
        lost: Vec<ConnId>,
    },
}
