//! Writer threads kept for the next writer once theirs ended.
//!
//! A task here is a thread, and a writer is brief: it lives while a
//! client's socket is full, and with many fast clients writers start and
//! end thousands of times a second (over TLS, where clients read slower,
//! about 6,000 in a 2-second fanout run). Starting a thread maps a stack
//! and a signal stack and ending it unmaps them, under the process's
//! memory-map lock; so a writer thread whose task ended waits a little in
//! the pool, and the next writer runs on it instead (fanout over TLS: 0.7×
//! of plain instead of 0.55×, docs/performance.md).
//!
//! A waiting thread keeps the stack pages its tasks touched (a second at
//! most, and at most [`Pool::new`]'s `most_idle` threads); one that leaves
//! the pool gives them back first ([`stack::release_below_caller`]), or
//! glibc would keep 16 KiB of them for the next thread it starts, a reader
//! perhaps, for good.

use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::thread::{self, Thread};
use std::time::{Duration, Instant};

use crate::stack;

/// Work for a thread of the pool.
pub(crate) type Job = Box<dyn FnOnce() + Send>;

/// Threads waiting for a job, the most recently idle last.
#[derive(Debug)]
pub(crate) struct Pool {
    idle: Mutex<Vec<Arc<Waiting>>>,
    /// How long a thread waits for a job before it ends.
    keep: Duration,
    /// Most threads waiting at once; a thread whose job ends past this ends.
    most_idle: usize,
}

/// A thread in the pool, and the job handed to it.
struct Waiting {
    job: Mutex<Option<Job>>,
    thread: Thread,
}

impl std::fmt::Debug for Waiting {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Waiting")
            .field("thread", &self.thread.id())
            .finish_non_exhaustive()
    }
}

impl Pool {
    /// An empty pool.
    pub(crate) const fn new(keep: Duration, most_idle: usize) -> Pool {
        Pool {
            idle: Mutex::new(Vec::new()),
            keep,
            most_idle,
        }
    }

    /// Gives `job` to a waiting thread; hands it back if none waits, for
    /// the caller to start a thread with [`Pool::work`].
    pub(crate) fn hand_over(&self, job: Job) -> Result<(), Job> {
        let Some(waiting) = lock(&self.idle).pop() else {
            return Err(job);
        };
        *lock(&waiting.job) = Some(job);
        waiting.thread.unpark();
        Ok(())
    }

    /// Runs `job` on this thread, then each job handed over to it while it
    /// waits in the pool. Returns when none came within `keep`, or when the
    /// pool had enough threads waiting: the thread should then end.
    pub(crate) fn work(&self, mut job: Job) {
        let me = Arc::new(Waiting {
            job: Mutex::new(None),
            thread: thread::current(),
        });
        loop {
            job();
            match self.wait(&me) {
                Some(next) => job = next,
                None => break,
            }
        }
        stack::release_below_caller();
    }

    /// Waits in the pool for a job: `None` if none came in time.
    fn wait(&self, me: &Arc<Waiting>) -> Option<Job> {
        {
            let mut idle = lock(&self.idle);
            if idle.len() >= self.most_idle {
                return None;
            }
            idle.push(me.clone());
        }
        let deadline = Instant::now() + self.keep;
        loop {
            // An unpark may also come from a waker of a task this thread
            // ran before; every return from a park checks again.
            if let Some(job) = lock(&me.job).take() {
                return Some(job);
            }
            let now = Instant::now();
            if now < deadline {
                thread::park_timeout(deadline - now);
                continue;
            }
            let mut idle = lock(&self.idle);
            if let Some(at) = idle.iter().position(|waiting| Arc::ptr_eq(waiting, me)) {
                idle.swap_remove(at);
                return None;
            }
            drop(idle);
            // Taken out of the pool by `hand_over`: its job is on the way,
            // with an unpark.
            thread::park();
        }
    }

    /// Threads waiting now.
    #[cfg(test)]
    fn waiting(&self) -> usize {
        lock(&self.idle).len()
    }
}

/// The pool's locks guard no invariant a panic could break halfway.
fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;
    use std::sync::mpsc;

    /// Starts a thread of `pool` running `job`, as the server does when no
    /// thread waits.
    fn start(pool: &'static Pool, job: Job) -> thread::JoinHandle<()> {
        thread::spawn(move || pool.work(job))
    }

    /// A job that sends the id of the thread running it.
    fn report(to: &mpsc::Sender<thread::ThreadId>) -> Job {
        let to = to.clone();
        Box::new(move || to.send(thread::current().id()).unwrap())
    }

    /// Waits (without a clock) until `pool` has `n` threads waiting.
    fn until_waiting(pool: &Pool, n: usize) {
        while pool.waiting() != n {
            thread::yield_now();
        }
    }

    #[test]
    fn the_next_job_runs_on_the_thread_that_waits() {
        static POOL: Pool = Pool::new(Duration::from_secs(3600), 4);
        let (to, ran_on) = mpsc::channel();
        assert!(POOL.hand_over(report(&to)).is_err(), "no thread waits yet");
        start(&POOL, report(&to));
        let first = ran_on.recv().unwrap();
        until_waiting(&POOL, 1);
        assert!(POOL.hand_over(report(&to)).is_ok());
        assert_eq!(ran_on.recv().unwrap(), first);
        until_waiting(&POOL, 1);
    }

    #[test]
    fn a_thread_with_no_job_in_time_ends() {
        static POOL: Pool = Pool::new(Duration::from_millis(1), 4);
        let (to, ran_on) = mpsc::channel();
        let thread = start(&POOL, report(&to));
        ran_on.recv().unwrap();
        thread.join().unwrap();
        assert_eq!(POOL.waiting(), 0, "it left the pool");
        let Err(job) = POOL.hand_over(report(&to)) else {
            panic!("handed to a thread that ended");
        };
        drop(job);
    }

    #[test]
    fn threads_past_the_most_waiting_end() {
        static POOL: Pool = Pool::new(Duration::from_secs(3600), 1);
        let (to, ran_on) = mpsc::channel();
        start(&POOL, report(&to));
        ran_on.recv().unwrap();
        until_waiting(&POOL, 1);
        start(&POOL, report(&to)).join().unwrap();
        assert_eq!(POOL.waiting(), 1);
    }
}
