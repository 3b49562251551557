//! protocol.md, "Commands": `/me`, `/msg`, `/who`, `/help`, `/quit`,
//! `//TEXT` and unknown commands.

use super::clients;
use crate::{Client, ServerProcess, Target, sync};

/// Commands: `/me TEXT` sends `* NICK TEXT` to everyone else, not the
/// sender; `/me` without text gets `* error: usage: /me TEXT`.
pub fn commands_me(target: &Target) {
    let server = ServerProcess::start(target);
    let [mut a, mut b, mut c] = clients(&server);
    a.send_line("/me waves  at everyone");
    let line = format!("* {} waves  at everyone", a.nick());
    b.expect_line(&line);
    c.expect_line(&line);
    for bare in ["/me", "/me   "] {
        a.send_line(bare);
        a.expect_line("* error: usage: /me TEXT");
    }
    sync(&mut b, &mut [&mut a, &mut c]);
}

/// Commands: `/msg NICK TEXT` sends `*SENDER* TEXT` to NICK only (matched
/// case-insensitively), nothing to the sender or anyone else.
pub fn commands_msg(target: &Target) {
    let server = ServerProcess::start(target);
    let [mut a, mut b, mut c] = clients(&server);
    a.send_line(&format!("/msg {} psst, over here", b.nick()));
    b.expect_line(&format!("*{}* psst, over here", a.nick()));
    let upper = b.nick().to_uppercase();
    a.send_line(&format!("/msg {upper}   spaced  out"));
    b.expect_line(&format!("*{}* spaced  out", a.nick()));
    c.send_line(&format!("/msg {} from c", a.nick()));
    a.expect_line(&format!("*{}* from c", c.nick()));
    // C never saw A's messages, A never saw its own, B never saw C's.
    sync(&mut a, &mut [&mut b, &mut c]);
    sync(&mut b, &mut [&mut a, &mut c]);
}

/// Commands: `/msg` errors, only to the sender: `* error: usage: /msg NICK
/// TEXT` without a nick or text, `* error: no such nick X` for a nick nobody
/// holds.
pub fn commands_msg_errors(target: &Target) {
    let server = ServerProcess::start(target);
    let [mut a, mut b] = clients(&server);
    let usage = "* error: usage: /msg NICK TEXT";
    let to_b = format!("/msg {}", b.nick());
    let to_b_blank = format!("/msg {}   ", b.nick());
    for command in ["/msg", "/msg   ", &to_b, &to_b_blank] {
        a.send_line(command);
        a.expect_line(usage);
    }
    a.send_line("/msg nobody hello?");
    a.expect_line("* error: no such nick nobody");
    sync(&mut a, &mut [&mut b]);
    sync(&mut b, &mut [&mut a]);
}

/// Commands: `/who` answers `* N users online: a, b, c` (1 user: singular),
/// nicks sorted case-insensitively, to the asker only.
pub fn commands_who(target: &Target) {
    let server = ServerProcess::start(target);
    let [mut a] = clients(&server);
    a.send_line("/who");
    a.expect_line(&format!("* 1 user online: {}", a.nick()));
    let b = crate::join(server.addr(), "B", &mut [&mut a]);
    let mut all = vec![a, b];
    let mut existing: Vec<&mut Client> = all.iter_mut().collect();
    let c = crate::join(server.addr(), "C", &mut existing);
    all.push(c);
    for (i, nick) in ["bob", "Alice", "carol"].into_iter().enumerate() {
        let old = all[i].nick().to_owned();
        all[i].send_line(&format!("/nick {nick}"));
        all[i].expect_line(&format!("* you are now known as {nick}"));
        all[i].set_nick(nick);
        let notice = format!("* {old} is now known as {nick}");
        for (j, other) in all.iter_mut().enumerate() {
            if j != i {
                other.expect_line(&notice);
            }
        }
    }
    let [mut a, mut b, mut c]: [Client; 3] = all.try_into().expect("three clients");
    a.send_line("/who");
    a.expect_line("* 3 users online: Alice, bob, carol");
    c.send_line("/quit");
    c.expect_line("* bye");
    c.assert_closed();
    a.expect_line("* carol left");
    b.expect_line("* carol left");
    b.send_line("/who");
    b.expect_line("* 2 users online: Alice, bob");
    sync(&mut a, &mut [&mut b]);
    sync(&mut b, &mut [&mut a]);
}

/// Commands: `/help` lists the commands, every line starting with `* `,
/// to the asker only.
pub fn commands_help(target: &Target) {
    let server = ServerProcess::start(target);
    let [mut a, mut b] = clients(&server);
    a.send_line("/help");
    a.expect_lines(&[
        "* commands:",
        "*   /nick NAME       change your nick",
        "*   /me TEXT         send an action",
        "*   /msg NICK TEXT   send a private message",
        "*   /who             list who is online",
        "*   /help            show this list",
        "*   /quit [REASON]   leave",
        "*   //TEXT           send a line that starts with /",
    ]);
    sync(&mut b, &mut [&mut a]);
    sync(&mut a, &mut [&mut b]);
}

/// Commands: `/quit` (also with only blanks after it): the quitter gets
/// `* bye` and its connection closes; the others get `* NICK left`.
pub fn commands_quit_without_reason(target: &Target) {
    let server = ServerProcess::start(target);
    let [mut a, mut b, mut c] = clients(&server);
    c.send_line("/quit");
    c.expect_line("* bye");
    c.assert_closed();
    a.expect_line(&format!("* {} left", c.nick()));
    b.expect_line(&format!("* {} left", c.nick()));
    b.send_line("/quit  \t ");
    b.expect_line("* bye");
    b.assert_closed();
    a.expect_line(&format!("* {} left", b.nick()));
    a.send_line("/who");
    a.expect_line(&format!("* 1 user online: {}", a.nick()));
}

/// Commands: `/quit REASON`: the quitter gets `* bye` and its connection
/// closes; the others get `* NICK left (REASON)`, REASON sanitized.
pub fn commands_quit_with_reason(target: &Target) {
    let server = ServerProcess::start(target);
    let [mut a, mut b, mut c] = clients(&server);
    c.send_line("/quit   gone fishing, back soon  ");
    c.expect_line("* bye");
    c.assert_closed();
    a.expect_line(&format!("* {} left (gone fishing, back soon)", c.nick()));
    b.expect_line(&format!("* {} left (gone fishing, back soon)", c.nick()));
    b.send(b"/quit \x1b[5mbye\r\n");
    b.expect_line("* bye");
    b.assert_closed();
    a.expect_line(&format!("* {} left (\u{fffd}[5mbye)", b.nick()));
}

/// Commands: `//TEXT` is a chat line `NICK: /TEXT` (the first `/` escapes
/// the second), to everyone else.
pub fn commands_double_slash_escape(target: &Target) {
    let server = ServerProcess::start(target);
    let [mut a, mut b] = clients(&server);
    a.send(b"//shrug\n///triple\n//\n// spaced\n//quit\n");
    let n = a.nick().to_owned();
    b.expect_lines(&[
        &format!("{n}: /shrug"),
        &format!("{n}: //triple"),
        &format!("{n}: /"),
        &format!("{n}: / spaced"),
        &format!("{n}: /quit"),
    ]);
    sync(&mut b, &mut [&mut a]);
}

/// Commands: any other `/X` (and a bare `/`) gets
/// `* error: unknown command /X, try /help`, to the sender only.
pub fn commands_unknown_and_bare_slash(target: &Target) {
    let server = ServerProcess::start(target);
    let [mut a, mut b] = clients(&server);
    for (command, name) in [
        ("/frob with args", "frob"),
        ("/FROB", "FROB"),
        ("/", ""),
        ("/ spaced", ""),
        ("/nickname x", "nickname"),
    ] {
        a.send_line(command);
        a.expect_line(&format!("* error: unknown command /{name}, try /help"));
    }
    sync(&mut a, &mut [&mut b]);
    sync(&mut b, &mut [&mut a]);
}

/// Commands: command names are matched case-insensitively (`/NICK`, `/Me`,
/// `/MSG`, `/WHO`, `/Help`, `/QUIT`).
pub fn commands_names_are_case_insensitive(target: &Target) {
    let server = ServerProcess::start(target);
    let [mut a, mut b] = clients(&server);
    let old = a.nick().to_owned();
    a.send_line("/NICK Big");
    a.expect_line("* you are now known as Big");
    b.expect_line(&format!("* {old} is now known as Big"));
    a.set_nick("Big");
    a.send_line("/Me shouts");
    b.expect_line("* Big shouts");
    a.send_line(&format!("/MSG {} quietly", b.nick()));
    b.expect_line("*Big* quietly");
    a.send_line("/WHO");
    let mut nicks = [a.nick().to_owned(), b.nick().to_owned()];
    nicks.sort_by_key(|n| n.to_lowercase());
    a.expect_line(&format!("* 2 users online: {}", nicks.join(", ")));
    a.send_line("/Help");
    a.expect_line("* commands:");
    for _ in 0..7 {
        let line = a.read_line();
        assert!(line.starts_with("* "), "help line {line:?}");
    }
    a.send_line("/QUIT");
    a.expect_line("* bye");
    a.assert_closed();
    b.expect_line("* Big left");
}
