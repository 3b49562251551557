//! The one [`Server`] of a process, and what the driver knows of each
//! connection: turns the core's outputs into wake-ups, socket shutdowns and
//! log lines.

use std::collections::HashMap;
use std::net::{Shutdown, SocketAddr};
use std::os::fd::AsFd;
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::task::Waker;
use std::time::{Duration, Instant};

use chat_core::{Bytes, Config, ConnId, Event, Output, Server};
use socket2::SockRef;
use tracing::{debug, info};

use crate::notify::Notify;

/// How long a flushing close may take before the socket is shut down anyway.
pub(crate) const FLUSH_LIMIT: Duration = Duration::from_secs(1);

/// A connection as its reader and writer see it.
#[derive(Debug)]
pub(crate) struct Link<S> {
    pub(crate) id: ConnId,
    pub(crate) stream: S,
    /// Wakes the writer: there is output, or the connection is closing.
    pub(crate) notify: Notify,
}

/// Which task of a connection is done.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Half {
    Reader,
    Writer,
}

/// What a writer should do next.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Next {
    /// Write the chunks it was given.
    Write,
    /// Nothing to write: wait to be notified.
    Wait,
    /// Nothing to write, and the writer is released: with lazy writers it
    /// ends, and the next output starts another.
    Idle,
    /// The connection is closing and all that should be written was.
    Done,
}

/// Work that a hub call leaves to do after the lock is released, so the
/// lock is held only for the core's own work. Each task keeps one and
/// reuses it.
#[derive(Debug)]
pub(crate) struct After<S> {
    wake: Vec<Waker>,
    events: Vec<Event>,
    /// Connections with output and no writer (lazy writers only): the
    /// caller writes to them without blocking, see `chat_runtime::settle`.
    pub(crate) flush: Vec<Arc<Link<S>>>,
}

impl<S> Default for After<S> {
    fn default() -> Self {
        After {
            wake: Vec::new(),
            events: Vec::new(),
            flush: Vec::new(),
        }
    }
}

impl<S> After<S> {
    fn run(&mut self) {
        self.wake.drain(..).for_each(Waker::wake);
        self.events.drain(..).for_each(log_event);
    }
}

#[derive(Debug)]
struct Entry<S> {
    link: Arc<Link<S>>,
    /// Reader and writer tasks still running.
    running: u8,
    /// Since when the core wants the connection closed.
    closing: Option<Instant>,
    /// Nothing more is to be written: the core dropped the output, or the
    /// socket failed or was shut down.
    aborted: bool,
    /// A writer is running (lazy writers only; otherwise it always is).
    writing: bool,
}

impl<S: AsFd> Entry<S> {
    /// Gets the writer going: wakes it, or with lazy writers hands the
    /// connection to the caller to write to if no writer is running.
    fn wake(&mut self, lazy: bool, after: &mut After<S>) {
        if !lazy {
            after.wake.extend(self.link.notify.notify());
        } else if !self.writing && !self.aborted {
            self.writing = true;
            self.running += 1;
            after.flush.push(self.link.clone());
        }
    }

    /// Shuts the socket down, which ends a blocked read or write on it, and
    /// tells the writer to stop.
    fn abort(&mut self, now: Instant, after: &mut After<S>) {
        if !self.aborted {
            self.aborted = true;
            self.closing.get_or_insert(now);
            // Fails only if the peer is already gone, which is the goal.
            let _ = SockRef::from(&self.link.stream).shutdown(Shutdown::Both);
            // A waiting writer must see it; a lazy one is not waiting.
            after.wake.extend(self.link.notify.notify());
        }
    }
}

#[derive(Debug)]
struct State<S> {
    server: Server,
    conns: HashMap<ConnId, Entry<S>>,
    /// Writers run only while there is output (see `Runtime::LAZY_WRITERS`).
    lazy: bool,
}

impl<S: AsFd> State<S> {
    /// Drains the core's outputs (run loop step 3).
    fn dispatch(&mut self, now: Instant, after: &mut After<S>) {
        while let Some(output) = self.server.poll_output() {
            match output {
                Output::Transmit(conn) => {
                    if let Some(entry) = self.conns.get_mut(&conn) {
                        entry.wake(self.lazy, after);
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
                    if flush {
                        entry.closing.get_or_insert(now);
                        entry.wake(self.lazy, after);
                    } else {
                        entry.abort(now, after);
                    }
                }
                Output::Event(event) => after.events.push(*event),
            }
        }
    }
}

/// The server and the connections of one process, behind one lock that
/// every connection's tasks share.
#[derive(Debug)]
pub(crate) struct Hub<S> {
    state: Mutex<State<S>>,
    /// Signalled when the last connection is closed.
    idle: Condvar,
}

impl<S: AsFd> Hub<S> {
    /// `lazy`: see `Runtime::LAZY_WRITERS`.
    pub(crate) fn new(config: Config, seed: u64, lazy: bool) -> Hub<S> {
        Hub {
            state: Mutex::new(State {
                server: Server::new(config, seed),
                conns: HashMap::new(),
                lazy,
            }),
            idle: Condvar::new(),
        }
    }

    fn lock(&self) -> MutexGuard<'_, State<S>> {
        // A panic elsewhere leaves the core consistent between calls.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Runs `f` on the state with the lock held, dispatches the outputs it
    /// caused, then does the wake-ups and logging without the lock.
    fn with<T>(
        &self,
        after: &mut After<S>,
        f: impl FnOnce(&mut State<S>, Instant, &mut After<S>) -> T,
    ) -> T {
        let mut state = self.lock();
        let now = Instant::now();
        let value = f(&mut state, now, after);
        state.dispatch(now, after);
        drop(state);
        after.run();
        value
    }

    /// Takes new connections in, under one lock; their readers and writers
    /// then use the links.
    pub(crate) fn connect(
        &self,
        accepted: impl Iterator<Item = (S, SocketAddr)>,
        after: &mut After<S>,
    ) -> Vec<Arc<Link<S>>> {
        self.with(after, |state, now, _| {
            accepted
                .map(|(stream, peer)| {
                    let id = state.server.handle_connect(now, peer);
                    let link = Arc::new(Link {
                        id,
                        stream,
                        notify: Notify::default(),
                    });
                    // The reader, and the writer unless it starts lazily.
                    let running = if state.lazy { 1 } else { 2 };
                    let entry = Entry {
                        link: link.clone(),
                        running,
                        closing: None,
                        aborted: false,
                        writing: !state.lazy,
                    };
                    state.conns.insert(id, entry);
                    link
                })
                .collect()
        })
    }

    /// Bytes read from the connection.
    pub(crate) fn received(&self, link: &Link<S>, bytes: &[u8], after: &mut After<S>) {
        self.with(after, |state, now, _| {
            state.server.handle_bytes(now, link.id, bytes)
        });
    }

    /// The client closed its side.
    pub(crate) fn eof(&self, link: &Link<S>, after: &mut After<S>) {
        self.with(after, |state, now, _| state.server.handle_eof(now, link.id));
    }

    /// Reports `written` bytes (of what an earlier call gave) as written,
    /// then moves what the connection should write next into `chunks`
    /// (which the caller empties after writing them). One lock for both,
    /// since a writer reports its last write and takes more at once.
    pub(crate) fn take(
        &self,
        link: &Link<S>,
        written: usize,
        chunks: &mut Vec<Bytes>,
        after: &mut After<S>,
    ) -> Next {
        self.with(after, |state, now, _| {
            if written > 0 {
                state.server.handle_written(now, link.id, written);
            }
            let Some(entry) = state.conns.get_mut(&link.id) else {
                return Next::Done;
            };
            if entry.aborted {
                return Next::Done;
            }
            state.server.poll_transmit(link.id, chunks);
            if !chunks.is_empty() {
                Next::Write
            } else if entry.closing.is_some() {
                Next::Done
            } else if state.lazy {
                // The reader still runs (else the entry would be aborted),
                // so this is never the last task of the connection.
                entry.writing = false;
                entry.running -= 1;
                Next::Idle
            } else {
                Next::Wait
            }
        })
    }

    /// `len` bytes of what [`Hub::take`] gave were written.
    pub(crate) fn written(&self, link: &Link<S>, len: usize, after: &mut After<S>) {
        self.with(after, |state, now, _| {
            state.server.handle_written(now, link.id, len)
        });
    }

    /// One task of the connection is done. When the writer is done, or the
    /// reader is and no flushing close is under way (the socket failed), the
    /// other task is stopped too; when both are done, the core is told the
    /// connection is closed.
    pub(crate) fn finished(&self, link: &Link<S>, half: Half, after: &mut After<S>) {
        self.with(after, |state, now, after| {
            let Some(entry) = state.conns.get_mut(&link.id) else {
                return;
            };
            if half == Half::Writer || entry.closing.is_none() {
                entry.abort(now, after);
            }
            entry.running -= 1;
            if entry.running == 0 {
                state.conns.remove(&link.id);
                state.server.handle_closed(now, link.id);
                if state.conns.is_empty() {
                    self.idle.notify_all();
                }
            }
        });
    }

    /// Runs the core's timer if it is due and stops flushes that took too
    /// long; returns how long to wait before calling again.
    pub(crate) fn tick(&self, after: &mut After<S>) -> Duration {
        const MAX_WAIT: Duration = Duration::from_millis(250);
        self.with(after, |state, now, after| {
            if state.server.poll_timeout().is_some_and(|at| at <= now) {
                state.server.handle_timeout(now);
            }
            for entry in state.conns.values_mut() {
                if entry
                    .closing
                    .is_some_and(|since| now.saturating_duration_since(since) >= FLUSH_LIMIT)
                {
                    entry.abort(now, after);
                }
            }
            let until_timer = state
                .server
                .poll_timeout()
                .map(|at| at.saturating_duration_since(now));
            until_timer.map_or(MAX_WAIT, |wait| wait.min(MAX_WAIT))
        })
    }

    /// Tells every client the server is shutting down and closes them all,
    /// flushing.
    pub(crate) fn shutdown(&self, after: &mut After<S>) {
        self.with(after, |state, now, _| state.server.handle_shutdown(now));
    }

    /// Waits until no connection is left or `limit` has passed; true if none is left.
    pub(crate) fn wait_idle(&self, limit: Duration) -> bool {
        let state = self.lock();
        let (state, _) = self
            .idle
            .wait_timeout_while(state, limit, |state| !state.conns.is_empty())
            .unwrap_or_else(PoisonError::into_inner);
        state.conns.is_empty()
    }
}

fn log_event(event: Event) {
    match event {
        Event::Joined { conn, peer, nick } => info!(%conn, %peer, %nick, "joined"),
        Event::Rejected { conn, peer, reason } => info!(%conn, %peer, %reason, "rejected"),
        Event::Renamed { conn, from, to } => info!(%conn, %from, %to, "renamed"),
        Event::Left { conn, nick, reason } => info!(%conn, %nick, %reason, "left"),
    }
}
