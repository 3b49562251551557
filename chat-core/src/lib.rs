//! The whole chat protocol as a pure, deterministic state machine.
//!
//! `chat-core` decides everything a chat server decides (line framing,
//! sanitizing, nicknames, commands, who receives what, every limit) and does
//! no I/O: no sockets, threads, clocks, global randomness or async. A driver
//! (`chat-tokio`, `chat-asyncstd`, `chat-std`) moves bytes between sockets and
//! one [`Server`]. The protocol it implements is `docs/protocol.md`.
//!
//! # Module map
//!
//! Where each section of `docs/protocol.md` is decided, and where it is
//! tested (`tests/` of this crate; the conformance checks against a running
//! server are `chat-conformance/src/checks/<section>.rs`, with the same
//! test-name prefixes):
//!
//! | protocol.md section | module(s) | tests |
//! |---|---|---|
//! | Framing | [`framing`] ([`framing::LineFramer`]) | `tests/framing.rs` |
//! | Sanitizing | [`framing::sanitize`] | `tests/sanitizing.rs` |
//! | Lines the server sends | `server` (`render`, `Server::deliver`), `broadcast` (`BroadcastLog`, `OutgoingQueue`) | `tests/lines.rs` |
//! | Nicknames | [`nick`], `server/cmd/nick.rs` | `tests/nicknames.rs` |
//! | Commands | `server/cmd/` (dispatch in `mod.rs`, one file per command, [`HELP`]) | `tests/commands.rs` |
//! | Session events | `server` (`handle_connect`, `leave`), `server/output.rs` ([`Event`], [`Reason`]) | `tests/session.rs` |
//! | Limits and policies | [`Config`], `server` (`deliver`: max clients and output queue, shutdown), `server/conn.rs` (`Outgoing`: what a client's output costs, [`LINE_COST`]), `server/room.rs` (room backpressure), `server/timer.rs` (soft limit grace), `server/addresses.rs` (`LogLimit`: which refusals and joins are logged) | `tests/limits.rs` (`limits_`) |
//! | Address policies | `server/addresses.rs` (per address, IPv6 prefixes, loopback, turns for the address's flood budget), `server/flood.rs` (flood control, input that waits), `rate` (GCRA [`Rate`] buckets), `server/timer.rs` (line and idle timeouts, tie-breaks), `server/cmd/nick.rs` (nick rate) | `tests/policies.rs` (`policies_`) |
//! | One room across servers (docs/cluster.md) | [`cluster`]: [`cluster::entry`] (the shared log's entries, checked as untrusted), [`cluster::call`] (the Redis calls and replies); `server/cluster.rs` (publishing, reading back, the roster), `server/cluster/claims.rs` (nick claims), `server/cluster/link.rs` (hello, link down and up, beats, reaping, the node's timers) | `tests/cluster.rs` (`cluster_`), with `testkit::Nodes`, `testkit::SimRedis` and `testkit::script_cases` |
//!
//! The server's state, by type: `server/conn.rs` (one connection, its fields
//! grouped by concern), `server/flood.rs` (`FloodControl`), `server/room.rs`
//! (`Room`, `Behind`), `server/addresses.rs` (`Addresses`),
//! `server/timer.rs` (`TimerSet` of
//! `Timer` kinds), `rate` (`Bucket`), `broadcast`. Across all sections:
//! `tests/properties.rs` (the server against a naive model, and invariants
//! under every policy) and `tests/fuzz_corpus.rs` (the fuzz corpus
//! replayed), both driven by the simulated driver in `chat_core::testkit`
//! (feature `testkit`).
//!
//! # The run loop a driver follows
//!
//! Inputs go in through the `handle_*` methods, each given the current time;
//! outputs queue up inside the server until the driver drains them with
//! [`Server::poll_output`]. The driver may feed any number of inputs before
//! draining, but must drain before it waits for I/O again:
//!
//! 1. A socket is accepted: [`Server::handle_connect`] returns its [`ConnId`].
//!    One whose bytes cannot carry chat yet (a TLS handshake comes first):
//!    [`Server::handle_accept`] at accept, [`Server::handle_ready`] when
//!    they can, and only then its bytes.
//! 2. Bytes arrive: [`Server::handle_bytes`]. The client closes its side:
//!    [`Server::handle_eof`]. The socket fails or is closed:
//!    [`Server::handle_closed`] (exactly once per id, also after the driver
//!    closed it on [`Output::Close`]).
//! 3. Drain [`Server::poll_output`] until `None`:
//!    - [`Output::Transmit`]: the connection has bytes to send. When its
//!      socket can take them, move them out with [`Server::poll_transmit`],
//!      write them (one vectored write), and report each write with
//!      [`Server::handle_written`]: the bytes count against the client's
//!      output limit until then. When the socket takes less than it was
//!      offered (it is full), say so with [`Server::handle_blocked`]: from
//!      then on each write is the client reading, which is what lets a
//!      client that has fallen behind hold the room. Another `Transmit` for
//!      the same connection comes only after `poll_transmit` has been
//!      called for it.
//!    - [`Output::Close`]: close the connection, after writing what
//!      `poll_transmit` still gives if `flush` is set (bounded in time), then
//!      call [`Server::handle_closed`].
//!    - [`Output::StopReading`] / [`Output::ResumeReading`]: stop reading
//!      the connection's socket (the client is over its flood budget, or
//!      the room waits for its readers; what it sent waits inside the
//!      server and TCP slows it down), and start again.
//!    - [`Output::Event`]: something worth logging. It never holds chat text.
//!    - [`Output::Cluster`] (only on a node of a room shared through Redis,
//!      [`Server::with_cluster`]): run the call on Redis and give its reply
//!      to [`Server::handle_cluster_reply`]; when the link to Redis fails,
//!      call [`Server::handle_cluster_down`] instead, and run the hello it
//!      asks for first once reconnected (see [`cluster`]).
//! 4. Ask [`Server::poll_timeout`] for the next deadline (any input may have
//!    moved it), sleep until I/O or that time, and call
//!    [`Server::handle_timeout`] when it has come. Every time given must be
//!    from one monotonic clock; the server never reads one itself.
//!
//! On shutdown, call [`Server::handle_shutdown`] and keep running the loop
//! until every connection is closed (or a grace period runs out).
//!
//! ```
//! use std::time::Instant;
//! use chat_core::{Config, Output, Server};
//!
//! let now = Instant::now();
//! let mut server = Server::new(Config::default(), 7);
//! let alice = server.handle_connect(now, "127.0.0.1:5000".parse().unwrap());
//! let bob = server.handle_connect(now, "127.0.0.1:5001".parse().unwrap());
//! server.handle_bytes(now, alice, b"hello\n");
//!
//! let mut to_bob = Vec::new();
//! while let Some(output) = server.poll_output() {
//!     if let Output::Transmit(conn) = output {
//!         let mut chunks = Vec::new();
//!         let len = server.poll_transmit(conn, &mut chunks);
//!         // A real driver writes `chunks` to the socket here.
//!         server.handle_written(now, conn, len);
//!         if conn == bob {
//!             to_bob.extend(chunks.iter().flat_map(|c| c.iter().copied()));
//!         }
//!     }
//! }
//! let text = String::from_utf8(to_bob).unwrap();
//! assert!(text.ends_with(": hello\n"));
//! ```
#![forbid(unsafe_code)]
#![warn(missing_docs)]

mod broadcast;
pub mod cluster;
mod config;
pub mod framing;
pub mod nick;
mod rate;
mod server;
#[cfg(feature = "testkit")]
pub mod testkit;

pub use bytes::Bytes;
pub use config::{Config, ConfigError, LINE_COST, Rate};
pub use server::{ConnId, Event, HELP, Output, Reason, Server};
