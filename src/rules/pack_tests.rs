//! The built-in pack's verdicts on hand-built snapshots: cases the integration tests cannot stage
//! on a test machine (a listener held by pid 1), and the engine's grouping of several sockets
//! into one incident.

use super::{Clock, Engine, RuleSet, RuleSource};
use crate::graph::Graph;
use crate::model::fixture::{Builder, exe};
use crate::model::{
    AccessMode, Alert, BinaryKind, FdTarget, Identity, IdentityMatch, ProcKey, Protocol,
    SocketState,
};

fn evaluate(snapshot: &crate::model::Snapshot) -> Vec<Alert> {
    let rules = RuleSet::compile(RuleSource::embedded()).unwrap();
    let mut engine = Engine::new(rules, Clock { boot_time_ms: None, ticks_per_second: 100 });
    engine.evaluate(&Graph::build(snapshot, None)).0
}

fn rule_ids(alert: &Alert) -> Vec<&str> {
    alert.rules.iter().map(|r| r.id.as_str()).collect()
}

/// A process running the host's binary at `path`, child of `parent`.
fn program(b: &mut Builder, pid: i32, parent: i32, path: &str) -> ProcKey {
    let name = path.rsplit('/').next().unwrap();
    let key = b.process(pid, name);
    let process = b.snapshot_mut().processes.iter_mut().find(|p| p.key == key).unwrap();
    process.ppid = parent;
    process.exe = Some(exe(path, pid as u64));
    key
}

/// An accepted connection on `port` held on fds 0-2 by `holder`, from a listener on that port
/// held by `listener`.
fn served(b: &mut Builder, listener: ProcKey, holder: ProcKey, port: u16) {
    served_on(b, listener, holder, port, 0);
    for fd in 1..3 {
        b.fd(holder, fd, AccessMode::Unknown, FdTarget::Socket { inode: 91 });
    }
}

/// An accepted connection on `port` held on fd `fd` by `holder`, from a listener on that port
/// held by `listener`.
fn served_on(b: &mut Builder, listener: ProcKey, holder: ProcKey, port: u16, fd: i32) {
    let listening = format!("0.0.0.0:{port}");
    b.inet(90, Protocol::Tcp, &listening, "0.0.0.0:0", SocketState::Listen);
    b.fd(listener, 3, AccessMode::Unknown, FdTarget::Socket { inode: 90 });
    let local = format!("127.0.0.1:{port}");
    b.inet(91, Protocol::Tcp, &local, "127.0.0.1:40001", SocketState::Established);
    b.fd(holder, fd, AccessMode::Unknown, FdTarget::Socket { inode: 91 });
}

#[test]
fn a_shell_served_by_a_socket_unit_of_pid_1_is_a_bind_shell_and_cat_is_not() {
    // systemd with `Accept=yes`: pid 1 holds the listener, each connection gets a child with
    // the accepted socket as its stdio.
    let mut b = Builder::new();
    let systemd = program(&mut b, 1, 0, "/usr/lib/systemd/systemd");
    let sh = program(&mut b, 500, 1, "/usr/bin/dash");
    served(&mut b, systemd, sh, 2222);
    let alerts = evaluate(&b.build());
    assert_eq!(alerts.len(), 1);
    assert!(rule_ids(&alerts[0]).contains(&"bind-shell"), "{:?}", rule_ids(&alerts[0]));

    let mut b = Builder::new();
    let systemd = program(&mut b, 1, 0, "/usr/lib/systemd/systemd");
    let cat = program(&mut b, 500, 1, "/usr/bin/cat");
    served(&mut b, systemd, cat, 2222);
    assert_eq!(evaluate(&b.build()), []);
}

#[test]
fn inetd_serving_excuses_the_programs_it_serves_but_never_a_shell() {
    // pid 1's listener; the accepted connection on a relay whose child's stdio it relays.
    let layout = |child: &str| {
        let mut b = Builder::new();
        let systemd = program(&mut b, 1, 0, "/usr/lib/systemd/systemd");
        let relay = program(&mut b, 500, 1, "/usr/sbin/in.helperd");
        let served = program(&mut b, 501, 500, child);
        served_on(&mut b, systemd, relay, 2222, 3);
        b.pipe(100, (relay, 4), (served, 0));
        b.pipe(101, (served, 1), (relay, 5));
        b.build()
    };
    assert_eq!(evaluate(&layout("/usr/bin/python3.11")), [], "an interpreter serving a protocol");
    let alerts = evaluate(&layout("/usr/bin/dash"));
    assert_eq!(alerts.len(), 1);
    assert!(rule_ids(&alerts[0]).contains(&"bind-shell"), "{:?}", rule_ids(&alerts[0]));
}

#[test]
fn a_broker_path_that_is_not_the_hosts_file_is_no_broker() {
    // A relay holding an inbound connection and serving a shell on a pty, running as
    // /usr/sbin/sshd: the host's own file is allowed, a container's or a bind mount's is not.
    let layout = |host_file: bool| {
        let mut b = Builder::new();
        let listener = program(&mut b, 10, 1, "/usr/bin/systemd-socket-activate");
        let broker = program(&mut b, 11, 10, "/usr/sbin/sshd");
        b.snapshot_mut().processes[1].exe.as_mut().unwrap().host_file = Some(host_file);
        let sh = program(&mut b, 12, 11, "/usr/bin/dash");
        served(&mut b, listener, broker, 2222);
        let pty = crate::model::PtyId { devpts: Some(3), index: 4 };
        b.fd(broker, 5, AccessMode::ReadWrite, FdTarget::PtyMaster { pty });
        for fd in 0..3 {
            b.fd(sh, fd, AccessMode::ReadWrite, FdTarget::PtySlave { pty });
        }
        b.build()
    };
    let shell_alerts = |host_file| {
        evaluate(&layout(host_file))
            .into_iter()
            .filter(|a| rule_ids(a).contains(&"bind-shell"))
            .count()
    };
    assert_eq!(shell_alerts(true), 0, "the host's sshd");
    assert_eq!(shell_alerts(false), 1, "another file at the same path");
}

#[test]
fn a_shell_is_known_by_what_it_is_and_a_shell_is_never_trusted() {
    let identity =
        Identity { name: "bash".into(), kind: BinaryKind::Shell, by: IdentityMatch::Content };
    let mut b = Builder::new();
    let (kworker, nc) =
        (program(&mut b, 10, 1, "/tmp/kworker"), program(&mut b, 11, 1, "/usr/bin/nc"));
    b.snapshot_mut().processes[0].exe.as_mut().unwrap().identity = Some(identity.clone());
    b.pipe(100, (nc, 1), (kworker, 0));
    b.pipe(101, (kworker, 1), (nc, 0));
    b.connection(500, nc, 3);
    let alerts = evaluate(&b.build());
    assert_eq!(alerts.len(), 1);
    assert!(rule_ids(&alerts[0]).contains(&"shell-stdio-relayed-to-outbound-socket"));
    assert_eq!(alerts[0].subject.as_ref().map(|p| p.key), Some(kworker));

    // The same copy at a broker's path, root-owned and the host's file: still not trusted.
    let mut copy = exe("/usr/sbin/sshd", 9);
    assert!(super::fields::exe_trusted(&copy));
    copy.identity = Some(identity);
    assert!(!super::fields::exe_trusted(&copy));
}

#[test]
fn stdin_from_one_connection_and_output_to_another_is_one_incident_naming_both() {
    // nc H P | sh | nc H P2
    let mut b = Builder::new();
    let (nc1, sh, nc2) = (
        program(&mut b, 10, 1, "/usr/bin/nc"),
        program(&mut b, 11, 1, "/usr/bin/dash"),
        program(&mut b, 12, 1, "/usr/bin/nc"),
    );
    b.pipe(100, (nc1, 1), (sh, 0));
    b.pipe(101, (sh, 1), (nc2, 0));
    b.inet(500, Protocol::Tcp, "127.0.0.1:45000", "127.0.0.1:4444", SocketState::Established);
    b.fd(nc1, 3, AccessMode::Unknown, FdTarget::Socket { inode: 500 });
    b.inet(501, Protocol::Tcp, "127.0.0.1:45001", "127.0.0.1:4445", SocketState::Established);
    b.fd(nc2, 3, AccessMode::Unknown, FdTarget::Socket { inode: 501 });
    let alerts = evaluate(&b.build());
    assert_eq!(alerts.len(), 1, "{alerts:#?}");
    let inodes: Vec<u64> = alerts[0].endpoints.iter().map(|e| e.socket.key.inode).collect();
    assert_eq!(inodes.len(), 2);
    assert!(inodes.contains(&500) && inodes.contains(&501));
    assert_eq!(alerts[0].socket.key.inode, 500, "named after where the commands come from");
    let streams: Vec<&[i32]> = alerts[0].endpoints.iter().map(|e| &e.streams[..]).collect();
    assert_eq!(streams, [&[0][..], &[1][..]]);

    // Only the output side reaching a connection is no shell served over the network.
    let mut b = Builder::new();
    let (sh, nc2) =
        (program(&mut b, 11, 1, "/usr/bin/dash"), program(&mut b, 12, 1, "/usr/bin/nc"));
    b.pipe(101, (sh, 1), (nc2, 0));
    b.connection(501, nc2, 3);
    assert_eq!(evaluate(&b.build()), []);
}

#[test]
fn a_wrapper_waiting_on_the_network_client_it_runs_is_not_a_reverse_shell() {
    // git runs `sh -c 'ssh …'`: sh and ssh share the pipes git holds the other ends of.
    let mut b = Builder::new();
    let git = program(&mut b, 10, 1, "/usr/bin/git");
    let sh = program(&mut b, 11, 10, "/usr/bin/dash");
    let ssh = program(&mut b, 12, 11, "/usr/bin/ssh");
    b.pipe(100, (git, 4), (sh, 0));
    b.pipe(101, (sh, 1), (git, 5));
    b.fd(ssh, 4, AccessMode::Read, FdTarget::Pipe { inode: 100 });
    b.fd(ssh, 5, AccessMode::Write, FdTarget::Pipe { inode: 101 });
    b.connection(500, ssh, 3);
    assert_eq!(evaluate(&b.build()), []);
}

#[test]
fn an_alert_names_its_ancestors_and_the_ssh_login_it_descends_from() {
    // sshd (listener on 22) -> sshd-session (the accepted connection) -> login bash -> the
    // reverse shell.
    let layout = |session_exe: &str| {
        let mut b = Builder::new();
        let sshd = program(&mut b, 10, 1, "/usr/sbin/sshd");
        let session = program(&mut b, 11, 10, session_exe);
        program(&mut b, 12, 11, "/usr/bin/bash");
        let shell = program(&mut b, 13, 12, "/usr/bin/bash");
        served_on(&mut b, sshd, session, 22, 4);
        b.connection(200, shell, 0);
        for fd in 1..3 {
            b.fd(shell, fd, AccessMode::Unknown, FdTarget::Socket { inode: 200 });
        }
        b.build()
    };
    let alerts = evaluate(&layout("/usr/lib/openssh/sshd-session"));
    let alert = alerts.iter().find(|a| a.subject.as_ref().unwrap().key.pid == 13).unwrap();
    let pids: Vec<i32> = alert.ancestors.iter().map(|p| p.key.pid).collect();
    assert_eq!(pids, [12, 11, 10], "pid 1 is not in the snapshot");
    let origin = alert.login_origin.as_ref().expect("the ssh session's connection");
    assert_eq!(origin.process.pid, 11);
    assert_eq!((origin.remote.addr.to_string(), origin.remote.port), ("127.0.0.1".into(), 40001));
    assert_eq!(origin.local.port, 22);
    // A session process that is not sshd is no ssh login.
    let alerts = evaluate(&layout("/usr/bin/python3.11"));
    let alert = alerts.iter().find(|a| a.subject.as_ref().unwrap().key.pid == 13).unwrap();
    assert_eq!(alert.login_origin, None);
}

#[test]
fn an_excepted_image_silences_only_a_shell_proven_to_be_in_that_container() {
    use crate::model::{Container, MetadataSource, Runtime, Verification};
    let local = r#"
[[list]]
name = "excepted_container_images"
items = ["nginx:1.25"]
append = true
"#;
    let alerts_for = |image: &str, verification: Verification| {
        let mut b = Builder::new();
        let sh = program(&mut b, 500, 1, "/usr/bin/bash");
        b.connection(700, sh, 0);
        for fd in 1..3 {
            b.fd(sh, fd, AccessMode::Unknown, FdTarget::Socket { inode: 700 });
        }
        b.snapshot_mut().processes.iter_mut().find(|p| p.key == sh).unwrap().container =
            Some(std::sync::Arc::new(Container {
                id: "3f4e".repeat(16).as_str().into(),
                runtime: Some(Runtime::Docker),
                name: Some("web".into()),
                image: Some(image.into()),
                image_id: None,
                pod: None,
                source: MetadataSource::DockerConfig,
                complete: true,
                verification,
            }));
        let clock = Clock { boot_time_ms: None, ticks_per_second: 100 };
        let mut sources = RuleSource::embedded();
        sources.push(RuleSource { name: "local.toml".into(), text: local.into() });
        let mut engine = Engine::new(RuleSet::compile(sources).unwrap(), clock);
        engine.evaluate(&Graph::build(&b.build(), None)).0
    };
    assert_eq!(alerts_for("nginx:1.25", Verification::InitNamespace), []);
    // Another image, a cgroup that names a container the shell is not in, a claim nothing backs.
    assert_eq!(alerts_for("redis:7", Verification::InitNamespace).len(), 1);
    assert_eq!(alerts_for("nginx:1.25", Verification::NamespaceDiffers).len(), 1);
    assert_eq!(alerts_for("nginx:1.25", Verification::NoState).len(), 1);
    assert_eq!(alerts_for("nginx:1.25", Verification::InitGone).len(), 1);
}
