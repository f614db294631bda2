//! The field catalogue: every field a condition can name, with its type, its documentation and
//! how to read it from a subject. This one table is the type checker's reference, the source of
//! `sockwatch rules fields` and of docs/rules.md (a test keeps the two equal).
//!
//! List fields hold several values (every ancestor, every relay); a test on a list is true when
//! any element passes, and `!=` is the negation of `=` (true when none is equal).

use super::subject::{Context, Subject};
use crate::model::{BinaryKind, Direction, DirectionSource, Exe, Fd, Process, RawText};
use std::borrow::Cow;
use std::net::IpAddr;

/// The type of a field's values.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// Text.
    Str,
    /// A signed integer.
    Int,
    /// true or false.
    Bool,
    /// An IPv4 or IPv6 address (IPv4-mapped IPv6 is given as IPv4).
    Ip,
}

impl Kind {
    /// The name used in docs and errors.
    pub fn name(self) -> &'static str {
        match self {
            Kind::Str => "string",
            Kind::Int => "integer",
            Kind::Bool => "bool",
            Kind::Ip => "ip",
        }
    }
}

/// A field's value for one subject.
#[derive(Clone, Debug, PartialEq)]
pub enum Value<'a> {
    /// Text.
    Str(Cow<'a, str>),
    /// Integer.
    Int(i64),
    /// Boolean.
    Bool(bool),
    /// Address.
    Ip(IpAddr),
    /// Several texts.
    Strs(Vec<Cow<'a, str>>),
    /// Several integers.
    Ints(Vec<i64>),
    /// Several small integers (0-7): the set bits of a mask. Read on every subject (`stdio.fds`),
    /// so without an allocation.
    IntBits(u8),
    /// Several names: the set bits of a mask, each naming the entry of the table at its position
    /// (`stdio.via`).
    NameBits(u8, &'static [&'static str]),
    /// The field has no value here (an unconnected socket's remote address, a process with no
    /// parent in the snapshot).
    Absent,
}

impl Value<'_> {
    /// The positions of the set bits of a mask, lowest first.
    pub fn bits(mask: u8) -> impl Iterator<Item = usize> {
        (0..8).filter(move |n| mask & (1 << n) != 0)
    }
}

/// Reads one field from one subject.
pub type Getter = for<'a> fn(&Subject<'a>, &Context<'a>) -> Value<'a>;

/// One catalogue entry.
pub struct Field {
    /// Dotted name.
    pub name: &'static str,
    /// Value type.
    pub kind: Kind,
    /// One value, or several (and how they are made).
    pub shape: Shape,
    /// What it means, for docs/rules.md.
    pub doc: &'static str,
    /// How to read it.
    pub get: Getter,
}

/// Whether a field holds one value or several, and what reading it costs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Shape {
    /// One value, read from the subject.
    Scalar,
    /// Several values, read from a bit mask of the subject: as cheap as a scalar.
    Bits,
    /// Several values, gathered from the snapshot (relays, holders, ancestors, argv): a walk and
    /// an allocation each time.
    List,
}

impl Field {
    /// Holds several values.
    pub fn is_list(&self) -> bool {
        self.shape != Shape::Scalar
    }

    /// `string`, `list of ip`, …
    pub fn type_name(&self) -> String {
        match self.is_list() {
            true => format!("list of {}", self.kind.name()),
            false => self.kind.name().into(),
        }
    }

    /// What reading it costs, relative to a scalar (2): orders the operands of `and` and `or`.
    pub fn cost(&self) -> u32 {
        match self.shape {
            Shape::Scalar | Shape::Bits => 2,
            Shape::List => 16,
        }
    }
}

/// The field reference as Markdown: the table docs/rules.md carries (a test keeps them equal).
pub fn fields_markdown() -> String {
    let mut out = String::from("| field | type | meaning |\n|---|---|---|\n");
    for field in FIELDS {
        let doc = field.doc.replace('|', "\\|");
        out.push_str(&format!("| `{}` | {} | {doc} |\n", field.name, field.type_name()));
    }
    out
}

/// Looks a field up by name.
pub fn field(name: &str) -> Option<&'static Field> {
    FIELDS.iter().find(|f| f.name == name)
}

fn text(raw: &RawText) -> Cow<'_, str> {
    String::from_utf8_lossy(raw.as_bytes())
}

fn base_name(path: Cow<'_, str>) -> Cow<'_, str> {
    match path {
        Cow::Borrowed(p) => Cow::Borrowed(p.rsplit('/').next().unwrap_or(p)),
        Cow::Owned(p) => Cow::Owned(p.rsplit('/').next().unwrap_or(&p).to_string()),
    }
}

/// The binary's file name. The kernel appends " (deleted)" to the link of an unlinked binary; it
/// is stripped only when the inode says the binary is gone (a file can be *named* "x (deleted)").
fn exe_name(exe: &Exe) -> Cow<'_, str> {
    let path = text(&exe.path);
    let path = match path {
        Cow::Borrowed(p) if exe.deleted => Cow::Borrowed(p.strip_suffix(" (deleted)").unwrap_or(p)),
        other => other,
    };
    base_name(path)
}

/// Writable by someone other than root: a non-root owner, or group/other write bits.
fn exe_writable(exe: &Exe) -> bool {
    exe.owner_uid != 0 || exe.mode & 0o022 != 0
}

/// What an attacker cannot fake cheaply: a root-owned binary nobody else can write, still on disk,
/// not a memfd, the very file its path names on the host (not a container's copy, not a bind mount
/// over the path), and not a shell, interpreter or network tool under another name. Allowlists
/// match exe paths only under this condition (DESIGN §5, §10).
pub fn exe_trusted(exe: &Exe) -> bool {
    // A name is free to choose, so it can only take trust away: an interpreter installed outside
    // the program directories (pyenv, a venv) is not in the catalogue, but its name says it.
    let named_like_a_program = BinaryKind::of_file_name(exe_name(exe).as_bytes()).is_some();
    !exe_writable(exe)
        && !exe.deleted
        && !exe.memfd
        && exe.host_file == Some(true)
        && exe.identity.is_none()
        && !named_like_a_program
}

/// argv[0]'s file name without a login shell's leading `-`.
fn argv0_name(process: &Process) -> Option<Cow<'_, str>> {
    process.argv.first().map(|a| match base_name(text(a)) {
        Cow::Borrowed(b) => Cow::Borrowed(b.trim_start_matches('-')),
        Cow::Owned(b) => Cow::Owned(b.trim_start_matches('-').to_string()),
    })
}

/// The program a multi-call binary runs: argv[0]'s name, or argv[1]'s when argv[0] names the
/// multi-call binary itself (`busybox sh`).
fn applet(process: &Process) -> Option<Cow<'_, str>> {
    let first = argv0_name(process)?;
    if matches!(&*first, "busybox" | "toybox") {
        return process.argv.get(1).map(|a| base_name(text(a)));
    }
    Some(first)
}

fn identity_name(process: &Process) -> Option<Cow<'_, str>> {
    let identity = process.exe.as_ref()?.identity.as_ref()?;
    Some(Cow::Borrowed(&*identity.name))
}

fn identity_kind(process: &Process) -> Option<Cow<'static, str>> {
    let identity = process.exe.as_ref()?.identity.as_ref()?;
    Some(Cow::Borrowed(identity.kind.name()))
}

fn trusted_path(process: &Process) -> Option<Cow<'_, str>> {
    process.exe.as_ref().filter(|e| exe_trusted(e)).map(|e| text(&e.path))
}

fn exe_path(process: &Process) -> Option<Cow<'_, str>> {
    process.exe.as_ref().map(|e| text(&e.path))
}

fn str_or_absent(value: Option<Cow<'_, str>>) -> Value<'_> {
    value.map_or(Value::Absent, Value::Str)
}

fn exe_flag(s: &Subject<'_>, flag: fn(&Exe) -> bool) -> Value<'static> {
    s.process.exe.as_ref().map_or(Value::Absent, |e| Value::Bool(flag(e)))
}

fn parent<'a>(s: &Subject<'a>, cx: &Context<'a>) -> Option<&'a Process> {
    cx.ancestors(s.process).next()
}

fn relays<'a, T>(
    s: &Subject<'a>,
    cx: &Context<'a>,
    map: impl Fn(&'a Process) -> Option<T>,
) -> Vec<T> {
    s.relays(cx).into_iter().filter_map(|k| cx.by_key(k)).filter_map(map).collect()
}

fn holders<'a, T>(
    s: &Subject<'a>,
    cx: &Context<'a>,
    map: impl Fn(&'a Process) -> Option<T>,
) -> Vec<T> {
    let mut seen = Vec::new();
    for holder in &s.socket.holders {
        if !seen.contains(&holder.proc) {
            seen.push(holder.proc);
        }
    }
    seen.into_iter().filter_map(|k| cx.by_key(k)).filter_map(map).collect()
}

fn listener_holders<'a, T>(
    s: &Subject<'a>,
    cx: &Context<'a>,
    map: impl Fn(&'a Process) -> Option<T>,
) -> Vec<T> {
    let mut out = Vec::new();
    if s.direction.0 != Direction::Inbound {
        return out;
    }
    for listener in cx.listeners_of(s.socket) {
        for holder in &listener.holders {
            if let Some(value) = cx.by_key(holder.proc).and_then(&map) {
                out.push(value);
            }
        }
    }
    out
}

/// The fd that stands for a process's stream (0 stdin, 1 stdout).
fn stream_fd<'a>(cx: &Context<'a>, process: &Process, stream: i32) -> Option<&'a Fd> {
    let (num, _) = process.stdio_fds().find(|&(_, s)| s == stream)?;
    cx.graph.fds_of(process.key).iter().find(|f| f.num == num && f.tid.is_none())
}

fn holder_shares_stdio(s: &Subject<'_>, cx: &Context<'_>) -> bool {
    let (Some(stdin), Some(stdout)) = (stream_fd(cx, s.process, 0), stream_fd(cx, s.process, 1))
    else {
        return false;
    };
    // The client may have moved them (ssh keeps them on fds 4 and 5 and points 1 at /dev/null):
    // any fd on the same end of the same object counts.
    let holds = |holder: &Process, like: &Fd| {
        let same = |f: &&Fd| f.target == like.target && f.mode == like.mode;
        cx.graph.fds_of(holder.key).iter().any(|f| same(&f))
    };
    s.socket.holders.iter().any(|holder| {
        let Some(holder) = cx.by_key(holder.proc).filter(|h| h.key != s.process.key) else {
            return false;
        };
        cx.is_ancestor(s.process.key, holder) && holds(holder, stdin) && holds(holder, stdout)
    })
}

fn sibling_holds_socket(s: &Subject<'_>, cx: &Context<'_>) -> bool {
    let Some(parent) = parent(s, cx) else { return false };
    let sibling = |h: &crate::model::Holder| {
        cx.by_key(h.proc).is_some_and(|holder| {
            holder.key != s.process.key
                && cx.is_ancestor(parent.key, holder)
                && !cx.is_ancestor(s.process.key, holder)
        })
    };
    // The parent is the first relay: it holds the other end of the process's stdin and stdout.
    // Read from the fds rather than from the route, which a search would have to find.
    let fed_by_parent =
        |stream| stream_fd(cx, s.process, stream).is_some_and(|fd| holds_other_end(cx, parent, fd));
    s.relayed && s.socket.holders.iter().any(sibling) && fed_by_parent(0) && fed_by_parent(1)
}

/// Whether `holder` has an fd on the other end of `fd`'s channel: the other end of the same
/// pipe or FIFO, the peer of a unix socket, the master of a pty slave.
fn holds_other_end(cx: &Context<'_>, holder: &Process, fd: &Fd) -> bool {
    use crate::model::{AccessMode, FdTarget};
    let graph = cx.graph;
    let peer = match &fd.target {
        FdTarget::Socket { inode } => graph.unix_peer(*inode).map(|p| p.key.inode),
        _ => None,
    };
    graph.fds_of(holder.key).iter().any(|theirs| match (&fd.target, &theirs.target) {
        (FdTarget::Pipe { .. } | FdTarget::Fifo { .. }, _) => {
            theirs.target == fd.target
                && (theirs.mode != fd.mode
                    || theirs.mode == AccessMode::ReadWrite
                    || theirs.mode == AccessMode::Unknown)
        }
        (FdTarget::PtySlave { pty }, FdTarget::PtyMaster { pty: master }) => pty == master,
        (FdTarget::Socket { .. }, FdTarget::Socket { inode }) => peer == Some(*inode),
        _ => false,
    })
}

/// The lowercase name of a direction or its source.
pub fn direction_name(direction: Direction) -> &'static str {
    match direction {
        Direction::Inbound => "inbound",
        Direction::Outbound => "outbound",
        Direction::Listening => "listening",
        Direction::Unknown => "unknown",
    }
}

fn direction_source_name(source: DirectionSource) -> &'static str {
    match source {
        DirectionSource::State => "state",
        DirectionSource::Listener => "listener",
        DirectionSource::Peer => "peer",
        DirectionSource::PortRange => "port_range",
        DirectionSource::None => "none",
    }
}

/// The lowercase name of a stdio first hop.
/// The name of each `Via`, at its discriminant (its bit in `Subject::vias`).
const VIA_NAMES: [&str; 5] = ["direct", "pipe", "fifo", "pty", "unix"];

/// The subject's container when the process is shown to be in it (see `Container::verified`):
/// a cgroup path alone is a claim any user can make in a delegated subtree, and an exception
/// by image or namespace must not be one an attacker can buy with a `mkdir`.
fn verified_container<'a>(s: &Subject<'a>) -> Option<&'a crate::model::Container> {
    s.process.container.as_deref().filter(|c| c.verified())
}

fn container_text<'a>(
    s: &Subject<'a>,
    field: impl Fn(&'a crate::model::Container) -> Option<&'a RawText>,
) -> Value<'a> {
    str_or_absent(verified_container(s).and_then(field).map(text))
}

fn pod_text<'a>(
    s: &Subject<'a>,
    field: impl Fn(&'a crate::model::Pod) -> Option<&'a RawText>,
) -> Value<'a> {
    container_text(s, |c| c.pod.as_ref().and_then(&field))
}

fn ints(values: impl IntoIterator<Item = i64>) -> Value<'static> {
    Value::Ints(values.into_iter().collect())
}

/// Every field.
pub static FIELDS: &[Field] = &[
    Field {
        name: "proc.pid",
        kind: Kind::Int,
        shape: Shape::Scalar,
        doc: "Process id.",
        get: |s, _| Value::Int(s.process.key.pid.into()),
    },
    Field {
        name: "proc.ppid",
        kind: Kind::Int,
        shape: Shape::Scalar,
        doc: "Parent process id.",
        get: |s, _| Value::Int(s.process.ppid.into()),
    },
    Field {
        name: "proc.name",
        kind: Kind::Str,
        shape: Shape::Scalar,
        doc: "`comm`: chosen freely by the process; never use it to trust anything.",
        get: |s, _| Value::Str(text(&s.process.comm)),
    },
    Field {
        name: "proc.exe",
        kind: Kind::Str,
        shape: Shape::Scalar,
        doc: "Executable path as the kernel shows it (/proc/pid/exe).",
        get: |s, _| str_or_absent(exe_path(s.process)),
    },
    Field {
        name: "proc.exe_name",
        kind: Kind::Str,
        shape: Shape::Scalar,
        doc: "File name of the executable (\" (deleted)\" removed only when the binary really is).",
        get: |s, _| str_or_absent(s.process.exe.as_ref().map(exe_name)),
    },
    Field {
        name: "proc.exe_deleted",
        kind: Kind::Bool,
        shape: Shape::Scalar,
        doc: "The executable has no links left on disk (judged by the inode, not the name).",
        get: |s, _| exe_flag(s, |e| e.deleted),
    },
    Field {
        name: "proc.exe_memfd",
        kind: Kind::Bool,
        shape: Shape::Scalar,
        doc: "The executable is a memfd (fileless execution).",
        get: |s, _| exe_flag(s, |e| e.memfd),
    },
    Field {
        name: "proc.exe_owner_root",
        kind: Kind::Bool,
        shape: Shape::Scalar,
        doc: "The executable is owned by root.",
        get: |s, _| exe_flag(s, |e| e.owner_uid == 0),
    },
    Field {
        name: "proc.exe_writable",
        kind: Kind::Bool,
        shape: Shape::Scalar,
        doc: "Someone other than root can write the executable (non-root owner or group/other write).",
        get: |s, _| exe_flag(s, exe_writable),
    },
    Field {
        name: "proc.exe_trusted",
        kind: Kind::Bool,
        shape: Shape::Scalar,
        doc: "Root-owned, writable by root only, not deleted, not a memfd, the very file its path \
              names on the host (`proc.exe_host_file`), and no shell, interpreter or network \
              tool, by what it is (`proc.binary`) or by its name: the only exe paths an \
              allowlist should trust.",
        get: |s, _| exe_flag(s, exe_trusted),
    },
    Field {
        name: "proc.exe_host_file",
        kind: Kind::Bool,
        shape: Shape::Scalar,
        doc: "The executable is the file its path names in the host's mount namespace (pid 1's): \
              false for a container's own copy or a bind mount over the path; absent when it \
              could not be checked.",
        get: |s, _| {
            let host = s.process.exe.as_ref().and_then(|e| e.host_file);
            host.map_or(Value::Absent, Value::Bool)
        },
    },
    Field {
        name: "proc.binary",
        kind: Kind::Str,
        shape: Shape::Scalar,
        doc: "The host's shell, interpreter or network tool the executable *is*, whatever its \
              name: the same file (device and inode) or the same bytes (SHA-256, for a renamed \
              copy, a memfd or a deleted file), named as on the host (`dash`, `bsd-csh`, \
              `python3.11`); absent when it is none of them.",
        get: |s, _| str_or_absent(identity_name(s.process)),
    },
    Field {
        name: "proc.binary_kind",
        kind: Kind::Str,
        shape: Shape::Scalar,
        doc: "What `proc.binary` is: `shell`, `interpreter`, `network_tool` or `multicall` \
              (busybox, toybox: see `proc.applet`).",
        get: |s, _| str_or_absent(identity_kind(s.process)),
    },
    Field {
        name: "proc.binary_match",
        kind: Kind::Str,
        shape: Shape::Scalar,
        doc: "How `proc.binary` was recognised: `inode` (the same file) or `content` (a copy).",
        get: |s, _| {
            let identity = s.process.exe.as_ref().and_then(|e| e.identity.as_ref());
            identity.map_or(Value::Absent, |i| {
                Value::Str(Cow::Borrowed(match i.by {
                    crate::model::IdentityMatch::Inode => "inode",
                    crate::model::IdentityMatch::Content => "content",
                }))
            })
        },
    },
    Field {
        name: "proc.applet",
        kind: Kind::Str,
        shape: Shape::Scalar,
        doc: "The program a multi-call binary runs: argv[0]'s file name, or argv[1]'s when \
              argv[0] is `busybox` or `toybox` (`busybox sh -i`). Free to fake like argv: \
              combine it with `proc.binary`.",
        get: |s, _| str_or_absent(applet(s.process)),
    },
    Field {
        name: "proc.argv0",
        kind: Kind::Str,
        shape: Shape::Scalar,
        doc: "argv[0] as the process presents it (free to fake: `exec -a`).",
        get: |s, _| str_or_absent(s.process.argv.first().map(text)),
    },
    Field {
        name: "proc.argv0_name",
        kind: Kind::Str,
        shape: Shape::Scalar,
        doc: "File name part of argv[0], leading `-` of a login shell removed (busybox applets \
              are told by it).",
        get: |s, _| str_or_absent(argv0_name(s.process)),
    },
    Field {
        name: "proc.args",
        kind: Kind::Str,
        shape: Shape::List,
        doc: "Arguments after argv[0].",
        get: |s, _| Value::Strs(s.process.argv.iter().skip(1).map(text).collect()),
    },
    Field {
        name: "proc.cmdline",
        kind: Kind::Str,
        shape: Shape::Scalar,
        doc: "argv joined with spaces.",
        get: |s, _| {
            let parts: Vec<Cow<'_, str>> = s.process.argv.iter().map(text).collect();
            Value::Str(Cow::Owned(parts.join(" ")))
        },
    },
    Field {
        name: "proc.uid",
        kind: Kind::Int,
        shape: Shape::Scalar,
        doc: "Real user id.",
        get: |s, _| Value::Int(s.process.uid.into()),
    },
    Field {
        name: "proc.euid",
        kind: Kind::Int,
        shape: Shape::Scalar,
        doc: "Effective user id.",
        get: |s, _| Value::Int(s.process.euid.into()),
    },
    Field {
        name: "proc.pname",
        kind: Kind::Str,
        shape: Shape::Scalar,
        doc: "Parent's `comm`.",
        get: |s, cx| str_or_absent(parent(s, cx).map(|p| text(&p.comm))),
    },
    Field {
        name: "proc.pexe",
        kind: Kind::Str,
        shape: Shape::Scalar,
        doc: "Parent's executable path.",
        get: |s, cx| str_or_absent(parent(s, cx).and_then(exe_path)),
    },
    Field {
        name: "proc.parent.trusted_exe",
        kind: Kind::Str,
        shape: Shape::Scalar,
        doc: "Parent's executable path, when its binary is trusted (see proc.exe_trusted); absent \
              otherwise.",
        get: |s, cx| str_or_absent(parent(s, cx).and_then(trusted_path)),
    },
    Field {
        name: "proc.ancestors",
        kind: Kind::Str,
        shape: Shape::List,
        doc: "`comm` of every ancestor, parent first.",
        get: |s, cx| Value::Strs(cx.ancestors(s.process).map(|p| text(&p.comm)).collect()),
    },
    Field {
        name: "proc.ancestor.exe",
        kind: Kind::Str,
        shape: Shape::List,
        doc: "Executable path of every ancestor, parent first.",
        get: |s, cx| Value::Strs(cx.ancestors(s.process).filter_map(exe_path).collect()),
    },
    Field {
        name: "proc.ancestor.trusted_exe",
        kind: Kind::Str,
        shape: Shape::List,
        doc: "Executable paths of the ancestors whose binaries are trusted (see proc.exe_trusted).",
        get: |s, cx| Value::Strs(cx.ancestors(s.process).filter_map(trusted_path).collect()),
    },
    Field {
        name: "proc.tty",
        kind: Kind::Int,
        shape: Shape::Scalar,
        doc: "Controlling terminal device number (0: none).",
        get: |s, _| Value::Int(s.process.tty_nr.into()),
    },
    Field {
        name: "proc.sid",
        kind: Kind::Int,
        shape: Shape::Scalar,
        doc: "Session id.",
        get: |s, _| Value::Int(s.process.sid.into()),
    },
    Field {
        name: "proc.pgid",
        kind: Kind::Int,
        shape: Shape::Scalar,
        doc: "Process group id.",
        get: |s, _| Value::Int(s.process.pgid.into()),
    },
    Field {
        name: "proc.cgroup",
        kind: Kind::Str,
        shape: Shape::Scalar,
        doc: "cgroup path (the unified hierarchy's).",
        get: |s, _| str_or_absent(s.process.cgroup.as_ref().map(text)),
    },
    Field {
        name: "proc.container_id",
        kind: Kind::Str,
        shape: Shape::Scalar,
        doc: "The container id the cgroup path claims, proven or not (display and triage; \
              exceptions want `container.id`); absent on the host.",
        get: |s, _| {
            let claimed = s.process.container.as_deref().map(|c| text(&c.id));
            str_or_absent(claimed)
        },
    },
    Field {
        name: "container.id",
        kind: Kind::Str,
        shape: Shape::Scalar,
        doc: "Container id (64 hex digits; the name for lxc and systemd-nspawn), when the \
              process shares the mount namespace of that container's init as its runtime \
              recorded it; absent on the host and for an unproven claim.",
        get: |s, _| container_text(s, |c| Some(&c.id)),
    },
    Field {
        name: "container.runtime",
        kind: Kind::Str,
        shape: Shape::Scalar,
        doc: "`docker`, `containerd`, `cri-o`, `podman`, `lxc` or `systemd-nspawn` (proven \
              containers only).",
        get: |s, _| {
            let runtime = verified_container(s).and_then(|c| c.runtime);
            str_or_absent(runtime.map(|r| Cow::Borrowed(r.name())))
        },
    },
    Field {
        name: "container.name",
        kind: Kind::Str,
        shape: Shape::Scalar,
        doc: "Container name from the runtime's state (proven containers only).",
        get: |s, _| container_text(s, |c| c.name.as_ref()),
    },
    Field {
        name: "container.image",
        kind: Kind::Str,
        shape: Shape::Scalar,
        doc: "Image the container was created from, as given (`nginx:1.25`, \
              `docker.io/library/nginx:1.25`; proven containers only).",
        get: |s, _| container_text(s, |c| c.image.as_ref()),
    },
    Field {
        name: "container.verified",
        kind: Kind::Bool,
        shape: Shape::Scalar,
        doc: "The process is proven to be in the container its cgroup path names; absent on \
              the host.",
        get: |s, _| {
            s.process.container.as_deref().map_or(Value::Absent, |c| Value::Bool(c.verified()))
        },
    },
    Field {
        name: "k8s.pod.name",
        kind: Kind::Str,
        shape: Shape::Scalar,
        doc: "Kubernetes pod name (proven containers only).",
        get: |s, _| pod_text(s, |p| p.name.as_ref()),
    },
    Field {
        name: "k8s.ns.name",
        kind: Kind::Str,
        shape: Shape::Scalar,
        doc: "Kubernetes namespace of the pod (proven containers only).",
        get: |s, _| pod_text(s, |p| p.namespace.as_ref()),
    },
    Field {
        name: "k8s.pod.uid",
        kind: Kind::Str,
        shape: Shape::Scalar,
        doc: "Kubernetes pod uid (proven containers only).",
        get: |s, _| pod_text(s, |p| p.uid.as_ref()),
    },
    Field {
        name: "proc.age",
        kind: Kind::Int,
        shape: Shape::Scalar,
        doc: "Seconds since the process started, at the snapshot.",
        get: |s, cx| cx.age_seconds(s.process).map_or(Value::Absent, Value::Int),
    },
    Field {
        name: "proc.netns",
        kind: Kind::Int,
        shape: Shape::Scalar,
        doc: "Inode of the process's network namespace.",
        get: |s, _| s.process.netns.map_or(Value::Absent, |n| Value::Int(n as i64)),
    },
    Field {
        name: "fd.num",
        kind: Kind::Int,
        shape: Shape::List,
        doc: "The process's own fds on the socket (none when it only reaches it through relays).",
        get: |s, _| ints(s.fds.iter().map(|&n| n.into())),
    },
    Field {
        name: "sock.family",
        kind: Kind::Str,
        shape: Shape::Scalar,
        doc: "`inet`, `inet6` or `packet` (`unknown` for a socket in no table whose protocol did \
              not say).",
        get: |s, _| {
            Value::Str(Cow::Borrowed(match s.socket.family {
                crate::model::Family::Inet => "inet",
                crate::model::Family::Inet6 => "inet6",
                crate::model::Family::Unix => "unix",
                crate::model::Family::Netlink => "netlink",
                crate::model::Family::Packet => "packet",
                crate::model::Family::Unknown => "unknown",
            }))
        },
    },
    Field {
        name: "sock.protocol",
        kind: Kind::Str,
        shape: Shape::Scalar,
        doc: "`tcp`, `udp`, `udplite`, `raw`, `icmp`, or for packet sockets `packet_raw` or \
              `packet_dgram`.",
        get: |s, _| Value::Str(Cow::Borrowed(s.socket.protocol.name())),
    },
    Field {
        name: "sock.state",
        kind: Kind::Str,
        shape: Shape::Scalar,
        doc: "Kernel state name: `ESTABLISHED`, `SYN_SENT`, `CLOSE_WAIT`, `LISTEN`, `CLOSE` \
              (unconnected UDP) and the others of the kernel.",
        get: |s, _| Value::Str(Cow::Borrowed(s.socket.state.name())),
    },
    Field {
        name: "sock.laddr",
        kind: Kind::Ip,
        shape: Shape::Scalar,
        doc: "Local address.",
        get: |s, _| s.socket.local.map_or(Value::Absent, |e| Value::Ip(e.addr)),
    },
    Field {
        name: "sock.lport",
        kind: Kind::Int,
        shape: Shape::Scalar,
        doc: "Local port.",
        get: |s, _| s.socket.local.map_or(Value::Absent, |e| Value::Int(e.port.into())),
    },
    Field {
        name: "sock.raddr",
        kind: Kind::Ip,
        shape: Shape::Scalar,
        doc: "Remote address; absent when not connected.",
        get: |s, _| match s.socket.remote {
            Some(e) if !e.is_unspecified() => Value::Ip(e.addr),
            _ => Value::Absent,
        },
    },
    Field {
        name: "sock.rport",
        kind: Kind::Int,
        shape: Shape::Scalar,
        doc: "Remote port; absent when not connected.",
        get: |s, _| match s.socket.remote {
            Some(e) if !e.is_unspecified() => Value::Int(e.port.into()),
            _ => Value::Absent,
        },
    },
    Field {
        name: "sock.connected",
        kind: Kind::Bool,
        shape: Shape::Scalar,
        doc: "The socket has a remote peer (TCP past LISTEN, connected UDP).",
        get: |s, _| Value::Bool(s.socket.remote.is_some_and(|e| !e.is_unspecified())),
    },
    Field {
        name: "sock.direction",
        kind: Kind::Str,
        shape: Shape::Scalar,
        doc: "`inbound`, `outbound`, `listening` or `unknown` (DESIGN §3).",
        get: |s, _| Value::Str(Cow::Borrowed(direction_name(s.direction.0))),
    },
    Field {
        name: "sock.direction_source",
        kind: Kind::Str,
        shape: Shape::Scalar,
        doc: "What the direction rests on: `state`, `listener` (now or earlier), `peer` (the \
              loopback connection's other end), `port_range` or `none`.",
        get: |s, _| Value::Str(Cow::Borrowed(direction_source_name(s.direction.1))),
    },
    Field {
        name: "sock.remote_is_loopback",
        kind: Kind::Bool,
        shape: Shape::Scalar,
        doc: "The remote address is a loopback address.",
        get: |s, _| Value::Bool(s.socket.remote.is_some_and(|e| e.addr.is_loopback())),
    },
    Field {
        name: "sock.netns",
        kind: Kind::Int,
        shape: Shape::Scalar,
        doc: "Inode of the network namespace whose table lists the socket (0: unresolved).",
        get: |s, _| Value::Int(s.socket.key.netns as i64),
    },
    Field {
        name: "sock.inode",
        kind: Kind::Int,
        shape: Shape::Scalar,
        doc: "Socket inode.",
        get: |s, _| Value::Int(s.socket.key.inode as i64),
    },
    Field {
        name: "sock.holder.pid",
        kind: Kind::Int,
        shape: Shape::List,
        doc: "Every process holding the socket.",
        get: |s, cx| ints(holders(s, cx, |p| Some(p.key.pid.into()))),
    },
    Field {
        name: "sock.holder.exe",
        kind: Kind::Str,
        shape: Shape::List,
        doc: "Executable paths of the processes holding the socket.",
        get: |s, cx| Value::Strs(holders(s, cx, exe_path)),
    },
    Field {
        name: "sock.holder.trusted_exe",
        kind: Kind::Str,
        shape: Shape::List,
        doc: "Executable paths of the holders whose binaries are trusted.",
        get: |s, cx| Value::Strs(holders(s, cx, trusted_path)),
    },
    Field {
        name: "sock.holder.untrusted_pid",
        kind: Kind::Int,
        shape: Shape::List,
        doc: "Processes holding the socket whose binaries are not trusted (see \
              proc.exe_trusted), or unknown.",
        get: |s, cx| {
            let mut pids: Vec<i64> = Vec::new();
            for holder in &s.socket.holders {
                let process = cx.by_key(holder.proc);
                let trusted = process.and_then(|p| p.exe.as_ref()).is_some_and(exe_trusted);
                let pid = i64::from(holder.proc.pid);
                if !trusted && !pids.contains(&pid) {
                    pids.push(pid);
                }
            }
            Value::Ints(pids)
        },
    },
    Field {
        name: "sock.table",
        kind: Kind::Str,
        shape: Shape::Scalar,
        doc: "Where the socket was found: `sock_diag`, `proc_net`, `held_fd` (in no table the \
              agent could read; read from a copy of its holder's fd), or `unresolved` (held by a \
              process, in no table the agent could read: what it is connected to is unknown).",
        get: |s, _| {
            Value::Str(Cow::Borrowed(match s.socket.source {
                crate::model::TableSource::SockDiag => "sock_diag",
                crate::model::TableSource::ProcNet => "proc_net",
                crate::model::TableSource::Unresolved => "unresolved",
                crate::model::TableSource::HeldFd => "held_fd",
                // Destroy notices are reported, never evaluated: no snapshot holds one.
                crate::model::TableSource::DestroyNotice => "destroy_notice",
            }))
        },
    },
    Field {
        name: "sock.listener.pid",
        kind: Kind::Int,
        shape: Shape::List,
        doc: "For an inbound socket: the processes holding the listener it was accepted from.",
        get: |s, cx| ints(listener_holders(s, cx, |p| Some(p.key.pid.into()))),
    },
    Field {
        name: "sock.listener.trusted_exe",
        kind: Kind::Str,
        shape: Shape::List,
        doc: "For an inbound socket: trusted executable paths of the listener's holders.",
        get: |s, cx| Value::Strs(listener_holders(s, cx, trusted_path)),
    },
    Field {
        name: "stdio.fds",
        kind: Kind::Int,
        shape: Shape::Bits,
        doc: "Which of the process's streams (0 stdin, 1 stdout, 2 stderr) lead to the socket, \
              directly or through relays. The csh family's copies of them on fds 16-19 count \
              as the streams they stand for.",
        get: |s, _| Value::IntBits(s.stdio_fds & 0b111),
    },
    Field {
        name: "stdio.via",
        kind: Kind::Str,
        shape: Shape::Bits,
        doc: "First hop of those fds: `direct`, `pipe`, `fifo`, `pty` or `unix`.",
        get: |s, _| Value::NameBits(s.vias, &VIA_NAMES),
    },
    Field {
        name: "stdio.relayed",
        kind: Kind::Bool,
        shape: Shape::Scalar,
        doc: "Some stdio fd reaches the socket through another process (a relay).",
        get: |s, _| Value::Bool(s.relayed),
    },
    Field {
        name: "stdio.holder_is_ancestor",
        kind: Kind::Bool,
        shape: Shape::Scalar,
        doc: "The socket is reached through relays and held by an ancestor of the process (a \
              parent serving its child's stdio: `socat exec:`, `pty.spawn`, `ncat -e`).",
        get: |s, _| Value::Bool(s.holder_is_ancestor),
    },
    Field {
        name: "stdio.holder_shares_stdio",
        kind: Kind::Bool,
        shape: Shape::Scalar,
        doc: "The socket is held by a descendant of the process that has the very same stdin and \
              stdout: a wrapper that runs a network client in its place (`sh -c 'ssh …'` run by \
              git as GIT_SSH_COMMAND, an ssh ProxyCommand) and waits while the client talks.",
        get: |s, cx| Value::Bool(holder_shares_stdio(s, cx)),
    },
    Field {
        name: "stdio.sibling_holds_socket",
        kind: Kind::Bool,
        shape: Shape::Scalar,
        doc: "The socket is held by another descendant of this process's parent (a sibling, or a \
              sibling's child), and the parent is the first relay between them: a program \
              talking to the network through one helper and feeding another (git between the \
              ssh it runs through `sh -c` and `index-pack`).",
        get: |s, cx| Value::Bool(sibling_holds_socket(s, cx)),
    },
    Field {
        name: "stdio.relay.pid",
        kind: Kind::Int,
        shape: Shape::List,
        doc: "Relay processes between the stdio fds and the socket, nearest first.",
        get: |s, cx| ints(relays(s, cx, |p| Some(p.key.pid.into()))),
    },
    Field {
        name: "stdio.relay.name",
        kind: Kind::Str,
        shape: Shape::List,
        doc: "`comm` of the relays.",
        get: |s, cx| Value::Strs(relays(s, cx, |p| Some(text(&p.comm)))),
    },
    Field {
        name: "stdio.relay.exe",
        kind: Kind::Str,
        shape: Shape::List,
        doc: "Executable paths of the relays.",
        get: |s, cx| Value::Strs(relays(s, cx, exe_path)),
    },
    Field {
        name: "stdio.relay.exe_name",
        kind: Kind::Str,
        shape: Shape::List,
        doc: "Executable file names of the relays.",
        get: |s, cx| Value::Strs(relays(s, cx, |p| p.exe.as_ref().map(exe_name))),
    },
    Field {
        name: "stdio.relay.binary",
        kind: Kind::Str,
        shape: Shape::List,
        doc: "`proc.binary` of the relays: the known shells, interpreters and network tools \
              among them, by file or content.",
        get: |s, cx| Value::Strs(relays(s, cx, identity_name)),
    },
    Field {
        name: "stdio.relay.binary_kind",
        kind: Kind::Str,
        shape: Shape::List,
        doc: "`proc.binary_kind` of the relays.",
        get: |s, cx| Value::Strs(relays(s, cx, identity_kind)),
    },
    Field {
        name: "stdio.relay.trusted_exe",
        kind: Kind::Str,
        shape: Shape::List,
        doc: "Executable paths of the relays whose binaries are trusted (see proc.exe_trusted).",
        get: |s, cx| Value::Strs(relays(s, cx, trusted_path)),
    },
    Field {
        name: "stdio.truncated",
        kind: Kind::Bool,
        shape: Shape::Scalar,
        doc: "A stdio walk of this process hit a bound: it may reach more than is listed.",
        get: |s, _| Value::Bool(s.truncated),
    },
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn via_names_are_the_vias_own_names_in_bit_order() {
        for via in crate::rules::subject::VIAS {
            let name = serde_json::to_value(via).unwrap();
            assert_eq!(name, VIA_NAMES[via as usize]);
            assert_eq!(crate::rules::subject::via_bit(via), 1 << (via as u8));
        }
    }

    #[test]
    fn names_are_unique_and_dotted() {
        for (i, f) in FIELDS.iter().enumerate() {
            assert!(FIELDS[..i].iter().all(|g| g.name != f.name), "{} twice", f.name);
            let prefix = f.name.split('.').next().unwrap();
            assert!(
                ["proc", "fd", "sock", "stdio", "container", "k8s"].contains(&prefix),
                "{}",
                f.name
            );
            assert!(f.doc.ends_with('.') || f.doc.ends_with(')'), "{}: doc", f.name);
        }
    }

    #[test]
    fn docs_rules_md_lists_every_field_as_the_catalogue_does() {
        let docs = include_str!("../../docs/rules.md");
        let start = docs.find("<!-- fields:start -->\n").expect("start marker") + 22;
        let end = docs.find("<!-- fields:end -->").expect("end marker");
        assert_eq!(
            &docs[start..end],
            fields_markdown(),
            "docs/rules.md is stale: paste `sockwatch rules fields --markdown` between the markers"
        );
    }
}
