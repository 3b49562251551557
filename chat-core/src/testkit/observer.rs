//! What the [`Driver`] records and shows the layers on top of it: the
//! trace of outputs, the calls into the server, and the hooks around them.

use std::net::SocketAddr;

use super::Driver;
use crate::cluster::{CallId, Reply, Request};
use crate::{ConnId, Event, Reason};

/// Everything the driver saw, in order ([`Driver::trace`]): for determinism
/// checks and for what one call caused ([`Observer::after`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Seen {
    /// `Output::Transmit`.
    Transmit(ConnId),
    /// Bytes moved out with `poll_transmit` (never empty).
    Bytes(ConnId, Vec<u8>),
    /// `Output::Close`: its reason and flush.
    Close(ConnId, Reason, bool),
    /// `Output::StopReading`.
    Stop(ConnId),
    /// `Output::ResumeReading`.
    Resume(ConnId),
    /// `Output::Event`.
    Event(Event),
    /// `Output::Cluster`: a call for Redis.
    Cluster(Request),
}

/// One call into the server, as an [`Observer`] sees it.
#[derive(Debug, Clone, Copy)]
pub enum Call<'a> {
    /// `handle_connect` from this peer.
    Connect(SocketAddr),
    /// `handle_accept` from this peer: its bytes cannot carry chat yet.
    Accept(SocketAddr),
    /// `handle_ready`: the bytes of a connection accepted can carry chat.
    Ready(ConnId),
    /// `handle_bytes`.
    Bytes(ConnId, &'a [u8]),
    /// `handle_eof`.
    Eof(ConnId),
    /// `handle_closed`.
    Closed(ConnId),
    /// `handle_written` with this many bytes.
    Written(ConnId, usize),
    /// `handle_blocked`: the client's socket is full.
    Blocked(ConnId),
    /// `handle_timeout`.
    Timeout,
    /// `handle_shutdown`.
    Shutdown,
    /// `handle_cluster_reply`.
    ClusterReply(CallId, &'a Reply),
    /// `handle_cluster_down`.
    ClusterDown,
}

/// Input from a client that the driver has not given the server yet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Input {
    /// Bytes.
    Bytes(Vec<u8>),
    /// The client closed its side.
    Eof,
}

/// Hooks a test layer (a model, an oracle) puts around every call the
/// driver makes into the server. All do nothing by default.
pub trait Observer: Sized {
    /// Before `call` is made, at [`Driver::elapsed`].
    fn before(&mut self, _driver: &Driver<Self>, _call: &Call<'_>) {}
    /// After `call` was made and its outputs carried out; `seen` is what
    /// they were.
    fn after(&mut self, _driver: &Driver<Self>, _call: &Call<'_>, _seen: &[Seen]) {}
    /// When [`Driver::settle`] found nothing left to do.
    fn settled(&mut self, _driver: &Driver<Self>) {}
}

impl Observer for () {}
