//! The checks, one `pub fn` per protocol rule, grouped by the section of
//! `docs/protocol.md` they check. Each takes a [`Target`](crate::Target) (the server
//! binary, and whether its clients speak plain TCP or TLS), starts its own
//! server and stops it when done. The checks of TLS itself (`tls_`) take
//! the path of the binary and start it in TLS mode their own way.
//!
//! Sections: "Framing", "Sanitizing", "Lines the server sends",
//! "Nicknames", "Commands", "Session events", "Limits and policies",
//! "Address policies"; TLS (the listener, handshake and certificate); and
//! one room across several servers (`cluster_`, docs/cluster.md).

mod cluster;
mod commands;
mod framing;
mod limits;
mod lines;
mod nicknames;
mod policies;
mod sanitizing;
mod session;
mod tls;

pub use cluster::*;
pub use commands::*;
pub use framing::*;
pub use limits::*;
pub use lines::*;
pub use nicknames::*;
pub use policies::*;
pub use sanitizing::*;
pub use session::*;
pub use tls::*;

use std::thread;
use std::time::{Duration, Instant};

use crate::{Client, Endpoint, ServerProcess, TIMEOUT, join, join_all};

/// `N` clients joined one after the other (see [`join_all`]).
fn clients<const N: usize>(server: &ServerProcess) -> [Client; N] {
    join_all(server.addr(), N)
        .try_into()
        .expect("join_all gives N clients")
}

/// Clients joined one after the other (see [`join`]), with these labels.
fn labelled<const N: usize>(server: &ServerProcess, labels: [&str; N]) -> [Client; N] {
    let mut clients: Vec<Client> = Vec::with_capacity(N);
    for label in labels {
        let mut existing: Vec<&mut Client> = clients.iter_mut().collect();
        let client = join(server.addr(), label, &mut existing);
        clients.push(client);
    }
    clients.try_into().expect("N clients")
}

/// Connects new clients (labelled `LABEL0`, `LABEL1`, ...) until one is
/// welcomed rather than refused with `refusal` (each refused one must then
/// be closed); returns it and the number online its welcome gives.
///
/// For a slot that frees when the server has finished closing a leaver,
/// which no client can observe: the attempts are paced by a short sleep and
/// go on for up to [`TIMEOUT`], so a server that is slow to close on a
/// loaded machine is waited for, and only one that never frees the slot
/// fails.
fn connect_once_admitted(addr: &Endpoint, label: &str, refusal: &str) -> (Client, usize) {
    let deadline = Instant::now() + TIMEOUT;
    let mut attempt = 0;
    loop {
        let mut client = Client::connect_raw(addr, &format!("{label}{attempt}"));
        let line = client.read_line();
        if line != refusal {
            let online = client.take_welcome(&line);
            return (client, online);
        }
        client.assert_closed();
        assert!(
            Instant::now() < deadline,
            "{label}: still refused with `{refusal}` after {} attempts in {TIMEOUT:?}",
            attempt + 1
        );
        thread::sleep(Duration::from_millis(10));
        attempt += 1;
    }
}

/// A deterministic pseudo-random generator (xorshift64*), so that a failing
/// input can be reproduced from its seed.
#[derive(Debug, Clone)]
struct Rng(u64);

impl Rng {
    fn new(seed: u64) -> Rng {
        Rng(seed | 1)
    }

    fn next_u64(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    /// A number in `0..n`.
    fn below(&mut self, n: usize) -> usize {
        (self.next_u64() % n as u64) as usize
    }
}

/// An upper bound on the chat bytes the kernel holds for one connection
/// that has not read: the server's send buffer (at most the third field of
/// `tcp_wmem`, whatever the server sets `SO_SNDBUF` to) and the
/// client's receive buffer (the second field of `tcp_rmem`: it grows only as
/// the client reads). Linux defaults if those cannot be read.
fn kernel_buffer_bound() -> usize {
    let field = |name: &str, index: usize, default: usize| {
        std::fs::read_to_string(format!("/proc/sys/net/ipv4/{name}"))
            .ok()
            .and_then(|text| text.split_whitespace().nth(index)?.parse().ok())
            .unwrap_or(default)
    };
    field("tcp_wmem", 2, 4 << 20) + field("tcp_rmem", 1, 128 << 10)
}

/// Appends line `i` of a numbered stream: its number, then `fill` up to
/// `len` bytes with the LF.
fn push_numbered(out: &mut Vec<u8>, i: usize, fill: u8, len: usize) {
    let head = format!("{i:08} ");
    out.extend_from_slice(head.as_bytes());
    out.resize(out.len() + len - head.len() - 1, fill);
    out.push(b'\n');
}

/// Checks that B received line `i` of a numbered stream (of `len`-byte
/// lines) whole, after the sender's `prefix`.
fn expect_numbered(line: &str, prefix: &str, i: usize, len: usize) {
    let body = line
        .strip_prefix(prefix)
        .unwrap_or_else(|| panic!("B: unexpected line {line:?}"));
    assert!(
        is_numbered(body, i, len),
        "B: expected line {i} complete, got one starting {:?}",
        &body[..body.len().min(20)]
    );
}

/// Whether `body` (a received line without its sender's prefix) is line `i`
/// of a numbered stream of `len`-byte lines, whole.
fn is_numbered(body: &str, i: usize, len: usize) -> bool {
    body.starts_with(&format!("{i:08} ")) && body.len() == len - 1
}
