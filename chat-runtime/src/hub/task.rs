//! [`Task`]: how a task calls the hub. Each call writes what it left to
//! write, so no caller can forget to.

use std::io::ErrorKind::{Interrupted, WouldBlock};
use std::marker::PhantomData;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;
use std::time::{Duration, Instant};

use chat_core::cluster::{CallId, Reply};
use tracing::{debug, warn};

use super::{After, Half, Hub, Link, Next};
use crate::Runtime;
use crate::reader::reader;
use crate::stream::Stream;
use crate::writer::{Unwritten, writer};

/// Connections one task writes to when [`Runtime::SHARE_WRITES`] splits a
/// list; small, so that a preempted thread holds back few clients.
const SHARE_PART: usize = 4;
/// Most tasks started by [`Runtime::SHARE_WRITES`] that run at once.
const MAX_SHARING: usize = 16;

/// One task's handle on the hub, with its scratch: each method makes one
/// hub call, then writes, without blocking, to the connections that call
/// left output for ([`Task::write_queued`]).
#[derive(Debug)]
pub(crate) struct Task<R: Runtime> {
    pub(super) hub: Arc<Hub<R::Stream>>,
    pub(super) after: After<R::Stream>,
    runtime: PhantomData<fn() -> R>,
}

impl<R: Runtime> Task<R> {
    pub(crate) fn new(hub: Arc<Hub<R::Stream>>) -> Task<R> {
        Task {
            hub,
            after: After::default(),
            runtime: PhantomData,
        }
    }

    /// A handle for another task, on the same hub.
    pub(crate) fn sibling(&self) -> Task<R> {
        Task::new(self.hub.clone())
    }

    /// Takes new connections in; start each one's reader with
    /// [`Task::start_reader`].
    pub(crate) fn connect(
        &mut self,
        accepted: impl Iterator<Item = (Stream<R::Stream>, SocketAddr)>,
    ) -> Vec<Arc<Link<R::Stream>>> {
        let links = self.hub.connect(accepted, &mut self.after);
        self.write_queued();
        links
    }

    /// Starts the connection's reader, or closes it if it cannot start.
    pub(crate) fn start_reader(&mut self, link: Arc<Link<R::Stream>>) {
        let handshaking = link.stream.is_tls();
        self.spawn_reader(link, handshaking);
    }

    /// For a TLS reader whose handshake is over: a new reader task takes
    /// over the connection (see `reader`), or it is closed if that task
    /// cannot start.
    pub(crate) fn restart_reader(&mut self, link: Arc<Link<R::Stream>>) {
        self.spawn_reader(link, false);
    }

    fn spawn_reader(&mut self, link: Arc<Link<R::Stream>>, handshaking: bool) {
        let task = reader::<R>(self.sibling(), link.clone(), handshaking);
        self.spawn_for(task, &[link], Half::Reader);
        self.write_queued();
    }

    /// See [`Hub::received`].
    pub(crate) fn received(&mut self, link: &Link<R::Stream>, bytes: &[u8]) -> bool {
        let paused = self.hub.received(link, bytes, &mut self.after);
        self.write_queued();
        paused
    }

    /// See [`Hub::paused`].
    pub(crate) fn paused(&self, link: &Link<R::Stream>) -> bool {
        self.hub.paused(link)
    }

    /// See [`Hub::eof`]: the reader's last call on EOF.
    pub(crate) fn eof(&mut self, link: &Link<R::Stream>) {
        self.hub.eof(link, &mut self.after);
        self.write_queued();
    }

    /// See [`Hub::finished`].
    pub(crate) fn finished(&mut self, link: &Link<R::Stream>, half: Half) {
        self.hub.finished(link, half, &mut self.after);
        self.write_queued();
    }

    /// For a writer: see [`Hub::take`]; the output goes into `out`.
    pub(crate) fn take(
        &mut self,
        link: &Link<R::Stream>,
        written: usize,
        out: &mut Unwritten,
    ) -> Next {
        let next = self.hub.take(link, written, out.refill(), &mut self.after);
        self.write_queued();
        next
    }

    /// For a TLS reader: see [`Hub::handshaken`].
    pub(crate) fn handshaken(&mut self, link: &Link<R::Stream>) {
        self.hub.handshaken(link, &mut self.after);
        self.write_queued();
    }

    /// For a TLS reader: see [`Hub::send_session`].
    pub(crate) fn send_session(&mut self, link: &Link<R::Stream>) {
        self.hub.send_session(link, &mut self.after);
        self.write_queued();
    }

    /// For a writer: see [`Hub::written`].
    pub(crate) fn written(&mut self, link: &Link<R::Stream>, len: usize) {
        self.hub.written(link, len, &mut self.after);
        self.write_queued();
    }

    /// See [`Hub::start`].
    pub(crate) fn start(&mut self) {
        self.hub.start(&mut self.after);
        self.write_queued();
    }

    /// See [`Hub::cluster_reply`].
    pub(crate) fn cluster_reply(&mut self, id: CallId, reply: Reply) {
        self.hub.cluster_reply(id, reply, &mut self.after);
        self.write_queued();
    }

    /// See [`Hub::cluster_down`].
    pub(crate) fn cluster_down(&mut self) {
        self.hub.cluster_down(&mut self.after);
        self.write_queued();
    }

    /// See [`Hub::wait_room`].
    pub(crate) fn wait_room(&self, limit: Duration) -> bool {
        self.hub.wait_room(limit)
    }

    /// See [`Hub::wait_redis`].
    pub(crate) fn wait_redis(&self, limit: Duration) -> bool {
        self.hub.wait_redis(limit)
    }

    /// See [`Hub::tick`].
    pub(crate) fn tick(&mut self) {
        self.hub.tick(&mut self.after);
        self.write_queued();
    }

    /// See [`Hub::shutdown`].
    pub(crate) fn shutdown(&mut self) {
        self.hub.shutdown(&mut self.after);
        self.write_queued();
    }

    /// See [`Hub::wait_idle`].
    pub(crate) fn wait_idle(&self, limit: Duration) -> bool {
        self.hub.wait_idle(limit)
    }

    /// Writes what the connections in `to_write` have queued, without
    /// blocking; a connection whose socket does not take it all gets a
    /// writer for the rest. The write buffer lives only for the call: a
    /// task per client keeps no scratch while its client is quiet.
    fn write_queued(&mut self) {
        if R::SHARE_WRITES {
            self.share();
        }
        let mut out = Unwritten::default();
        while let Some(link) = self.after.to_write.pop() {
            self.write_now(link, &mut out);
        }
    }

    /// Writes the connection's output until it has none left (it is then
    /// released, or done) or its socket takes less than offered: a writer
    /// then takes over what is unwritten. What a TLS session holds is
    /// written before more is taken, and before the connection is released.
    fn write_now(&mut self, link: Arc<Link<R::Stream>>, out: &mut Unwritten) {
        let mut written = 0;
        loop {
            match link.stream.try_flush::<R>() {
                Ok(true) => {}
                Ok(false) => return self.start_writer(link, out, written),
                Err(error) => return self.write_failed(&link, &error),
            }
            let chunks = out.refill();
            match self.hub.take(&link, written, chunks, &mut self.after) {
                Next::Write => written = 0,
                Next::Idle => return,
                Next::Finish => {
                    link.stream.close_notify();
                    return match link.stream.try_flush::<R>() {
                        Ok(true) => self.hub.finished(&link, Half::Writer, &mut self.after),
                        Ok(false) => self.start_writer(link, out, 0),
                        Err(error) => self.write_failed(&link, &error),
                    };
                }
                Next::Done => return self.hub.finished(&link, Half::Writer, &mut self.after),
            }
            while let Some(bytes) = out.next() {
                let offered = bytes.len();
                match link.stream.try_write::<R>(bytes) {
                    Ok(len) => {
                        out.advance(len);
                        written += len;
                        if len < offered {
                            return self.start_writer(link, out, written);
                        }
                    }
                    Err(error) if matches!(error.kind(), WouldBlock | Interrupted) => {
                        return self.start_writer(link, out, written);
                    }
                    Err(error) => return self.write_failed(&link, &error),
                }
            }
        }
    }

    /// A write to the connection failed: its writing is done.
    fn write_failed(&mut self, link: &Link<R::Stream>, error: &std::io::Error) {
        debug!(conn = %link.id, "write failed: {error}");
        self.hub.finished(link, Half::Writer, &mut self.after);
    }

    /// The socket is full: reports the `written` bytes it took and that
    /// it is full, then hands what is unwritten to a new writer, whose
    /// writes are then the client reading.
    fn start_writer(&mut self, link: Arc<Link<R::Stream>>, out: &mut Unwritten, written: usize) {
        self.hub.blocked(&link, written, &mut self.after);
        let out = std::mem::take(out);
        let task = writer::<R>(self.sibling(), link.clone(), out);
        self.spawn_for(task, &[link], Half::Writer);
    }

    /// Starts `task`, which runs `half` of the `links`; if it cannot be
    /// started, they are closed (see the crate docs), and that is logged
    /// within the hub's budget for it. Returns whether it started.
    fn spawn_for<F>(&mut self, task: F, links: &[Arc<Link<R::Stream>>], half: Half) -> bool
    where
        F: Future<Output = ()> + Send + 'static,
    {
        let spawned = match half {
            Half::Reader => R::spawn(task),
            Half::Writer => R::spawn_writer(task),
        };
        let Err(error) = spawned else {
            return true;
        };
        if let Some(left_out) = crate::lock(&self.hub.refused).admit(Instant::now()) {
            warn!(
                connections = links.len(),
                "cannot start a task: {error}{left_out}"
            );
        }
        for link in links {
            self.hub.finished(link, half, &mut self.after);
        }
        false
    }

    /// Hands parts of `to_write` to new tasks (see
    /// [`Runtime::SHARE_WRITES`]), leaving the caller the last 1 to
    /// [`SHARE_PART`] connections to write (more once [`MAX_SHARING`]
    /// tasks run).
    fn share(&mut self) {
        let take_slot = |n: usize| (n < MAX_SHARING).then_some(n + 1);
        while self.after.to_write.len() > SHARE_PART
            && self
                .hub
                .sharing
                .fetch_update(Relaxed, Relaxed, take_slot)
                .is_ok()
        {
            let from = self.after.to_write.len() - SHARE_PART;
            // Shared with the task, so that the caller still has the part
            // should the task not start.
            let part: Arc<[_]> = self.after.to_write.drain(from..).collect();
            let (mut task, links) = (self.sibling(), part.clone());
            let job = async move {
                let mut out = Unwritten::default();
                links
                    .iter()
                    .for_each(|link| task.write_now(link.clone(), &mut out));
                task.write_queued();
                task.hub.sharing.fetch_sub(1, Relaxed);
            };
            if !self.spawn_for(job, &part, Half::Writer) {
                self.hub.sharing.fetch_sub(1, Relaxed);
                return;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{Threads, refuse_spawns};
    use socket2::SockRef;
    use std::io::{BufRead as _, BufReader};
    use std::net::{TcpListener, TcpStream};

    /// `n` clients of a new task's hub, and their links.
    fn clients(n: usize) -> (Task<Threads>, Vec<Arc<Link<TcpStream>>>, Vec<TcpStream>) {
        let mut task = Task::new(Arc::new(Hub::new(chat_core::Config::default(), 7, None)));
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let clients: Vec<_> = (0..n).map(|_| TcpStream::connect(addr).unwrap()).collect();
        let accepted: Vec<_> = clients.iter().map(|_| listener.accept().unwrap()).collect();
        for (stream, _) in &accepted {
            stream.set_nonblocking(true).unwrap();
            // Small, so that a socket fills after a few lines.
            SockRef::from(stream).set_send_buffer_size(4096).unwrap();
        }
        let streams = accepted
            .into_iter()
            .map(|(socket, peer)| (Stream::plain(socket), peer));
        let links = task.connect(streams);
        (task, links, clients)
    }

    /// Reads lines from `client` until one ends with `end` (true) or the
    /// connection ends (false).
    fn reads_line_ending(client: &TcpStream, end: &str) -> bool {
        client
            .set_read_timeout(Some(Duration::from_secs(5)))
            .unwrap();
        let mut lines = BufReader::new(client).lines().map_while(Result::ok);
        lines.any(|line| line.ends_with(end))
    }

    #[test]
    fn what_a_socket_took_before_a_writer_started_is_reported() {
        let (mut task, links, clients) = clients(2);
        // More than the reader's socket holds while it does not read, in
        // lines of 1000 bytes: its writes go partial, and writers start.
        const LINES: usize = 400;
        let mut line = vec![b'x'; 999];
        line.push(b'\n');
        for _ in 0..LINES {
            task.received(&links[0], &line);
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
        while task.hub.pending_bytes(&links[1]) != Some(0) && waited < 5000 {
            std::thread::sleep(Duration::from_millis(1));
            waited += 1;
        }
        assert_eq!(
            task.hub.pending_bytes(&links[1]),
            Some(0),
            "bytes never reported"
        );
    }

    #[test]
    fn a_task_that_cannot_start_closes_its_connections() {
        refuse_spawns();
        // Joins, then a line, for everyone: each time the first part's task
        // does not start, and no other is tried.
        let (mut task, links, clients) = clients(4 * SHARE_PART);
        task.received(&links[0], b"hello\n");
        assert!(task.after.to_write.is_empty());
        assert_eq!(task.hub.sharing.load(Relaxed), 0);
        let state = task.hub.lock();
        let aborted = |link: &Arc<Link<TcpStream>>| state.conns[&link.id].aborted;
        assert_eq!(
            links.iter().filter(|link| aborted(link)).count(),
            2 * SHARE_PART
        );
        let others = links[1..].iter().zip(&clients[1..]);
        for (link, client) in others {
            assert_eq!(reads_line_ending(client, ": hello"), !aborted(link));
        }
        // Two refusals: the first was logged, so the next is only counted.
        let now = Instant::now();
        assert!(crate::lock(&task.hub.refused).admit(now).is_none());
    }
}
