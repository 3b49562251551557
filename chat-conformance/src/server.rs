//! [`ServerProcess`]: one server binary under test, started on free ports.

use std::io::{BufRead, BufReader, Read};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStderr, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::sync::{Arc, Mutex, Once};
use std::thread;
use std::time::{Duration, Instant};

use crate::{Endpoint, TIMEOUT, Target, TestCert};

/// How much of the server's stderr is kept to show when a check fails.
const STDERR_KEEP: usize = 16 * 1024;

/// A running server binary, killed when dropped.
///
/// Started with `--listen 127.0.0.1:0` and any extra arguments; its address
/// is the one it prints as `listening on ADDR`. In TLS mode it also gets
/// `--tls-listen 127.0.0.1:0 --tls-cert C --tls-key K`, prints
/// `listening on ADDR (tls)` next, and its address for the checks
/// ([`ServerProcess::addr`]) is that one, with the plain one beside it
/// ([`ServerProcess::plain_addr`]): both listeners feed one room. Its
/// stderr (the log) is kept (the last few KiB) and printed if the check
/// fails, so a failing check shows what the server logged.
#[derive(Debug)]
pub struct ServerProcess {
    binary: PathBuf,
    child: Child,
    /// Where the checks' clients connect: the TLS listener in TLS mode.
    addr: Endpoint,
    /// The plain listener.
    plain_addr: Endpoint,
    stderr_tail: Arc<Mutex<Vec<u8>>>,
    /// Lines printed on stdout after the `listening on` lines.
    stdout_rest: Arc<Mutex<Vec<String>>>,
    /// The thread reading stdout, joined by [`ServerProcess::stdout_after_exit`].
    stdout_reader: Option<thread::JoinHandle<()>>,
    /// The server's stderr, open and never read (see
    /// [`ServerProcess::start_with_stderr_unread`]).
    _stderr_unread: Option<ChildStderr>,
}

impl ServerProcess {
    /// Starts the target's binary with default limits, in its mode.
    pub fn start(target: &Target) -> ServerProcess {
        ServerProcess::start_with(target, &[])
    }

    /// Starts `binary --listen 127.0.0.1:0 EXTRA...` (in TLS mode with the
    /// TLS listener and [`TestCert::shared`] too) and waits (at most
    /// [`TIMEOUT`]) for it to print exactly `listening on ADDR` on stdout
    /// (and then `listening on ADDR (tls)`), with ADDR a loopback address
    /// with a real (non-zero) port.
    pub fn start_with(target: &Target, extra: &[&str]) -> ServerProcess {
        let cert = target.is_tls().then(TestCert::shared);
        ServerProcess::launch(target.binary(), cert, extra, true)
    }

    /// Like [`ServerProcess::start_with`], but nobody reads the server's
    /// stderr: once the pipe is full, every write to it would block.
    pub fn start_with_stderr_unread(target: &Target, extra: &[&str]) -> ServerProcess {
        let cert = target.is_tls().then(TestCert::shared);
        ServerProcess::launch(target.binary(), cert, extra, false)
    }

    /// [`ServerProcess::start_with`] in TLS mode with the certificate
    /// `cert`, for the checks of TLS itself.
    pub fn start_tls(binary: &Path, cert: &TestCert, extra: &[&str]) -> ServerProcess {
        ServerProcess::launch(binary, Some(cert), extra, true)
    }

    fn launch(
        binary: &Path,
        cert: Option<&TestCert>,
        extra: &[&str],
        read_stderr: bool,
    ) -> ServerProcess {
        raise_fd_limit();
        let mut command = Command::new(binary);
        command.arg("--listen").arg("127.0.0.1:0");
        if let Some(cert) = cert {
            command
                .arg("--tls-listen")
                .arg("127.0.0.1:0")
                .arg("--tls-cert")
                .arg(cert.cert_path())
                .arg("--tls-key")
                .arg(cert.key_path());
        }
        let mut child = command
            .args(extra)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", binary.display()));

        let stderr_tail = Arc::new(Mutex::new(Vec::new()));
        let mut stderr_unread = None;
        if let Some(stderr) = child.stderr.take() {
            if read_stderr {
                let tail = Arc::clone(&stderr_tail);
                thread::spawn(move || drain_stderr(stderr, &tail));
            } else {
                stderr_unread = Some(stderr);
            }
        }
        // The `listening on` lines come through the channel, the rest
        // into `stdout_rest`.
        let listening = if cert.is_some() { 2 } else { 1 };
        let stdout = child.stdout.take().expect("stdout is piped");
        let (first_tx, first_rx) = mpsc::channel();
        let stdout_rest = Arc::new(Mutex::new(Vec::new()));
        let rest = Arc::clone(&stdout_rest);
        let stdout_reader = thread::spawn(move || {
            let mut lines = BufReader::new(stdout).lines();
            for _ in 0..listening {
                let _ = first_tx.send(lines.next());
            }
            for line in lines.map_while(Result::ok) {
                rest.lock().expect("stdout lock").push(line);
            }
        });

        let placeholder = Endpoint::plain(SocketAddr::from(([127, 0, 0, 1], 0)));
        let mut server = ServerProcess {
            binary: binary.to_owned(),
            child,
            // Replaced below; the struct exists first so that a failure
            // kills the child through Drop.
            addr: placeholder.clone(),
            plain_addr: placeholder,
            stderr_tail,
            stdout_rest,
            stdout_reader: Some(stdout_reader),
            _stderr_unread: stderr_unread,
        };
        let deadline = Instant::now() + TIMEOUT;
        let mut next_line = |what: &str| match first_rx
            .recv_timeout(deadline.saturating_duration_since(Instant::now()))
        {
            Ok(Some(Ok(line))) => line,
            Ok(other) => panic!(
                "{}: stdout ended before `{what}` ({other:?}); exit status {:?}",
                binary.display(),
                server.child.try_wait()
            ),
            Err(_) => panic!(
                "{}: no `{what}` line on stdout within {TIMEOUT:?}",
                binary.display()
            ),
        };
        let plain = listening_addr(&next_line("listening on ADDR"), "");
        let tls = cert.map(|cert| {
            let addr = listening_addr(&next_line("listening on ADDR (tls)"), " (tls)");
            assert_ne!(
                addr, plain,
                "the TLS and the plain listener share an address"
            );
            cert.endpoint(addr)
        });
        server.plain_addr = Endpoint::plain(plain);
        server.addr = tls.unwrap_or_else(|| server.plain_addr.clone());
        server
    }

    /// The address the checks' clients connect to: the TLS listener in TLS
    /// mode (with the configuration that trusts the server's certificate),
    /// else the plain one.
    pub fn addr(&self) -> &Endpoint {
        &self.addr
    }

    /// The plain listener, in either mode.
    pub fn plain_addr(&self) -> &Endpoint {
        &self.plain_addr
    }

    /// The server's process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The server's resident set size in bytes (`VmRSS` in `/proc/PID/status`).
    pub fn rss_bytes(&self) -> u64 {
        let path = format!("/proc/{}/status", self.pid());
        let status = std::fs::read_to_string(&path)
            .unwrap_or_else(|e| panic!("cannot read {path}: {e} (has the server died?)"));
        let kib: u64 = status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.trim().strip_suffix("kB"))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or_else(|| panic!("no VmRSS line in {path}"));
        kib * 1024
    }

    /// Whether the process is still running.
    pub fn is_running(&mut self) -> bool {
        self.child.try_wait().expect("try_wait").is_none()
    }

    /// Asserts the server is still running (has not crashed).
    pub fn assert_running(&mut self) {
        if let Some(status) = self.child.try_wait().expect("try_wait") {
            panic!("server exited unexpectedly with {status}");
        }
    }

    /// Sends SIGTERM.
    pub fn sigterm(&self) {
        self.signal("TERM");
    }

    /// Sends SIGINT.
    pub fn sigint(&self) {
        self.signal("INT");
    }

    /// Sends SIGKILL: the server dies at once, as in a crash.
    pub fn kill(&self) {
        self.signal("KILL");
    }

    /// Sends SIGHUP (re-read the TLS certificate and key).
    pub fn sighup(&self) {
        self.signal("HUP");
    }

    /// Sends a signal by running `kill -NAME PID` (the workspace forbids
    /// unsafe code, and this needs no extra dependency).
    fn signal(&self, name: &str) {
        let status = Command::new("kill")
            .arg(format!("-{name}"))
            .arg(self.pid().to_string())
            .status()
            .expect("run kill");
        assert!(status.success(), "kill -{name} {} failed", self.pid());
    }

    /// Waits for the process to exit, at most `guard` (a failure guard, not
    /// a timing assertion); panics if it is still running then.
    pub fn wait_exit(&mut self, guard: Duration) -> ExitStatus {
        let deadline = Instant::now() + guard;
        loop {
            if let Some(status) = self.child.try_wait().expect("try_wait") {
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "server still running {guard:?} after being told to stop"
            );
            thread::sleep(Duration::from_millis(10));
        }
    }

    /// Every line the server printed on stdout after the `listening on` lines,
    /// once it has exited (call after [`ServerProcess::wait_exit`]).
    pub fn stdout_after_exit(&mut self) -> Vec<String> {
        assert!(!self.is_running(), "the server is still running");
        if let Some(reader) = self.stdout_reader.take() {
            reader.join().expect("stdout reader thread");
        }
        self.stdout_rest.lock().expect("stdout lock").clone()
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if thread::panicking() {
            let tail = self
                .stderr_tail
                .lock()
                .map(|t| t.clone())
                .unwrap_or_default();
            eprintln!(
                "--- last {} bytes of {} stderr ---\n{}\n--- end of stderr ---",
                tail.len(),
                self.binary.display(),
                String::from_utf8_lossy(&tail)
            );
        }
    }
}

/// The address in a `listening on ADDR{suffix}` line, which must be a
/// loopback address with a real (non-zero) port.
fn listening_addr(line: &str, suffix: &str) -> SocketAddr {
    let addr = line
        .strip_prefix("listening on ")
        .and_then(|rest| rest.strip_suffix(suffix))
        .and_then(|a| a.parse::<SocketAddr>().ok())
        .unwrap_or_else(|| {
            panic!("expected exactly `listening on ADDR{suffix}` on stdout, got {line:?}")
        });
    assert!(
        addr.ip().is_loopback() && addr.port() != 0,
        "`listening on` must give the real bound address, got {addr}"
    );
    addr
}

/// Keeps reading the server's stderr so that logging never blocks it,
/// holding on to the last [`STDERR_KEEP`] bytes.
fn drain_stderr(mut stderr: impl Read, tail: &Mutex<Vec<u8>>) {
    let mut buf = [0u8; 8192];
    while let Ok(n) = stderr.read(&mut buf) {
        if n == 0 {
            break;
        }
        let Ok(mut tail) = tail.lock() else { break };
        tail.extend_from_slice(&buf[..n]);
        if tail.len() > STDERR_KEEP {
            let cut = tail.len() - STDERR_KEEP;
            tail.drain(..cut);
        }
    }
}

/// Raises this process's RLIMIT_NOFILE soft limit as far as allowed, once:
/// checks with hundreds of clients run next to each other, and the server
/// inherits the limit.
fn raise_fd_limit() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        if let Err(e) = rlimit::increase_nofile_limit(u64::MAX) {
            eprintln!("could not raise RLIMIT_NOFILE: {e}");
        }
    });
}
