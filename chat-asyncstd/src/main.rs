//! `chat-asyncstd`: the chat server (join with `nc HOST PORT`) on async-std.
//! Only the runtime's sockets, tasks and timer live here; the server itself
//! is `chat_runtime` driving `chat_core`.
//!
//! async-std is discontinued upstream (RUSTSEC-2025-0052) and its authors
//! point to smol. Moving there changes only this file: `smol::net` for the
//! sockets, `smol::spawn(..).detach()`, `smol::Timer::after` and
//! `smol::block_on`; the I/O calls below are the same `futures-io` traits.

use std::io;
use std::net::SocketAddr;
use std::process::ExitCode;
use std::time::Duration;

use async_std::io::{ReadExt as _, WriteExt as _};
use async_std::net::{TcpListener, TcpStream};
use async_std::task;

/// The async-std runtime, as `chat_runtime` uses it.
struct AsyncStd;

impl chat_runtime::Runtime for AsyncStd {
    type Listener = TcpListener;
    type Stream = TcpStream;

    fn block_on<F: Future>(future: F) -> io::Result<F::Output> {
        Ok(task::block_on(future))
    }

    fn spawn<F: Future<Output = ()> + Send + 'static>(task: F) -> io::Result<()> {
        task::spawn(task);
        Ok(())
    }

    fn listener(listener: std::net::TcpListener) -> io::Result<TcpListener> {
        listener.set_nonblocking(true)?;
        Ok(TcpListener::from(listener))
    }

    async fn accept(listener: &TcpListener) -> io::Result<(TcpStream, SocketAddr)> {
        listener.accept().await
    }

    // `&TcpStream` reads and writes, so the reader and writer share one stream.
    async fn read(mut stream: &TcpStream, buf: &mut [u8]) -> io::Result<usize> {
        stream.read(buf).await
    }

    async fn write(mut stream: &TcpStream, buf: &[u8]) -> io::Result<usize> {
        stream.write(buf).await
    }

    async fn sleep(duration: Duration) {
        task::sleep(duration).await;
    }
}

fn main() -> ExitCode {
    chat_runtime::main::<AsyncStd>(
        env!("CARGO_PKG_NAME"),
        "A line-based TCP chat server (async-std). Join with `nc HOST PORT`.",
    )
}
