//! Everything the chat server drivers (`chat-tokio`, `chat-asyncstd`,
//! `chat-std`) share, so that a client sees the same server on all three:
//! the command line, logging, the open-file limit, signals, and the run loop
//! of `chat_core` (see its crate docs) written once over a small [`Runtime`]
//! trait that each driver implements with its own sockets, tasks and timer.
//!
//! Per connection a driver runs a reader task that feeds what it reads to
//! the core. Every task calls the hub through its own `Task` handle, whose
//! every call writes what it left to write: without blocking, by whichever
//! task produced it (the sender's reader, for a chat line), short lines
//! copied into one buffer of at most `WRITE_BUFFER` bytes. Only when a
//! socket does not take all of it at once does the connection get a writer
//! task, which takes over what is unwritten and ends once its output is
//! written: an idle client costs one task and holds no write buffer, since a
//! writer task per connection costs far more memory than the reader alone
//! (docs/performance.md). On tokio a chat line's writes to many clients are
//! split among several tasks, so that both cores write (see
//! [`Runtime::SHARE_WRITES`]). All tasks share one `Mutex<Server>` (the
//! hub) and hold it only for the core's own work: socket I/O, wake-ups and
//! logging happen after it is released, so a client that does not read
//! delays nobody (the core drops it once its queue is full).
//!
//! A task that cannot be started (out of threads or memory) closes the
//! connections it was for, whatever the task: a reader or writer's work
//! waits on its client's socket and cannot be done by the caller, and one
//! rule for all tasks leaves no connection without the task it needs.
//!
//! Pausing: when the core says `StopReading` (a client over its flood
//! budget, or the room waiting for its readers), the reader hands over what
//! it has read and then waits, without reading and without a read buffer,
//! until `ResumeReading` or the connection's close, so that the client's
//! input stays in the socket and TCP slows the client down.
//!
//! Full sockets: when a socket takes less than it is offered, the core is
//! told (`handle_blocked`) before a writer takes over; the writer's writes
//! are then the client reading, which is what lets a reader that has
//! fallen behind hold the room (protocol.md, room backpressure).
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
mod cluster;
mod hub;
mod log_budget;
mod notify;
mod reader;
mod runtime;
mod serve;
mod stream;
#[cfg(test)]
mod testing;
mod tls;
mod writer;

use std::io::{self, IsTerminal as _, Write as _};
use std::process::ExitCode;
use std::sync::Mutex;

use tracing::{debug, warn};

use crate::tls::Tls;

pub use cli::{Cli, CliError};
pub use cluster::RedisSettings;
pub use runtime::Runtime;
pub use tls::{CertSource, TlsSettings};

/// The whole server program on runtime `R`: parses the command line (for
/// the program `name`, described by `about` in `--help`), then serves until
/// SIGINT or SIGTERM. Returns only on an error, or for `--help`/`--version`.
pub fn main<R: Runtime>(name: &'static str, about: &'static str) -> ExitCode {
    let parsed = Cli::parse_from(name, about, std::env::args_os())
        .and_then(|cli| Ok((cli.plain_listen(), cli.tls()?, cli.config()?, cli.redis())));
    let (plain, tls, mut config, redis) = match parsed {
        Ok(parsed) => parsed,
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
    // Before anything starts: a certificate that does not load is a bad
    // command line.
    let tls = match tls.map(|(addr, settings)| Tls::new(&settings).map(|tls| (addr, tls))) {
        None => None,
        Some(Ok((addr, (tls, fingerprint)))) => {
            if let Some(fingerprint) = fingerprint {
                // Whoever started us may not read stdout (see `serve`).
                let line = format!("tls certificate sha256 fingerprint {fingerprint}");
                let _ = writeln!(io::stdout(), "{line}");
            }
            Some((addr, tls))
        }
        Some(Err(error)) => {
            eprintln!("{name}: error: {error}");
            return ExitCode::from(2);
        }
    };
    // Dropped last: flushes what the log writer still holds.
    let _log_writer = init_logging();
    if let Some(max) = R::max_connections().filter(|&max| config.max_clients > max) {
        warn!(
            max_clients = config.max_clients,
            lowered_to = max,
            "this machine allows fewer clients with a reader and a writer each: --max-clients lowered"
        );
        config.max_clients = max;
    }
    raise_open_file_limit();
    match R::block_on(serve::serve::<R>(plain, tls, config, redis)) {
        Ok(Ok(())) => ExitCode::SUCCESS,
        Ok(Err(error)) | Err(error) => {
            eprintln!("{name}: error: {error}");
            ExitCode::FAILURE
        }
    }
}

/// Log lines waiting for stderr at most; past that, new lines are dropped.
const LOG_BUFFER_LINES: usize = 8192;

/// Logs to stderr, filtered by `RUST_LOG` (default: info), through a
/// writer thread: a stderr that stops being read (a full pipe) drops log
/// lines (at most [`LOG_BUFFER_LINES`] wait) instead of stopping the server.
/// The returned guard flushes the waiting lines when dropped.
fn init_logging() -> tracing_appender::non_blocking::WorkerGuard {
    let filter = tracing_subscriber::EnvFilter::builder()
        .with_default_directive(tracing::Level::INFO.into())
        .from_env_lossy();
    let (writer, guard) = tracing_appender::non_blocking::NonBlockingBuilder::default()
        .buffered_lines_limit(LOG_BUFFER_LINES)
        .lossy(true)
        .thread_name("log-writer")
        .finish(io::stderr());
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(writer)
        .with_ansi(io::stderr().is_terminal())
        .init();
    guard
}

/// Each client holds a file descriptor, and the soft limit is often far
/// below what a full server needs.
fn raise_open_file_limit() {
    match rlimit::increase_nofile_limit(u64::MAX) {
        Ok(limit) => debug!(limit, "open file limit"),
        Err(error) => warn!("cannot raise the open file limit: {error}"),
    }
}

/// Locks `mutex`, poisoned or not: nothing in this crate leaves the data it
/// guards half-changed when it panics.
pub(crate) fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}
