//! What `sockwatch scan` shows: sockets chosen by port, state, family and listening, and holders
//! chosen by pid, process name, user and container. A socket is shown when it matches and at
//! least one of its holders does (a socket no process holds only with `--all` and no holder
//! filter). Without `--inet` or `--unix`, rows are network sockets (internet, packet, and held
//! sockets in no table); the JSON document keeps every family unless one is asked for.

use super::CliError;
use crate::model::{Direction, Family, Process, Socket, SocketState};

#[derive(Debug, Default, clap::Args)]
pub(super) struct FilterArgs {
    /// Only rows held by this pid (repeatable).
    #[arg(long = "pid", value_name = "PID")]
    pub pids: Vec<i32>,
    /// Only sockets with this local or remote port (repeatable).
    #[arg(long = "port", value_name = "PORT")]
    pub ports: Vec<u16>,
    /// Only sockets in this state (repeatable): ESTABLISHED, LISTEN, SYN_SENT, TIME_WAIT, CLOSE,
    /// … (any case).
    #[arg(long = "state", value_name = "STATE", value_parser = parse_state)]
    pub states: Vec<SocketState>,
    /// Only listening sockets (TCP listeners and bound, unconnected UDP).
    #[arg(long)]
    pub listening: bool,
    /// Only rows of processes with this name or executable file name (repeatable).
    #[arg(long = "process", value_name = "NAME")]
    pub processes: Vec<String>,
    /// Only rows of processes running as this user (a name from /etc/passwd, or a uid;
    /// repeatable).
    #[arg(long = "user", value_name = "USER")]
    pub users: Vec<String>,
    /// Only rows of processes in this container (an id prefix, the container's name or its
    /// pod's name; repeatable).
    #[arg(long = "container", value_name = "ID")]
    pub containers: Vec<String>,
    /// Internet sockets (v4 and v6). With --unix, both.
    #[arg(long)]
    pub inet: bool,
    /// Unix sockets. With --inet, both.
    #[arg(long)]
    pub unix: bool,
    /// Also list sockets no visible process holds (pid -1).
    #[arg(long)]
    pub all: bool,
}

/// Every state a socket can be in, by the name tables show.
const STATES: [SocketState; 12] = [
    SocketState::Established,
    SocketState::SynSent,
    SocketState::SynRecv,
    SocketState::FinWait1,
    SocketState::FinWait2,
    SocketState::TimeWait,
    SocketState::Close,
    SocketState::CloseWait,
    SocketState::LastAck,
    SocketState::Listen,
    SocketState::Closing,
    SocketState::NewSynRecv,
];

fn parse_state(text: &str) -> Result<SocketState, String> {
    let wanted = text.to_ascii_uppercase().replace('-', "_");
    STATES.into_iter().find(|s| s.name() == wanted).ok_or_else(|| {
        let names: Vec<&str> = STATES.iter().map(|s| s.name()).collect();
        format!("unknown state {text:?}; one of {}", names.join(", "))
    })
}

/// The filters, with user names resolved to uids.
pub(super) struct Selection<'a> {
    args: &'a FilterArgs,
    uids: Vec<u32>,
}

impl<'a> Selection<'a> {
    /// Resolves `--user` names from the host's /etc/passwd (or `passwd`, for tests).
    pub fn new(args: &'a FilterArgs, passwd: &[u8]) -> Result<Selection<'a>, CliError> {
        let accounts = crate::scan::parse::parse_accounts(passwd);
        let uids = args
            .users
            .iter()
            .map(|user| match user.parse::<u32>() {
                Ok(uid) => Ok(uid),
                Err(_) => accounts
                    .iter()
                    .find(|(_, name)| name.as_bytes() == user.as_bytes())
                    .map(|(uid, _)| *uid)
                    .ok_or_else(|| CliError::Usage(format!("no user {user:?} in /etc/passwd"))),
            })
            .collect::<Result<_, _>>()?;
        Ok(Selection { args, uids })
    }

    /// Some filter was given: the JSON document is cut down to what matches.
    pub fn any(&self) -> bool {
        let a = self.args;
        self.holder_filters()
            || !a.ports.is_empty()
            || !a.states.is_empty()
            || a.listening
            || a.inet
            || a.unix
    }

    fn holder_filters(&self) -> bool {
        let a = self.args;
        !(a.pids.is_empty()
            && a.processes.is_empty()
            && a.users.is_empty()
            && a.containers.is_empty())
    }

    /// `socket` is of a family, port and state asked for. `network_by_default`: without
    /// `--inet`/`--unix`, only network sockets (the tables); every family otherwise (JSON).
    pub fn socket(&self, socket: &Socket, direction: Direction, network_by_default: bool) -> bool {
        let a = self.args;
        let family = match (a.inet, a.unix) {
            (false, false) if network_by_default => {
                matches!(
                    socket.family,
                    Family::Inet | Family::Inet6 | Family::Packet | Family::Unknown
                )
            }
            (false, false) => true,
            (inet, unix) => {
                (inet && socket.family.is_inet()) || (unix && socket.family == Family::Unix)
            }
        };
        let ports = [socket.local, socket.remote];
        let port = a.ports.is_empty()
            || ports.iter().flatten().any(|e| socket.family.is_inet() && a.ports.contains(&e.port));
        let state = a.states.is_empty() || a.states.contains(&socket.state);
        let listening = !a.listening
            || socket.state == SocketState::Listen
            || direction == Direction::Listening;
        family && port && state && listening
    }

    /// A row held by `pid` (`process` when it was read) is asked for.
    pub fn holder(&self, pid: i32, process: Option<&Process>) -> bool {
        let a = self.args;
        if !a.pids.is_empty() && !a.pids.contains(&pid) {
            return false;
        }
        let named = |p: &Process| {
            let exe = p.exe.as_ref().map(|e| e.path.as_bytes()).unwrap_or_default();
            let file = exe.rsplit(|&b| b == b'/').next().unwrap_or_default();
            a.processes.iter().any(|n| n.as_bytes() == p.comm.as_bytes() || n.as_bytes() == file)
        };
        if !a.processes.is_empty() && !process.is_some_and(named) {
            return false;
        }
        if !self.uids.is_empty() && !process.is_some_and(|p| self.uids.contains(&p.euid)) {
            return false;
        }
        let contained = |p: &Process| {
            let Some(c) = p.container.as_deref() else { return false };
            let pod = c.pod.as_ref().and_then(|p| p.name.as_ref());
            a.containers.iter().any(|wanted| {
                let wanted = wanted.as_bytes();
                c.id.as_bytes().starts_with(wanted)
                    || c.name.as_ref().is_some_and(|n| n.as_bytes() == wanted)
                    || pod.is_some_and(|n| n.as_bytes() == wanted)
            })
        };
        a.containers.is_empty() || process.is_some_and(contained)
    }

    /// A socket nobody holds is listed: `--all`, and no filter on holders.
    pub fn holderless(&self) -> bool {
        self.args.all && !self.holder_filters()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn states_read_in_any_case_and_unknown_ones_are_named() {
        assert_eq!(parse_state("established"), Ok(SocketState::Established));
        assert_eq!(parse_state("time-wait"), Ok(SocketState::TimeWait));
        let error = parse_state("OPEN").unwrap_err();
        assert!(error.contains("ESTABLISHED") && error.contains("LISTEN"), "{error}");
    }

    #[test]
    fn users_resolve_by_name_or_uid_and_an_unknown_name_is_an_error() {
        let passwd = b"root:x:0:0::/root:/bin/sh\nweb:x:33:33::/var/www:/bin/false\n";
        let args = FilterArgs { users: vec!["web".into(), "1000".into()], ..Default::default() };
        assert_eq!(Selection::new(&args, passwd).unwrap().uids, [33, 1000]);
        let args = FilterArgs { users: vec!["nobody-here".into()], ..Default::default() };
        assert!(Selection::new(&args, passwd).is_err());
    }
}
