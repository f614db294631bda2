//! Relations derived from one snapshot by `graph`: socket direction and stdio relay links.

use super::{ProcKey, SocketKey};
use serde::{Deserialize, Serialize};

/// Which side opened a connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Direction {
    /// Accepted from a remote peer.
    Inbound,
    /// Initiated locally.
    Outbound,
    /// Waiting for peers (TCP LISTEN, unconnected bound UDP, listening unix).
    Listening,
    /// Cannot be told.
    Unknown,
}

/// What a direction verdict rests on.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DirectionSource {
    /// The socket's own state (LISTEN, unconnected).
    State,
    /// A listener (or unconnected UDP socket) of the same namespace serves the local port.
    Listener,
    /// The local (or remote) port lies in the namespace's ephemeral range.
    PortRange,
    /// Nothing to judge by.
    None,
}

/// How a stdio fd reaches a network socket.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Via {
    /// The fd is the socket.
    Direct,
    /// Through an anonymous pipe.
    Pipe,
    /// Through a named pipe.
    Fifo,
    /// Through a pseudo-terminal.
    Pty,
    /// Through a connected unix socket (socketpair or named).
    Unix,
}

/// A process's fd 0, 1 or 2 leads to a network socket, possibly through relay processes.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct StdioLink {
    /// The process whose stdio this is.
    pub proc: ProcKey,
    /// 0, 1 or 2.
    pub fd: i32,
    /// The kind of the first hop.
    pub via: Via,
    /// Processes in between, nearest first (empty when direct).
    pub relays: Vec<ProcKey>,
    /// The network socket reached.
    pub socket: SocketKey,
}
