//! The link to Redis: two threads of their own, as the timer and the
//! signal watcher have, so it works the same on every runtime. The writer
//! runs the core's calls in order on one connection; the reader runs its
//! reads of the log on another, waiting (`XREAD BLOCK`) for entries.
//!
//! A call that fails (an error, no answer within [`CALL_TIMEOUT`], a
//! dropped connection) is reported to the core as the link down
//! (`handle_cluster_down`): every call out is then void, and the core asks
//! for a hello. The calls it asked for before that are dropped unrun, so
//! that the hello is the first call on the new connection: the queue is
//! emptied under the hub's lock, which every request is queued under too.
//! Reconnecting backs off (100 ms doubling to 5 s, with jitter), so a
//! node whose Redis is away never spins.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

use chat_core::cluster::{Call, Reply, Request};
use redis::{Client, Connection};
use tracing::{debug, info, warn};

use super::calls::RedisRoom;
use crate::Runtime;
use crate::hub::Task;

/// How long a call may take before the link is taken for down.
const CALL_TIMEOUT: Duration = Duration::from_secs(2);
/// How long connecting may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(1);
/// How long one blocking read of the log waits for an entry before it
/// checks that it is still wanted and asks again.
const READ_WAIT: Duration = Duration::from_secs(1);
/// The first pause after a failure, and the longest.
const BACKOFF: (Duration, Duration) = (Duration::from_millis(100), Duration::from_secs(5));

/// Where the room is kept (`--redis` and the flags with it).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RedisSettings {
    /// The server, as a `redis://` URL.
    pub url: String,
    /// This node's name (`--node`).
    pub node: String,
    /// The room's keys start with `{PREFIX}:`.
    pub prefix: String,
    /// Entries the log keeps.
    pub history: usize,
}

/// The calls waiting for the link's threads: the hub puts them here (under
/// its lock, see [`RedisLink::send`]), the threads take them.
#[derive(Debug, Default)]
pub(crate) struct RedisLink {
    queue: Mutex<Queue>,
    /// The last call of either thread failed (for the log: one line when
    /// the link goes down, one when it comes back, whichever thread sees it).
    down: AtomicBool,
    /// Signalled when a call or a read is put in the queue, or the writer
    /// is done with the queue.
    ready: Condvar,
}

#[derive(Debug, Default)]
struct Queue {
    calls: VecDeque<Request>,
    /// The core's read of the log (one at a time).
    read: Option<Request>,
    /// The writer runs a call.
    running: bool,
}

impl RedisLink {
    /// Hands the core's `request` to the thread that runs it. Called under
    /// the hub's lock, so that requests and link downs keep the core's
    /// order.
    pub(crate) fn send(&self, request: Request) {
        let mut queue = crate::lock(&self.queue);
        if let Call::Read { .. } = request.call {
            queue.read = Some(request);
        } else {
            queue.calls.push_back(request);
        }
        drop(queue);
        self.ready.notify_all();
    }

    /// The link went down: what was asked for before now is dropped unrun
    /// (a read running now is answered into the void, see
    /// [`RedisLink::still_wanted`]). Called under the hub's lock, before the
    /// core is told.
    pub(crate) fn drop_queued(&self) {
        let mut queue = crate::lock(&self.queue);
        queue.calls.clear();
        queue.read = None;
    }

    /// The writer's next call, waiting for one.
    fn next_call(&self) -> Request {
        let mut queue = crate::lock(&self.queue);
        loop {
            if let Some(request) = queue.calls.pop_front() {
                queue.running = true;
                return request;
            }
            queue = self
                .ready
                .wait(queue)
                .unwrap_or_else(std::sync::PoisonError::into_inner);
        }
    }

    /// The writer finished a call.
    fn call_done(&self) {
        crate::lock(&self.queue).running = false;
        self.ready.notify_all();
    }

    /// The read of the log to run, waiting for one.
    fn next_read(&self) -> Request {
        let mut queue = crate::lock(&self.queue);
        loop {
            // It stays until answered or replaced (see `still_wanted`).
            if let Some(request) = &queue.read {
                return request.clone();
            }
            queue = self
                .ready
                .wait(queue)
                .unwrap_or_else(std::sync::PoisonError::into_inner);
        }
    }

    /// Whether the read `id` is still the one wanted.
    fn still_wanted(&self, id: chat_core::cluster::CallId) -> bool {
        let queue = crate::lock(&self.queue);
        queue.read.as_ref().is_some_and(|request| request.id == id)
    }

    /// The read `id` is answered.
    fn read_done(&self, id: chat_core::cluster::CallId) {
        let mut queue = crate::lock(&self.queue);
        if queue.read.as_ref().is_some_and(|request| request.id == id) {
            queue.read = None;
        }
    }

    /// Waits up to `limit` for the writer to run every call asked for (on
    /// shutdown: the node's leave); whether it did.
    pub(crate) fn wait_drained(&self, limit: Duration) -> bool {
        let queue = crate::lock(&self.queue);
        let busy = |queue: &mut Queue| queue.running || !queue.calls.is_empty();
        let (mut queue, _) = self
            .ready
            .wait_timeout_while(queue, limit, busy)
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        !busy(&mut queue)
    }
}

/// Starts the writer and the reader for `link`, on the room `settings`
/// says; each reports to the core through its own task.
pub(crate) fn start<R: Runtime>(
    link: Arc<RedisLink>,
    settings: &RedisSettings,
    task: &Task<R>,
    seed: u64,
) -> std::io::Result<()> {
    let client = Client::open(settings.url.as_str()).map_err(std::io::Error::other)?;
    for (name, reads) in [("redis-writer", false), ("redis-reader", true)] {
        let worker = Worker {
            link: link.clone(),
            client: client.clone(),
            room: RedisRoom::new(&settings.prefix, settings.history),
            task: task.sibling(),
            connection: None,
            backoff: Backoff::new(seed ^ u64::from(reads)),
        };
        std::thread::Builder::new()
            .name(name.into())
            .spawn(move || {
                let mut worker = worker;
                loop {
                    if reads {
                        worker.read_once();
                    } else {
                        worker.call_once();
                    }
                }
            })?;
    }
    Ok(())
}

/// One of the link's threads.
struct Worker<R: Runtime> {
    link: Arc<RedisLink>,
    client: Client,
    room: RedisRoom,
    task: Task<R>,
    connection: Option<Connection>,
    backoff: Backoff,
}

impl<R: Runtime> Worker<R> {
    /// Runs the next call and reports its reply, or the link down.
    fn call_once(&mut self) {
        let request = self.link.next_call();
        let reply = self
            .connected()
            .and_then(|(room, con)| room.run(con, &request.call));
        self.link.call_done();
        match reply {
            Ok(reply) => {
                self.up();
                self.task.cluster_reply(request.id, reply);
            }
            Err(error) => self.failed(&error),
        }
    }

    /// Runs the core's read of the log until it returns entries, or is
    /// replaced, and reports them, or the link down.
    fn read_once(&mut self) {
        let request = self.link.next_read();
        let Call::Read { after, count } = request.call else {
            return;
        };
        loop {
            let wait = Some(READ_WAIT);
            let read = self
                .connected()
                .and_then(|(room, con)| room.read(con, after, count, wait));
            match read {
                Ok(entries) if entries.is_empty() => {
                    self.up();
                    if !self.link.still_wanted(request.id) {
                        return;
                    }
                }
                Ok(entries) => {
                    self.up();
                    self.link.read_done(request.id);
                    return self.task.cluster_reply(request.id, Reply::Read(entries));
                }
                Err(error) => return self.failed(&error),
            }
        }
    }

    /// The connection, made if there is none.
    fn connected(&mut self) -> redis::RedisResult<(&RedisRoom, &mut Connection)> {
        let con = match &mut self.connection {
            Some(con) => con,
            none => {
                let con = self.client.get_connection_with_timeout(CONNECT_TIMEOUT)?;
                // The reader's reads wait up to READ_WAIT on the server.
                con.set_read_timeout(Some(CALL_TIMEOUT + READ_WAIT))?;
                con.set_write_timeout(Some(CALL_TIMEOUT))?;
                none.insert(con)
            }
        };
        Ok((&self.room, con))
    }

    fn up(&mut self) {
        if self.link.down.swap(false, Ordering::Relaxed) {
            info!("redis link up");
        }
        self.backoff.reset();
    }

    /// A call failed: the connection is dropped, the core told, and the
    /// thread pauses before it tries again.
    fn failed(&mut self, error: &redis::RedisError) {
        self.connection = None;
        if self.link.down.swap(true, Ordering::Relaxed) {
            debug!("redis link still down: {error}");
        } else {
            warn!("redis link down: {error}; clients are told if it stays down");
        }
        self.task.cluster_down();
        std::thread::sleep(self.backoff.next());
    }
}

/// Pauses between attempts: doubling from the first to the longest, each
/// within ±20 %, drawn from a small xorshift seeded per thread.
struct Backoff {
    next: Duration,
    state: u64,
}

impl Backoff {
    fn new(seed: u64) -> Backoff {
        Backoff {
            next: BACKOFF.0,
            state: seed | 1,
        }
    }

    fn reset(&mut self) {
        self.next = BACKOFF.0;
    }

    fn next(&mut self) -> Duration {
        self.state ^= self.state << 13;
        self.state ^= self.state >> 7;
        self.state ^= self.state << 17;
        let jitter = 0.8 + 0.4 * (self.state % 1000) as f64 / 1000.0;
        let pause = self.next.mul_f64(jitter);
        self.next = (self.next * 2).min(BACKOFF.1);
        pause
    }
}
