//! `/msg NICK TEXT`: a private message, `*FROM* TEXT` to one client.

use super::split_word;
use crate::server::{Audience, ConnId, Server, render};

impl Server {
    pub(super) fn command_msg(&mut self, conn: ConnId, args: &str) {
        let (target, text) = split_word(args);
        if target.is_empty() || text.is_empty() {
            return self.reply(conn, "error: usage: /msg NICK TEXT");
        }
        let Some(to) = self.nicks.holder(target) else {
            return self.reply(conn, &format!("error: no such nick {target}"));
        };
        let Some(slot) = self.joined_slot(conn) else {
            return;
        };
        let line = render(&["*", &self.conns[slot].nick, "* ", text]);
        self.deliver(Audience::One(to), line);
    }
}
