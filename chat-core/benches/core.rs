//! The core alone, no I/O: broadcast fan-out and input framing.
//!
//! `cargo bench -p chat-core --bench core`. Deliveries (one line reaching one
//! client) and input bytes are reported as throughput; see
//! docs/performance.md for the numbers and the targets.

use std::net::SocketAddr;
use std::time::Instant;

use chat_core::{Bytes, Config, ConnId, Output, Server};
use divan::counter::{BytesCount, ItemsCount};
use divan::{Bencher, black_box};

fn main() {
    divan::main();
}

/// A line of `len` bytes including its LF.
fn line(len: usize) -> Vec<u8> {
    let mut line = vec![b'x'; len - 1];
    line.push(b'\n');
    line
}

/// A server with `clients` joined clients, their welcome output drained.
fn server_with(clients: usize) -> (Server, Vec<ConnId>, Instant) {
    let now = Instant::now();
    let config = Config {
        max_clients: clients,
        ..Config::default()
    };
    let mut server = Server::new(config, 1);
    let peer: SocketAddr = ([127, 0, 0, 1], 9).into();
    let ids = (0..clients)
        .map(|_| server.handle_connect(now, peer))
        .collect();
    drain(&mut server, now, &mut Vec::new());
    (server, ids, now)
}

/// The driver's half of a delivery: take each connection's bytes and report
/// them written, as a driver does after its vectored write.
fn drain(server: &mut Server, now: Instant, chunks: &mut Vec<Bytes>) {
    while let Some(output) = server.poll_output() {
        if let Output::Transmit(conn) = output {
            let written = server.poll_transmit(conn, chunks);
            server.handle_written(now, conn, written);
            chunks.clear();
        }
    }
}

/// One 64-byte line from one client to all the others.
#[divan::bench(args = [10, 1000, 10_000])]
fn broadcast_64b(bencher: Bencher<'_, '_>, clients: usize) {
    let (mut server, ids, now) = server_with(clients);
    let sender = ids[0];
    let line = line(64);
    let mut chunks = Vec::new();
    bencher
        .counter(ItemsCount::new(clients - 1))
        .bench_local(|| {
            server.handle_bytes(now, sender, black_box(&line));
            drain(&mut server, now, &mut chunks);
        });
}

/// 1 MiB of 64-byte lines from one client, framed, sanitized and delivered
/// to one other client.
#[divan::bench]
fn frame_1mib_of_64b_lines(bencher: Bencher<'_, '_>) {
    let (mut server, ids, now) = server_with(2);
    let stream = line(64).repeat(1 << 14);
    let mut chunks = Vec::new();
    bencher
        .counter(BytesCount::new(stream.len()))
        .bench_local(|| {
            // Reads of 64 KiB, as the drivers do.
            for read in stream.chunks(64 * 1024) {
                server.handle_bytes(now, ids[0], black_box(read));
                drain(&mut server, now, &mut chunks);
            }
        });
}
