//! A `redis-server` of a test's own, for every test of the cluster that
//! needs a real Redis.

use std::net::TcpListener;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

/// How long a started server may take to answer PING.
const READY_WITHIN: Duration = Duration::from_secs(10);

/// A `redis-server` on a free loopback port, without persistence, killed
/// when dropped.
#[derive(Debug)]
pub(crate) struct RedisServer {
    child: Child,
    url: String,
}

/// Why a started server is not serving.
enum NotReady {
    /// It exited (most likely: another process took the port first).
    Exited(ExitStatus),
    /// It did not answer PING within [`READY_WITHIN`].
    Silent,
}

impl RedisServer {
    /// Starts a server, or returns `None` when `redis-server` is not on
    /// PATH, after printing one line saying so. In CI (`CI` set and not
    /// empty) a missing server fails the test instead, so that the
    /// cluster's tests cannot be skipped there.
    pub(crate) fn start() -> Option<RedisServer> {
        // The port is free when read, but may be taken before the server
        // binds it: then the server exits, and another port is tried.
        let mut exits = Vec::new();
        for _ in 0..3 {
            let port = free_port();
            let spawned = Command::new("redis-server")
                .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
                .args(["--save", "", "--appendonly", "no", "--daemonize", "no"])
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn();
            let child = match spawned {
                Ok(child) => child,
                Err(error) if error.kind() == std::io::ErrorKind::NotFound => return missing(),
                Err(error) => panic!("cannot start redis-server: {error}"),
            };
            let mut server = RedisServer {
                child,
                url: format!("redis://127.0.0.1:{port}/"),
            };
            match server.wait_ready() {
                Ok(()) => return Some(server),
                Err(NotReady::Exited(status)) => exits.push(status),
                Err(NotReady::Silent) => {
                    panic!(
                        "redis-server on port {port} did not answer PING within {READY_WITHIN:?}"
                    )
                }
            }
        }
        panic!("redis-server exited at start, three times: {exits:?}");
    }

    /// A new connection to the server, whose reads fail after 10 s
    /// rather than hang a test.
    pub(crate) fn connect(&self) -> redis::Connection {
        let con = redis::Client::open(self.url.as_str())
            .and_then(|client| client.get_connection_with_timeout(Duration::from_secs(5)))
            .unwrap_or_else(|error| panic!("cannot connect to {}: {error}", self.url));
        con.set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap_or_else(|error| panic!("cannot set a read timeout: {error}"));
        con
    }

    /// Polls until the server answers PING, or exits, or
    /// [`READY_WITHIN`] has passed.
    fn wait_ready(&mut self) -> Result<(), NotReady> {
        let deadline = Instant::now() + READY_WITHIN;
        while Instant::now() < deadline {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Err(NotReady::Exited(status));
            }
            let pong = redis::Client::open(self.url.as_str())
                .and_then(|client| client.get_connection_with_timeout(Duration::from_millis(200)))
                .and_then(|mut con| redis::cmd("PING").query::<String>(&mut con));
            if pong.is_ok_and(|pong| pong == "PONG") {
                return Ok(());
            }
            // A poll interval, not a synchronisation: PING decides.
            std::thread::sleep(Duration::from_millis(20));
        }
        Err(NotReady::Silent)
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A loopback port nothing listened on a moment ago.
fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .map(|addr| addr.port())
        .unwrap_or_else(|error| panic!("cannot find a free port: {error}"))
}

/// What a test does without `redis-server`: fails in CI, else skips.
fn missing() -> Option<RedisServer> {
    let in_ci = std::env::var_os("CI").is_some_and(|ci| !ci.is_empty());
    assert!(
        !in_ci,
        "redis-server not found on PATH, and CI is set: the cluster tests must run here \
         (apt-get install redis-server)"
    );
    println!("skipped: redis-server not found; apt-get install redis-server");
    None
}
