//! [`TimeLimits`]: the driver's own deadlines on connections, one queue
//! per [`Limit`], run by the hub's timer beside the core's.

use std::collections::VecDeque;
use std::time::Instant;

use chat_core::ConnId;

/// A time limit the driver holds a connection to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Limit {
    /// A flushing close writes what is left within `FLUSH_LIMIT`; then the
    /// socket is shut down anyway.
    Flush,
    /// A TLS client finishes its handshake within the handshake timeout
    /// (rustls has no timer of its own); then it is disconnected.
    Handshake,
}

/// The deadlines of each [`Limit`], in time order: each limit is the same
/// length for every connection and starts under the hub's lock, whose
/// clock only moves forward, so the earliest of a queue is at its front.
/// An entry whose limit no longer applies (the connection is gone, or did
/// what it was held to) is stale and dropped when met.
#[derive(Debug, Default)]
pub(super) struct TimeLimits {
    flush: VecDeque<(Instant, ConnId)>,
    handshake: VecDeque<(Instant, ConnId)>,
}

impl TimeLimits {
    /// Holds `conn` to `limit`, due `at`; `None`: never due.
    pub(super) fn start(&mut self, limit: Limit, at: Option<Instant>, conn: ConnId) {
        if let Some(at) = at {
            self.queue(limit).push_back((at, conn));
        }
    }

    fn queue(&mut self, limit: Limit) -> &mut VecDeque<(Instant, ConnId)> {
        match limit {
            Limit::Flush => &mut self.flush,
            Limit::Handshake => &mut self.handshake,
        }
    }

    /// The earliest deadline that still applies (`applies` says which do),
    /// dropping stale ones from the fronts so they cause no wake-up.
    pub(super) fn next(&mut self, applies: impl Fn(Limit, ConnId) -> bool) -> Option<Instant> {
        [Limit::Flush, Limit::Handshake]
            .into_iter()
            .filter_map(|limit| {
                let queue = self.queue(limit);
                while let Some(&(at, conn)) = queue.front() {
                    if applies(limit, conn) {
                        return Some(at);
                    }
                    queue.pop_front();
                }
                None
            })
            .min()
    }

    /// A deadline due at `now`, taken out of its queue; stale or not.
    pub(super) fn pop_due(&mut self, now: Instant) -> Option<(Limit, ConnId)> {
        [Limit::Flush, Limit::Handshake]
            .into_iter()
            .find_map(|limit| {
                let queue = self.queue(limit);
                let due = queue.front().is_some_and(|&(at, _)| at <= now);
                let (_, conn) = due.then(|| queue.pop_front()).flatten()?;
                Some((limit, conn))
            })
    }
}
