//! The accept loop, and the timer and signal threads.

use std::io::{self, Write as _};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use socket2::{Domain, Protocol, SockRef, Socket, Type};
use tracing::{debug, error, info, warn};

use chat_core::cluster::ClusterConfig;

use crate::Runtime;
use crate::cluster::RedisSettings;
use crate::cluster::link::RedisLink;
use crate::hub::{FLUSH_LIMIT, Hub, Task};
use crate::log_budget::LogBudget;
use crate::stream::Stream;
use crate::tls::{Certificates, Tls};

/// Most connections taken in under one lock of the hub.
const ACCEPT_BATCH: usize = 128;
/// Pause after a failed accept (out of file descriptors, say), so the error
/// is not retried in a tight loop.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);
/// How long a node of a shared room waits at start for the room to answer
/// before it takes clients anyway (and refuses them until it does).
const ROOM_WAIT: Duration = Duration::from_secs(5);
/// Pending connections the kernel queues before the server accepts them;
/// large so that a burst of clients is not refused.
const LISTEN_BACKLOG: i32 = 4096;

/// Binds the listeners, announces their addresses, then accepts until the
/// process exits: plain TCP on `plain`, TLS on `tls`, one room for both.
pub(crate) async fn serve<R: Runtime>(
    plain: Option<SocketAddr>,
    tls: Option<(SocketAddr, Tls)>,
    config: chat_core::Config,
    redis: Option<RedisSettings>,
) -> io::Result<()> {
    let listen = |addr: SocketAddr| {
        bind(addr).map_err(|e| io::Error::new(e.kind(), format!("cannot listen on {addr}: {e}")))
    };
    let plain = plain.map(listen).transpose()?;
    let tls = match tls {
        Some((addr, tls)) => Some((listen(addr)?, tls)),
        None => None,
    };
    let handshake_timeout = tls.as_ref().map(|(_, tls)| tls.handshake_timeout);
    let certificates = tls.as_ref().map(|(_, tls)| tls.certificates.clone());
    let any = plain
        .as_ref()
        .or(tls.as_ref().map(|(listener, _)| listener));
    let seed_addr = any.map(std::net::TcpListener::local_addr).transpose()?;
    let seed = std::hash::BuildHasher::hash_one(&std::hash::RandomState::new(), seed_addr);
    let mut server = chat_core::Server::new(config, seed);
    let link = redis.as_ref().map(|_| Arc::new(RedisLink::default()));
    if let Some(settings) = &redis {
        let cluster = ClusterConfig::new(&settings.node);
        server = server.with_cluster(cluster).map_err(io::Error::other)?;
    }
    let hub = Hub::with_server(server, handshake_timeout, link.clone());
    let mut task = Task::<R>::new(Arc::new(hub));
    if let (Some(link), Some(settings)) = (link, &redis) {
        info!(node = %settings.node, url = %settings.url, "joining the room in Redis");
        crate::cluster::link::start(link, settings, &task, seed)?;
        // The hello goes out now, not with the first client; clients are
        // taken once the room answers (until then they wait in the
        // listen backlog rather than be refused), or a moment later.
        task.start();
        if !task.wait_room(ROOM_WAIT) {
            warn!("the room in Redis does not answer yet: clients are refused until it does");
        }
    }
    // Before announcing the addresses, so that a signal sent as soon as
    // they are seen already shuts down cleanly.
    watch_signals(task.sibling(), certificates)?;
    start_timer(task.sibling())?;

    let mut listeners = Vec::new();
    let mut stdout = io::stdout().lock();
    for (listener, tls) in plain
        .map(|l| (l, None))
        .into_iter()
        .chain(tls.map(|(l, tls)| (l, Some(tls))))
    {
        let local = listener.local_addr()?;
        let suffix = if tls.is_some() { " (tls)" } else { "" };
        info!(%local, tls = tls.is_some(), "listening");
        // Whoever started us may not read stdout; serving matters more.
        let _ = writeln!(stdout, "listening on {local}{suffix}").and_then(|()| stdout.flush());
        listeners.push((R::listener(listener)?, tls));
    }
    drop(stdout);
    if listeners.is_empty() {
        return Err(io::Error::other("no address to listen on"));
    }
    // Each accept loop is a task of the runtime, none runs on this thread:
    // what a connection keeps for its life (its link, its TLS session) is
    // then allocated where its reader runs its handshake, in the malloc
    // arenas that reuse what handshakes free. Allocated on this thread
    // instead, it left ~1 KB per idle TLS client free but resident in the
    // workers' arenas (docs/performance.md, "TLS").
    for (listener, tls) in listeners {
        R::spawn(accept_loop::<R>(listener, task.sibling(), tls))?;
    }
    std::future::pending().await
}

/// Accepts connections on `listener`, over TLS if `tls` is given, until
/// the process exits.
async fn accept_loop<R: Runtime>(listener: R::Listener, mut task: Task<R>, tls: Option<Tls>) {
    let mut batch = Vec::with_capacity(ACCEPT_BATCH);
    // An accept fails again at each retry while, say, clients hold every
    // file descriptor: logged once a minute at most.
    let mut accept_failures = LogBudget::default();
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
                start(&mut task, &mut batch, tls.as_ref());
            }
            Err(error) => {
                if let Some(left_out) = accept_failures.admit(Instant::now()) {
                    warn!("accept failed: {error}{left_out}");
                }
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

/// Takes accepted connections in (emptying `accepted`), each with a TLS
/// session if `tls` is given, and starts the reader of each.
fn start<R: Runtime>(
    task: &mut Task<R>,
    accepted: &mut Vec<(R::Stream, SocketAddr)>,
    tls: Option<&Tls>,
) {
    let streams = accepted.drain(..).filter_map(|(socket, peer)| {
        if let Err(error) = set_options(SockRef::from(&socket)) {
            debug!(%peer, "cannot set socket options: {error}");
        }
        let Some(tls) = tls else {
            return Some((Stream::plain(socket), peer));
        };
        match tls.session() {
            Ok(session) => Some((Stream::tls(socket, session), peer)),
            Err(error) => {
                warn!(%peer, "cannot start a TLS session: {error}");
                None
            }
        }
    });
    let streams: Vec<_> = streams.collect();
    for link in task.connect(streams.into_iter()) {
        task.start_reader(link);
    }
}

/// Idle time before TCP keepalive probes a connection, the time between
/// probes, and the probes unanswered before the kernel fails the socket: a
/// peer that vanished without a FIN frees its slot within about two minutes.
const KEEPALIVE_IDLE: Duration = Duration::from_secs(60);
const KEEPALIVE_INTERVAL: Duration = Duration::from_secs(10);
const KEEPALIVE_PROBES: u32 = 6;

/// The send buffer of every accepted socket (Linux doubles it for its
/// bookkeeping): what the kernel holds for a client that does not read is
/// bounded (autotuning lets it grow to `tcp_wmem`'s maximum, 4 MiB by
/// default), and a full socket lets a writer go on as soon as the client
/// has read a third of it, so that the core sees a reader read soon: a
/// reader whose socket has just filled looks like one that never reads
/// until then. With 512 KiB, readers of an unwindowed fanout reading
/// ~1.6 MB/s beside the load generator were dropped at `--max-queue`
/// before their first write showed (docs/performance.md).
const SEND_BUFFER: usize = 128 * 1024;

/// Options of every accepted socket: lines are small and should leave at
/// once, not wait for an ACK (TCP_NODELAY); keepalive finds vanished peers;
/// the send buffer is [`SEND_BUFFER`].
fn set_options(socket: SockRef<'_>) -> io::Result<()> {
    socket.set_tcp_nodelay(true)?;
    socket.set_send_buffer_size(SEND_BUFFER)?;
    let keepalive = socket2::TcpKeepalive::new()
        .with_time(KEEPALIVE_IDLE)
        .with_interval(KEEPALIVE_INTERVAL)
        .with_retries(KEEPALIVE_PROBES);
    socket.set_tcp_keepalive(&keepalive)
}

/// Starts the thread that runs the core's timers and bounds flushing
/// closes, for as long as the process runs (see `Task::tick`).
fn start_timer<R: Runtime>(mut task: Task<R>) -> io::Result<()> {
    std::thread::Builder::new()
        .name("timer".into())
        .spawn(move || {
            loop {
                task.tick();
            }
        })?;
    Ok(())
}

/// On the first SIGINT or SIGTERM, shuts the server down: every client is
/// told, output is flushed for up to [`FLUSH_LIMIT`], and the process exits
/// with 0. With a TLS certificate from files, SIGHUP reloads it (see
/// `tls::Certificates`). A thread of its own, so it works the same on every
/// runtime.
fn watch_signals<R: Runtime>(
    mut task: Task<R>,
    certificates: Option<Arc<Certificates>>,
) -> io::Result<()> {
    use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};
    // SIGHUP is taken over only when it has a job: otherwise it keeps
    // ending the process, as for any program whose terminal closes.
    let reloads = certificates.filter(|certificates| certificates.reloads());
    let mut signals = signal_hook::iterator::Signals::new([SIGINT, SIGTERM])?;
    if reloads.is_some() {
        signals.add_signal(SIGHUP)?;
    }
    std::thread::Builder::new()
        .name("signals".into())
        .spawn(move || {
            for signal in signals.forever() {
                if let (SIGHUP, Some(certificates)) = (signal, &reloads) {
                    match certificates.reload() {
                        Ok(()) => info!("TLS certificate reloaded"),
                        Err(error) => {
                            error!("TLS certificate not reloaded, the old one stays: {error}")
                        }
                    }
                    continue;
                }
                info!(signal, "shutting down");
                task.shutdown();
                let deadline = Instant::now() + FLUSH_LIMIT;
                if task.wait_idle(FLUSH_LIMIT) {
                    info!("all connections closed");
                } else {
                    warn!("closing connections that did not take their output in time");
                }
                // A node of a shared room tells the others its users left.
                if !task.wait_redis(deadline.saturating_duration_since(Instant::now())) {
                    warn!("the room in Redis was not told this server left; the others find out");
                }
                std::process::exit(0);
            }
        })?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepted_sockets_use_keepalive() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let _client =
            std::net::TcpStream::connect(listener.local_addr().expect("addr")).expect("connect");
        let (accepted, _) = listener.accept().expect("accept");
        let socket = SockRef::from(&accepted);
        assert!(!socket.keepalive().expect("SO_KEEPALIVE"));
        set_options(SockRef::from(&accepted)).expect("set options");
        assert!(socket.keepalive().expect("SO_KEEPALIVE"));
        assert_eq!(
            socket.tcp_keepalive_time().expect("TCP_KEEPIDLE"),
            KEEPALIVE_IDLE
        );
        assert_eq!(
            socket.tcp_keepalive_interval().expect("TCP_KEEPINTVL"),
            KEEPALIVE_INTERVAL
        );
        assert_eq!(
            socket.tcp_keepalive_retries().expect("TCP_KEEPCNT"),
            KEEPALIVE_PROBES
        );
        assert!(socket.tcp_nodelay().expect("TCP_NODELAY"));
        // Linux doubles what it is given.
        assert_eq!(
            socket.send_buffer_size().expect("SO_SNDBUF"),
            2 * SEND_BUFFER
        );
    }
}
