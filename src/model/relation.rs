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
    /// A listener (or unconnected UDP socket) of the same namespace serves the local port, in
    /// this snapshot or an earlier one.
    Listener,
    /// The other end of the connection is in the same namespace (loopback) and its direction
    /// rests on its state or a listener: this end is the opposite.
    Peer,
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

/// One way from a stdio object to a network socket.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Route {
    /// Processes in between, nearest first (empty when the fd is the socket).
    pub relays: Vec<ProcKey>,
    /// The network socket reached.
    pub socket: SocketKey,
}

/// Where one stdio object (a pipe, FIFO, pty or unix socket) leads, in one direction of flow.
/// Computed once per object and shared by every process holding it: a shell's children, or a
/// thousand workers sharing one stdout pipe, all point at the same reach.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct StdioReach {
    /// Shortest route to each network socket found, connections first.
    pub routes: Vec<Route>,
    /// The walk hit a bound (more sockets than are listed, or the work budget): what it did not
    /// list is unknown, not absent.
    pub truncated: bool,
}

/// What a process's stdin, stdout or stderr leads to.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct StdioEnd {
    /// The process.
    pub proc: ProcKey,
    /// The fd: 0, 1 or 2, or one of the csh family's copies of them (16-19).
    pub fd: i32,
    /// For a csh copy, the stream it stands for (0 stdin, 1 stdout, 2 stderr).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stream: Option<i32>,
    /// The kind of the first hop.
    pub via: Via,
    /// For `Via::Direct`, the socket itself.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub socket: Option<SocketKey>,
    /// Otherwise the index of the shared reach.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reach: Option<usize>,
}

impl StdioEnd {
    /// 0 for stdin, 1 for stdout, 2 for stderr.
    pub fn stream(&self) -> i32 {
        self.stream.unwrap_or(self.fd)
    }
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
