//! The checks, one `pub fn` per protocol rule, grouped by the section of
//! `docs/protocol.md` they check. Each takes the path of the server binary,
//! starts its own server and stops it when done.
//!
//! Sections: "Framing", "Sanitizing", "Lines the server sends",
//! "Nicknames", "Commands", "Session events", "Limits and policies".

mod commands;
mod framing;
mod limits;
mod lines;
mod nicknames;
mod policies;
mod sanitizing;
mod session;

pub use commands::*;
pub use framing::*;
pub use limits::*;
pub use lines::*;
pub use nicknames::*;
pub use policies::*;
pub use sanitizing::*;
pub use session::*;

use crate::{Client, ServerProcess, join, join_all};

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
