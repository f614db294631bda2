//! `sockwatch scan`: one snapshot, printed as a table, as one JSON row per (socket, holder), or as
//! the whole snapshot (the rule-test fixture format).

use super::CliError;
use super::scan_filter::{FilterArgs, Selection};
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
    #[command(flatten)]
    filter: FilterArgs,
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
    let passwd = std::fs::read("/etc/passwd").unwrap_or_default();
    let selection = Selection::new(&args.filter, &passwd)?;
    let mut snapshot = scanner.scan();
    if matches!(args.format, Format::Json) {
        redact(&mut snapshot.processes);
    }
    let graph = Graph::build(&snapshot, None);
    let out = std::io::stdout().lock();
    let mut out = BufWriter::with_capacity(256 * 1024, out);
    match args.format {
        Format::Json => match selected(&graph, &selection) {
            Some(shown) => write_json(&mut out, &Graph::build(&shown, None))?,
            None => write_json(&mut out, &graph)?,
        },
        Format::Ndjson => for_each_row(&graph, &selection, |row| {
            crate::model::write_json_escaped(&mut out, &row)?;
            out.write_all(b"\n")
        })?,
        Format::Table => {
            let users = crate::scan::parse::parse_accounts(&passwd);
            write_table(&mut out, &graph, &selection, &users)?
        }
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
    selection: &Selection<'_>,
    mut f: impl FnMut(Row<'a>) -> std::io::Result<()>,
) -> std::io::Result<()> {
    let processes: HashMap<ProcKey, &Process> =
        graph.snapshot.processes.iter().map(|p| (p.key, p)).collect();
    for (socket, direction) in graph.snapshot.sockets.iter().zip(&graph.directions) {
        if !selection.socket(socket, direction.0, true) {
            continue;
        }
        if socket.holders.is_empty() && selection.holderless() {
            f(row(socket, *direction, None, &processes))?;
        }
        for h in &socket.holders {
            if selection.holder(h.proc.pid, processes.get(&h.proc).copied()) {
                f(row(socket, *direction, Some(h), &processes))?;
            }
        }
    }
    Ok(())
}

/// The snapshot cut down to what the selection asks for (`None` when nothing is asked): the
/// sockets that match with only their matching holders, the processes holding them and every
/// fd of those processes (their stdio shows where it leads).
fn selected(graph: &Graph<'_>, selection: &Selection<'_>) -> Option<Snapshot> {
    let snapshot = graph.snapshot;
    if !selection.any() {
        return None;
    }
    let processes: HashMap<ProcKey, &Process> =
        snapshot.processes.iter().map(|p| (p.key, p)).collect();
    let mut sockets = Vec::new();
    for (socket, direction) in snapshot.sockets.iter().zip(&graph.directions) {
        if !selection.socket(socket, direction.0, false) {
            continue;
        }
        let mut kept = socket.clone();
        kept.holders.retain(|h| selection.holder(h.proc.pid, processes.get(&h.proc).copied()));
        if !kept.holders.is_empty() || (socket.holders.is_empty() && selection.holderless()) {
            sockets.push(kept);
        }
    }
    let holders: std::collections::HashSet<ProcKey> =
        sockets.iter().flat_map(|s| s.holders.iter().map(|h| h.proc)).collect();
    Some(Snapshot {
        seq: snapshot.seq,
        taken_at_ms: snapshot.taken_at_ms,
        privileges: snapshot.privileges,
        own_netns: snapshot.own_netns,
        namespaces: snapshot.namespaces.clone(),
        processes: snapshot
            .processes
            .iter()
            .filter(|p| holders.contains(&p.key))
            .cloned()
            .collect(),
        fds: snapshot.fds.iter().filter(|f| holders.contains(&f.proc)).cloned().collect(),
        sockets,
        proc_mounts: snapshot.proc_mounts.clone(),
        coverage: snapshot.coverage.clone(),
    })
}

/// Secrets in argv replaced as in events (`--password=…`, URL credentials, tokens).
fn redact(processes: &mut [Process]) {
    let redactor = crate::event::Redactor::default();
    for process in processes {
        let mut args: Vec<String> = process
            .argv
            .iter()
            .map(|a| String::from_utf8_lossy(a.as_bytes()).into_owned())
            .collect();
        if !redactor.redact(&mut args) {
            continue;
        }
        for (arg, redacted) in process.argv.iter_mut().zip(args) {
            if String::from_utf8_lossy(arg.as_bytes()) != redacted {
                *arg = RawText::from(redacted.as_str());
            }
        }
    }
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

/// Most needed first: a terminal too narrow for all of them loses the last ones.
const TABLE_HEADERS: [&str; 16] = [
    "pid",
    "fds",
    "user",
    "protocol",
    "state",
    "local_address",
    "local_port",
    "remote_address",
    "remote_port",
    "direction",
    "name",
    "container",
    "exe",
    "family",
    "socket",
    "net_namespace",
];

/// What the table shows of a process, escaped once rather than once per row.
struct Shown {
    name: String,
    exe: String,
    user: String,
    container: String,
}

type ShownProcesses = HashMap<ProcKey, Shown>;

/// `users`: names by uid from the host's passwd (a uid without one shows as the number).
fn shown_processes(
    graph: &Graph<'_>,
    users: &rustc_hash::FxHashMap<u32, RawText>,
) -> ShownProcesses {
    let escaped =
        |t: Option<&RawText>| t.map(RawText::escape_visible).unwrap_or_else(|| "-".into());
    graph
        .snapshot
        .processes
        .iter()
        .map(|p| {
            let user =
                users.get(&p.euid).map_or_else(|| p.euid.to_string(), |n| n.escape_visible());
            let shown = Shown {
                name: escaped(Some(&p.comm)),
                exe: escaped(p.exe.as_ref().map(|e| &e.path)),
                user,
                container: super::container::label(Some(p)),
            };
            (p.key, shown)
        })
        .collect()
}

/// Calls `f` with one row per (socket, process) the selection asks for and the process's fds
/// on it (`0,1,2`; `3@4243` for a thread's own table), in socket order.
fn for_each_group<'a>(
    graph: &'a Graph<'a>,
    selection: &Selection<'_>,
    mut f: impl FnMut(Row<'a>, &str) -> std::io::Result<()>,
) -> std::io::Result<()> {
    use std::fmt::Write as _;
    let mut group: Option<Row<'a>> = None;
    let mut fds = String::new();
    for_each_row(graph, selection, |row| {
        if let Some(open) = &group
            && open.socket_ref.key == row.socket_ref.key
            && open.proc.is_some()
            && open.proc == row.proc
        {
            fds.push(',');
        } else {
            if let Some(done) = group.take() {
                f(done, &fds)?;
            }
            fds.clear();
        }
        match (row.proc, row.tid) {
            (None, _) => fds.push('-'),
            (Some(_), Some(tid)) => _ = write!(fds, "{}@{tid}", row.fd),
            (Some(_), None) => _ = write!(fds, "{}", row.fd),
        }
        group.get_or_insert(row);
        Ok(())
    })?;
    match group {
        Some(done) => f(done, &fds),
        None => Ok(()),
    }
}

fn digits(n: u64) -> usize {
    n.checked_ilog10().map_or(1, |d| d as usize + 1)
}

fn signed_digits(n: i64) -> usize {
    digits(n.unsigned_abs()) + usize::from(n < 0)
}

/// The display width of each cell of a row, computed without rendering the row: the first of the
/// table's two passes runs over every row, so it counts digits instead of formatting numbers.
fn cell_widths(
    r: &Row<'_>,
    fds: &str,
    shown: &ShownProcesses,
    scratch: &mut String,
) -> [usize; 16] {
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
    let length = |pick: fn(&Shown) -> &String| {
        r.proc.and_then(|p| shown.get(&p)).map_or(1, |s| pick(s).chars().count())
    };
    [
        signed_digits(r.pid.into()),
        fds.chars().count(),
        length(|s| &s.user),
        protocol_name(&s.protocol).chars().count(),
        r.state.len(),
        match &s.unix {
            Some(_) => r.path.map_or(0, |p| p.escape_visible().chars().count()),
            None => address(&r.local_address),
        },
        port(s.local),
        if s.unix.is_some() { 0 } else { address(&r.remote_address) },
        port(s.remote),
        direction_name(r.direction).len(),
        length(|s| &s.name),
        length(|s| &s.container),
        length(|s| &s.exe),
        family_name(s.family).len(),
        digits(r.socket),
        digits(r.net_namespace),
    ]
}

/// Appends one row's cells to `line`, recording where each ends.
fn render_cells(
    r: &Row<'_>,
    fds: &str,
    shown: &ShownProcesses,
    line: &mut String,
    ends: &mut Vec<usize>,
) {
    use std::fmt::Write as _;
    let s = r.socket_ref;
    line.clear();
    ends.clear();
    let mut cell = |line: &mut String, write: &dyn Fn(&mut String)| {
        write(line);
        ends.push(line.len());
    };
    let process = r.proc.and_then(|p| shown.get(&p));
    let text = |pick: fn(&Shown) -> &String| process.map_or("-", |s| pick(s).as_str());
    let inet = s.family.is_inet();
    cell(line, &|l| _ = write!(l, "{}", r.pid));
    cell(line, &|l| l.push_str(fds));
    cell(line, &|l| l.push_str(text(|s| &s.user)));
    cell(line, &|l| l.push_str(&protocol_name(&s.protocol)));
    cell(line, &|l| l.push_str(r.state));
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
    cell(line, &|l| l.push_str(direction_name(r.direction)));
    cell(line, &|l| l.push_str(text(|s| &s.name)));
    cell(line, &|l| l.push_str(text(|s| &s.container)));
    cell(line, &|l| l.push_str(text(|s| &s.exe)));
    cell(line, &|l| l.push_str(family_name(s.family)));
    cell(line, &|l| _ = write!(l, "{}", r.socket));
    cell(line, &|l| _ = write!(l, "{}", r.net_namespace));
}

fn port_cell(line: &mut String, port: Option<u16>) {
    use std::fmt::Write as _;
    match port {
        Some(p) => _ = write!(line, "{p}"),
        None => line.push('-'),
    }
}

/// Aligned columns in two passes over the rows (widths, then output), holding one line at a
/// time; on a terminal (or under `COLUMNS`) the widest columns give way, cut with an ellipsis.
fn write_table(
    out: &mut impl Write,
    graph: &Graph<'_>,
    selection: &Selection<'_>,
    users: &rustc_hash::FxHashMap<u32, RawText>,
) -> std::io::Result<()> {
    let shown = shown_processes(graph, users);
    let mut widths: Vec<usize> = TABLE_HEADERS.iter().map(|h| h.len()).collect();
    let (mut line, mut ends) = (String::new(), Vec::new());
    let mut scratch = String::new();
    for_each_group(graph, selection, |row, fds| {
        for (width, cell) in widths.iter_mut().zip(cell_widths(&row, fds, &shown, &mut scratch)) {
            *width = (*width).max(cell);
        }
        Ok(())
    })?;
    if let Some(limit) = super::table::terminal_width() {
        widths.truncate(super::table::columns_that_fit(&widths, limit));
        super::table::fit(&mut widths, limit);
    }
    let last = widths.len() - 1;
    let write_cell = |out: &mut dyn Write, i: usize, text: &str| -> std::io::Result<()> {
        if i > last {
            return Ok(());
        }
        let text = super::table::cut(text, widths[i]);
        out.write_all(text.as_bytes())?;
        match i == last {
            true => out.write_all(b"\n"),
            false => pad(out, widths[i] - text.chars().count() + 2),
        }
    };
    for (i, header) in TABLE_HEADERS.iter().enumerate() {
        write_cell(out, i, header)?;
    }
    for_each_group(graph, selection, |row, fds| {
        render_cells(&row, fds, &shown, &mut line, &mut ends);
        let mut start = 0;
        for (i, &end) in ends.iter().enumerate() {
            write_cell(out, i, &line[start..end])?;
            start = end;
        }
        Ok(())
    })
}

fn pad(out: &mut dyn Write, mut n: usize) -> std::io::Result<()> {
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
        let users = rustc_hash::FxHashMap::default();
        let shown = shown_processes(&graph, &users);
        let (mut line, mut ends, mut scratch) = (String::new(), Vec::new(), String::new());
        let mut rows = 0;
        // Network sockets (and those nobody holds), then unix ones.
        let network = FilterArgs { all: true, ..Default::default() };
        let unix = FilterArgs { unix: true, ..Default::default() };
        for filter in [network, unix] {
            let selection = Selection::new(&filter, b"").unwrap();
            for_each_group(&graph, &selection, |row, fds| {
                rows += 1;
                render_cells(&row, fds, &shown, &mut line, &mut ends);
                let mut start = 0;
                let rendered: Vec<usize> = ends
                    .iter()
                    .map(|&end| {
                        let width = line[start..end].chars().count();
                        start = end;
                        width
                    })
                    .collect();
                assert_eq!(rendered, cell_widths(&row, fds, &shown, &mut scratch), "{line}");
                assert!(!line.chars().any(|c| c.is_control()), "{line:?}");
                Ok(())
            })
            .unwrap();
        }
        assert_eq!(rows, 5, "four held rows and one unowned listener");
    }
}
