//! What the hub holds under its lock: the core and the state of each
//! connection, and the handling of the core's outputs.

use std::collections::HashMap;
use std::net::Shutdown;
use std::os::fd::AsFd;
use std::sync::Arc;
use std::time::Instant;

use chat_core::{ConnId, Output, Server};
use socket2::SockRef;
use tracing::debug;

use super::limits::{Limit, TimeLimits};
use super::{After, FLUSH_LIMIT, Link};
use crate::cluster::link::RedisLink;

/// What the hub knows of one connection; it is forgotten once it is
/// closing and neither of its tasks runs.
#[derive(Debug)]
pub(super) struct Conn<S> {
    pub(super) link: Arc<Link<S>>,
    /// The reader runs. It ends on EOF, on a failed read, or when the
    /// socket is shut down.
    pub(super) reading: bool,
    /// A writer runs, or the connection is in some task's `to_write`.
    pub(super) writing: bool,
    /// The core wants the connection closed.
    pub(super) closing: bool,
    /// Nothing more is to be written: the core dropped the output, or the
    /// socket failed or was shut down.
    pub(super) aborted: bool,
    /// The core asked not to read the socket (`Output::StopReading`).
    pub(super) paused: bool,
    /// A TLS connection whose handshake is not over: nothing is written
    /// for the core yet, and the reader writes the handshake (see
    /// `stream`'s module docs).
    pub(super) handshaking: bool,
    /// The TLS session made output of its own while a writer ran, which
    /// that writer writes before it is released (see `Hub::send_session`).
    pub(super) session_output: bool,
}

impl<S: AsFd> Conn<S> {
    /// Hands the connection to the caller to write to, unless a writer is
    /// running (it takes the new output too), nothing is to be written, or
    /// the TLS handshake is not over (`Hub::handshaken` wakes it then).
    pub(super) fn wake(&mut self, after: &mut After<S>) {
        if !self.writing && !self.aborted && !self.handshaking {
            self.writing = true;
            after.to_write.push(self.link.clone());
        }
    }

    /// Lets a paused reader read again.
    fn resume(&mut self, after: &mut After<S>) {
        if std::mem::take(&mut self.paused) {
            after.wake.extend(self.link.resume.notify());
        }
    }

    /// Whether a [`Limit`] started for the connection still applies.
    fn held_to(&self, limit: Limit) -> bool {
        !self.aborted && (limit == Limit::Flush || self.handshaking)
    }

    /// Shuts the socket down, which ends a blocked read or write on it.
    pub(super) fn abort(&mut self, after: &mut After<S>) {
        if !self.aborted {
            self.aborted = true;
            self.closing = true;
            // Fails only if the peer is already gone, which is the goal.
            let _ = SockRef::from(&self.link.stream.socket).shutdown(Shutdown::Both);
            // A paused reader must read, to meet the shut-down socket and end.
            self.resume(after);
        }
    }
}

#[derive(Debug)]
pub(super) struct State<S> {
    pub(super) server: Server,
    pub(super) conns: HashMap<ConnId, Conn<S>>,
    /// The driver's time limits on connections.
    pub(super) limits: TimeLimits,
    /// When the timer (see `Hub::tick`) next wakes on its own; `None`: only
    /// when notified. A call that makes a deadline earlier notifies it.
    pub(super) timer_wake: Option<Instant>,
    /// The threads that run the core's calls on Redis, on a node of a
    /// shared room.
    pub(super) redis: Option<Arc<RedisLink>>,
}

impl<S: AsFd> State<S> {
    /// Drains the core's outputs (run loop step 3).
    pub(super) fn dispatch(&mut self, now: Instant, after: &mut After<S>) {
        while let Some(output) = self.server.poll_output() {
            match output {
                Output::Transmit(conn) => {
                    if let Some(entry) = self.conns.get_mut(&conn) {
                        entry.wake(after);
                    }
                }
                Output::Close {
                    conn,
                    reason,
                    flush,
                } => {
                    debug!(%conn, %reason, flush, "closing");
                    let Some(entry) = self.conns.get_mut(&conn) else {
                        continue;
                    };
                    // The core ignores its input from now on; reading it
                    // drains the socket, so closing it sends no reset that
                    // could destroy the goodbye line.
                    entry.resume(after);
                    if flush {
                        if !std::mem::replace(&mut entry.closing, true) {
                            let limit = now.checked_add(FLUSH_LIMIT);
                            self.limits.start(Limit::Flush, limit, conn);
                        }
                        entry.wake(after);
                    } else {
                        entry.abort(after);
                        self.reap(conn, now);
                    }
                }
                Output::StopReading(conn) => {
                    // A closing connection is read to its end regardless.
                    let open = self.conns.get_mut(&conn);
                    if let Some(entry) = open.filter(|entry| !entry.closing) {
                        entry.paused = true;
                    }
                }
                Output::ResumeReading(conn) => {
                    if let Some(entry) = self.conns.get_mut(&conn) {
                        entry.resume(after);
                    }
                }
                Output::Event(event) => after.events.push(*event),
                Output::Cluster(request) => {
                    if let Some(redis) = &self.redis {
                        redis.send(*request);
                    }
                }
            }
        }
    }

    /// Forgets the connection and tells the core it is closed, if it is
    /// closing and none of its tasks runs any more.
    pub(super) fn reap(&mut self, conn: ConnId, now: Instant) {
        if self
            .conns
            .get(&conn)
            .is_some_and(|entry| entry.closing && !entry.reading && !entry.writing)
        {
            self.conns.remove(&conn);
            self.server.handle_closed(now, conn);
        }
    }

    /// Acts on the time limits that are up: a flushing close that has not
    /// finished, a TLS handshake that has not, are cut short.
    pub(super) fn expire_limits(&mut self, now: Instant, after: &mut After<S>) {
        while let Some((limit, conn)) = self.limits.pop_due(now) {
            let Some(entry) = self.conns.get_mut(&conn) else {
                continue;
            };
            if !entry.held_to(limit) {
                continue;
            }
            if limit == Limit::Handshake {
                debug!(%conn, "TLS handshake not finished in time");
            }
            entry.abort(after);
            self.reap(conn, now);
        }
    }

    /// The earliest of the core's timer and the driver's time limits.
    pub(super) fn next_deadline(&mut self) -> Option<Instant> {
        let conns = &self.conns;
        let applies = |limit, conn| conns.get(&conn).is_some_and(|entry| entry.held_to(limit));
        let limit = self.limits.next(applies);
        match (self.server.poll_timeout(), limit) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }
}
