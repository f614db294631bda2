//! `sockwatch scan`: one snapshot, printed as a table, as one JSON row per (socket, holder), or as
//! the whole snapshot (the rule-test fixture format).

use super::CliError;
use crate::graph::Graph;
use crate::model::{
    Direction, DirectionSource, Family, ProcKey, Process, Protocol, RawText, Snapshot, Socket,
    StdioEnd, StdioReach,
};
use crate::scan::Scanner;
use serde::Serialize;
use std::collections::HashMap;
use std::io::{BufWriter, Write};

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub(super) enum Format {
    /// Aligned columns for a terminal.
    Table,
    /// One JSON object per (socket, holder), osquery `process_open_sockets` columns.
    Ndjson,
    /// The whole snapshot with derived relations and coverage counters.
    Json,
}

#[derive(Debug, clap::Args)]
pub(super) struct ScanArgs {
    /// Output format.
    #[arg(long, value_enum, default_value_t = Format::Table)]
    format: Format,
    /// Only rows held by this pid (repeatable).
    #[arg(long = "pid", value_name = "PID")]
    pids: Vec<i32>,
    /// Also list sockets no visible process holds (pid -1).
    #[arg(long)]
    all: bool,
    /// Scan without CAP_SYS_PTRACE / CAP_DAC_READ_SEARCH, seeing only what they do not guard
    /// (what stays hidden is counted in the coverage counters).
    #[arg(long)]
    partial: bool,
}

pub(super) fn run(args: &ScanArgs) -> Result<(), CliError> {
    let mut scanner = Scanner::new()?;
    let privileges = scanner.privileges();
    if !args.partial {
        let missing: Vec<&str> = [
            (!privileges.sys_ptrace).then_some("CAP_SYS_PTRACE"),
            (!privileges.dac_read_search).then_some("CAP_DAC_READ_SEARCH"),
        ]
        .into_iter()
        .flatten()
        .collect();
        if !missing.is_empty() {
            return Err(CliError::MissingCapabilities(missing.join(" and ")));
        }
    }
    let snapshot = scanner.scan();
    let graph = Graph::build(&snapshot, None);
    let out = std::io::stdout().lock();
    let mut out = BufWriter::with_capacity(256 * 1024, out);
    match args.format {
        Format::Json => write_json(&mut out, &graph)?,
        Format::Ndjson => {
            for row in rows(&graph, args) {
                serde_json::to_writer(&mut out, &row).map_err(std::io::Error::from)?;
                out.write_all(b"\n")?;
            }
        }
        Format::Table => write_table(&mut out, &rows(&graph, args))?,
    }
    out.flush()?;
    Ok(())
}

/// One (socket, holder) row, named after osquery's `process_open_sockets` columns.
#[derive(Serialize)]
struct Row<'a> {
    pid: i32,
    fd: i32,
    #[serde(skip_serializing_if = "Option::is_none")]
    tid: Option<i32>,
    socket: u64,
    family: u16,
    protocol: u16,
    local_address: String,
    remote_address: String,
    local_port: u16,
    remote_port: u16,
    path: Option<&'a RawText>,
    state: &'static str,
    net_namespace: u64,
    direction: Direction,
    direction_source: DirectionSource,
    name: Option<&'a RawText>,
    exe: Option<&'a RawText>,
    #[serde(skip)]
    socket_ref: &'a Socket,
}

fn rows<'a>(graph: &'a Graph<'a>, args: &ScanArgs) -> Vec<Row<'a>> {
    let processes: HashMap<ProcKey, &Process> =
        graph.snapshot.processes.iter().map(|p| (p.key, p)).collect();
    let mut rows = Vec::new();
    for (socket, direction) in graph.snapshot.sockets.iter().zip(&graph.directions) {
        if socket.holders.is_empty() && args.all && args.pids.is_empty() {
            rows.push(row(socket, *direction, None, -1, None, &processes));
        }
        for h in &socket.holders {
            if args.pids.is_empty() || args.pids.contains(&h.proc.pid) {
                rows.push(row(socket, *direction, Some(h.proc), h.fd, h.tid, &processes));
            }
        }
    }
    rows
}

fn row<'a>(
    socket: &'a Socket,
    (direction, direction_source): (Direction, DirectionSource),
    proc: Option<ProcKey>,
    fd: i32,
    tid: Option<i32>,
    processes: &HashMap<ProcKey, &'a Process>,
) -> Row<'a> {
    let process = proc.and_then(|p| processes.get(&p).copied());
    let address =
        |e: Option<crate::model::Endpoint>| e.map(|e| e.addr.to_string()).unwrap_or_default();
    Row {
        pid: proc.map_or(-1, |p| p.pid),
        fd,
        tid,
        socket: socket.key.inode,
        family: socket.family.number(),
        protocol: socket.protocol.ip_number(socket.family),
        local_address: address(socket.local.filter(|_| socket.family.is_inet())),
        remote_address: address(socket.remote.filter(|_| socket.family.is_inet())),
        local_port: socket.local.filter(|_| socket.family.is_inet()).map_or(0, |e| e.port),
        remote_port: socket.remote.filter(|_| socket.family.is_inet()).map_or(0, |e| e.port),
        path: socket.unix.as_ref().map(|u| &u.name).filter(|n| !n.is_empty()),
        state: socket.state.name(),
        net_namespace: socket.key.netns,
        direction,
        direction_source,
        name: process.map(|p| &p.comm),
        exe: process.and_then(|p| p.exe.as_ref()).map(|e| &e.path),
        socket_ref: socket,
    }
}

fn family_name(family: Family) -> &'static str {
    match family {
        Family::Inet => "inet",
        Family::Inet6 => "inet6",
        Family::Unix => "unix",
        Family::Netlink => "netlink",
        Family::Packet => "packet",
        Family::Unknown => "?",
    }
}

fn protocol_name(protocol: &Protocol) -> String {
    match protocol {
        Protocol::Tcp => "tcp".into(),
        Protocol::Udp => "udp".into(),
        Protocol::Udplite => "udplite".into(),
        Protocol::Raw => "raw".into(),
        Protocol::Icmp => "icmp".into(),
        Protocol::Stream => "stream".into(),
        Protocol::Dgram => "dgram".into(),
        Protocol::Seqpacket => "seqpacket".into(),
        Protocol::PacketRaw => "raw".into(),
        Protocol::PacketDgram => "dgram".into(),
        Protocol::Netlink(n) => format!("netlink/{n}"),
        Protocol::Other(name) => RawText::from(name.as_str()).escape_visible(),
    }
}

fn direction_name(direction: Direction) -> &'static str {
    match direction {
        Direction::Inbound => "in",
        Direction::Outbound => "out",
        Direction::Listening => "listen",
        Direction::Unknown => "-",
    }
}

fn write_table(out: &mut impl Write, rows: &[Row<'_>]) -> std::io::Result<()> {
    const HEADERS: [&str; 14] = [
        "pid",
        "fd",
        "socket",
        "family",
        "protocol",
        "local_address",
        "local_port",
        "remote_address",
        "remote_port",
        "state",
        "net_namespace",
        "direction",
        "name",
        "exe",
    ];
    let show = |t: Option<&RawText>| t.map(RawText::escape_visible).unwrap_or_else(|| "-".into());
    let cells: Vec<[String; 15]> = rows
        .iter()
        .map(|r| {
            let s = r.socket_ref;
            let (local, remote) = match &s.unix {
                Some(_) => (r.path.map(RawText::escape_visible).unwrap_or_default(), String::new()),
                None => (r.local_address.clone(), r.remote_address.clone()),
            };
            [
                r.pid.to_string(),
                match r.tid {
                    Some(tid) => format!("{}@{tid}", r.fd),
                    None => r.fd.to_string(),
                },
                r.socket.to_string(),
                family_name(s.family).into(),
                protocol_name(&s.protocol),
                local,
                port(s.local.filter(|_| s.family.is_inet()).map(|e| e.port)),
                remote,
                port(s.remote.filter(|_| s.family.is_inet()).map(|e| e.port)),
                r.state.into(),
                r.net_namespace.to_string(),
                direction_name(r.direction).into(),
                show(r.name),
                show(r.exe),
                String::new(),
            ]
        })
        .collect();
    let mut widths: Vec<usize> = HEADERS.iter().map(|h| h.len()).collect();
    for row in &cells {
        for (w, cell) in widths.iter_mut().zip(row.iter()) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let last = HEADERS.len() - 1;
    for (i, header) in HEADERS.iter().enumerate() {
        let sep = if i == last { "\n" } else { "  " };
        write!(out, "{header:<width$}{sep}", width = if i == last { 0 } else { widths[i] })?;
    }
    for row in &cells {
        for (i, cell) in row.iter().take(HEADERS.len()).enumerate() {
            if i == last {
                writeln!(out, "{cell}")?;
            } else {
                write!(out, "{cell:<width$}  ", width = widths[i])?;
            }
        }
    }
    Ok(())
}

fn port(port: Option<u16>) -> String {
    port.map(|p| p.to_string()).unwrap_or_else(|| "-".into())
}

/// The whole snapshot plus its derived relations: the rule-test fixture format.
#[derive(Serialize)]
struct SnapshotDocument<'a> {
    format: &'static str,
    snapshot: &'a Snapshot,
    derived: Derived<'a>,
}

#[derive(Serialize)]
struct Derived<'a> {
    directions: Vec<SocketDirection>,
    stdio: &'a [StdioEnd],
    reaches: &'a [StdioReach],
}

#[derive(Serialize)]
struct SocketDirection {
    netns: u64,
    inode: u64,
    direction: Direction,
    source: DirectionSource,
}

/// Version tag of the snapshot document: fixtures name the format they were written in.
pub const SNAPSHOT_FORMAT: &str = "sockwatch-snapshot/1";

fn write_json(out: &mut impl Write, graph: &Graph<'_>) -> std::io::Result<()> {
    let document = SnapshotDocument {
        format: SNAPSHOT_FORMAT,
        snapshot: graph.snapshot,
        derived: Derived {
            directions: graph
                .snapshot
                .sockets
                .iter()
                .zip(&graph.directions)
                .map(|(s, (direction, source))| SocketDirection {
                    netns: s.key.netns,
                    inode: s.key.inode,
                    direction: *direction,
                    source: *source,
                })
                .collect(),
            stdio: &graph.stdio,
            reaches: &graph.reaches,
        },
    };
    serde_json::to_writer(&mut *out, &document)?;
    out.write_all(b"\n")
}
