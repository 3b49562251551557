//! protocol.md, "Lines the server sends": who gets which line.

use super::clients;
use crate::{Client, ServerProcess, TIMEOUT, Target, is_join_or_leave, sync};

/// Lines the server sends: `listening on ADDR` is the one line on stdout
/// (with TLS, followed by `listening on ADDR (tls)`; checked by
/// [`ServerProcess::start`]); nothing else is printed there while clients
/// chat and the server stops (logs go to stderr).
pub fn lines_listening_line_on_stdout(target: &Target) {
    let mut server = ServerProcess::start(target);
    let [mut a, mut b] = clients(&server);
    sync(&mut a, &mut [&mut b]);
    a.send_line("/nick somebody");
    a.expect_line("* you are now known as somebody");
    server.sigterm();
    let status = server.wait_exit(TIMEOUT);
    assert!(status.success(), "exit status {status}");
    let extra = server.stdout_after_exit();
    assert!(
        extra.is_empty(),
        "stdout must hold only the `listening on` lines, also had {extra:?}"
    );
}

/// Lines the server sends: a chat line reaches every other client as
/// `NICK: TEXT` and is never echoed to its sender (proved by a marker the
/// sender receives from someone else right after).
pub fn lines_chat_broadcast_without_echo(target: &Target) {
    let server = ServerProcess::start(target);
    let [mut a, mut b, mut c] = clients(&server);
    for round in 0..3 {
        let (sender, others): (&mut Client, [&mut Client; 2]) = match round {
            0 => (&mut a, [&mut b, &mut c]),
            1 => (&mut b, [&mut a, &mut c]),
            _ => (&mut c, [&mut a, &mut b]),
        };
        let text = format!("hello from {} in round {round}", sender.label());
        sender.send_line(&text);
        let [first, second] = others;
        let line = format!("{}: {text}", sender.nick());
        first.expect_line(&line);
        second.expect_line(&line);
        // The sender's next line is someone else's marker, not its own line.
        sync(first, &mut [sender, second]);
    }
}

/// Lines the server sends: with 500 clients connected, one chat line reaches
/// all 499 others, each after exactly the join notices of the clients that
/// came after it, in order.
pub fn lines_broadcast_reaches_500_clients(target: &Target) {
    const N: usize = 500;
    let server = ServerProcess::start(target);
    let mut all = Vec::with_capacity(N);
    for i in 0..N {
        let (client, online) = Client::connect_welcomed(server.addr(), &format!("c{i}"));
        assert_eq!(online, i + 1, "c{i}: users online in the welcome line");
        all.push(client);
    }
    let mut sender = all.pop().expect("N > 0");
    let text = "one line for all 500";
    sender.send_line(text);
    let line = format!("{}: {text}", sender.nick());
    let joins: Vec<String> = all
        .iter()
        .skip(1)
        .chain(std::iter::once(&sender))
        .map(|c| format!("* {} joined", c.nick()))
        .collect();
    for (i, client) in all.iter_mut().enumerate() {
        let (_, skipped) = client.expect_line_matching(&line, |l| l == line, is_join_or_leave);
        assert_eq!(
            skipped,
            joins[i..],
            "c{i}: the join notices of every later client, in order"
        );
    }
}
