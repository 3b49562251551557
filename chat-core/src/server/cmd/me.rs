//! `/me TEXT`: an action, `* NICK TEXT` to every other client.

use crate::server::{ConnId, Server, render};

impl Server {
    pub(super) fn command_me(&mut self, conn: ConnId, text: &str) {
        if text.is_empty() {
            return self.reply(conn, "error: usage: /me TEXT");
        }
        let Some(slot) = self.joined_slot(conn) else {
            return;
        };
        let line = render(&["* ", &self.conns[slot].nick, " ", text]);
        self.say(conn, line);
    }
}
