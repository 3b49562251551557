//! The runtime of the unit tests: std sockets and a thread per task.

use std::cell::Cell;
use std::io;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::time::Duration;

use crate::Runtime;

/// Std sockets and a thread per task; [`refuse_spawns`] makes spawns on
/// the calling thread fail.
pub(crate) struct Threads;

thread_local! {
    static REFUSE_SPAWNS: Cell<bool> = const { Cell::new(false) };
}

/// From now on, tasks started from this thread cannot be started.
pub(crate) fn refuse_spawns() {
    REFUSE_SPAWNS.set(true);
}

impl Runtime for Threads {
    type Listener = TcpListener;
    type Stream = TcpStream;
    const SHARE_WRITES: bool = true;

    fn block_on<F: Future>(_: F) -> io::Result<F::Output> {
        Err(io::Error::other("not in these tests"))
    }
    fn spawn<F: Future<Output = ()> + Send + 'static>(task: F) -> io::Result<()> {
        if REFUSE_SPAWNS.get() {
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
                // A retry, not a synchronisation: the socket has no waker.
                Err(error) if error.kind() == io::ErrorKind::WouldBlock => {
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
