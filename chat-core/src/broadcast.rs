//! Output waiting to be sent to clients: one [`BroadcastLog`] of the lines
//! sent to everyone, read by every connection through its own cursor, and an
//! [`OutgoingQueue`] per connection: its cursor into the log, merged with
//! the lines meant for it alone.
//!
//! A broadcast is stored once, whatever the number of recipients: it costs
//! each of them a counter update, not a queued copy or a shared handle, so a
//! storm of joins (each announced to everyone) does not make every client
//! hold a queue sized for it. Whenever the log holds [`LOG_LINES`] lines it
//! is trimmed to what its readers still need: what a client more than half
//! of that behind still has to read is moved into its private lines first,
//! so a slow client never holds the log for the others.

use std::collections::VecDeque;

use bytes::Bytes;

use crate::server::ConnId;

/// Lines the broadcast log holds before it is trimmed (see [`BroadcastLog::new`]).
pub(crate) const LOG_LINES: usize = 1024;

/// The lines sent to every client (but their sender) that some connection
/// has not read yet, in order. Not a log of events: see `Output::Event`.
#[derive(Debug)]
pub(crate) struct BroadcastLog {
    /// Each line with the connection that sent it, which does not receive it.
    lines: VecDeque<(ConnId, Bytes)>,
    /// Sequence number of `lines[0]`; numbers are never reused.
    first: u64,
    /// Lines it holds before it wants to be emptied.
    capacity: usize,
}

/// One client's outgoing lines not yet handed to the driver: the broadcast
/// log from `cursor` (up to `limit` once it stops following the log),
/// merged with its private lines.
#[derive(Debug, Default)]
pub(crate) struct OutgoingQueue {
    cursor: u64,
    /// The log position after which nothing is for this connection.
    limit: Option<u64>,
    /// Private lines, each with the log position it was queued at: it comes
    /// after the log lines before that position and before the others.
    private: VecDeque<(u64, Bytes)>,
}

impl BroadcastLog {
    /// A log that wants to be emptied once it holds `capacity` lines.
    pub(crate) fn new(capacity: usize) -> BroadcastLog {
        BroadcastLog {
            lines: VecDeque::new(),
            first: 0,
            capacity: capacity.max(1),
        }
    }

    /// Whether it holds enough lines to be emptied now.
    pub(crate) fn is_full(&self) -> bool {
        self.lines.len() >= self.capacity
    }

    /// The sequence number the next line gets.
    pub(crate) fn end(&self) -> u64 {
        self.first + self.lines.len() as u64
    }

    /// Appends a broadcast line from `from`.
    pub(crate) fn push(&mut self, from: ConnId, line: Bytes) {
        self.lines.push_back((from, line));
    }

    /// A queue that receives the lines pushed from now on.
    pub(crate) fn queue(&self) -> OutgoingQueue {
        OutgoingQueue {
            cursor: self.end(),
            limit: None,
            private: VecDeque::new(),
        }
    }

    /// Moves everything `queue` (of connection `conn`) has to read into
    /// `out`, in order, one chunk per line; returns the bytes and the lines
    /// moved.
    pub(crate) fn drain(
        &self,
        conn: ConnId,
        queue: &mut OutgoingQueue,
        out: &mut Vec<Bytes>,
    ) -> (usize, usize) {
        let (mut bytes, mut lines) = (0, 0);
        self.each(conn, queue, |line| {
            bytes += line.len();
            lines += 1;
            out.push(line);
        });
        // Private lines are few (replies, notices): an idle client keeps no
        // room for them.
        queue.private = VecDeque::new();
        (bytes, lines)
    }

    /// Drops the lines that none of `readers` needs any more, after moving
    /// what a reader far behind still needs into its private lines: the log
    /// never holds more than its capacity, however slowly some client
    /// reads, and a batch of lines that everyone has still to read (joins
    /// being announced) is not copied.
    pub(crate) fn trim_for<'a>(
        &mut self,
        readers: impl Iterator<Item = (ConnId, &'a mut OutgoingQueue)>,
    ) {
        let mut from = self.end();
        for (conn, queue) in readers {
            if self.lags(queue) {
                self.detach(conn, queue);
            } else if let Some(needs) = self.needs_from(queue) {
                from = from.min(needs);
            }
        }
        self.trim(from);
    }

    /// The first line `queue` still needs from the log, if any.
    fn needs_from(&self, queue: &OutgoingQueue) -> Option<u64> {
        (queue.cursor < queue.limit.unwrap_or(self.end())).then_some(queue.cursor)
    }

    /// Whether `queue` is so far behind that it should be detached before
    /// the log is trimmed, rather than hold the log.
    fn lags(&self, queue: &OutgoingQueue) -> bool {
        let half = (self.capacity / 2) as u64;
        self.needs_from(queue)
            .is_some_and(|from| from.saturating_add(half) < self.end())
    }

    /// Moves what `queue` has still to read from the log into its private
    /// queue, so that the log no longer needs to hold it.
    fn detach(&self, conn: ConnId, queue: &mut OutgoingQueue) {
        if self.needs_from(queue).is_none() {
            return;
        }
        let end = self.end();
        let mut private = VecDeque::new();
        self.each(conn, queue, |line| private.push_back((end, line)));
        queue.private = private;
    }

    /// Drops the lines before `from`: every queue that needs one of them
    /// must have been detached first.
    fn trim(&mut self, from: u64) {
        let drop = from.saturating_sub(self.first).min(self.lines.len() as u64);
        self.lines.drain(..drop as usize);
        self.first += drop;
        if self.lines.is_empty() {
            // Idle clients are most clients, and a quiet log need not keep
            // room for a past storm.
            self.lines = VecDeque::new();
        }
    }

    /// Takes every line `queue` has to read, in order, leaving it empty
    /// with its cursor at its end.
    fn each(&self, conn: ConnId, queue: &mut OutgoingQueue, mut take: impl FnMut(Bytes)) {
        let end = queue.limit.unwrap_or(self.end());
        loop {
            let private_first = queue
                .private
                .front()
                .is_some_and(|&(at, _)| at <= queue.cursor);
            if queue.cursor < end && !private_first {
                // Lines before `first` were moved to every queue that
                // needed them when the log was emptied.
                let index = queue.cursor.saturating_sub(self.first) as usize;
                if let Some((from, line)) = self.lines.get(index) {
                    if *from != conn {
                        take(line.clone());
                    }
                }
                queue.cursor += 1;
            } else if let Some((_, line)) = queue.private.pop_front() {
                take(line);
            } else {
                break;
            }
        }
        queue.cursor = queue.cursor.max(end);
    }
}

impl OutgoingQueue {
    /// Queues a line for this connection alone, after the log's lines so far.
    pub(crate) fn push(&mut self, log: &BroadcastLog, line: Bytes) {
        self.private.push_back((log.end(), line));
    }

    /// Stops following the log: lines pushed from now on are not for it.
    pub(crate) fn stop(&mut self, log: &BroadcastLog) {
        self.limit.get_or_insert(log.end());
    }

    /// Follows the log again, from its end: lines pushed from now on are
    /// for it, those before are not.
    pub(crate) fn follow(&mut self, log: &BroadcastLog) {
        self.limit = None;
        self.cursor = log.end();
    }

    /// Drops everything not yet read.
    pub(crate) fn discard(&mut self, log: &BroadcastLog) {
        self.stop(log);
        self.cursor = self.limit.unwrap_or(self.cursor);
        self.private = VecDeque::new();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn drained(log: &BroadcastLog, conn: ConnId, queue: &mut OutgoingQueue) -> Vec<Bytes> {
        let mut out = Vec::new();
        let (bytes, lines) = log.drain(conn, queue, &mut out);
        assert_eq!(bytes, out.iter().map(Bytes::len).sum::<usize>());
        assert_eq!(lines, out.len());
        out
    }

    #[test]
    fn private_lines_keep_their_place_among_broadcasts() {
        let (a, b) = (ConnId(1), ConnId(2));
        let mut log = BroadcastLog::new(LOG_LINES);
        let mut queue = log.queue();
        log.push(a, Bytes::from_static(b"1"));
        queue.push(&log, Bytes::from_static(b"p1"));
        log.push(a, Bytes::from_static(b"2"));
        log.push(b, Bytes::from_static(b"own"));
        queue.push(&log, Bytes::from_static(b"p2"));
        queue.push(&log, Bytes::from_static(b"p3"));
        log.push(a, Bytes::from_static(b"3"));
        assert_eq!(
            drained(&log, b, &mut queue),
            ["1", "p1", "2", "p2", "p3", "3"]
        );
        assert!(drained(&log, b, &mut queue).is_empty());
    }

    #[test]
    fn a_detached_queue_reads_the_same_after_the_log_is_emptied() {
        let (a, b) = (ConnId(1), ConnId(2));
        let mut log = BroadcastLog::new(LOG_LINES);
        let mut queue = log.queue();
        log.push(a, Bytes::from_static(b"1"));
        queue.push(&log, Bytes::from_static(b"p1"));
        log.push(b, Bytes::from_static(b"own"));
        log.push(a, Bytes::from_static(b"2"));
        log.detach(b, &mut queue);
        log.trim(log.end());
        queue.push(&log, Bytes::from_static(b"p2"));
        log.push(a, Bytes::from_static(b"3"));
        assert_eq!(drained(&log, b, &mut queue), ["1", "p1", "2", "p2", "3"]);
    }

    #[test]
    fn a_stopped_queue_gets_nothing_pushed_later() {
        let (a, b) = (ConnId(1), ConnId(2));
        let mut log = BroadcastLog::new(LOG_LINES);
        let mut queue = log.queue();
        log.push(a, Bytes::from_static(b"1"));
        queue.push(&log, Bytes::from_static(b"bye"));
        queue.stop(&log);
        log.push(a, Bytes::from_static(b"2"));
        assert_eq!(drained(&log, b, &mut queue), ["1", "bye"]);
        let mut dropped = log.queue();
        log.push(a, Bytes::from_static(b"3"));
        dropped.push(&log, Bytes::from_static(b"p"));
        dropped.discard(&log);
        log.push(a, Bytes::from_static(b"4"));
        assert!(drained(&log, b, &mut dropped).is_empty());
    }
}
