//! What the server tells its driver: the [`Output`]s it drains, the
//! [`Event`]s worth logging, and the [`Reason`] a connection ended.

use std::fmt;
use std::net::{IpAddr, SocketAddr};

use super::ConnId;
#[cfg(doc)]
use super::Server;

/// Why a connection ended; shown to others as `* NICK left (REASON)` where
/// [`Reason::notice`] has text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reason {
    /// The client sent `/quit`, with its (sanitized) reason if it gave one.
    Quit(Option<String>),
    /// The client closed its side of the connection.
    Eof,
    /// The driver reported the connection closed or failed.
    Closed,
    /// The client's output queue went over `max_queue`.
    TooSlow,
    /// Refused on connect: `max_clients` were already connected.
    ServerFull,
    /// The server is shutting down.
    Shutdown,
    /// The client had more than `flood_excess` lines waiting for flood control.
    ExcessFlood,
    /// The client sent nothing for `idle_timeout`.
    Idle,
    /// The client held an unterminated line for `line_timeout`.
    IncompleteLine,
    /// Refused on connect: its address has `max_per_ip` connections open,
    /// or connects faster than `connect_rate`.
    TooManyFromAddress,
    /// Refused on connect: the server is a node of a room shared through
    /// Redis, and the room does not answer (or no nick could be claimed).
    RoomUnavailable,
    /// Disconnected: Redis no longer knew this node (the others found it
    /// dead, and its users left for them).
    RoomLost,
    /// Disconnected: while the room was split, the client's nick was taken
    /// on another node, or its claim expired and was taken.
    NickLost,
}

impl Reason {
    /// The text shown to others in parentheses, if any.
    pub fn notice(&self) -> Option<&str> {
        match self {
            Reason::Quit(reason) => reason.as_deref(),
            Reason::Eof | Reason::Closed => None,
            Reason::TooSlow => Some("too slow"),
            Reason::ServerFull => Some("server full"),
            Reason::Shutdown => Some("shutdown"),
            Reason::ExcessFlood => Some("excess flood"),
            Reason::Idle => Some("idle"),
            Reason::IncompleteLine => Some("incomplete line timeout"),
            Reason::TooManyFromAddress => Some("too many connections from your address"),
            Reason::RoomUnavailable => Some("room unavailable"),
            Reason::RoomLost => Some("this server lost the room"),
            Reason::NickLost => Some("nick lost while the room was split"),
        }
    }
}

/// The reason as logged: a `/quit` reason is chat text, which is never
/// logged, so it shows as `quit` alone.
impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Reason::Quit(_) => f.write_str("quit"),
            Reason::Eof => f.write_str("client closed the connection"),
            Reason::Closed => f.write_str("connection lost"),
            other => f.write_str(other.notice().unwrap_or_default()),
        }
    }
}

/// Something worth logging. Never holds chat text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// A client joined under a generated nick. Per address (counted as for
    /// [`Event::Rejected`]), the first two joins in a minute are to be
    /// logged, with how many were not since the last (`unlogged`); later
    /// ones in that minute come `quiet`, and so does their [`Event::Left`]:
    /// log them at a level that is usually off. So one address connecting
    /// in a loop is logged at most twice a minute.
    Joined {
        /// The connection.
        conn: ConnId,
        /// Its peer address, as given to [`Server::handle_connect`].
        peer: SocketAddr,
        /// Its generated nick.
        nick: String,
        /// Not to be logged with the others (see above).
        quiet: bool,
        /// Joins of the same address since the last one not quiet that were
        /// quiet.
        unlogged: u64,
    },
    /// A client was refused on connect. Not every refusal is reported: per
    /// address (the peer's IP; an IPv6 one as its network prefix of
    /// `Config::ipv6_prefix` bits, whether or not the address policies
    /// apply to the peer), the first is, at once; the refusals of that
    /// address in the 60 s after it are only counted; the first one after
    /// those 60 s is reported again, with that count in `unlogged`, and the
    /// next 60 s start. So one address connecting in a loop is reported at
    /// most once a minute.
    Rejected {
        /// The connection.
        conn: ConnId,
        /// Its peer address.
        peer: SocketAddr,
        /// Why.
        reason: Reason,
        /// Refusals of the same address since the last one reported that
        /// were not reported (for any reason).
        unlogged: u64,
    },
    /// Refusals, or quiet joins, of one address that were not reported,
    /// when the server forgets the address: its minute is over and nothing
    /// more came. (Until it forgets it, the next one reported carries the
    /// count: see [`Event::Rejected`], [`Event::Joined`].) The server
    /// forgets such addresses only while it tracks many (1024 or more), to
    /// bound what it keeps.
    Unlogged {
        /// The address, as [`Event::Rejected`] counts it (an IPv6 one as
        /// its network prefix, the host bits zero).
        address: IpAddr,
        /// How many refusals were not reported.
        refusals: u64,
        /// How many joins were quiet.
        joins: u64,
    },
    /// A client changed its nick.
    Renamed {
        /// The connection.
        conn: ConnId,
        /// The nick it had.
        from: String,
        /// The nick it has now.
        to: String,
    },
    /// A client left.
    Left {
        /// The connection.
        conn: ConnId,
        /// The nick it had.
        nick: String,
        /// Why it left.
        reason: Reason,
        /// Its [`Event::Joined`] was quiet, and it left in an everyday way
        /// (`/quit`, EOF, the connection closed): so is this. A client
        /// dropped for a limit or a policy is always reported.
        quiet: bool,
    },
}

/// What the server asks its driver to do, drained with [`Server::poll_output`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Output {
    /// The connection has bytes to send: when its socket can take them,
    /// call [`Server::poll_transmit`]. Not repeated for the same connection
    /// until `poll_transmit` has been called for it.
    Transmit(ConnId),
    /// Close the connection, then call [`Server::handle_closed`]. With
    /// `flush`, first write what [`Server::poll_transmit`] still gives (a
    /// goodbye or error line), bounded in time; without it, drop it.
    /// No input for this id is taken after this.
    Close {
        /// The connection to close.
        conn: ConnId,
        /// Why it is closed.
        reason: Reason,
        /// Whether queued output should be written before closing.
        flush: bool,
    },
    /// Stop reading from the connection until [`Output::ResumeReading`]:
    /// the client is over its flood budget, or the room waits for its
    /// readers, and leaving its input in the socket makes TCP slow it down. Bytes already read may still be given
    /// to [`Server::handle_bytes`]; they wait their turn inside the server.
    /// After an [`Output::Close`] for it, reading does not matter any more.
    StopReading(ConnId),
    /// Read from the connection again.
    ResumeReading(ConnId),
    /// Something worth logging. Boxed so that the frequent outputs stay small.
    Event(Box<Event>),
    /// Only for a server made a node of a room
    /// ([`Server::with_cluster`]): run this call on Redis and give its
    /// reply, with its id, to [`Server::handle_cluster_reply`]. Calls are
    /// run in the order given, but for [`Call::Read`](crate::cluster::Call::Read),
    /// which may wait for entries (on a connection of its own) and whose
    /// reply may come before those of calls given earlier. Boxed, as
    /// [`Output::Event`].
    Cluster(Box<crate::cluster::Request>),
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn logged_reasons_hold_no_client_text() {
        let quit = Reason::Quit(Some("secret plans".into()));
        assert_eq!(quit.to_string(), "quit");
        assert_eq!(quit.notice(), Some("secret plans"), "others still see it");
        assert_eq!(Reason::TooSlow.to_string(), "too slow");
    }
}
