//! `chat-std`: the chat server (join with `nc HOST PORT`) on blocking std
//! sockets and threads, with no async runtime: each connection has a reader
//! thread with a small stack, and a writer thread only while the socket does
//! not take its output at once, so ten thousand clients fit. The
//! shared driver in `chat_runtime` is written as futures; here each one runs
//! on its own thread with [`block_on`], whose waker unparks that thread, and
//! socket calls simply block.

use std::io::{self, Read as _, Write as _};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::pin::pin;
use std::process::ExitCode;
use std::sync::Arc;
use std::task::{Context, Poll, Wake, Waker};
use std::thread::{self, Thread};
use std::time::Duration;

use socket2::SockRef;

/// Stack of each connection thread: the driver's futures are small and
/// buffers live on the heap.
const STACK_SIZE: usize = 64 * 1024;

/// Blocking std sockets and one thread per task, as `chat_runtime` uses them.
struct Std;

impl chat_runtime::Runtime for Std {
    type Listener = TcpListener;
    type Stream = TcpStream;

    fn block_on<F: Future>(future: F) -> io::Result<F::Output> {
        Ok(block_on(future))
    }

    fn spawn<F: Future<Output = ()> + Send + 'static>(task: F) -> io::Result<()> {
        thread::Builder::new()
            .stack_size(STACK_SIZE)
            .spawn(move || block_on(task))
            .map(drop)
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
