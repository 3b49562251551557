//! A `redis-server` of a test's own, for every test of the shared room
//! that needs a real Redis: the cluster checks here, and the driver's
//! script tests in `chat-runtime`.

use std::io::{Read as _, Write as _};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::thread;
use std::time::{Duration, Instant};

/// How long a started server may take to answer PING.
const READY_WITHIN: Duration = Duration::from_secs(10);

/// A `redis-server` on a free loopback port, without persistence (as a
/// restart of one that had none), killed when dropped.
#[derive(Debug)]
pub struct RedisProcess {
    child: Option<Child>,
    port: u16,
    /// With persistence: the append-only file's directory, kept across
    /// restarts, removed when dropped.
    dir: Option<PathBuf>,
}

/// Why a started server is not serving.
enum NotReady {
    /// It exited (most likely: another process took the port first).
    Exited(ExitStatus),
    /// It did not answer PING within [`READY_WITHIN`].
    Silent,
}

impl RedisProcess {
    /// Starts a server, or returns `None` when `redis-server` is not on
    /// PATH, after printing one line saying so. In CI (`CI` set and not
    /// empty) a missing server fails the test instead, so that the
    /// cluster's tests cannot be skipped there.
    pub fn start() -> Option<RedisProcess> {
        RedisProcess::start_in(None)
    }

    /// [`RedisProcess::start`] with every write in an append-only file,
    /// synced before it is answered (`appendfsync always`): a restart
    /// after [`RedisProcess::stop`] finds everything it had.
    pub fn start_persistent() -> Option<RedisProcess> {
        // One directory per server: checks run in parallel.
        let dir = crate::tls::scratch_dir(&format!("redis-{}", crate::marker()));
        RedisProcess::start_in(Some(dir))
    }

    fn start_in(dir: Option<PathBuf>) -> Option<RedisProcess> {
        // The port is free when read, but may be taken before the server
        // binds it: then the server exits, and another port is tried.
        let mut exits = Vec::new();
        for _ in 0..3 {
            let mut redis = RedisProcess {
                child: None,
                port: free_port(),
                dir: dir.clone(),
            };
            match redis.spawn() {
                Ok(()) => return Some(redis),
                Err(Some(status)) => exits.push(status),
                Err(None) => return missing(),
            }
        }
        panic!("redis-server exited at start, three times: {exits:?}");
    }

    /// Its URL, for `--redis`.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/", self.port)
    }

    /// Kills it (as a crash would: nothing saved).
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts it again on the same port, empty, after [`RedisProcess::stop`].
    pub fn start_again(&mut self) {
        self.stop();
        if let Err(status) = self.spawn() {
            panic!(
                "redis-server did not start again on port {}: {status:?}",
                self.port
            );
        }
    }

    /// Starts the server and waits until it answers PING; `Err(None)` if
    /// there is no `redis-server`.
    fn spawn(&mut self) -> Result<(), Option<ExitStatus>> {
        let mut command = Command::new("redis-server");
        command
            .args(["--port", &self.port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--daemonize", "no"]);
        match &self.dir {
            Some(dir) => command
                .args(["--appendonly", "yes", "--appendfsync", "always", "--dir"])
                .arg(dir),
            None => command.args(["--appendonly", "no"]),
        };
        let spawned = command
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn();
        let child = match spawned {
            Ok(child) => child,
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Err(None),
            Err(error) => panic!("cannot start redis-server: {error}"),
        };
        self.child = Some(child);
        match self.wait_ready() {
            Ok(()) => Ok(()),
            Err(NotReady::Exited(status)) => Err(Some(status)),
            Err(NotReady::Silent) => panic!(
                "redis-server on port {} did not answer PING within {READY_WITHIN:?}",
                self.port
            ),
        }
    }

    /// Polls until the server answers PING, or exits, or
    /// [`READY_WITHIN`] has passed.
    fn wait_ready(&mut self) -> Result<(), NotReady> {
        let deadline = Instant::now() + READY_WITHIN;
        while Instant::now() < deadline {
            if let Some(Ok(Some(status))) = self.child.as_mut().map(Child::try_wait) {
                return Err(NotReady::Exited(status));
            }
            if ping(self.port) {
                return Ok(());
            }
            // A poll interval, not a synchronisation: PING decides.
            thread::sleep(Duration::from_millis(20));
        }
        Err(NotReady::Silent)
    }
}

impl Drop for RedisProcess {
    fn drop(&mut self) {
        self.stop();
        if let Some(dir) = &self.dir {
            let _ = std::fs::remove_dir_all(dir);
        }
    }
}

/// Whether a server on `port` answers PING (in RESP, which for PING is
/// one line each way).
fn ping(port: u16) -> bool {
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let Ok(mut stream) = TcpStream::connect_timeout(&addr, Duration::from_millis(200)) else {
        return false;
    };
    let _ = stream.set_read_timeout(Some(Duration::from_millis(500)));
    let mut reply = [0; 7];
    stream.write_all(b"PING\r\n").is_ok()
        && stream.read_exact(&mut reply).is_ok()
        && &reply == b"+PONG\r\n"
}

/// A loopback port nothing listened on a moment ago.
fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .map(|addr| addr.port())
        .unwrap_or_else(|error| panic!("cannot find a free port: {error}"))
}

/// What a test does without `redis-server`: fails in CI, else skips.
fn missing() -> Option<RedisProcess> {
    let in_ci = std::env::var_os("CI").is_some_and(|ci| !ci.is_empty());
    assert!(
        !in_ci,
        "redis-server not found on PATH, and CI is set: the cluster tests must run here \
         (apt-get install redis-server)"
    );
    // Not println: the test harness shows a passing test's stdout to no one.
    eprintln!("skipped: redis-server not found; apt-get install redis-server");
    None
}
