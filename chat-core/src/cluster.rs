//! One room across several servers, through Redis: the parts that exist so
//! far (docs/design/cluster.md is the whole plan).
//!
//! - [`entry`]: the room's shared log, what every node writes and reads
//!   back, and the checks an entry from Redis passes before a node uses it.
//! - [`call`]: the calls a node makes on Redis (one Lua script each) and
//!   their replies, as the core will emit and receive them.
//!
//! Both are plain data: the core stays sans-IO, and the driver runs the
//! calls.

pub mod call;
pub mod entry;

pub use call::{BeatReply, Call, Claimed, Hello, HelloReply, Published, RawEntry, Reply, Room};
pub use entry::{Decoded, Entry, EntryError, Gone, Origin, Token};
