//! `chat-tokio`: the chat server (join with `nc HOST PORT`) on the tokio
//! multi-threaded runtime. Only the runtime's sockets, tasks and timer live
//! here; the server itself is `chat_runtime` driving `chat_core`.

use std::io;
use std::net::SocketAddr;
use std::process::ExitCode;
use std::sync::OnceLock;
use std::time::Duration;

use tokio::io::Interest;
use tokio::net::{TcpListener, TcpStream};

/// The tokio runtime, as `chat_runtime` uses it.
struct Tokio;

/// The runtime started by [`Tokio::block_on`]. `tokio::spawn` works only on
/// the runtime's own threads, and tasks are also started from the timer and
/// signal threads.
static RUNTIME: OnceLock<tokio::runtime::Handle> = OnceLock::new();

impl chat_runtime::Runtime for Tokio {
    type Listener = TcpListener;
    type Stream = TcpStream;

    // Its idle workers steal spawned tasks: a broadcast's writes spread.
    const SHARE_WRITES: bool = true;

    fn block_on<F: Future>(future: F) -> io::Result<F::Output> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()?;
        let handle = RUNTIME.get_or_init(|| runtime.handle().clone());
        if handle.id() != runtime.handle().id() {
            return Err(io::Error::other("a tokio runtime was already started"));
        }
        Ok(runtime.block_on(future))
    }

    fn spawn<F: Future<Output = ()> + Send + 'static>(task: F) -> io::Result<()> {
        let runtime = RUNTIME
            .get()
            .ok_or_else(|| io::Error::other("the tokio runtime is not started"))?;
        runtime.spawn(task);
        Ok(())
    }

    fn listener(listener: std::net::TcpListener) -> io::Result<TcpListener> {
        listener.set_nonblocking(true)?;
        TcpListener::from_std(listener)
    }

    async fn accept(listener: &TcpListener) -> io::Result<(TcpStream, SocketAddr)> {
        listener.accept().await
    }

    // The reader and writer share the stream by reference, so they use
    // readiness plus `try_*` rather than `AsyncRead`/`AsyncWrite`, which
    // want it mutably.
    async fn read(stream: &TcpStream, buf: &mut [u8]) -> io::Result<usize> {
        stream
            .async_io(Interest::READABLE, || stream.try_read(buf))
            .await
    }

    async fn write(stream: &TcpStream, buf: &[u8]) -> io::Result<usize> {
        stream
            .async_io(Interest::WRITABLE, || stream.try_write(buf))
            .await
    }

    async fn sleep(duration: Duration) {
        tokio::time::sleep(duration).await;
    }

    fn try_write(stream: &TcpStream, buf: &[u8]) -> io::Result<usize> {
        stream.try_write(buf)
    }
}

fn main() -> ExitCode {
    chat_runtime::main::<Tokio>(
        env!("CARGO_PKG_NAME"),
        "A line-based TCP chat server (tokio). Join with `nc HOST PORT`.",
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use chat_runtime::Runtime as _;

    #[test]
    fn tasks_start_from_threads_outside_the_runtime() {
        let ran = Tokio::block_on(async {
            let (sender, receiver) = tokio::sync::oneshot::channel();
            let outside = std::thread::spawn(move || {
                Tokio::spawn(async move {
                    let _ = sender.send(());
                })
            });
            let spawned = outside.join().map_err(|_| "the spawning thread panicked");
            (spawned, receiver.await.is_ok())
        });
        let (spawned, ran) = ran.expect("runtime");
        spawned.expect("spawn").expect("spawn");
        assert!(ran, "the task did not run");
    }
}
