//! One room across several servers, through Redis: the parts that exist so
//! far (docs/design/cluster.md is the whole plan).
//!
//! - [`entry`]: the room's shared log, what every node writes and reads
//!   back, and the checks an entry from Redis passes before a node uses it.
//! - [`call`]: the calls a node makes on Redis (one Lua script each) and
//!   their replies, as the core will emit and receive them.
//!
//! - [`ClusterConfig`]: what makes a [`Server`](crate::Server) one node of
//!   a room ([`Server::with_cluster`](crate::Server::with_cluster)).
//!
//! A node's server publishes every broadcast (chat, `/me`, joins, leaves,
//! renames) to the log instead of delivering it, and delivers what it reads
//! back, its own entries included: so every client of every node sees the
//! room in the log's one order. Nicks are claimed in Redis before a client
//! is welcomed or renamed. The server asks for each Redis call with an
//! [`Output::Cluster`](crate::Output::Cluster) and takes its reply through
//! [`Server::handle_cluster_reply`](crate::Server::handle_cluster_reply).
//!
//! All of this is plain data: the core stays sans-IO, and the driver runs
//! the calls.

use std::time::Duration;

pub mod call;
pub mod entry;

pub use call::{BeatReply, Call, Claimed, Hello, HelloReply, Published, RawEntry, Reply, Room};
pub use entry::{Decoded, Entry, EntryError, Gone, Origin, Token};

pub use crate::server::ClusterConfigError;

/// What makes a server one node of a room shared through Redis.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClusterConfig {
    /// The node's name (`--node`): for people and logs; see [`Token`].
    pub node: String,
    /// How long a nick claim lives in Redis unless it is extended.
    pub claim_ttl: Duration,
    /// The most entries one read of the log returns.
    pub read_batch: usize,
    /// How often the node tells Redis it is alive.
    pub beat: Duration,
    /// A node whose beat stands still this long, while this node's link is
    /// up, is taken for dead and reaped: its users leave.
    pub dead_after: Duration,
    /// How long the link may be down before the clients are told the room
    /// is split (a short blip tells nobody).
    pub split_notice_after: Duration,
    /// The most entries that wait while the link is down; a chat line over
    /// that is refused (leaves always wait).
    pub outbox: usize,
}

impl ClusterConfig {
    /// The defaults, for the node named `node`.
    pub fn new(node: &str) -> ClusterConfig {
        ClusterConfig {
            node: node.to_string(),
            claim_ttl: Duration::from_secs(60),
            read_batch: 512,
            beat: Duration::from_secs(1),
            dead_after: Duration::from_secs(6),
            split_notice_after: Duration::from_secs(2),
            outbox: 4096,
        }
    }
}

/// Identifies one call the server asked for, so that its reply finds it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct CallId(pub u64);

/// A call for the driver to run on Redis: see
/// [`Output::Cluster`](crate::Output::Cluster).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    /// Give it back with the reply.
    pub id: CallId,
    /// What to run.
    pub call: Call,
}
