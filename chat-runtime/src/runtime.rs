//! What a driver provides: the [`Runtime`] trait.

use std::io;
use std::net::SocketAddr;
use std::os::fd::AsFd;
use std::time::Duration;

/// What a driver provides: sockets, tasks and a timer of one runtime.
/// Everything else is shared.
pub trait Runtime: 'static {
    /// A listening socket; each listener's accept loop may run as a task.
    type Listener: Send + Sync + 'static;
    /// A connected socket, shared by its reader and writer tasks by
    /// reference; `AsFd` lets the shared code set options and shut it down.
    type Stream: AsFd + Send + Sync + 'static;

    /// Runs `future` to completion on the current thread, starting the
    /// runtime first if it needs one.
    fn block_on<F: Future>(future: F) -> io::Result<F::Output>;

    /// Runs `task` concurrently with the caller, on its own. It is also
    /// called from the timer and signal threads, which are not the
    /// runtime's. On an error the connections the task was for are closed.
    fn spawn<F: Future<Output = ()> + Send + 'static>(task: F) -> io::Result<()>;

    /// Runs `task`, which writes to clients whose sockets were full, like
    /// [`Runtime::spawn`]. Such a task usually ends soon, once its clients
    /// have read what waited, and a busy room starts thousands a second: a
    /// runtime whose tasks cost more to start than to keep (a thread each)
    /// may run it on one kept from an earlier writer. The default spawns it.
    fn spawn_writer<F: Future<Output = ()> + Send + 'static>(task: F) -> io::Result<()> {
        Self::spawn(task)
    }

    /// Makes a bound and listening std socket this runtime's listener.
    fn listener(listener: std::net::TcpListener) -> io::Result<Self::Listener>;

    /// Waits for the next connection.
    fn accept(
        listener: &Self::Listener,
    ) -> impl Future<Output = io::Result<(Self::Stream, SocketAddr)>> + Send;

    /// Takes a connection that is already waiting, or `None` without
    /// waiting. The default polls [`Runtime::accept`] once, which suits a
    /// runtime whose accept is non-blocking.
    fn try_accept(listener: &Self::Listener) -> Option<(Self::Stream, SocketAddr)> {
        let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
        match std::pin::pin!(Self::accept(listener)).poll(&mut cx) {
            std::task::Poll::Ready(Ok(accepted)) => Some(accepted),
            // An error is met again, and logged, by the next `accept`.
            std::task::Poll::Ready(Err(_)) | std::task::Poll::Pending => None,
        }
    }

    /// Reads into `buf` once; `Ok(0)` means the peer closed its side.
    fn read(
        stream: &Self::Stream,
        buf: &mut [u8],
    ) -> impl Future<Output = io::Result<usize>> + Send;

    /// Writes from `buf` once; returns how many bytes it took.
    fn write(stream: &Self::Stream, buf: &[u8]) -> impl Future<Output = io::Result<usize>> + Send;

    /// Whether output for many connections at once (a chat line to
    /// everyone) is written by several tasks: the task that produced it
    /// keeps a few connections (`SHARE_PART`) and hands the rest, that many
    /// per task, to new tasks, so that idle workers steal them and all cores
    /// write. Only while few such tasks run (`MAX_SHARING`): beyond
    /// that the producer writes the rest itself, which keeps it from running
    /// ahead of its clients (a burst of joins would otherwise leave readers
    /// behind the shared log, in private queues).
    ///
    /// For a runtime whose spawn is cheap and whose idle workers take
    /// spawned tasks: on tokio it lowers the latency of a busy chat, since
    /// both cores write; on async-std and on the blocking driver (where a
    /// task is a thread) starting tasks costs more than it saves, so they
    /// write a whole list in the task that produced it (the default). The
    /// figures are in docs/performance.md.
    const SHARE_WRITES: bool = false;

    /// Writes from `buf` without waiting; `WouldBlock` when the socket takes
    /// nothing now. The default polls [`Runtime::write`] once.
    fn try_write(stream: &Self::Stream, buf: &[u8]) -> io::Result<usize> {
        let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
        match std::pin::pin!(Self::write(stream, buf)).poll(&mut cx) {
            std::task::Poll::Ready(result) => result,
            std::task::Poll::Pending => Err(io::ErrorKind::WouldBlock.into()),
        }
    }

    /// Completes after `duration`.
    fn sleep(duration: Duration) -> impl Future<Output = ()> + Send;

    /// The most clients this runtime can serve at once, each with a reader
    /// task and, while its socket is full, a writer task, if the machine
    /// limits that below any `--max-clients` (a thread per task does);
    /// `--max-clients` is lowered to it, with a warning, so that a client
    /// over it is refused as `server full` rather than taken in and closed
    /// when its writer cannot start. `None` (the default): no such limit.
    fn max_connections() -> Option<usize> {
        None
    }
}
