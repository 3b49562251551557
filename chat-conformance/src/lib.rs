//! Black-box conformance suite for the chat server binaries.
//!
//! Every check starts its own server binary on a free port
//! ([`ServerProcess`]), talks to it ([`Client`]) and compares each line with
//! the text the protocol (`docs/protocol.md`, implemented by `chat-core`)
//! prescribes. The same checks run against every adapter: each adapter's
//! `tests/conformance.rs` is just
//!
//! ```ignore
//! chat_conformance::conformance_suite!(env!("CARGO_BIN_EXE_chat-tokio"));
//! ```
//!
//! which expands to two `#[test]`s per check in [`checks`]: `plain::CHECK`,
//! whose clients speak plain TCP, and `tls::CHECK`, whose server also
//! listens for TLS (with a certificate made at test time, [`TestCert`]) and
//! whose clients connect there over TLS. A check gets its mode as a
//! [`Target`]: [`ServerProcess::start`] starts the server for it and
//! [`ServerProcess::addr`] is the [`Endpoint`] its clients connect to, so
//! the checks themselves do not know which mode they run in. The checks of
//! TLS itself (`tls_`, see [`checks`]) run once, as `CHECK`. A check's name
//! starts with the protocol section it checks (`framing_`, `sanitizing_`,
//! `lines_`, `nicknames_`, `commands_`, `session_`, `limits_` for "Limits and
//! policies", `policies_` for "Address policies", `tls_` for TLS,
//! `cluster_` for one room across servers, run once as `cluster::CHECK`
//! with a `redis-server` of its own, [`RedisProcess`]).
//!
//! Synchronisation is by events, never by sleeping: a check waits until a
//! client sees the line that proves the server has done what comes before
//! (a join notice, a marker line sent by another client, the reply to a
//! command sent after a burst). Timeouts ([`TIMEOUT`]) only turn a hang
//! into a failure; no check asserts how fast anything is. The checks of
//! timed policies (flood rate, timeouts, grace) only check from below that
//! the server did not act before the configured time; a client pacing its
//! bytes is the scenario there, not a wait.
//!
//! No verdict depends on how fast the machine is. Where a check needs
//! something done before a configured time runs out (a client catching up
//! within the soft-queue grace, a line overtaking a held flood, keepalives
//! within the idle timeout), that time is sized from the work (the bytes to
//! move) or is at least seconds, never a race a loaded machine can lose;
//! what the server must do to the client that does not keep up is proved
//! by a client that does nothing at all. Waits for a volume of data are
//! guarded on progress (nothing for [`TIMEOUT`]), not on their total time.
//! The only sleeps pace polls for what no client can observe: a slot that
//! frees when the server has closed a connection, the server process
//! exiting, and the server having reloaded its certificate. The others are the scenario, never a wait for the server: a
//! client that reads at a set rate ([`ReadPace`]), and how long an attack
//! goes on before its clients leave.

// This crate is test code: a broken expectation panics, which is how a check
// fails, so `unwrap`/`expect` are the point here, not a shortcut.
#![allow(clippy::unwrap_used, clippy::expect_used)]
#![warn(missing_docs)]

use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

pub mod checks;
mod client;
mod redis;
mod server;
mod stream;
mod tls;

pub use client::{Client, ReadPace, Received, is_join_or_leave, parse_welcome};
pub use redis::RedisProcess;
pub use server::ServerProcess;
pub use stream::{ClientStream, Endpoint, TlsEnd};
use tls::scratch_dir;
pub use tls::{SERVER_NAME, TestCert};

/// The longest a check waits for anything before it fails. Generous: it only
/// guards against hangs on a loaded 2-core machine.
pub const TIMEOUT: Duration = Duration::from_secs(10);

/// What a check runs against: a server binary, and whether the check's
/// clients speak plain TCP or TLS to it.
#[derive(Debug, Clone)]
pub struct Target {
    binary: PathBuf,
    tls: bool,
}

impl Target {
    /// `binary` with plain TCP clients.
    pub fn plain(binary: impl Into<PathBuf>) -> Target {
        Target {
            binary: binary.into(),
            tls: false,
        }
    }

    /// `binary` with TLS clients, on its TLS listener.
    pub fn tls(binary: impl Into<PathBuf>) -> Target {
        Target {
            binary: binary.into(),
            tls: true,
        }
    }

    /// The server binary.
    pub fn binary(&self) -> &Path {
        &self.binary
    }

    /// Whether the clients speak TLS.
    pub fn is_tls(&self) -> bool {
        self.tls
    }
}

/// A line no other check or client sends: `marker-N` with a process-wide
/// counter.
pub fn marker() -> String {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    format!("marker-{}", NEXT.fetch_add(1, Ordering::Relaxed))
}

/// Connects a new client and waits until it is fully in: its welcome says
/// `existing.len() + 1` users are online, and every one of `existing` has
/// seen `* NICK joined` as its next line.
pub fn join(addr: &Endpoint, label: &str, existing: &mut [&mut Client]) -> Client {
    welcomed(Client::connect_raw(addr, label), existing)
}

/// [`join`] from the source address `source`, with `SO_RCVBUF`
/// `recv_buffer` if given (see [`Client::connect_from`]).
pub fn join_from(
    addr: &Endpoint,
    source: IpAddr,
    recv_buffer: Option<usize>,
    label: &str,
    existing: &mut [&mut Client],
) -> Client {
    welcomed(
        Client::connect_from(addr, source, recv_buffer, label),
        existing,
    )
}

/// The rest of [`join`] once `client` has connected.
fn welcomed(mut client: Client, existing: &mut [&mut Client]) -> Client {
    let online = client.read_welcome();
    assert_eq!(
        online,
        existing.len() + 1,
        "{}: the welcome line counts the newcomer and everyone already in",
        client.label()
    );
    let notice = format!("* {} joined", client.nick());
    for other in existing.iter_mut() {
        other.expect_line(&notice);
    }
    client
}

/// Connects `n` clients one after the other with [`join`], labelled
/// `A`, `B`, ... (or `c0`, `c1`, ... past 26).
pub fn join_all(addr: &Endpoint, n: usize) -> Vec<Client> {
    let mut clients: Vec<Client> = Vec::with_capacity(n);
    for i in 0..n {
        let label = match u8::try_from(i) {
            Ok(i) if i < 26 => char::from(b'A' + i).to_string(),
            _ => format!("c{i}"),
        };
        let mut existing: Vec<&mut Client> = clients.iter_mut().collect();
        let client = join(addr, &label, &mut existing);
        clients.push(client);
    }
    clients
}

/// Has `sender` send a fresh [`marker`] and waits until each of `others`
/// gets it as its very next line (`NICK: marker-N`). Proves that everything
/// the server sent those clients before has been read, and that nothing else
/// was pending for them.
pub fn sync(sender: &mut Client, others: &mut [&mut Client]) {
    let text = marker();
    sender.send_line(&text);
    let line = format!("{}: {text}", sender.nick());
    for other in others.iter_mut() {
        other.expect_line(&line);
    }
}

/// Expands to the whole suite against the server binary at the given path
/// (usually `env!("CARGO_BIN_EXE_NAME")`): each check in [`checks`] twice,
/// as `plain::CHECK` and `tls::CHECK` (see [`Target`]), and the checks of
/// TLS itself once.
#[macro_export]
macro_rules! conformance_suite {
    ($binary:expr) => {
        $crate::conformance_suite!(@both_modes $binary;
            framing_several_lines_in_one_write,
            framing_line_sent_one_byte_at_a_time,
            framing_crlf_drops_one_cr,
            framing_eof_ends_unterminated_last_line,
            framing_thousand_rapid_lines_in_order,
            framing_max_line_discards_once_and_keeps_connection,
            framing_ten_megabyte_line_without_lf_is_bounded,
            sanitizing_control_characters,
            sanitizing_ansi_escape_sequences,
            sanitizing_invalid_utf8,
            sanitizing_bidi_controls,
            sanitizing_invisible_characters_and_mark_piles,
            sanitizing_trailing_whitespace_and_empty_lines,
            sanitizing_random_garbage_does_not_crash,
            lines_listening_line_on_stdout,
            lines_chat_broadcast_without_echo,
            lines_broadcast_reaches_500_clients,
            nicknames_generated_and_unique,
            nicknames_rename_notifies_everyone,
            nicknames_rename_errors,
            nicknames_case_variant_and_same_nick,
            nicknames_confusables_taken_and_mixed_scripts_refused,
            commands_me,
            commands_msg,
            commands_msg_errors,
            commands_who,
            commands_help,
            commands_quit_without_reason,
            commands_quit_with_reason,
            commands_double_slash_escape,
            commands_unknown_and_bare_slash,
            commands_names_are_case_insensitive,
            session_welcome_join_and_leave,
            session_churn_loses_no_lines,
            session_sigterm_shuts_down_cleanly,
            session_sigint_shuts_down_cleanly,
            limits_max_clients,
            limits_slow_reader_is_disconnected,
            limits_soft_queue_grace,
            limits_a_full_log_pipe_never_stops_serving,
            policies_flood_control_delays_only_the_flooder,
            policies_excess_flood_disconnects,
            policies_held_lines_reach_everyone_while_a_socket_fills,
            policies_incomplete_line_timeout,
            policies_idle_timeout,
            policies_max_per_ip,
            policies_connect_rate,
            policies_nick_rate,
            policies_burst_from_one_address_keeps_every_reader,
            policies_burst_from_eight_addresses_keeps_every_reader,
        );
        $crate::conformance_suite!(@once $binary;
            tls_and_plain_clients_share_the_room,
            tls_garbage_instead_of_client_hello_is_closed,
            tls_handshake_timeout,
            tls_connections_in_handshake_count_against_max_per_ip,
            tls_close_notify_after_quit,
            tls_sighup_reloads_certificate,
        );
        $crate::conformance_suite!(@cluster $binary;
            cluster_lines_reach_every_node_in_one_order,
            cluster_who_and_msg_reach_across_nodes,
            cluster_nick_held_on_one_node_is_refused_on_another,
            cluster_killed_node_leaves_within_ten_seconds,
            cluster_stopped_node_says_its_users_leave,
            cluster_redis_restarting_mid_chat_loses_nothing_said_meanwhile,
            cluster_redis_restarting_with_its_data_loses_nothing,
        );
    };
    (@both_modes $binary:expr; $($check:ident),* $(,)?) => {
        /// Every check, with plain TCP clients.
        mod plain {
            $crate::conformance_suite!(@tests $crate::Target::plain($binary); $($check),*);
        }
        /// Every check, with TLS clients on the server's TLS listener.
        mod tls {
            $crate::conformance_suite!(@tests $crate::Target::tls($binary); $($check),*);
        }
    };
    (@tests $target:expr; $($check:ident),*) => {
        $(
            #[doc = concat!("See [`chat_conformance::checks::", stringify!($check), "`].")]
            #[test]
            fn $check() {
                $crate::checks::$check(&$target);
            }
        )*
    };
    (@cluster $binary:expr; $($check:ident),* $(,)?) => {
        /// One room across several nodes of the binary, with plain TCP
        /// clients (TLS is each client's own link; the room is the same).
        mod cluster {
            $crate::conformance_suite!(@tests $crate::Target::plain($binary); $($check),*);
        }
    };
    (@once $binary:expr; $($check:ident),* $(,)?) => {
        $(
            #[doc = concat!("See [`chat_conformance::checks::", stringify!($check), "`].")]
            #[test]
            fn $check() {
                $crate::checks::$check(::std::path::Path::new($binary));
            }
        )*
    };
}
