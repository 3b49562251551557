//! TLS (`--tls-listen`, docs/tls.md): one room for both listeners, and what
//! the TLS listener does with connections that do not speak TLS, that never
//! finish a handshake, that end in order, and when the certificate changes.
//! Every other check runs over TLS as well (`tls::CHECK`); these run once.
//!
//! A TLS client joins once its handshake is over (protocol.md, "Session
//! events"): the checks that make connections which never finish one
//! (garbage, silence, an untrusted certificate) also check that the room
//! hears nothing of them.

use std::io;
use std::path::Path;
use std::thread;
use std::time::{Duration, Instant};

use super::{Rng, labelled};
use crate::{Client, Endpoint, ServerProcess, TIMEOUT, TestCert, TlsEnd, join, scratch_dir, sync};

/// TLS: a server with both listeners has one room. A TLS client, a plain
/// client and a TLS 1.2 client each see the ones after them join, chat with
/// one another both ways (each line to both others, never echoed), and see
/// one another leave.
pub fn tls_and_plain_clients_share_the_room(binary: &Path) {
    let cert = TestCert::shared();
    let server = ServerProcess::start_tls(binary, cert, &[]);
    let (mut a, online) = Client::connect_welcomed(server.addr(), "A (TLS)");
    assert_eq!(online, 1, "A: alone, `1 user online`");
    let mut b = join(server.plain_addr(), "B (plain)", &mut [&mut a]);
    let tls12 = Endpoint::tls(server.addr().socket_addr(), cert.client_config_tls12());
    let mut c = join(&tls12, "C (TLS 1.2)", &mut [&mut a, &mut b]);
    sync(&mut a, &mut [&mut b, &mut c]);
    sync(&mut b, &mut [&mut a, &mut c]);
    sync(&mut c, &mut [&mut a, &mut b]);

    b.send_line("/quit");
    b.expect_error_and_close("* bye");
    let left = format!("* {} left", b.nick());
    a.expect_line(&left);
    c.expect_line(&left);
    a.shutdown_write();
    a.assert_closed();
    c.expect_line(&format!("* {} left", a.nick()));
}

/// TLS: a connection to the TLS listener that sends something other than a
/// ClientHello (random bytes, an HTTP request, a chat line as a plain client
/// would send it, a handshake record holding no ClientHello) is closed; a
/// TLS client connected before still chats with a new one afterwards.
///
/// The handshake timeout is 60 s here, so a connection closed within
/// [`TIMEOUT`] was closed for what it sent, not for sending nothing more.
pub fn tls_garbage_instead_of_client_hello_is_closed(binary: &Path) {
    let server = ServerProcess::start_tls(
        binary,
        TestCert::shared(),
        &["--tls-handshake-timeout", "60"],
    );
    let (mut before, _) = Client::connect_welcomed(server.addr(), "before");
    let mut rng = Rng::new(0x5eed_7150);
    let mut random: Vec<u8> = (0..4096).map(|_| rng.next_u64().to_le_bytes()[3]).collect();
    // Not a TLS record type (20 to 24), so that the server can tell at once,
    // rather than wait for the rest of a record up to 16 KiB long.
    random[0] = b'X';
    let garbage: [(&str, &[u8]); 4] = [
        ("random bytes", &random),
        (
            "an HTTP request",
            b"GET / HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n",
        ),
        ("a chat line", b"hello over plain TCP\n"),
        // A handshake record of 4 bytes: an unknown message type, empty.
        (
            "a handshake record with no ClientHello",
            b"\x16\x03\x01\x00\x04\xff\x00\x00\x00",
        ),
    ];
    let raw = Endpoint::plain(server.addr().socket_addr());
    for (what, bytes) in garbage {
        let mut client = Client::connect_raw(&raw, what);
        // The server may close before it has read it all: a failed write
        // is fine, the close is what is checked.
        let _ = client.try_send(bytes);
        // What comes before the close (a TLS alert, if any) is not checked;
        // a server that never closes fails here after TIMEOUT of silence.
        client.drain_until_closed();
    }
    let (mut after, _) = Client::connect_welcomed(server.addr(), "after");
    // Next, with nothing of the connections that sent garbage.
    before.expect_line(&format!("* {} joined", after.nick()));
    sync(&mut after, &mut [&mut before]);
    sync(&mut before, &mut [&mut after]);
}

/// TLS (`--tls-handshake-timeout 1`): a TCP connection to the TLS listener
/// that sends nothing is closed, not before 1 s after it was opened; a TLS
/// client that finished its handshake before it is not subject to the
/// timeout, and still chats afterwards.
///
/// Checked from below only: the time is measured from before the
/// connection was opened, so the server's timer cannot have started
/// earlier; how late the server closes it is only guarded by [`TIMEOUT`].
pub fn tls_handshake_timeout(binary: &Path) {
    const BOUND: Duration = Duration::from_secs(1);
    let server = ServerProcess::start_tls(
        binary,
        TestCert::shared(),
        &["--tls-handshake-timeout", "1"],
    );
    let (mut a, _) = Client::connect_welcomed(server.addr(), "A");
    let start = Instant::now();
    let mut silent = Client::connect_raw(&Endpoint::plain(server.addr().socket_addr()), "silent");
    // Anything before the close (a TLS alert, if any) is not checked.
    silent.drain_until_closed();
    let elapsed = start.elapsed();
    assert!(
        elapsed >= BOUND,
        "silent: closed {elapsed:?} after connecting, before the handshake timeout of {BOUND:?}"
    );
    // A has been connected longer than the handshake timeout now.
    let (mut b, _) = Client::connect_welcomed(server.addr(), "B");
    // Next, with nothing of the connections that failed their handshake.
    a.expect_line(&format!("* {} joined", b.nick()));
    sync(&mut a, &mut [&mut b]);
    sync(&mut b, &mut [&mut a]);
}

/// TLS, with address policies (`--limit-loopback --max-per-ip 2`, the
/// connect rate off): connections to the TLS port that have not started
/// their handshake count against `--max-per-ip` like any other, so
/// handshakes cannot be used to get past it. Two silent TCP connections
/// hold both slots: a third connection, a TLS client, finishes its
/// handshake and reads `* error: too many connections from your address`
/// and the end of the session. Once the two are gone, a TLS client is
/// welcomed (retried while the server has not yet closed them, which no
/// client can observe).
pub fn tls_connections_in_handshake_count_against_max_per_ip(binary: &Path) {
    const TOO_MANY: &str = "* error: too many connections from your address";
    let server = ServerProcess::start_tls(
        binary,
        TestCert::shared(),
        &[
            "--limit-loopback",
            "--max-per-ip",
            "2",
            "--connect-rate",
            "0",
        ],
    );
    let raw = Endpoint::plain(server.addr().socket_addr());
    // Accepted in order by the one TLS listener: both are counted before
    // the third connection is looked at.
    let silent = [
        Client::connect_raw(&raw, "silent 1"),
        Client::connect_raw(&raw, "silent 2"),
    ];
    let mut refused = Client::connect_raw(server.addr(), "refused");
    refused.expect_error_and_close(TOO_MANY);
    drop(silent);
    let deadline = Instant::now() + TIMEOUT;
    loop {
        let mut client = Client::connect_raw(server.addr(), "admitted");
        let line = client.read_line();
        if line.starts_with("* welcome, you are ") {
            break;
        }
        assert_eq!(
            line, TOO_MANY,
            "admitted: a welcome or, while the slots free, a refusal"
        );
        assert!(
            Instant::now() < deadline,
            "the slots of the silent connections were not freed within {TIMEOUT:?}"
        );
        // Paces polling for what no client can observe (the server
        // closing the silent connections), as `connect_once_admitted` does.
        thread::sleep(Duration::from_millis(10));
    }
}

/// TLS: an orderly close ends the TLS session with close_notify after the
/// last line, so that a client can tell it from a cut connection: after
/// `/quit` and `* bye`, after the client's own close_notify and EOF, and
/// after a refusal (`--max-clients 2`: `* error: server full`), the client
/// reads a clean end (rustls reports close_notify received), not an
/// unexpected EOF.
pub fn tls_close_notify_after_quit(binary: &Path) {
    let server = ServerProcess::start_tls(binary, TestCert::shared(), &["--max-clients", "2"]);
    let [mut a, mut b] = labelled(&server, ["A", "B"]);
    let expect_close_notify = |client: &mut Client| {
        client.assert_closed();
        assert_eq!(
            client.tls_end(),
            Some(TlsEnd::CloseNotify),
            "{}: the TLS session must end with close_notify after the last line",
            client.label()
        );
    };

    let mut refused = Client::connect_raw(server.addr(), "refused");
    refused.expect_line("* error: server full");
    expect_close_notify(&mut refused);

    a.send_line("/quit");
    a.expect_line("* bye");
    expect_close_notify(&mut a);
    b.expect_line(&format!("* {} left", a.nick()));

    b.shutdown_write();
    expect_close_notify(&mut b);
}

/// TLS: SIGHUP re-reads `--tls-cert` and `--tls-key`. The server starts
/// with certificate A and a client trusting A joins; the files are
/// overwritten with certificate B and the server gets SIGHUP; then a client
/// trusting only B gets in (and is announced), and the first client, whose
/// session began with A, still chats with it. (The attempts refused before
/// the reload may be announced too, see the module docs.)
///
/// When the server has reloaded is not observable but by connecting: a
/// client trusting only B is refused the server's certificate until then,
/// so it tries again, paced by a short sleep, for up to [`TIMEOUT`].
pub fn tls_sighup_reloads_certificate(binary: &Path) {
    let dir = scratch_dir("sighup");
    let first = TestCert::create(&dir, "served");
    let second = TestCert::create(&dir, "renewed");
    let server = ServerProcess::start_tls(binary, &first, &[]);
    let addr = server.addr().socket_addr();
    let (mut a, _) = Client::connect_welcomed(&first.endpoint(addr), "A");

    second.write_over(&first);
    server.sighup();
    let renewed = second.endpoint(addr);
    let deadline = Instant::now() + TIMEOUT;
    let mut attempts = 0;
    let mut b = loop {
        attempts += 1;
        match Client::try_connect(&renewed, &format!("B{attempts}")) {
            Ok(client) => break client,
            Err(e) if untrusted(&e) && Instant::now() < deadline => {
                thread::sleep(Duration::from_millis(10));
            }
            Err(e) => panic!(
                "B: no handshake with the renewed certificate after SIGHUP \
                 ({attempts} attempts in {TIMEOUT:?}): {e}"
            ),
        }
    };
    let online = b.read_welcome();
    assert!(online >= 2, "B: the welcome counts A and B, said {online}");
    // Next, with nothing of the connections that failed their handshake.
    a.expect_line(&format!("* {} joined", b.nick()));
    sync(&mut a, &mut [&mut b]);
    sync(&mut b, &mut [&mut a]);
}

/// Whether a handshake failed because the client did not trust the
/// server's certificate.
fn untrusted(e: &io::Error) -> bool {
    e.get_ref()
        .and_then(|inner| inner.downcast_ref::<rustls::Error>())
        .is_some_and(|e| matches!(e, rustls::Error::InvalidCertificate(_)))
}
