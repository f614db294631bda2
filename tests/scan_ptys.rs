//! Pty identity is (devpts instance, index), never the index alone: every container has its own
//! pts/0. Two mount namespaces with fresh devpts instances each get pty 0; a networked relay holds
//! the master of one, an unrelated process sits on the slave of the other.

use crate::util::{Netns, PRELUDE, Running, prerequisites, scan_document};
use sockwatch::model::{FdTarget, Via};

/// Runs `program` in a new mount namespace whose /dev/pts is a fresh devpts instance.
fn in_private_devpts(netns: &Netns, program: &str) -> (Running, serde_json::Value) {
    let mut command = netns.command("unshare");
    command.args([
        "--mount",
        "--propagation",
        "private",
        "sh",
        "-c",
        "mount -t devpts -o newinstance,ptmxmode=0666 devpts /dev/pts \
         && mount --bind /dev/pts/ptmx /dev/ptmx && exec python3 -c \"$0\"",
        program,
    ]);
    let (running, line) = Running::spawn_with_line(command);
    (running, serde_json::from_str(&line).unwrap_or_else(|e| panic!("{e}: {line:?}")))
}

#[test]
fn ptys_with_the_same_index_in_two_devpts_instances_are_not_linked() {
    if !prerequisites(&["ip", "python3", "unshare", "mount", "sleep"]) {
        return;
    }
    let netns = Netns::new();
    // The relay: a networked process holding the master of pty 0 of its instance.
    let relay = format!(
        "{PRELUDE}
import pty, subprocess
l = socket.socket(); l.bind(('127.0.0.1', 0)); l.listen()
c = socket.create_connection(l.getsockname())
master, slave = pty.openpty()
child = subprocess.Popen(['sleep', '1000'], stdin=slave, stdout=slave, stderr=slave, preexec_fn=die_with_parent)
print(json.dumps({{'relay': os.getpid(), 'child': child.pid, 'name': os.ttyname(slave), 'socket': os.fstat(c.fileno()).st_ino}}), flush=True)
sys.stdin.read()
"
    );
    let (_relay, a) = in_private_devpts(&netns, &relay);
    // The bystander: no network at all, on pty 0 of another instance.
    let bystander = format!(
        "{PRELUDE}
import pty, subprocess
master, slave = pty.openpty()
child = subprocess.Popen(['sleep', '1000'], stdin=slave, stdout=slave, stderr=slave, preexec_fn=die_with_parent)
print(json.dumps({{'child': child.pid, 'name': os.ttyname(slave)}}), flush=True)
sys.stdin.read()
"
    );
    let (_bystander, b) = in_private_devpts(&netns, &bystander);
    assert_eq!(a["name"], "/dev/pts/0");
    assert_eq!(b["name"], "/dev/pts/0", "both instances hand out index 0");

    let doc = scan_document();
    let pty_of = |pid: i64| match doc.fd(pid as i32, 0).target {
        FdTarget::PtySlave { pty } => pty,
        ref other => panic!("fd 0 of {pid} is {other:?}"),
    };
    let (pty_a, pty_b) =
        (pty_of(a["child"].as_i64().unwrap()), pty_of(b["child"].as_i64().unwrap()));
    assert_eq!((pty_a.index, pty_b.index), (0, 0));
    assert_ne!(pty_a.devpts, pty_b.devpts, "told apart by their devpts instance");

    let links = doc.stdio_links();
    let a_links: Vec<_> =
        links.iter().filter(|l| i64::from(l.proc.pid) == a["child"].as_i64().unwrap()).collect();
    assert!(!a_links.is_empty());
    assert!(
        a_links.iter().all(
            |l| l.via == Via::Pty && i64::from(l.relays[0].pid) == a["relay"].as_i64().unwrap()
        )
    );
    assert!(a_links.iter().any(|l| l.socket.inode == a["socket"].as_u64().unwrap()));
    // The bystander's own walk may reach whatever feeds its python parent's stdin (the test
    // process, which other tests give sockets); what must not happen is reaching the relay of the
    // other instance's pts/0.
    let b_child = b["child"].as_i64().unwrap();
    let crossed = links.iter().filter(|l| i64::from(l.proc.pid) == b_child).any(|l| {
        l.socket.inode == a["socket"].as_u64().unwrap()
            || l.relays.iter().any(|r| i64::from(r.pid) == a["relay"].as_i64().unwrap())
    });
    assert!(!crossed, "pts/0 of another instance is another pty");
}
