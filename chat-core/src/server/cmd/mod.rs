//! What a client's lines do (protocol.md, "Commands"): chat lines, and one
//! file per command, each an `impl Server` block of its own.

mod help;
mod me;
mod msg;
mod nick;
mod quit;
mod who;

use bytes::Bytes;

use super::{ConnId, Server, render};
use crate::cluster::Entry;
use crate::framing::sanitize;

pub use help::HELP;

impl Server {
    /// One complete raw line from a joined client.
    pub(super) fn handle_line(&mut self, conn: ConnId, raw: &[u8]) {
        let text = sanitize(raw);
        if text.is_empty() {
            return;
        }
        match text.strip_prefix('/') {
            Some(escaped) if escaped.starts_with('/') => self.chat(conn, escaped),
            Some(command) => self.command(conn, command),
            None => self.chat(conn, &text),
        }
    }

    /// A chat line: `NICK: TEXT` to every other client.
    fn chat(&mut self, conn: ConnId, text: &str) {
        let Some(slot) = self.joined_slot(conn) else {
            return;
        };
        let line = render(&[&self.conns[slot].nick, ": ", text]);
        self.say(conn, line);
    }

    /// A line from `conn` for everyone else (chat, `/me`).
    fn say(&mut self, conn: ConnId, line: Bytes) {
        if self.room_split_full() {
            return self.reply(conn, "error: room split, line not sent");
        }
        self.broadcast(conn, line, |line| {
            let text = line.strip_suffix(b"\n").unwrap_or(line);
            Entry::Say {
                conn,
                line: String::from_utf8_lossy(text).into_owned(),
            }
        });
    }

    /// A command line, without its leading `/`.
    fn command(&mut self, conn: ConnId, line: &str) {
        let (name, args) = split_word(line);
        match name.to_ascii_lowercase().as_str() {
            "nick" => self.command_nick(conn, args),
            "me" => self.command_me(conn, args),
            "msg" => self.command_msg(conn, args),
            "who" => self.command_who(conn),
            "help" => self.command_help(conn),
            "quit" => self.command_quit(conn, args),
            _ => {
                let text = format!("error: unknown command /{name}, try /help");
                self.reply(conn, &text);
            }
        }
    }
}

/// Splits off the first word: the text up to the first space or TAB, and
/// the rest after the run of spaces and TABs that follows it.
fn split_word(text: &str) -> (&str, &str) {
    let is_gap = |c: char| c == ' ' || c == '\t';
    match text.find(is_gap) {
        Some(end) => (&text[..end], text[end..].trim_start_matches(is_gap)),
        None => (text, ""),
    }
}
