//! `/quit [REASON]`: leave, with a reason shown to the others.

use crate::server::{ConnId, Reason, Server};

impl Server {
    pub(super) fn command_quit(&mut self, conn: ConnId, args: &str) {
        self.reply(conn, "bye");
        let reason = (!args.is_empty()).then(|| args.to_owned());
        self.leave(conn, Reason::Quit(reason));
    }
}
