//! Everything the chat server drivers (`chat-tokio`, `chat-asyncstd`,
//! `chat-std`) share, so that a client sees the same server on all three:
//! the command line, logging, the open-file limit, signals, and the run loop
//! of `chat_core` (see its crate docs) written once over a small [`Runtime`]
//! trait that each driver implements with its own sockets, tasks and timer.
//!
//! Per connection a driver runs a reader task that feeds what it reads to
//! the core. Output is written without blocking by whichever task produced
//! it (the sender's reader, for a chat line), copied into one buffer (up to
//! 64 KiB a write); only when a socket does not take all of it at once does
//! the connection get a writer task, which ends once its output is written:
//! an idle client costs one task and holds no write buffer, since a writer
//! task per connection costs far more memory than the reader alone
//! (docs/performance.md). On tokio a chat line's writes to many
//! clients are split among several tasks, so that both cores write (see
//! [`Runtime::SHARE_WRITES`]). All tasks share one `Mutex<Server>` (the
//! hub) and hold it only for the core's own work: socket I/O, wake-ups and
//! logging happen after it is released, so a client that does not read
//! delays nobody (the core drops it once its queue is full).
//!
//! Pausing: when the core says `StopReading` (a client over its flood
//! budget), the reader hands over what it has read and then waits, without
//! reading, until `ResumeReading` or the connection's close, so that the
//! client's input stays in the socket and TCP slows the client down.
//!
//! Timers: one thread sleeps exactly until the core's next deadline
//! (`poll_timeout`) or the next flush limit, whichever comes first, and not
//! at all while neither is pending; a call that moves a deadline earlier
//! wakes it. A thread rather than a task, so it works the same on every
//! runtime (the blocking driver's sleep cannot be interrupted).
//!
//! Closing: on a flushing close the writer writes what is left (bounded by
//! one second, after which the socket is shut down anyway), then shuts the
//! socket down, which ends the reader; on a dropping close the socket is shut
//! down at once, which ends both. A client that closes its side (EOF) stays
//! until the core closes it, which may be after it has handled lines the
//! client sent faster than flood control lets through. When the connection
//! is closing and its tasks are done, the core is told it is closed,
//! exactly once.
//!
//! Shutdown: SIGINT or SIGTERM tells every client `* server shutting down`,
//! waits up to a second for their output to be flushed, then exits with 0.

mod cli;
mod hub;
mod notify;
mod runtime;

use std::io::ErrorKind::{Interrupted, WouldBlock};
use std::io::{self, IsTerminal as _, Write as _};
use std::net::SocketAddr;
use std::process::ExitCode;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chat_core::Bytes;
use socket2::{Domain, Protocol, SockRef, Socket, Type};
use tracing::{debug, info, warn};

pub use cli::{Cli, CliError};
use hub::{After, FLUSH_LIMIT, Half, Hub, Link, Next};
pub use runtime::Runtime;

/// Most bytes one read takes, so one busy client's turn is bounded.
const READ_BUFFER: usize = 64 * 1024;
/// Read buffer of a client that sends little, in bytes; it doubles, up to
/// [`READ_BUFFER`], each time a read fills it.
const SMALL_READ_BUFFER: usize = 64;
/// Most bytes one write takes. Output is a stream of short lines, each its
/// own chunk; copying them into one buffer and writing that is faster than
/// a vectored write of the chunks, whose per-segment cost in the kernel
/// dominates for ~100-byte segments.
const WRITE_BUFFER: usize = 64 * 1024;
/// Connections one task writes to when [`Runtime::SHARE_WRITES`] splits a
/// list; small, so that a preempted thread holds back few clients.
const SHARE_PART: usize = 4;
/// Most tasks started by [`Runtime::SHARE_WRITES`] that run at once.
const MAX_SHARING: usize = 16;
/// Most connections taken in under one lock of the hub.
const ACCEPT_BATCH: usize = 128;
/// Pause after a failed accept (out of file descriptors, say), so the error
/// is not retried in a tight loop.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);
/// Pending connections the kernel queues before the server accepts them;
/// large so that a burst of clients is not refused.
const LISTEN_BACKLOG: i32 = 4096;

/// The whole server program on runtime `R`: parses the command line (for
/// the program `name`, described by `about` in `--help`), then serves until
/// SIGINT or SIGTERM. Returns only on an error, or for `--help`/`--version`.
pub fn main<R: Runtime>(name: &'static str, about: &'static str) -> ExitCode {
    let config = match Cli::parse_from(name, about, std::env::args_os()).and_then(|cli| {
        let config = cli.config()?;
        Ok((cli.listen, config))
    }) {
        Ok(config) => config,
        Err(CliError::Clap(error)) if !error.use_stderr() => {
            // --help or --version.
            let _ = error.print();
            return ExitCode::SUCCESS;
        }
        Err(CliError::Clap(error)) => {
            let message = error.to_string();
            let line = message.lines().next().unwrap_or_default();
            eprintln!("{name}: {line} (see --help)");
            return ExitCode::from(2);
        }
        Err(CliError::Config(error)) => {
            eprintln!("{name}: error: {error}");
            return ExitCode::from(2);
        }
    };
    let (addr, config) = config;
    init_logging();
    raise_open_file_limit();
    match R::block_on(serve::<R>(addr, config)) {
        Ok(Ok(())) => ExitCode::SUCCESS,
        Ok(Err(error)) | Err(error) => {
            eprintln!("{name}: error: {error}");
            ExitCode::FAILURE
        }
    }
}

/// Logs to stderr, filtered by `RUST_LOG` (default: info).
fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::builder()
        .with_default_directive(tracing::Level::INFO.into())
        .from_env_lossy();
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(io::stderr)
        .with_ansi(io::stderr().is_terminal())
        .init();
}

/// Each client holds a file descriptor, and the soft limit is often far
/// below what a full server needs.
fn raise_open_file_limit() {
    match rlimit::increase_nofile_limit(u64::MAX) {
        Ok(limit) => debug!(limit, "open file limit"),
        Err(error) => warn!("cannot raise the open file limit: {error}"),
    }
}

/// Binds, announces the address, then accepts until the process exits.
async fn serve<R: Runtime>(addr: SocketAddr, config: chat_core::Config) -> io::Result<()> {
    let listener = bind(addr)
        .map_err(|e| io::Error::new(e.kind(), format!("cannot listen on {addr}: {e}")))?;
    let local = listener.local_addr()?;
    let listener = R::listener(listener)?;
    let seed = std::hash::BuildHasher::hash_one(&std::hash::RandomState::new(), local);
    let hub = Arc::new(Hub::new(config, seed));
    // Before announcing the address, so that a signal sent as soon as it is
    // seen already shuts down cleanly.
    watch_signals::<R>(hub.clone())?;
    start_timer::<R>(hub.clone())?;
    info!(%local, "listening");
    let mut stdout = io::stdout().lock();
    // Whoever started us may not read stdout; serving matters more.
    let _ = writeln!(stdout, "listening on {local}").and_then(|()| stdout.flush());
    drop(stdout);

    let mut batch = Vec::with_capacity(ACCEPT_BATCH);
    loop {
        match R::accept(&listener).await {
            Ok(accepted) => {
                // Every join is announced to everyone: taking the clients
                // that are already waiting in one go announces them in one
                // batch, writing to each client once rather than once per join.
                batch.push(accepted);
                while batch.len() < ACCEPT_BATCH {
                    let Some(accepted) = R::try_accept(&listener) else {
                        break;
                    };
                    batch.push(accepted);
                }
                start::<R>(&hub, &mut batch);
            }
            Err(error) => {
                warn!("accept failed: {error}");
                R::sleep(ACCEPT_BACKOFF).await;
            }
        }
    }
}

fn bind(addr: SocketAddr) -> io::Result<std::net::TcpListener> {
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    // A restarted server can bind while old connections are in TIME_WAIT.
    socket.set_reuse_address(true)?;
    socket.bind(&addr.into())?;
    socket.listen(LISTEN_BACKLOG)?;
    Ok(socket.into())
}

/// Takes accepted connections in (emptying `accepted`) and starts the
/// reader of each.
fn start<R: Runtime>(hub: &Arc<Hub<R::Stream>>, accepted: &mut Vec<(R::Stream, SocketAddr)>) {
    for (stream, peer) in accepted.iter() {
        // Lines are small and should leave at once, not wait for an ACK.
        if let Err(error) = SockRef::from(stream).set_tcp_nodelay(true) {
            debug!(%peer, "cannot set TCP_NODELAY: {error}");
        }
    }
    let mut after = After::default();
    for link in hub.connect(accepted.drain(..), &mut after) {
        if let Err(error) = R::spawn(reader::<R>(hub.clone(), link.clone())) {
            warn!(conn = %link.id, "cannot start a reader: {error}");
            hub.finished(&link, Half::Reader, &mut after);
        }
    }
    settle::<R>(hub, &mut after);
}

/// Starts the connection's writer, which first writes `chunks` (taken from
/// the core, `unreported` bytes of earlier ones written but not reported).
fn start_writer<R: Runtime>(
    hub: &Arc<Hub<R::Stream>>,
    link: &Arc<Link<R::Stream>>,
    chunks: Vec<Bytes>,
    unreported: usize,
    after: &mut After<R::Stream>,
) {
    let task = writer::<R>(hub.clone(), link.clone(), chunks, unreported);
    if let Err(error) = R::spawn(task) {
        warn!(conn = %link.id, "cannot start a writer: {error}");
        hub.finished(link, Half::Writer, after);
    }
}

/// Writes what the connections handed over in `after` have queued, without
/// blocking, and starts a writer for what the socket does not take. Call
/// after every hub call.
fn settle<R: Runtime>(hub: &Arc<Hub<R::Stream>>, after: &mut After<R::Stream>) {
    if R::SHARE_WRITES {
        share::<R>(hub, &mut after.to_write);
    }
    let mut chunks = Vec::new();
    let mut buf = Vec::new();
    while let Some(link) = after.to_write.pop() {
        let mut written = 0;
        loop {
            match hub.take(&link, written, &mut chunks, after) {
                Next::Write => {}
                Next::Idle => break,
                Next::Done => {
                    hub.finished(&link, Half::Writer, after);
                    break;
                }
            }
            buf.clear();
            chunks
                .drain(..)
                .for_each(|chunk| buf.extend_from_slice(&chunk));
            match R::try_write(&link.stream, &buf) {
                Ok(len) if len == buf.len() => written = len,
                Ok(len) => {
                    let rest = vec![Bytes::copy_from_slice(&buf[len..])];
                    start_writer::<R>(hub, &link, rest, len, after);
                    break;
                }
                Err(error) if matches!(error.kind(), WouldBlock | Interrupted) => {
                    let rest = vec![Bytes::copy_from_slice(&buf)];
                    start_writer::<R>(hub, &link, rest, 0, after);
                    break;
                }
                Err(error) => {
                    debug!(conn = %link.id, "write failed: {error}");
                    hub.finished(&link, Half::Writer, after);
                    break;
                }
            }
        }
    }
}

/// Hands parts of `to_write` to new tasks (see [`Runtime::SHARE_WRITES`]),
/// leaving the caller the last 1 to [`SHARE_PART`] connections to write
/// (more once [`MAX_SHARING`] tasks run).
fn share<R: Runtime>(hub: &Arc<Hub<R::Stream>>, to_write: &mut Vec<Arc<Link<R::Stream>>>) {
    let take_slot = |n: usize| (n < MAX_SHARING).then_some(n + 1);
    while to_write.len() > SHARE_PART
        && hub
            .sharing
            .fetch_update(Relaxed, Relaxed, take_slot)
            .is_ok()
    {
        // Shared with the task, so that the caller can take the part back
        // if the task cannot be started.
        let part = Arc::new(Mutex::new(to_write.split_off(to_write.len() - SHARE_PART)));
        let (task_hub, task_part) = (hub.clone(), part.clone());
        let task = async move {
            let mut after = After::default();
            after.to_write = std::mem::take(&mut *lock(&task_part));
            settle::<R>(&task_hub, &mut after);
            task_hub.sharing.fetch_sub(1, Relaxed);
        };
        if let Err(error) = R::spawn(task) {
            warn!("cannot start a task to write: {error}");
            to_write.append(&mut lock(&part));
            hub.sharing.fetch_sub(1, Relaxed);
            return;
        }
    }
}

/// Locks `mutex`, poisoned or not: nothing in this crate leaves the data it
/// guards half-changed when it panics.
pub(crate) fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Feeds what the client sends to the core until it closes or fails,
/// pausing while the core asks it to.
async fn reader<R: Runtime>(hub: Arc<Hub<R::Stream>>, link: Arc<Link<R::Stream>>) {
    // Most clients send little: start small and grow for those that fill it.
    let mut buf = vec![0; SMALL_READ_BUFFER];
    let mut after = After::default();
    loop {
        match R::read(&link.stream, &mut buf).await {
            Ok(0) => {
                hub.eof(&link, &mut after);
                return settle::<R>(&hub, &mut after);
            }
            Ok(len) => {
                let mut paused = hub.received(&link, &buf[..len], &mut after);
                settle::<R>(&hub, &mut after);
                // Doubling: a client's buffer follows how much it sends.
                if len == buf.len() && len < READ_BUFFER {
                    buf.resize((len * 2).min(READ_BUFFER), 0);
                }
                // Released by `ResumeReading`, or by the connection closing.
                while paused {
                    link.resume.wait().await;
                    paused = hub.paused(&link);
                }
            }
            Err(error) if error.kind() == io::ErrorKind::Interrupted => {}
            Err(error) => {
                debug!(conn = %link.id, "read failed: {error}");
                break;
            }
        }
    }
    hub.finished(&link, Half::Reader, &mut after);
    settle::<R>(&hub, &mut after);
}

/// Writes the core's output for one client until it has none left or the
/// connection closes: first `chunks`, with `unreported` bytes of earlier
/// ones written but not reported. Started by [`settle`] for what a socket
/// did not take at once.
async fn writer<R: Runtime>(
    hub: Arc<Hub<R::Stream>>,
    link: Arc<Link<R::Stream>>,
    mut chunks: Vec<Bytes>,
    mut unreported: usize,
) {
    let mut buf = Vec::new();
    let mut after = After::default();
    loop {
        if !chunks.is_empty() {
            let earlier = std::mem::take(&mut unreported);
            let result = write_all::<R>(&hub, &link, &chunks, &mut buf, earlier, &mut after).await;
            chunks.clear();
            settle::<R>(&hub, &mut after);
            match result {
                Ok(last) => unreported = last,
                Err(error) => {
                    debug!(conn = %link.id, "write failed: {error}");
                    break;
                }
            }
        }
        let written = std::mem::take(&mut unreported);
        let next = hub.take(&link, written, &mut chunks, &mut after);
        settle::<R>(&hub, &mut after);
        match next {
            Next::Write => {}
            // Released by the hub: the next output starts a new writer.
            Next::Idle => return,
            Next::Done => break,
        }
    }
    hub.finished(&link, Half::Writer, &mut after);
    settle::<R>(&hub, &mut after);
}

/// Writes all of `chunks`, reporting each write to the core (after the
/// `unreported` bytes of an earlier one), except the last, whose length it
/// returns for the writer's next [`Hub::take`].
async fn write_all<R: Runtime>(
    hub: &Arc<Hub<R::Stream>>,
    link: &Link<R::Stream>,
    chunks: &[Bytes],
    buf: &mut Vec<u8>,
    mut unreported: usize,
    after: &mut After<R::Stream>,
) -> io::Result<usize> {
    let mut rest = chunks;
    while !rest.is_empty() {
        rest = coalesce(buf, rest);
        let mut written = 0;
        while written < buf.len() {
            // Reported before writing again, which may block for long; what
            // reporting caused (the core's timers run first) is written
            // first, so no other client waits on this one's socket.
            if unreported > 0 {
                hub.written(link, std::mem::take(&mut unreported), after);
                settle::<R>(hub, after);
            }
            match R::write(&link.stream, &buf[written..]).await {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(len) => {
                    unreported = len;
                    written += len;
                }
                Err(error) if error.kind() == io::ErrorKind::Interrupted => {}
                Err(error) => return Err(error),
            }
        }
    }
    Ok(unreported)
}

/// Copies chunks from the front of `rest` into `buf` (emptied first) until
/// it holds [`WRITE_BUFFER`] bytes or `rest` is empty (always at least one
/// chunk); returns the chunks left.
fn coalesce<'a>(buf: &mut Vec<u8>, mut rest: &'a [Bytes]) -> &'a [Bytes] {
    buf.clear();
    while let Some((chunk, tail)) = rest.split_first() {
        if !buf.is_empty() && buf.len() + chunk.len() > WRITE_BUFFER {
            break;
        }
        buf.extend_from_slice(chunk);
        rest = tail;
    }
    rest
}

/// Starts the thread that runs the core's timers and bounds flushing
/// closes, for as long as the process runs (see [`Hub::tick`]).
fn start_timer<R: Runtime>(hub: Arc<Hub<R::Stream>>) -> io::Result<()> {
    std::thread::Builder::new()
        .name("timer".into())
        .spawn(move || {
            let mut after = After::default();
            loop {
                hub.tick(&mut after);
                settle::<R>(&hub, &mut after);
            }
        })?;
    Ok(())
}

/// On the first SIGINT or SIGTERM, shuts the server down: every client is
/// told, output is flushed for up to [`FLUSH_LIMIT`], and the process exits
/// with 0. A thread of its own, so it works the same on every runtime.
fn watch_signals<R: Runtime>(hub: Arc<Hub<R::Stream>>) -> io::Result<()> {
    use signal_hook::consts::{SIGINT, SIGTERM};
    let mut signals = signal_hook::iterator::Signals::new([SIGINT, SIGTERM])?;
    std::thread::Builder::new()
        .name("signals".into())
        .spawn(move || {
            if let Some(signal) = signals.forever().next() {
                info!(signal, "shutting down");
                let mut after = After::default();
                hub.shutdown(&mut after);
                settle::<R>(&hub, &mut after);
                if hub.wait_idle(FLUSH_LIMIT) {
                    info!("all connections closed");
                } else {
                    warn!("closing connections that did not take their output in time");
                }
                std::process::exit(0);
            }
        })?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{BufRead as _, BufReader};
    use std::net::{TcpListener, TcpStream};

    /// Std sockets and a thread per task, or, when `SPAWN` is false, no
    /// task at all: what [`settle`] must cope with when
    /// [`Runtime::SHARE_WRITES`] cannot spawn.
    struct Threads<const SPAWN: bool>;

    impl<const SPAWN: bool> Runtime for Threads<SPAWN> {
        type Listener = TcpListener;
        type Stream = TcpStream;
        const SHARE_WRITES: bool = true;

        fn block_on<F: Future>(_: F) -> io::Result<F::Output> {
            Err(io::Error::other("not in these tests"))
        }
        fn spawn<F: Future<Output = ()> + Send + 'static>(task: F) -> io::Result<()> {
            if !SPAWN {
                return Err(io::Error::other("no tasks here"));
            }
            std::thread::spawn(move || {
                // The futures here never wait on a waker: `write` retries.
                let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
                let mut task = std::pin::pin!(task);
                while task.as_mut().poll(&mut cx).is_pending() {}
            });
            Ok(())
        }
        fn listener(listener: TcpListener) -> io::Result<TcpListener> {
            Ok(listener)
        }
        async fn accept(listener: &TcpListener) -> io::Result<(TcpStream, SocketAddr)> {
            listener.accept()
        }
        async fn read(mut stream: &TcpStream, buf: &mut [u8]) -> io::Result<usize> {
            io::Read::read(&mut stream, buf)
        }
        async fn write(mut stream: &TcpStream, buf: &[u8]) -> io::Result<usize> {
            loop {
                match io::Write::write(&mut stream, buf) {
                    Err(error) if error.kind() == WouldBlock => {
                        std::thread::sleep(Duration::from_millis(1));
                    }
                    result => return result,
                }
            }
        }
        async fn sleep(duration: Duration) {
            std::thread::sleep(duration);
        }
        fn try_write(mut stream: &TcpStream, buf: &[u8]) -> io::Result<usize> {
            io::Write::write(&mut stream, buf)
        }
    }

    #[test]
    fn what_a_socket_took_before_a_writer_started_is_reported() {
        let hub = Arc::new(Hub::new(chat_core::Config::default(), 7));
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let clients = [(); 2].map(|_| TcpStream::connect(addr).unwrap());
        let accepted: Vec<_> = clients.iter().map(|_| listener.accept().unwrap()).collect();
        for (stream, _) in &accepted {
            stream.set_nonblocking(true).unwrap();
            // Small, so that the reader's socket fills after a few lines.
            SockRef::from(stream).set_send_buffer_size(4096).unwrap();
        }
        let mut after = After::default();
        let links = hub.connect(accepted.into_iter(), &mut after);
        settle::<Threads<true>>(&hub, &mut after);
        // More than the reader's socket holds while it does not read, in
        // lines of 1000 bytes: its writes go partial, and writers start.
        const LINES: usize = 400;
        let mut line = vec![b'x'; 999];
        line.push(b'\n');
        for _ in 0..LINES {
            hub.received(&links[0], &line, &mut after);
            settle::<Threads<true>>(&hub, &mut after);
        }
        clients[1]
            .set_read_timeout(Some(Duration::from_secs(5)))
            .unwrap();
        let reader = BufReader::new(&clients[1]);
        let lines = reader.lines().map_while(Result::ok);
        assert_eq!(
            lines.filter(|l| l.ends_with("xxx")).take(LINES).count(),
            LINES
        );
        // All was read; once the writer has reported its last write the
        // core holds nothing more for the reader. A bounded wait for that.
        let mut waited = 0;
        while hub.pending_bytes(&links[1]) != Some(0) && waited < 5000 {
            std::thread::sleep(Duration::from_millis(1));
            waited += 1;
        }
        assert_eq!(
            hub.pending_bytes(&links[1]),
            Some(0),
            "bytes never reported"
        );
    }

    #[test]
    fn writes_that_cannot_be_shared_are_written_by_the_caller() {
        let hub = Arc::new(Hub::new(chat_core::Config::default(), 7));
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let clients: Vec<TcpStream> = (0..4 * SHARE_PART)
            .map(|_| TcpStream::connect(addr).unwrap())
            .collect();
        let accepted = clients.iter().map(|_| listener.accept().unwrap());
        let mut after = After::default();
        let links = hub.connect(accepted.collect::<Vec<_>>().into_iter(), &mut after);
        settle::<Threads<false>>(&hub, &mut after);
        hub.received(&links[0], b"hello\n", &mut after);
        assert!(after.to_write.len() > SHARE_PART, "a broadcast to share");
        settle::<Threads<false>>(&hub, &mut after);
        assert!(after.to_write.is_empty());
        assert_eq!(hub.sharing.load(Relaxed), 0);
        for client in &clients[1..] {
            client
                .set_read_timeout(Some(Duration::from_secs(5)))
                .unwrap();
            let got_it = BufReader::new(client)
                .lines()
                .map_while(Result::ok)
                .any(|line| line.ends_with(": hello"));
            assert!(got_it, "a client did not get the line");
        }
    }

    #[test]
    fn coalesce_fills_up_to_the_limit() {
        let small = Bytes::from(vec![b'a'; WRITE_BUFFER / 4]);
        let chunks = vec![small.clone(); 6];
        let mut buf = Vec::new();
        let rest = coalesce(&mut buf, &chunks);
        assert_eq!((buf.len(), rest.len()), (WRITE_BUFFER, 2));
        let rest = coalesce(&mut buf, rest);
        assert_eq!((buf.len(), rest.len()), (WRITE_BUFFER / 2, 0));
    }

    #[test]
    fn coalesce_takes_a_large_chunk_whole() {
        let chunks = [
            Bytes::from_static(b"ab"),
            Bytes::from(vec![0; WRITE_BUFFER + 1]),
        ];
        let mut buf = Vec::new();
        let rest = coalesce(&mut buf, &chunks);
        assert_eq!((buf.as_slice(), rest.len()), (&b"ab"[..], 1));
        let rest = coalesce(&mut buf, rest);
        assert_eq!((buf.len(), rest.len()), (WRITE_BUFFER + 1, 0));
    }
}
