//! `chat-std`: the chat server (join with `nc HOST PORT`) on blocking std
//! sockets and threads, with no async runtime: each connection has a reader
//! thread with a small stack, and a writer thread only while the socket does
//! not take its output at once (kept a second for the next writer), so ten
//! thousand clients fit. The shared driver in `chat_runtime` is written as
//! futures; here each one runs on its own thread with [`block_on`], whose
//! waker unparks that thread, and socket calls simply block.

use std::io::{self, Read as _, Write as _};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::pin::pin;
use std::process::ExitCode;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};
use std::task::{Context, Poll, Wake, Waker};
use std::thread::{self, Thread};
use std::time::Duration;

use socket2::SockRef;

mod pool;
mod stack;

/// Writer threads whose task ended, kept a second for the next writer:
/// enough for the writers that start and end as fast clients' sockets fill.
static WRITERS: pool::Pool = pool::Pool::new(Duration::from_secs(1), KEPT_WRITERS);

/// Most writer threads waiting in [`WRITERS`].
const KEPT_WRITERS: usize = 64;

/// Stack of each connection thread. Only the pages a thread touches cost
/// memory, so this is room, not a cost: an idle client's reader touches
/// the 8 KiB at the top, and a TLS handshake, which runs on a reader of its
/// own, about 25 KiB in a release build (rustls and aws-lc's key exchange
/// and signatures; measured from /proc/PID/smaps), given back as it ends.
/// Debug builds take several times that, so they get more room.
const STACK_SIZE: usize = if cfg!(debug_assertions) {
    1024 * 1024
} else {
    256 * 1024
};

/// Blocking std sockets and one thread per task, as `chat_runtime` uses them.
struct Std;

impl chat_runtime::Runtime for Std {
    type Listener = TcpListener;
    type Stream = TcpStream;

    fn block_on<F: Future>(future: F) -> io::Result<F::Output> {
        Ok(block_on(future))
    }

    fn spawn<F: Future<Output = ()> + Send + 'static>(task: F) -> io::Result<()> {
        start_thread(Box::new(move || block_on(task)), None)
    }

    // Only writers go to the pool: a thread that waited there carries what
    // its tasks left in its malloc cache (glibc's tcache, freed only when
    // the thread ends), which a writer soon uses again, but an idle reader
    // would keep for its client's life (a TLS handshake's leaves 11 KB).
    fn spawn_writer<F: Future<Output = ()> + Send + 'static>(task: F) -> io::Result<()> {
        match WRITERS.hand_over(Box::new(move || block_on(task))) {
            Ok(()) => Ok(()),
            Err(job) => start_thread(job, Some(&WRITERS)),
        }
    }

    fn listener(listener: TcpListener) -> io::Result<TcpListener> {
        Ok(listener)
    }

    async fn accept(listener: &TcpListener) -> io::Result<(TcpStream, SocketAddr)> {
        listener.accept()
    }

    fn try_accept(listener: &TcpListener) -> Option<(TcpStream, SocketAddr)> {
        // Non-blocking only for this call: accepted sockets do not inherit it.
        listener.set_nonblocking(true).ok()?;
        let accepted = listener.accept().ok();
        // Should this fail, the next accept returns WouldBlock, is logged,
        // and backs off: slower, never a spin.
        let _ = listener.set_nonblocking(false);
        accepted
    }

    async fn read(mut stream: &TcpStream, buf: &mut [u8]) -> io::Result<usize> {
        stream.read(buf)
    }

    async fn write(mut stream: &TcpStream, buf: &[u8]) -> io::Result<usize> {
        stream.write(buf)
    }

    async fn sleep(duration: Duration) {
        thread::sleep(duration);
    }

    // Output is first written with this, from whichever thread produced
    // it; a writer thread exists only while a socket is full (two threads
    // per client would hit the kernel's limit on memory maps far sooner,
    // each thread mapping a stack and a signal stack; docs/performance.md).
    fn try_write(stream: &TcpStream, buf: &[u8]) -> io::Result<usize> {
        SockRef::from(stream).send_with_flags(buf, libc::MSG_DONTWAIT)
    }

    // Two threads for each client that does not read; what is left after
    // them is for connections being refused, which hold a reader thread
    // until they are closed, for TLS clients whose handshake just ended (a
    // new reader starts as the one that ran it ends), and for writer
    // threads waiting for the next writer, which no reader can take.
    fn max_connections() -> Option<usize> {
        let limit = *THREAD_LIMIT.get_or_init(thread_limit);
        Some(limit.saturating_sub(REFUSING_THREADS + KEPT_WRITERS) / 2)
    }
}

/// Starts a connection thread running `job`, then, with a `pool`, the jobs
/// handed over to it there. A thread waiting in the pool keeps its slot: it
/// is one of the connection threads, and the next writer takes it before a
/// new one.
fn start_thread(job: pool::Job, pool: Option<&'static pool::Pool>) -> io::Result<()> {
    let slot = ThreadSlot::take()?;
    thread::Builder::new()
        .stack_size(STACK_SIZE)
        .spawn(move || {
            let _slot = slot;
            match pool {
                Some(pool) => pool.work(job),
                None => {
                    job();
                    // Or glibc keeps 16 KiB of it for the next thread.
                    stack::release_below_caller();
                }
            }
        })
        .map(drop)
}

/// Connection threads kept for connections being refused (each holds a
/// reader thread until it is closed) when `--max-clients` is lowered to what
/// the thread limit allows.
const REFUSING_THREADS: usize = 256;

/// Connection threads running now.
static THREADS: AtomicUsize = AtomicUsize::new(0);

/// Memory maps a thread costs: its stack and signal stack, each with a guard
/// page, and one spare.
const MAPS_PER_THREAD: usize = 5;

/// Memory maps kept for everything else (heap, libraries, buffers).
const MAPS_RESERVED: usize = 4096;

/// One of the connection threads the machine allows, held for the thread's
/// life. Past the limit a spawn fails, so the shared driver closes the
/// connections the task was for; a thread the kernel cannot map (its signal
/// stack) would abort the whole process instead.
struct ThreadSlot;

impl ThreadSlot {
    fn take() -> io::Result<ThreadSlot> {
        let limit = *THREAD_LIMIT.get_or_init(thread_limit);
        THREADS
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| {
                (n < limit).then_some(n + 1)
            })
            .map(|_| ThreadSlot)
            .map_err(|_| io::Error::other(format!("{limit} connection threads already run")))
    }
}

impl Drop for ThreadSlot {
    fn drop(&mut self) {
        THREADS.fetch_sub(1, Ordering::Relaxed);
    }
}

static THREAD_LIMIT: OnceLock<usize> = OnceLock::new();

/// The connection threads this machine allows: what `vm.max_map_count`
/// leaves room for, and at most half of `kernel.threads-max`.
fn thread_limit() -> usize {
    let read =
        |path: &str| -> Option<usize> { std::fs::read_to_string(path).ok()?.trim().parse().ok() };
    let maps = read("/proc/sys/vm/max_map_count").unwrap_or(65_530);
    let threads = read("/proc/sys/kernel/threads-max").unwrap_or(usize::MAX);
    threads_allowed(maps, threads)
}

/// [`thread_limit`] from the two kernel settings.
fn threads_allowed(max_map_count: usize, threads_max: usize) -> usize {
    let by_maps = max_map_count.saturating_sub(MAPS_RESERVED) / MAPS_PER_THREAD;
    by_maps.min(threads_max / 2).max(1)
}

/// Wakes a thread parked in [`block_on`].
struct Unpark(Thread);

impl Wake for Unpark {
    fn wake(self: Arc<Self>) {
        self.0.unpark();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        self.0.unpark();
    }
}

/// Runs `future` on this thread, parking it while the future waits.
fn block_on<F: Future>(future: F) -> F::Output {
    let waker = Waker::from(Arc::new(Unpark(thread::current())));
    let mut cx = Context::from_waker(&waker);
    let mut future = pin!(future);
    loop {
        if let Poll::Ready(output) = future.as_mut().poll(&mut cx) {
            return output;
        }
        // A wake before this park makes it return at once; a spurious
        // return just polls again.
        thread::park();
    }
}

fn main() -> ExitCode {
    chat_runtime::main::<Std>(
        env!("CARGO_PKG_NAME"),
        "A line-based TCP chat server (blocking std threads). Join with `nc HOST PORT`.",
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn threads_fit_the_kernel_limits() {
        // The default `vm.max_map_count`: 16,600 threads aborted the
        // process (4 maps each); the limit stays well below.
        assert_eq!(threads_allowed(65_530, 192_724), 12_286);
        assert!(threads_allowed(65_530, 192_724) * 4 + 4096 < 65_530);
        assert_eq!(threads_allowed(65_530, 1000), 500);
        assert_eq!(threads_allowed(0, 0), 1);
    }

    #[test]
    fn spawns_past_the_limit_fail_and_slots_come_back() {
        let limit = *THREAD_LIMIT.get_or_init(thread_limit);
        let slots: Vec<ThreadSlot> = std::iter::from_fn(|| ThreadSlot::take().ok())
            .take(limit + 1)
            .collect();
        assert_eq!(
            slots.len(),
            limit - THREADS.load(Ordering::Relaxed) + slots.len()
        );
        assert!(ThreadSlot::take().is_err());
        drop(slots);
        assert!(ThreadSlot::take().is_ok());
    }
}
