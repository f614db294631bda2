//! Alerts: what the rules engine reports about an incident. An incident is keyed by a network
//! socket reached, and takes in every other socket its processes match on, so one reverse shell,
//! all the children that inherit its fds and every connection it uses are one incident however
//! many rules match. Alerts are self-contained (they carry the processes and the socket)
//! so that they can be encoded after the snapshot they came from is gone.

use super::{Direction, DirectionSource, LoginOrigin, Process, ProcessContext, Socket, Via};
use serde::{Deserialize, Serialize};

/// Rule severity, on the OCSF scale (`severity_id` 1-5).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Severity {
    /// 1.
    Informational = 1,
    /// 2.
    Low = 2,
    /// 3.
    Medium = 3,
    /// 4.
    High = 4,
    /// 5.
    Critical = 5,
}

impl Severity {
    /// The OCSF `severity_id` (also `event.severity`).
    pub fn id(self) -> u8 {
        self as u8
    }

    /// The lowercase name.
    pub fn name(self) -> &'static str {
        match self {
            Severity::Informational => "informational",
            Severity::Low => "low",
            Severity::Medium => "medium",
            Severity::High => "high",
            Severity::Critical => "critical",
        }
    }
}

/// What happened to the incident.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AlertAction {
    /// First match.
    Opened,
    /// New rules or processes joined.
    Updated,
    /// Over: the socket closed, nothing matched for two scans, or its rules were removed.
    Resolved,
}

/// One matching rule, as it read when it matched.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RuleHit {
    /// Stable id.
    pub id: String,
    /// Rule version.
    pub version: u32,
    /// Short title.
    pub name: String,
    /// Severity.
    pub severity: Severity,
    /// Tags (`mitre.T1059.004`, …).
    pub tags: Vec<String>,
    /// The rendered message template.
    pub message: String,
    /// What the rule detects and why.
    #[serde(default)]
    pub description: String,
    /// Where a responder reads more: a URL or runbook text.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reference: Option<String>,
}

/// One process's way from its stdio to the socket.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct StdioPath {
    /// Whose stdio.
    pub process: super::ProcKey,
    /// Its fds 0-2 leading to the socket.
    pub stdio_fds: Vec<i32>,
    /// How they lead there (first hops).
    pub vias: Vec<Via>,
    /// Relay processes in between, nearest first (none when the fds are the socket).
    pub relays: Vec<Process>,
}

/// One network socket an incident's processes reach.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct IncidentEndpoint {
    /// The socket (as last seen).
    pub socket: Socket,
    /// Its direction.
    pub direction: (Direction, DirectionSource),
    /// Which streams of the matching processes lead to it (0 stdin, 1 stdout, 2 stderr; empty
    /// when only held on other fds).
    pub streams: Vec<i32>,
}

/// An alert about one incident.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Alert {
    /// Opened, updated or resolved.
    pub action: AlertAction,
    /// The incident's id, the same in all its alerts.
    pub incident_id: String,
    /// The network socket the incident is about (as last seen): its key is the incident's.
    pub socket: Socket,
    /// Every socket the incident's processes reach, this one first: a shell reading commands
    /// from one connection and answering on another is one incident naming both.
    #[serde(default)]
    pub endpoints: Vec<IncidentEndpoint>,
    /// Its direction.
    pub direction: (Direction, DirectionSource),
    /// The highest severity among `rules`.
    pub severity: Severity,
    /// Every rule matching the incident.
    pub rules: Vec<RuleHit>,
    /// The top-most matching process (the shell, not its `sleep` child).
    pub subject: Option<Process>,
    /// The subject's parent, grandparent, … up to pid 1 or the init of the subject's pid
    /// namespace (a container's), nearest first.
    #[serde(default)]
    pub ancestors: Vec<Process>,
    /// The sshd session the subject descends from, with the connection it holds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub login_origin: Option<LoginOrigin>,
    /// Names, audit identity and executable digests of the subject and its ancestors, read when
    /// the alert was made (the last reading is kept when the processes have gone since).
    #[serde(default)]
    pub context: Vec<ProcessContext>,
    /// Every matching process.
    pub processes: Vec<Process>,
    /// Every process holding the socket.
    pub holders: Vec<Process>,
    /// How stdio reaches the socket: the path of the top-most matching process whose stdio is
    /// relayed (the shell behind `python pty.spawn`), else the subject's own.
    pub path: StdioPath,
    /// The subject's own fds on the socket.
    pub fds: Vec<i32>,
    /// Sequence number of the snapshot this alert comes from.
    pub snapshot_seq: u64,
    /// Sequence number of the snapshot that opened the incident.
    pub opened_seq: u64,
    /// When the incident opened (ms since the epoch; 0 in incidents saved before it was kept).
    #[serde(default)]
    pub opened_at_ms: u64,
    /// The first snapshot in which both the subject (with its current executable) and the
    /// socket existed: detection latency in scans is `opened_seq - first_seen_seq`.
    pub first_seen_seq: u64,
    /// Opened by the agent's first scan: it was already there when the agent started.
    pub present_at_start: bool,
    /// The incident was opened by a look at a process as it executed, not by a scan.
    #[serde(default)]
    pub seen_by_look: bool,
    /// Why a resolved incident ended.
    pub reason: Option<String>,
    /// When (ms since the epoch).
    pub at_ms: u64,
}
