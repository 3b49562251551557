//! The one [`Server`] of a process, and what the driver knows of each
//! connection: turns the core's outputs into wake-ups, paused readers,
//! socket shutdowns and log lines, and runs the core's timer. Only this
//! module and its [`Task`] call the hub: every other task does through a
//! `Task`, which writes what each call left to write.

mod limits;
mod state;
mod task;

use limits::{Limit, TimeLimits};
use state::{Conn, State};
pub(crate) use task::Task;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::os::fd::AsFd;
use std::sync::atomic::AtomicUsize;
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::task::Waker;
use std::time::{Duration, Instant};

use chat_core::cluster::{CallId, Reply};
use chat_core::{Bytes, ConnId, Event, Server};
use tracing::{debug, info};

use crate::cluster::link::RedisLink;
use crate::log_budget::LogBudget;
use crate::notify::Notify;
use crate::stream::Stream;

/// How long a flushing close may take before the socket is shut down anyway.
pub(crate) const FLUSH_LIMIT: Duration = Duration::from_secs(1);

/// A connection as its reader and writer see it.
#[derive(Debug)]
pub(crate) struct Link<S> {
    pub(crate) id: ConnId,
    pub(crate) stream: Stream<S>,
    /// Wakes a reader that waits while the core has stopped reading (see
    /// [`Hub::received`]): reading resumed, or the connection is closing.
    pub(crate) resume: Notify,
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
    /// Nothing to write, and the writer is released: it ends, and the next
    /// output starts another.
    Idle,
    /// The connection is closing and the core's last output was taken:
    /// end the stream (`Stream::close_notify`), write what that leaves,
    /// then the writer is done.
    Finish,
    /// Nothing more is to be written: the writer is done.
    Done,
}

/// Work that a hub call leaves to do after the lock is released, so the
/// lock is held only for the core's own work. Each [`Task`] keeps one and
/// reuses it.
#[derive(Debug)]
struct After<S> {
    wake: Vec<Waker>,
    events: Vec<Event>,
    /// Connections with output and no writer: the task writes to them
    /// without blocking, see `Task::write_queued`.
    to_write: Vec<Arc<Link<S>>>,
}

impl<S> Default for After<S> {
    fn default() -> Self {
        After {
            wake: Vec::new(),
            events: Vec::new(),
            to_write: Vec::new(),
        }
    }
}

impl<S> After<S> {
    fn run(&mut self) {
        self.wake.drain(..).for_each(Waker::wake);
        self.events.drain(..).for_each(log_event);
    }
}

/// The server and the connections of one process, behind one lock that
/// every connection's tasks share. Its calls leave work in an [`After`],
/// for their [`Task`] to do once the lock is released.
#[derive(Debug)]
pub(crate) struct Hub<S> {
    state: Mutex<State<S>>,
    /// Signalled when the last connection is closed.
    idle: Condvar,
    /// Signalled when a deadline comes before `State::timer_wake`.
    timer: Condvar,
    /// Signalled when Redis answers a call (see [`Hub::wait_room`]).
    answered: Condvar,
    /// Tasks started to share writes that are not done (see
    /// `Runtime::SHARE_WRITES`).
    sharing: AtomicUsize,
    /// Tasks that could not start, for their warning: a connection storm
    /// past a thread cap refuses thousands at once.
    refused: Mutex<LogBudget>,
    /// How long a TLS client may take to finish its handshake.
    handshake_timeout: Duration,
}

impl<S: AsFd> Hub<S> {
    /// A hub for a new server; TLS clients get `handshake_timeout` (if
    /// there is a TLS listener) to finish their handshake.
    #[cfg(test)]
    pub(crate) fn new(
        config: chat_core::Config,
        seed: u64,
        handshake_timeout: Option<Duration>,
    ) -> Hub<S> {
        Hub::with_server(Server::new(config, seed), handshake_timeout, None)
    }

    /// A hub for `server`, which is a node of a shared room if `redis`
    /// runs its calls.
    pub(crate) fn with_server(
        server: Server,
        handshake_timeout: Option<Duration>,
        redis: Option<Arc<RedisLink>>,
    ) -> Hub<S> {
        Hub {
            state: Mutex::new(State {
                server,
                conns: HashMap::new(),
                limits: TimeLimits::default(),
                timer_wake: None,
                redis,
            }),
            idle: Condvar::new(),
            timer: Condvar::new(),
            answered: Condvar::new(),
            sharing: AtomicUsize::new(0),
            refused: Mutex::default(),
            handshake_timeout: handshake_timeout.unwrap_or(Duration::MAX),
        }
    }

    fn lock(&self) -> MutexGuard<'_, State<S>> {
        // A panic elsewhere leaves the core consistent between calls.
        crate::lock(&self.state)
    }

    /// Runs `f` on the state with the lock held, dispatches the outputs it
    /// caused, then does the wake-ups and logging without the lock.
    fn with<T>(
        &self,
        after: &mut After<S>,
        f: impl FnOnce(&mut State<S>, Instant, &mut After<S>) -> T,
    ) -> T {
        let mut state = self.lock();
        // Taken under the lock, so the core sees time move forward only.
        let now = Instant::now();
        let value = f(&mut state, now, after);
        self.release(state, now, after);
        value
    }

    /// Dispatches the outputs of the calls made under `state`, signals the
    /// timer and `wait_idle` if they should know, releases the lock, then
    /// does the wake-ups and logging.
    fn release(&self, mut state: MutexGuard<'_, State<S>>, now: Instant, after: &mut After<S>) {
        state.dispatch(now, after);
        let next = state.next_deadline();
        let earlier = next.is_some_and(|at| state.timer_wake.is_none_or(|wake| at < wake));
        if earlier {
            state.timer_wake = next;
        }
        let idle = state.conns.is_empty();
        drop(state);
        // The timer and `wait_idle` check under the lock before they wait,
        // so signalling after releasing it loses nothing.
        if earlier {
            self.timer.notify_one();
        }
        if idle {
            self.idle.notify_all();
        }
        after.run();
    }

    /// Takes new connections in, under one lock; their readers and writers
    /// then use the links.
    fn connect(
        &self,
        accepted: impl Iterator<Item = (Stream<S>, SocketAddr)>,
        after: &mut After<S>,
    ) -> Vec<Arc<Link<S>>> {
        self.with(after, |state, now, _| {
            accepted
                .map(|(stream, peer)| {
                    // A TLS client joins once its handshake is over: a
                    // peer that never finishes one is never announced.
                    let handshaking = stream.is_tls();
                    let id = if handshaking {
                        state.server.handle_accept(now, peer)
                    } else {
                        state.server.handle_connect(now, peer)
                    };
                    if handshaking {
                        let limit = now.checked_add(self.handshake_timeout);
                        state.limits.start(Limit::Handshake, limit, id);
                    }
                    let link = Arc::new(Link {
                        id,
                        stream,
                        resume: Notify::default(),
                    });
                    let entry = Conn {
                        link: link.clone(),
                        // A writer only while there is output.
                        reading: true,
                        writing: false,
                        closing: false,
                        aborted: false,
                        paused: false,
                        handshaking,
                        session_output: false,
                    };
                    state.conns.insert(id, entry);
                    link
                })
                .collect()
        })
    }

    /// Bytes read from the connection. Returns whether the core wants no
    /// more read for now: the reader then waits for `link.resume` and reads
    /// again once [`Hub::paused`] says so.
    fn received(&self, link: &Link<S>, bytes: &[u8], after: &mut After<S>) -> bool {
        self.with(after, |state, now, after| {
            state.server.handle_bytes(now, link.id, bytes);
            // Dispatched here, so that a `StopReading` this caused counts.
            state.dispatch(now, after);
            state.conns.get(&link.id).is_some_and(|entry| entry.paused)
        })
    }

    /// Whether the core still wants the connection's socket left unread.
    /// A resume notify may be stale (several before one wait count once),
    /// so a woken reader asks this before reading.
    fn paused(&self, link: &Link<S>) -> bool {
        let state = self.lock();
        state.conns.get(&link.id).is_some_and(|entry| entry.paused)
    }

    /// The client closed its side, and the reader ends. That stops
    /// nothing: the core may still handle lines of the client, and closes
    /// it after them.
    fn eof(&self, link: &Link<S>, after: &mut After<S>) {
        self.with(after, |state, now, after| {
            state.server.handle_eof(now, link.id);
            // Dispatched first, so that a `Close` this caused counts.
            state.dispatch(now, after);
            if let Some(entry) = state.conns.get_mut(&link.id) {
                entry.reading = false;
                state.reap(link.id, now);
            }
        });
    }

    /// Reports `written` bytes (of what an earlier call gave) as written,
    /// then moves what the connection should write next into `chunks`
    /// (which the caller empties after writing them). One lock for both,
    /// since a writer reports its last write and takes more at once.
    fn take(
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
            } else if entry.closing {
                Next::Finish
            } else if std::mem::take(&mut entry.session_output) {
                // Nothing of the core's: the writer writes the session's.
                Next::Write
            } else {
                // Possibly the last task, if the reader ended on EOF: the
                // entry then stays until the core's `Close` starts a writer.
                entry.writing = false;
                Next::Idle
            }
        })
    }

    /// The connection's TLS handshake is over (the reader has written all
    /// of it): the client joins, and the core's output, held back until
    /// now, can be written.
    fn handshaken(&self, link: &Link<S>, after: &mut After<S>) {
        self.with(after, |state, now, after| {
            state.server.handle_ready(now, link.id);
            if let Some(entry) = state.conns.get_mut(&link.id) {
                entry.handshaking = false;
                entry.wake(after);
            }
        });
    }

    /// The connection's TLS session has something of its own to send (a
    /// reply the reader's input caused): the write path sends it.
    fn send_session(&self, link: &Link<S>, after: &mut After<S>) {
        self.with(after, |state, _, after| {
            if let Some(entry) = state.conns.get_mut(&link.id) {
                // A running writer may have written the session's output
                // just before it was made: it is told not to stop yet.
                entry.session_output = entry.writing;
                entry.wake(after);
            }
        });
    }

    /// `len` bytes of what [`Hub::take`] gave were written.
    fn written(&self, link: &Link<S>, len: usize, after: &mut After<S>) {
        self.with(after, |state, now, _| {
            state.server.handle_written(now, link.id, len)
        });
    }

    /// `len` bytes of what [`Hub::take`] gave were written, and the socket
    /// took no more: it is full (see `Server::handle_blocked`).
    fn blocked(&self, link: &Link<S>, len: usize, after: &mut After<S>) {
        self.with(after, |state, now, _| {
            if len > 0 {
                state.server.handle_written(now, link.id, len);
            }
            state.server.handle_blocked(now, link.id);
        });
    }

    /// One task of the connection is done, other than a reader on EOF (see
    /// [`Hub::eof`]). When the writer is done, or the reader is on a read
    /// error with no flushing close under way, the other task is stopped
    /// too. Once the connection is closing and no task runs, the core is
    /// told it is closed.
    fn finished(&self, link: &Link<S>, half: Half, after: &mut After<S>) {
        self.with(after, |state, now, after| {
            let Some(entry) = state.conns.get_mut(&link.id) else {
                return;
            };
            if half == Half::Writer || !entry.closing {
                entry.abort(after);
            }
            match half {
                Half::Reader => entry.reading = false,
                Half::Writer => entry.writing = false,
            }
            state.reap(link.id, now);
        });
    }

    /// Dispatches what the core asked for before any input: a node's hello.
    fn start(&self, after: &mut After<S>) {
        self.with(after, |_, _, _| {});
    }

    /// The reply to the core's call `id` on Redis.
    fn cluster_reply(&self, id: CallId, reply: Reply, after: &mut After<S>) {
        self.with(after, |state, now, _| {
            state.server.handle_cluster_reply(now, id, reply);
        });
        self.answered.notify_all();
    }

    /// On a node of a shared room: waits up to `limit` for the room to
    /// answer its hello; whether it did.
    fn wait_room(&self, limit: Duration) -> bool {
        let state = self.lock();
        let waiting = |state: &mut State<S>| state.server.cluster_up() == Some(false);
        let (mut state, _) = self
            .answered
            .wait_timeout_while(state, limit, waiting)
            .unwrap_or_else(PoisonError::into_inner);
        !waiting(&mut state)
    }

    /// The link to Redis failed: what the core asked before is dropped
    /// unrun (see `cluster::link`), and the core is told.
    fn cluster_down(&self, after: &mut After<S>) {
        self.with(after, |state, now, _| {
            if let Some(redis) = &state.redis {
                redis.drop_queued();
            }
            state.server.handle_cluster_down(now);
        });
    }

    /// On shutdown, a node of a shared room: waits up to `limit` for the
    /// calls asked so far (its leave) to be run.
    fn wait_redis(&self, limit: Duration) -> bool {
        let redis = self.lock().redis.clone();
        redis.is_none_or(|redis| redis.wait_drained(limit))
    }

    /// Waits until the core's timer or a time limit of the driver's is
    /// due, exactly, then runs the one and acts on the other. Waits without
    /// a limit while neither is pending; a call that makes a deadline earlier
    /// than the one waited for wakes it (see [`Hub::release`]).
    fn tick(&self, after: &mut After<S>) {
        let mut state = self.lock();
        let now = loop {
            let now = Instant::now();
            let next = state.next_deadline();
            if next.is_some_and(|at| at <= now) {
                break now;
            }
            state.timer_wake = next;
            state = match next {
                Some(at) => {
                    self.timer
                        .wait_timeout(state, at.saturating_duration_since(now))
                        .unwrap_or_else(PoisonError::into_inner)
                        .0
                }
                None => self
                    .timer
                    .wait(state)
                    .unwrap_or_else(PoisonError::into_inner),
            };
        };
        // Running: nothing needs to wake it until it waits again.
        state.timer_wake = Some(now);
        if state.server.poll_timeout().is_some_and(|at| at <= now) {
            state.server.handle_timeout(now);
        }
        state.expire_limits(now, after);
        self.release(state, now, after);
    }

    /// Tells every client the server is shutting down and closes them all,
    /// flushing.
    fn shutdown(&self, after: &mut After<S>) {
        self.with(after, |state, now, _| state.server.handle_shutdown(now));
    }

    /// What the core holds for the connection: see `Server::pending_bytes`.
    #[cfg(test)]
    fn pending_bytes(&self, link: &Link<S>) -> Option<usize> {
        self.lock().server.pending_bytes(link.id)
    }

    /// Waits until no connection is left or `limit` has passed; true if none is left.
    fn wait_idle(&self, limit: Duration) -> bool {
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
        Event::Joined {
            conn,
            peer,
            nick,
            quiet: true,
            ..
        } => debug!(%conn, %peer, %nick, "joined"),
        Event::Joined {
            conn,
            peer,
            nick,
            unlogged: 0,
            ..
        } => info!(%conn, %peer, %nick, "joined"),
        Event::Joined {
            conn,
            peer,
            nick,
            unlogged,
            ..
        } => info!(%conn, %peer, %nick, unlogged, "joined"),
        Event::Rejected {
            conn,
            peer,
            reason,
            unlogged: 0,
        } => info!(%conn, %peer, %reason, "rejected"),
        Event::Rejected {
            conn,
            peer,
            reason,
            unlogged,
        } => info!(%conn, %peer, %reason, unlogged, "rejected"),
        Event::Unlogged {
            address,
            refusals,
            joins,
        } => info!(%address, refusals, joins, "not logged"),
        Event::Renamed { conn, from, to } => info!(%conn, %from, %to, "renamed"),
        Event::Left {
            conn,
            nick,
            reason,
            quiet: true,
        } => debug!(%conn, %nick, %reason, "left"),
        Event::Left {
            conn, nick, reason, ..
        } => info!(%conn, %nick, %reason, "left"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::Threads;
    use chat_core::Config;
    use std::net::{TcpListener, TcpStream};
    use std::pin::pin;
    use std::task::Context;

    /// Flood control on loopback: one line at once, then one per `INTERVAL`.
    const INTERVAL: Duration = Duration::from_millis(50);

    fn task(flood_excess: usize) -> Task<Threads> {
        let config = Config {
            flood: Some(chat_core::Rate {
                burst: 1,
                interval: INTERVAL,
            }),
            flood_excess,
            limit_loopback: true,
            ..Config::default()
        };
        Task::new(Arc::new(Hub::new(config, 7, None)))
    }

    /// Connects a client; returns the server side's link and the client.
    /// Connects a client, with no reader task: the test reads for it.
    fn connect(task: &mut Task<Threads>) -> (Arc<Link<TcpStream>>, TcpStream) {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let client = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let accepted = listener.accept().unwrap();
        let (socket, peer) = accepted;
        let link = task
            .connect(std::iter::once((Stream::plain(socket), peer)))
            .remove(0);
        (link, client)
    }

    fn resumed(link: &Link<TcpStream>) -> bool {
        let mut cx = Context::from_waker(Waker::noop());
        pin!(link.resume.wait()).poll(&mut cx).is_ready()
    }

    #[test]
    fn a_flooding_reader_pauses_until_its_lines_are_handled() {
        let mut task = task(100);
        let (link, _client) = connect(&mut task);
        let start = Instant::now();
        assert!(task.received(&link, b"a\nb\nc\n"));
        assert!(task.paused(&link) && !resumed(&link));
        // b, then c, each when it is due: the timer sleeps until then.
        let mut ticks = 0;
        while task.paused(&link) {
            task.tick();
            ticks += 1;
        }
        assert!(start.elapsed() >= 2 * INTERVAL, "{:?}", start.elapsed());
        assert!(ticks <= 2, "{ticks} ticks");
        assert!(resumed(&link));
    }

    #[test]
    fn closing_releases_a_paused_reader() {
        let mut task = task(1);
        let (link, _client) = connect(&mut task);
        assert!(task.received(&link, b"a\nb\n"));
        // Two held lines is one too many: the core closes the connection.
        assert!(!task.received(&link, b"c\n"));
        assert!(!task.paused(&link) && resumed(&link));
        assert!(task.hub.lock().conns[&link.id].closing);
    }

    #[test]
    fn eof_waits_for_held_lines() {
        let mut task = task(100);
        let (link, _client) = connect(&mut task);
        assert!(task.received(&link, b"a\nb\n"));
        task.eof(&link);
        {
            // No task runs, yet the connection stays for its held line.
            let state = task.hub.lock();
            let conn = &state.conns[&link.id];
            assert_eq!(
                (conn.reading, conn.writing, conn.closing, conn.aborted),
                (false, false, false, false)
            );
        }
        // b is handled, then the core closes the connection; once what it
        // had to write is written the connection is gone.
        task.tick();
        assert!(task.wait_idle(Duration::ZERO));
    }

    #[test]
    fn the_timer_wakes_for_an_earlier_deadline() {
        let mut task = task(100);
        let (sender, ticked) = std::sync::mpsc::channel();
        let mut timer = task.sibling();
        // Nothing is pending: it waits without a limit.
        std::thread::spawn(move || {
            timer.tick();
            let _ = sender.send(Instant::now());
        });
        std::thread::sleep(INTERVAL);
        let (link, _client) = connect(&mut task);
        let start = Instant::now();
        assert!(task.received(&link, b"a\nb\n"));
        let at = ticked.recv_timeout(Duration::from_secs(5)).unwrap();
        assert!(at >= start + INTERVAL / 2, "{:?}", at - start);
    }
}
