//! `sockwatch scan`: one snapshot, printed as a table, as one JSON row per (socket, holder), or as
//! the whole snapshot (the rule-test fixture format).

use super::CliError;
use crate::graph::Graph;
use crate::model::{
    Direction, DirectionSource, Family, Holder, ProcKey, Process, Protocol, RawText, Snapshot,
    Socket, StdioEnd, StdioReach,
};
use crate::scan::{Scanner, TableInterface};
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

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub(super) enum Tables {
    /// netlink sock_diag.
    SockDiag,
    /// /proc/<pid>/net text.
    Proc,
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
    /// How to read socket tables: `sock-diag` (netlink, with unix peers; falls back to /proc text
    /// per table) or `proc` (/proc/<pid>/net text only, for hosts that filter netlink sockets).
    #[arg(long, value_enum, default_value_t = Tables::SockDiag)]
    tables: Tables,
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
    scanner.set_table_interface(match args.tables {
        Tables::SockDiag => TableInterface::SockDiag,
        Tables::Proc => TableInterface::ProcNet,
    });
    let snapshot = scanner.scan();
    let graph = Graph::build(&snapshot, None);
    let out = std::io::stdout().lock();
    let mut out = BufWriter::with_capacity(256 * 1024, out);
    match args.format {
        Format::Json => write_json(&mut out, &graph)?,
        Format::Ndjson => for_each_row(&graph, args, |row| {
            crate::model::write_json_escaped(&mut out, &row)?;
            out.write_all(b"\n")
        })?,
        Format::Table => write_table(&mut out, &graph, args)?,
    }
    out.flush()?;
    Ok(())
}

/// An address column: empty when the socket has none (unix, netlink, packet, unresolved).
struct Addr(Option<std::net::IpAddr>);

impl std::fmt::Display for Addr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.0 {
            Some(addr) => write!(f, "{addr}"),
            None => Ok(()),
        }
    }
}

impl Serialize for Addr {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

/// One (socket, holder) row, named after osquery's `process_open_sockets` columns.
#[derive(Serialize)]
struct Row<'a> {
    pid: i32,
    fd: i32,
    #[serde(skip_serializing_if = "Option::is_none")]
    tid: Option<i32>,
    /// Set when `fd` is an io_uring holding the socket as a registered file: its slot there.
    #[serde(skip_serializing_if = "Option::is_none")]
    io_uring_slot: Option<u32>,
    socket: u64,
    family: u16,
    protocol: u16,
    local_address: Addr,
    remote_address: Addr,
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
    #[serde(skip)]
    proc: Option<ProcKey>,
}

/// Calls `f` with every (socket, holder) row the arguments select, in socket order. Rows are
/// made one at a time: at 100k sockets a collected Vec of rows would double the peak memory.
fn for_each_row<'a>(
    graph: &'a Graph<'a>,
    args: &ScanArgs,
    mut f: impl FnMut(Row<'a>) -> std::io::Result<()>,
) -> std::io::Result<()> {
    let processes: HashMap<ProcKey, &Process> =
        graph.snapshot.processes.iter().map(|p| (p.key, p)).collect();
    for (socket, direction) in graph.snapshot.sockets.iter().zip(&graph.directions) {
        if socket.holders.is_empty() && args.all && args.pids.is_empty() {
            f(row(socket, *direction, None, &processes))?;
        }
        for h in &socket.holders {
            if args.pids.is_empty() || args.pids.contains(&h.proc.pid) {
                f(row(socket, *direction, Some(h), &processes))?;
            }
        }
    }
    Ok(())
}

fn row<'a>(
    socket: &'a Socket,
    (direction, direction_source): (Direction, DirectionSource),
    holder: Option<&Holder>,
    processes: &HashMap<ProcKey, &'a Process>,
) -> Row<'a> {
    let proc = holder.map(|h| h.proc);
    let process = proc.and_then(|p| processes.get(&p).copied());
    let address = |e: Option<crate::model::Endpoint>| Addr(e.map(|e| e.addr));
    Row {
        pid: proc.map_or(-1, |p| p.pid),
        fd: holder.map_or(-1, |h| h.fd),
        tid: holder.and_then(|h| h.tid),
        io_uring_slot: holder.and_then(|h| h.io_uring_slot),
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
        proc,
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

fn protocol_name(protocol: &Protocol) -> std::borrow::Cow<'static, str> {
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
        Protocol::Netlink(n) => format!("netlink/{n}").into(),
        Protocol::Other(name) => RawText::from(name.as_str()).escape_visible().into(),
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

const TABLE_HEADERS: [&str; 14] = [
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

/// Escaped (name, exe) per process, made once rather than once per row.
type ShownNames = HashMap<ProcKey, (String, String)>;

fn shown_names(graph: &Graph<'_>) -> ShownNames {
    let escaped =
        |t: Option<&RawText>| t.map(RawText::escape_visible).unwrap_or_else(|| "-".into());
    graph
        .snapshot
        .processes
        .iter()
        .map(|p| (p.key, (escaped(Some(&p.comm)), escaped(p.exe.as_ref().map(|e| &e.path)))))
        .collect()
}

fn digits(n: u64) -> usize {
    n.checked_ilog10().map_or(1, |d| d as usize + 1)
}

fn signed_digits(n: i64) -> usize {
    digits(n.unsigned_abs()) + usize::from(n < 0)
}

/// The display width of each cell of a row, computed without rendering the row: the first of the
/// table's two passes runs over every row, so it counts digits instead of formatting numbers.
fn cell_widths(r: &Row<'_>, names: &ShownNames, scratch: &mut String) -> [usize; 14] {
    use std::fmt::Write as _;
    let s = r.socket_ref;
    let inet = s.family.is_inet();
    let mut address = |a: &Addr| {
        scratch.clear();
        _ = write!(scratch, "{a}");
        scratch.len()
    };
    let port =
        |e: Option<crate::model::Endpoint>| e.filter(|_| inet).map_or(1, |e| digits(e.port.into()));
    let (name, exe) = r
        .proc
        .and_then(|p| names.get(&p))
        .map_or((1, 1), |(n, e)| (n.chars().count(), e.chars().count()));
    [
        signed_digits(r.pid.into()),
        signed_digits(r.fd.into()) + r.tid.map_or(0, |t| 1 + signed_digits(t.into())),
        digits(r.socket),
        family_name(s.family).len(),
        protocol_name(&s.protocol).chars().count(),
        match &s.unix {
            Some(_) => r.path.map_or(0, |p| p.escape_visible().chars().count()),
            None => address(&r.local_address),
        },
        port(s.local),
        if s.unix.is_some() { 0 } else { address(&r.remote_address) },
        port(s.remote),
        r.state.len(),
        digits(r.net_namespace),
        direction_name(r.direction).len(),
        name,
        exe,
    ]
}

/// Appends one row's cells to `line`, recording where each ends.
fn render_cells(r: &Row<'_>, names: &ShownNames, line: &mut String, ends: &mut Vec<usize>) {
    use std::fmt::Write as _;
    let s = r.socket_ref;
    line.clear();
    ends.clear();
    let mut cell = |line: &mut String, write: &dyn Fn(&mut String)| {
        write(line);
        ends.push(line.len());
    };
    let (name, exe) = r.proc.and_then(|p| names.get(&p)).map_or(("-", "-"), |(n, e)| (n, e));
    let inet = s.family.is_inet();
    cell(line, &|l| _ = write!(l, "{}", r.pid));
    cell(line, &|l| match r.tid {
        Some(tid) => _ = write!(l, "{}@{tid}", r.fd),
        None => _ = write!(l, "{}", r.fd),
    });
    cell(line, &|l| _ = write!(l, "{}", r.socket));
    cell(line, &|l| l.push_str(family_name(s.family)));
    cell(line, &|l| l.push_str(&protocol_name(&s.protocol)));
    cell(line, &|l| match &s.unix {
        Some(_) => l.push_str(&r.path.map(RawText::escape_visible).unwrap_or_default()),
        None => _ = write!(l, "{}", r.local_address),
    });
    cell(line, &|l| port_cell(l, s.local.filter(|_| inet).map(|e| e.port)));
    cell(line, &|l| {
        if s.unix.is_none() {
            _ = write!(l, "{}", r.remote_address);
        }
    });
    cell(line, &|l| port_cell(l, s.remote.filter(|_| inet).map(|e| e.port)));
    cell(line, &|l| l.push_str(r.state));
    cell(line, &|l| _ = write!(l, "{}", r.net_namespace));
    cell(line, &|l| l.push_str(direction_name(r.direction)));
    cell(line, &|l| l.push_str(name));
    cell(line, &|l| l.push_str(exe));
}

fn port_cell(line: &mut String, port: Option<u16>) {
    use std::fmt::Write as _;
    match port {
        Some(p) => _ = write!(line, "{p}"),
        None => line.push('-'),
    }
}

/// Aligned columns in two passes over the rows (widths, then output), holding one line at a time.
fn write_table(out: &mut impl Write, graph: &Graph<'_>, args: &ScanArgs) -> std::io::Result<()> {
    let names = shown_names(graph);
    let mut widths: Vec<usize> = TABLE_HEADERS.iter().map(|h| h.len()).collect();
    let (mut line, mut ends) = (String::new(), Vec::new());
    let mut scratch = String::new();
    for_each_row(graph, args, |row| {
        for (width, cell) in widths.iter_mut().zip(cell_widths(&row, &names, &mut scratch)) {
            *width = (*width).max(cell);
        }
        Ok(())
    })?;
    let last = TABLE_HEADERS.len() - 1;
    for (i, header) in TABLE_HEADERS.iter().enumerate() {
        if i == last {
            writeln!(out, "{header}")?;
        } else {
            write!(out, "{header:<width$}  ", width = widths[i])?;
        }
    }
    for_each_row(graph, args, |row| {
        render_cells(&row, &names, &mut line, &mut ends);
        let mut start = 0;
        for (i, &end) in ends.iter().enumerate() {
            let text = &line[start..end];
            out.write_all(text.as_bytes())?;
            if i == last {
                out.write_all(b"\n")?;
            } else {
                pad(out, widths[i] - text.chars().count() + 2)?;
            }
            start = end;
        }
        Ok(())
    })
}

fn pad(out: &mut impl Write, mut n: usize) -> std::io::Result<()> {
    const SPACES: &[u8; 64] = &[b' '; 64];
    while n > 0 {
        let chunk = n.min(SPACES.len());
        out.write_all(&SPACES[..chunk])?;
        n -= chunk;
    }
    Ok(())
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
            reaches: &graph.reaches(),
        },
    };
    crate::model::write_json_escaped(&mut *out, &document)?;
    out.write_all(b"\n")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::fixture::Builder;
    use crate::model::{
        AccessMode, FdTarget, Socket, SocketKey, SocketState, TableSource, UnixInfo,
    };

    fn args(all: bool) -> ScanArgs {
        ScanArgs {
            format: Format::Table,
            pids: Vec::new(),
            all,
            tables: Tables::SockDiag,
            partial: false,
        }
    }

    #[test]
    fn width_pass_agrees_with_what_is_rendered() {
        let mut b = Builder::new();
        let shell = b.process(4242, "sh\n\u{1b}[31m");
        b.connection(1, shell, 0);
        b.inet(2, Protocol::Udp, "[2001:db8::1]:53", "[::]:0", SocketState::Close);
        b.fd(shell, 3, AccessMode::Unknown, FdTarget::Socket { inode: 2 });
        let key = SocketKey { netns: 0, inode: 3 };
        let mut unix = Socket::new(
            key,
            Family::Unix,
            Protocol::Stream,
            SocketState::Listen,
            TableSource::SockDiag,
        );
        unix.unix =
            Some(UnixInfo { name: RawText::new(b"/run/a b\n\xff"), peer: None, shutdown: 0 });
        b.snapshot_mut().sockets.push(unix);
        b.fd(shell, 12345, AccessMode::Unknown, FdTarget::Socket { inode: 3 });
        let unresolved = SocketKey { netns: 0, inode: 4 };
        b.snapshot_mut().sockets.push(Socket::new(
            unresolved,
            Family::Unknown,
            Protocol::Other("W\u{202e}EIRD".into()),
            SocketState::Unknown,
            TableSource::Unresolved,
        ));
        b.fd(shell, 7, AccessMode::Unknown, FdTarget::Socket { inode: 4 });
        b.inet(5, Protocol::Tcp, "0.0.0.0:22", "0.0.0.0:0", SocketState::Listen);
        let mut snapshot = b.build();
        snapshot.sockets[0].holders[0].tid = Some(4243);
        let graph = Graph::build(&snapshot, None);
        let names = shown_names(&graph);
        let (mut line, mut ends, mut scratch) = (String::new(), Vec::new(), String::new());
        let mut rows = 0;
        for_each_row(&graph, &args(true), |row| {
            rows += 1;
            render_cells(&row, &names, &mut line, &mut ends);
            let mut start = 0;
            let rendered: Vec<usize> = ends
                .iter()
                .map(|&end| {
                    let width = line[start..end].chars().count();
                    start = end;
                    width
                })
                .collect();
            assert_eq!(rendered, cell_widths(&row, &names, &mut scratch), "{line}");
            assert!(!line.chars().any(|c| c.is_control()), "{line:?}");
            Ok(())
        })
        .unwrap();
        assert_eq!(rows, 5, "four held rows and one unowned listener");
    }
}
