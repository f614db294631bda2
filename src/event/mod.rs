//! The output schema: every change and lifecycle event as one self-contained, ECS-shaped JSON line
//! (DESIGN §6). Strings from /proc are escaped visibly, invalid UTF-8 kept in `<field>_b64`,
//! long fields capped (named in `sockwatch.truncated`), argv secrets redacted. A line never
//! contains a raw newline, whatever a process put in its name or arguments.

mod alert;
mod alert_context;
mod community_id;
mod container;
pub mod health;
mod hiding_alert;
mod message;
pub mod ocsf;
mod redact;
mod text;

pub use community_id::community_id;
pub use hiding_alert::{PROC_MOUNT_RULE, UNLISTED_RULE};
pub use message::terminal_line;
pub use redact::{ArgPattern, REDACTED, Redactor};

use crate::model::{
    Change, Direction, DirectionSource, Holder, ProcKey, Process, Protocol, ShortLived, Snapshot,
    Socket,
};
use base64::Engine as _;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};
use sha1::{Digest, Sha1};
use text::{ARG_CAP, COMMAND_LINE_CAP, MAX_ARGS, NAME_CAP, PATH_CAP, put_text};

/// The ECS version the field names follow.
pub const ECS_VERSION: &str = "8.11.0";
/// Holders listed in one event; the total is always given.
pub const MAX_HOLDERS_LISTED: usize = 64;

/// `event.kind`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EventKind {
    /// Something happened.
    Event,
    /// A detection.
    Alert,
    /// A periodic or baseline statement of how things are.
    State,
}

/// One encoded event: the JSON line (with its newline) and what routing needs.
#[derive(Clone, Debug)]
pub struct Encoded {
    /// `event.kind`.
    pub kind: EventKind,
    /// `event.severity` (0 for telemetry).
    pub severity: u8,
    /// `event.action` (owned only when read back from a spool).
    pub action: std::borrow::Cow<'static, str>,
    /// The NDJSON line, newline included.
    pub line: Vec<u8>,
    /// `event.id` (a UUIDv7): the Elasticsearch `_id` that makes a resent batch idempotent.
    pub id: String,
    /// When it happened, ms since the epoch (`@timestamp`; Splunk's `time`).
    pub at_ms: u64,
}

/// Who is reporting: fixed for the agent's lifetime.
#[derive(Clone, Debug, Default)]
pub struct HostIdentity {
    /// `host.name`.
    pub name: String,
    /// `host.id` (/etc/machine-id).
    pub id: String,
    /// `host.boot.id`.
    pub boot_id: String,
    /// Boot time (ms since the epoch), to turn start ticks into `process.start`.
    pub boot_time_ms: Option<u64>,
    /// Clock ticks per second (`getconf CLK_TCK`).
    pub ticks_per_second: u64,
}

/// ECS `process.tty`: the controlling terminal's device numbers, from `tty_nr` (stat field 7,
/// the kernel's `new_encode_dev`: minor in bits 0-7 and 20-31, major in bits 8-19).
fn tty(tty_nr: u32) -> Value {
    let major = (tty_nr >> 8) & 0xfff;
    let minor = (tty_nr & 0xff) | ((tty_nr >> 12) & 0xfff00);
    json!({"char_device": {"major": major, "minor": minor}})
}

/// Direction verdicts of one snapshot's sockets, in the order of `Snapshot::sockets` (which is
/// sorted by key): two bytes a socket instead of a map entry.
pub type Directions = Vec<(Direction, DirectionSource)>;

/// Encodes events, numbering them.
pub struct Encoder {
    host: HostIdentity,
    redactor: Redactor,
    sequence: u64,
}

impl Encoder {
    /// An encoder for this host.
    pub fn new(host: HostIdentity, redactor: Redactor) -> Self {
        Encoder { host, redactor, sequence: 0 }
    }

    /// Events emitted so far.
    pub fn sequence(&self) -> u64 {
        self.sequence
    }

    /// The event for one change. `prev` describes closed sockets; `directions` are the verdicts
    /// of the snapshot the socket is described from.
    pub fn change(
        &mut self,
        change: &Change,
        prev: Option<(&Snapshot, &Directions)>,
        next: (&Snapshot, &Directions),
        first_seen: Option<(u64, bool)>,
    ) -> Option<Encoded> {
        let at = next.0.taken_at_ms;
        let (action, kind, kind_type, key) = match change {
            Change::SocketOpened { key } => ("socket_opened", EventKind::Event, "start", *key),
            Change::SocketClosed { key, .. } => ("socket_closed", EventKind::Event, "end", *key),
            Change::SocketStateChanged { key, .. } => {
                ("socket_state_changed", EventKind::Event, "change", *key)
            }
            Change::SocketHoldersChanged { key, .. } => {
                ("socket_holders_changed", EventKind::Event, "change", *key)
            }
            Change::ExistingSocket { key } => ("existing_socket", EventKind::State, "info", *key),
            Change::ConnectionUnheld { key } => ("socket_unheld", EventKind::Event, "info", *key),
            Change::ProcessExec { proc, previous_exe } => {
                let process = Processes(&next.0.processes).get(*proc)?;
                let mut event = self.envelope("process_exec", EventKind::Event, at, next.0.seq);
                event["event"]["category"] = json!(["process"]);
                event["event"]["type"] = json!(["change"]);
                let mut truncated = Vec::new();
                event["process"] = self.process(process, &mut truncated);
                container::put_container(&mut event, process, &mut truncated);
                let mut previous =
                    Self::process_extras(process).as_object().cloned().unwrap_or_default();
                if let Some(exe) = previous_exe {
                    put_text(
                        &mut previous,
                        "previous_executable",
                        exe.as_bytes(),
                        PATH_CAP,
                        "sockwatch.process.previous_executable",
                        &mut truncated,
                    );
                }
                event["sockwatch"]["process"] = Value::Object(previous);
                return Some(self.finish(event, EventKind::Event, "process_exec", at, truncated));
            }
        };
        let (snapshot, directions) = match change {
            Change::SocketClosed { .. } => prev?,
            _ => next,
        };
        let index = snapshot.sockets.binary_search_by_key(&key, |s| s.key).ok()?;
        let socket = &snapshot.sockets[index];
        let direction =
            directions.get(index).copied().unwrap_or((Direction::Unknown, DirectionSource::None));
        let mut event = self.envelope(action, kind, at, next.0.seq);
        event["event"]["category"] = json!(["network"]);
        event["event"]["type"] = json!([kind_type]);
        let mut truncated = Vec::new();
        let processes = Processes(&snapshot.processes);
        if let Some(top) = top_holder(socket, &processes) {
            event["process"] = self.process(top, &mut truncated);
            event["sockwatch"]["process"] = Self::process_extras(top);
            container::put_container(&mut event, top, &mut truncated);
        }
        self.network(&mut event, socket, direction.0);
        let mut details = self.socket_details(socket, direction, &processes, &mut truncated);
        match change {
            Change::SocketStateChanged { from, .. } => {
                details.insert("previous_state".into(), json!(from.name()));
            }
            Change::SocketHoldersChanged { added, removed, .. } => {
                let holders = self.holders(added, &processes, &mut false);
                details.insert("holders_added".into(), holders);
                let before = Processes(prev.map_or(&[][..], |p| &p.0.processes));
                let holders = self.holders(removed, &before, &mut false);
                details.insert("holders_removed".into(), holders);
            }
            Change::ConnectionUnheld { .. } => {
                // Processes the scan could not fully read may be holding it.
                let unread = next.0.coverage.processes_denied;
                details.insert("processes_unread".into(), json!(unread));
                if let Some((ms, _)) = first_seen {
                    details.insert("first_seen".into(), json!(rfc3339(ms)));
                }
            }
            Change::SocketClosed { first_seen_ms, seen_since_baseline, .. } => {
                details.insert("first_seen".into(), json!(rfc3339(*first_seen_ms)));
                details.insert("duration_ms".into(), json!(at.saturating_sub(*first_seen_ms)));
                // Open before the agent started: the duration is a lower bound.
                details.insert("duration_is_lower_bound".into(), json!(*seen_since_baseline));
            }
            _ => {
                if let Some((ms, _)) = first_seen {
                    details.insert("first_seen".into(), json!(rfc3339(ms)));
                }
            }
        }
        event["sockwatch"]["socket"] = Value::Object(details);
        if matches!(change, Change::ExistingSocket { .. }) {
            event["sockwatch"]["baseline"] = json!(true);
        }
        Some(self.finish(event, kind, action, at, truncated))
    }

    /// A connection that opened and closed between two scans, reported when the kernel freed
    /// its socket: with its holders when an exec check saw them, `sockwatch.socket.holders_known`
    /// false otherwise.
    pub fn short_lived(&mut self, connection: &ShortLived) -> Encoded {
        let ShortLived { socket, processes, direction, tcp, closed_at_ms } = connection;
        let at = *closed_at_ms;
        let mut event = self.envelope("socket_short_lived", EventKind::Event, at, 0);
        event["event"]["category"] = json!(["network"]);
        event["event"]["type"] = json!(["connection", "end"]);
        let mut truncated = Vec::new();
        let processes = Processes(processes);
        if let Some(top) = top_holder(socket, &processes) {
            event["process"] = self.process(top, &mut truncated);
            event["sockwatch"]["process"] = Self::process_extras(top);
            container::put_container(&mut event, top, &mut truncated);
        }
        self.network(&mut event, socket, direction.0);
        let mut details = self.socket_details(socket, *direction, &processes, &mut truncated);
        if socket.key.inode == 0 {
            details.remove("inode");
        }
        details.insert("holders_known".into(), json!(!socket.holders.is_empty()));
        if !socket.holders.is_empty() {
            details.insert("holders_seen_by".into(), json!("exec_check"));
        }
        if let Some(tcp) = tcp {
            details.insert("tcp".into(), json!(tcp));
        }
        event["sockwatch"]["socket"] = Value::Object(details);
        self.finish(event, EventKind::Event, "socket_short_lived", at, truncated)
    }

    /// A lifecycle event (`agent_started`, `heartbeat`, …) with extra `sockwatch` fields.
    pub fn lifecycle(
        &mut self,
        action: &'static str,
        kind: EventKind,
        at_ms: u64,
        fields: Value,
    ) -> Encoded {
        let mut event = self.envelope(action, kind, at_ms, 0);
        event["event"]["category"] = json!(["host"]);
        event["event"]["type"] = json!(["info"]);
        let severity = health::severity(action).map_or(0, |s| s.id());
        if severity > 0 {
            event["event"]["severity"] = json!(severity);
            let failed = health::is_failure(action);
            event["event"]["outcome"] = json!(if failed { "failure" } else { "success" });
        }
        event["sockwatch"] = fields;
        let mut encoded = self.finish(event, kind, action, at_ms, Vec::new());
        encoded.severity = severity;
        encoded
    }

    fn envelope(&mut self, action: &str, kind: EventKind, at_ms: u64, snapshot_seq: u64) -> Value {
        self.sequence += 1;
        json!({
            "@timestamp": rfc3339(at_ms),
            "ecs": {"version": ECS_VERSION},
            "event": {
                "id": uuid::Uuid::now_v7().to_string(),
                "kind": kind,
                "action": action,
                "sequence": self.sequence,
                "severity": 0,
                "module": "sockwatch",
                "dataset": "sockwatch.events",
            },
            "host": {"name": self.host.name, "id": self.host.id, "boot": {"id": self.host.boot_id}},
            "agent": {"type": "sockwatch", "version": env!("CARGO_PKG_VERSION")},
            "sockwatch": {"snapshot": {"seq": snapshot_seq}},
        })
    }

    fn finish(
        &self,
        mut event: Value,
        kind: EventKind,
        action: &'static str,
        at_ms: u64,
        truncated: Vec<String>,
    ) -> Encoded {
        if !truncated.is_empty() {
            event["sockwatch"]["truncated"] = json!(truncated);
        }
        if event.get("message").is_none() {
            event["message"] = json!(message::message(&event, action));
        }
        let mut line = serde_json::to_vec(&event).expect("a JSON value always serialises");
        line.push(b'\n');
        let id = event["event"]["id"].as_str().unwrap_or_default().to_string();
        Encoded { kind, severity: 0, action: action.into(), line, id, at_ms }
    }

    /// `process.entity_id`: stable for one process on one boot of one host, across agent restarts.
    pub fn entity_id(&self, key: ProcKey) -> String {
        let mut hasher = Sha1::new();
        hasher.update(self.host.id.as_bytes());
        hasher.update([0]);
        hasher.update(self.host.boot_id.as_bytes());
        hasher.update(key.pid.to_be_bytes());
        hasher.update(key.start_ticks.to_be_bytes());
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(&hasher.finalize()[..15])
    }

    fn process(&self, p: &Process, truncated: &mut Vec<String>) -> Value {
        let mut object = Map::new();
        object.insert("pid".into(), json!(p.key.pid));
        object.insert("entity_id".into(), json!(self.entity_id(p.key)));
        put_text(&mut object, "name", p.comm.as_bytes(), NAME_CAP, "process.name", truncated);
        if let Some(exe) = &p.exe {
            put_text(
                &mut object,
                "executable",
                exe.path.as_bytes(),
                PATH_CAP,
                "process.executable",
                truncated,
            );
        }
        let mut args: Vec<String> =
            p.argv.iter().take(MAX_ARGS).map(|a| a.escape_visible()).collect();
        if p.argv.len() > MAX_ARGS || p.argv_truncated {
            truncated.push("process.args".into());
        }
        if self.redactor.redact(&mut args) {
            object.insert("args_redacted".into(), json!(true));
        }
        let mut command_line = args.join(" ");
        let mut budget = text::ARGS_TOTAL_CAP;
        let mut kept = 0;
        let mut cut_any = false;
        for arg in &mut args {
            let (text, cut) = text::capped(std::mem::take(arg), ARG_CAP.min(budget));
            cut_any |= cut;
            budget -= text.len();
            *arg = text;
            kept += 1;
            if budget == 0 {
                break;
            }
        }
        if kept < args.len() {
            args.truncate(kept);
            cut_any = true;
        }
        if cut_any && !truncated.iter().any(|t| t == "process.args") {
            truncated.push("process.args".into());
        }
        if command_line.len() > COMMAND_LINE_CAP {
            command_line = text::capped(command_line, COMMAND_LINE_CAP).0;
            truncated.push("process.command_line".into());
        }
        object.insert("args_count".into(), json!(p.argv.len()));
        object.insert("args".into(), json!(args));
        object.insert("command_line".into(), json!(command_line));
        if p.argv.iter().any(|a| a.to_str().is_none()) && !object.contains_key("args_redacted") {
            // Lossless only where nothing was redacted: never carry a secret in base64. Raw bytes
            // are budgeted like the text (base64 grows them by a third).
            let mut budget = text::ARGS_TOTAL_CAP / 2;
            let b64: Vec<String> = p
                .argv
                .iter()
                .take(kept)
                .map(|a| {
                    let raw = &a.as_bytes()[..a.as_bytes().len().min(ARG_CAP).min(budget)];
                    budget -= raw.len();
                    base64::engine::general_purpose::STANDARD.encode(raw)
                })
                .collect();
            object.insert("args_b64".into(), json!(b64));
        }
        object.insert("parent".into(), json!({"pid": p.ppid}));
        object.insert("user".into(), json!({"id": p.uid.to_string()}));
        object.insert("group".into(), json!({"id": p.gid.to_string()}));
        if p.euid != p.uid {
            object.insert("real_user".into(), json!({"id": p.uid.to_string()}));
            object.insert("user".into(), json!({"id": p.euid.to_string()}));
        }
        if let Some(start) = self.start(p) {
            object.insert("start".into(), json!(start));
        }
        if let Some(cwd) = &p.cwd {
            let what = "process.working_directory";
            put_text(&mut object, "working_directory", cwd.as_bytes(), PATH_CAP, what, truncated);
        }
        if p.tty_nr != 0 {
            object.insert("tty".into(), tty(p.tty_nr));
        }
        Value::Object(object)
    }

    /// When the process started, from its start ticks and the boot time.
    fn start(&self, p: &Process) -> Option<String> {
        let (boot, ticks) = (self.host.boot_time_ms?, self.host.ticks_per_second.max(1));
        Some(rfc3339(boot + p.key.start_ticks * 1000 / ticks))
    }

    /// pid, entity id, name, executable, the command line (redacted, capped at `cap`), user and
    /// start: a process named in passing (a parent, an ancestor). `field` names it in
    /// `sockwatch.truncated` when something was cut.
    fn process_brief(
        &self,
        p: &Process,
        cap: usize,
        field: &str,
        truncated: &mut Vec<String>,
    ) -> Map<String, Value> {
        let mut object = Map::new();
        let mut cut = Vec::new();
        object.insert("pid".into(), json!(p.key.pid));
        object.insert("entity_id".into(), json!(self.entity_id(p.key)));
        put_text(&mut object, "name", p.comm.as_bytes(), NAME_CAP, field, &mut cut);
        if let Some(exe) = &p.exe {
            put_text(&mut object, "executable", exe.path.as_bytes(), PATH_CAP, field, &mut cut);
        }
        let mut args: Vec<String> =
            p.argv.iter().take(MAX_ARGS).map(|a| a.escape_visible()).collect();
        if self.redactor.redact(&mut args) {
            object.insert("args_redacted".into(), json!(true));
        }
        let (command_line, long) = text::capped(args.join(" "), cap);
        if long || p.argv.len() > MAX_ARGS || p.argv_truncated {
            cut.push(field.to_string());
        }
        object.insert("command_line".into(), json!(command_line));
        object.insert("args_count".into(), json!(p.argv.len()));
        object.insert("user".into(), json!({"id": p.euid.to_string()}));
        if let Some(start) = self.start(p) {
            object.insert("start".into(), json!(start));
        }
        if !cut.is_empty() && !truncated.iter().any(|t| t == field) {
            truncated.push(field.to_string());
        }
        object
    }

    /// What ECS has no slot for about a process: how its executable looks on disk.
    fn process_extras(p: &Process) -> Value {
        match &p.exe {
            Some(exe) => {
                let mut extras = json!({
                    "exe_deleted": exe.deleted,
                    "exe_memfd": exe.memfd,
                    "exe_owner_uid": exe.owner_uid,
                });
                if let Some(host_file) = exe.host_file {
                    extras["exe_host_file"] = json!(host_file);
                }
                // What the binary is when its name says otherwise (a renamed shell, a memfd).
                if let Some(identity) = &exe.identity {
                    extras["binary"] = json!({
                        "name": &*identity.name,
                        "kind": identity.kind.name(),
                        "match": identity.by,
                    });
                }
                extras
            }
            None => json!({"kernel_thread": p.kernel_thread}),
        }
    }

    fn network(&self, event: &mut Value, socket: &Socket, direction: Direction) {
        let Some(local) = socket.local.filter(|_| socket.family.is_inet()) else {
            event["network"] =
                json!({"transport": transport(&socket.protocol), "direction": "unknown"});
            return;
        };
        let remote = socket.remote.filter(|r| r.port != 0 || !r.addr.is_unspecified());
        let endpoint =
            |e: crate::model::Endpoint| json!({"ip": e.addr.to_string(), "port": e.port});
        let (source, destination) = match (direction, remote) {
            (Direction::Inbound, Some(r)) => (Some(r), Some(local)),
            (_, r) => (Some(local), r),
        };
        if let Some(s) = source {
            event["source"] = endpoint(s);
        }
        if let Some(d) = destination {
            event["destination"] = endpoint(d);
        }
        let mut network = json!({
            "transport": transport(&socket.protocol),
            "type": if local.addr.is_ipv4() { "ipv4" } else { "ipv6" },
            "direction": match direction {
                Direction::Inbound => "ingress",
                Direction::Outbound => "egress",
                _ => "unknown",
            },
        });
        let number = socket.protocol.ip_number(socket.family);
        if let (Some(r), 6 | 17 | 136) = (remote, number)
            && let Some(id) = community_id(number as u8, (local.addr, local.port), (r.addr, r.port))
        {
            network["community_id"] = json!(id);
        }
        event["network"] = network;
    }

    fn socket_details(
        &self,
        socket: &Socket,
        (direction, source): (Direction, DirectionSource),
        processes: &Processes<'_>,
        truncated: &mut Vec<String>,
    ) -> Map<String, Value> {
        let mut d = Map::new();
        d.insert("inode".into(), json!(socket.key.inode));
        d.insert("netns".into(), json!(socket.key.netns));
        d.insert("family".into(), json!(socket.family));
        // A string in every event (a SIEM maps a field to one type): the netlink family apart.
        d.insert("protocol".into(), json!(socket.protocol.name()));
        if let crate::model::Protocol::Netlink(family) = socket.protocol {
            d.insert("netlink_protocol".into(), json!(family));
        }
        d.insert("state".into(), json!(socket.state.name()));
        d.insert("direction".into(), json!(direction));
        d.insert("direction_source".into(), json!(source));
        d.insert("table_source".into(), json!(socket.source));
        if let Some(remote) = socket.remote.filter(|_| socket.family.is_inet()) {
            d.insert("remote_is_loopback".into(), json!(remote.addr.is_loopback()));
        }
        if let Some(unix) = &socket.unix {
            put_text(
                &mut d,
                "unix_name",
                unix.name.as_bytes(),
                PATH_CAP,
                "sockwatch.socket.unix_name",
                truncated,
            );
            if let Some(peer) = unix.peer {
                d.insert("unix_peer".into(), json!(peer));
            }
        }
        d.insert("holders_total".into(), json!(socket.holders.len()));
        let mut cut = false;
        d.insert("holders".into(), self.holders(&socket.holders, processes, &mut cut));
        if cut {
            truncated.push("sockwatch.socket.holders".into());
        }
        let mut fds: Vec<i32> = socket.holders.iter().map(|h| h.fd).collect();
        fds.sort_unstable();
        fds.dedup();
        fds.truncate(MAX_HOLDERS_LISTED);
        d.insert("fds".into(), json!(fds));
        d
    }

    /// Holders once per process, each with its fd list: `fds` of its own table, `threads` for
    /// fds of a thread's private table, `io_uring` for files registered in its rings. At most
    /// `MAX_HOLDERS_LISTED` processes and as many fds each; `truncated` says when more were.
    fn holders(&self, holders: &[Holder], processes: &Processes<'_>, cut: &mut bool) -> Value {
        let mut listed: Vec<Value> = Vec::new();
        for group in holders.chunk_by(|a, b| a.proc == b.proc) {
            if listed.len() == MAX_HOLDERS_LISTED {
                *cut = true;
                break;
            }
            let proc = group[0].proc;
            let mut o = Map::new();
            o.insert("pid".into(), json!(proc.pid));
            o.insert("entity_id".into(), json!(self.entity_id(proc)));
            if let Some(p) = processes.get(proc) {
                let what = "sockwatch.socket.holders.name";
                put_text(&mut o, "name", p.comm.as_bytes(), NAME_CAP, what, &mut Vec::new());
            }
            let (mut fds, mut threads, mut rings) = (Vec::new(), Vec::new(), Vec::new());
            for h in group {
                match (h.io_uring_slot, h.tid) {
                    (Some(slot), _) => rings.push(json!({"ring_fd": h.fd, "slot": slot})),
                    (None, Some(tid)) => threads.push(json!({"tid": tid, "fd": h.fd})),
                    (None, None) => fds.push(json!(h.fd)),
                }
            }
            for list in [&mut fds, &mut threads, &mut rings] {
                if list.len() > MAX_HOLDERS_LISTED {
                    list.truncate(MAX_HOLDERS_LISTED);
                    *cut = true;
                }
            }
            o.insert("fds".into(), Value::Array(fds));
            if !threads.is_empty() {
                o.insert("threads".into(), Value::Array(threads));
            }
            if !rings.is_empty() {
                o.insert("io_uring".into(), Value::Array(rings));
            }
            listed.push(Value::Object(o));
        }
        Value::Array(listed)
    }
}

/// A snapshot's processes (sorted by key), looked up by key.
struct Processes<'a>(&'a [Process]);

impl<'a> Processes<'a> {
    fn get(&self, key: ProcKey) -> Option<&'a Process> {
        self.0.binary_search_by_key(&key, |p| p.key).ok().map(|i| &self.0[i])
    }
}

/// The holder whose parent is not itself a holder (the shell, not the `sleep` that inherited the
/// socket); the lowest pid among several.
fn top_holder<'a>(socket: &Socket, processes: &Processes<'a>) -> Option<&'a Process> {
    let holders: Vec<&Process> =
        socket.holders.iter().filter_map(|h| processes.get(h.proc)).collect();
    let pids: Vec<i32> = holders.iter().map(|p| p.key.pid).collect();
    holders.iter().min_by_key(|p| (pids.contains(&p.ppid), p.key.pid)).copied()
}

fn transport(protocol: &Protocol) -> &'static str {
    match protocol {
        Protocol::Tcp => "tcp",
        Protocol::Udp => "udp",
        Protocol::Udplite => "udplite",
        Protocol::Raw => "raw",
        Protocol::Icmp => "icmp",
        Protocol::Stream | Protocol::Dgram | Protocol::Seqpacket => "unix",
        Protocol::PacketRaw | Protocol::PacketDgram => "packet",
        Protocol::Netlink(_) => "netlink",
        Protocol::Other(_) => "unknown",
    }
}

/// RFC 3339 UTC with milliseconds.
pub fn rfc3339(ms: u64) -> String {
    let at = std::time::UNIX_EPOCH + std::time::Duration::from_millis(ms);
    humantime::format_rfc3339_millis(at).to_string()
}

#[cfg(test)]
mod tests;
