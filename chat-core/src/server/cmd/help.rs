//! `/help`: the list of commands.

use crate::server::{ConnId, Server};

/// The `/help` reply, each entry sent as one `* ` line.
pub const HELP: &[&str] = &[
    "commands:",
    "  /nick NAME       change your nick",
    "  /me TEXT         send an action",
    "  /msg NICK TEXT   send a private message",
    "  /who             list who is online",
    "  /help            show this list",
    "  /quit [REASON]   leave",
    "  //TEXT           send a line that starts with /",
];

impl Server {
    pub(super) fn command_help(&mut self, conn: ConnId) {
        for text in HELP {
            self.reply(conn, text);
        }
    }
}
