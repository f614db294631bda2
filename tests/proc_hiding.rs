//! A /proc that lies: `mount --bind EMPTYDIR /proc/PID` empties a process's entry for `ps`, `ss -p`
//! and anything reading the host's /proc. The agent reads a procfs instance of its own, so a
//! reverse shell hidden that way is still alerted, and the mount raises its own alert (MITRE
//! T1564) in whatever mount namespace it is made; the masks container runtimes put on /proc
//! files do not.

use crate::agent::Agent;
use crate::shells::is_incident_for;
use crate::util::{KillOnDrop, ScratchDir, bash_reverse_shell, prerequisites, run};
use serde_json::Value;
use std::io::{Read, Write};
use std::process::{Command, Stdio};

const RULE: &str = "process-hidden-by-mount-over-proc";

fn action(e: &Value) -> &str {
    e["event"]["action"].as_str().unwrap_or("")
}

fn is_mount_alert(e: &Value, pid: u32) -> bool {
    e["rule"]["id"][0] == RULE && e["sockwatch"]["mount"]["pid"] == pid
}

/// A bind mount over a process's /proc directory in the host's mount namespace, undone on drop.
struct Hiding {
    target: String,
}

impl Hiding {
    fn over(pid: u32, empty: &ScratchDir) -> Hiding {
        let target = format!("/proc/{pid}");
        run(Command::new("mount").arg("--bind").arg(&empty.path).arg(&target));
        Hiding { target }
    }
}

impl Drop for Hiding {
    fn drop(&mut self) {
        let _ = Command::new("umount").args(["-l", &self.target]).status();
    }
}

/// Sends a command through the reverse shell and waits for its answer: the shell works.
fn round_trip(peer: &mut std::net::TcpStream) {
    peer.set_read_timeout(Some(std::time::Duration::from_secs(10))).unwrap();
    peer.write_all(b"echo hidden-$((40+2))-shell\n").unwrap();
    let mut seen = Vec::new();
    let mut buf = [0u8; 4096];
    while !String::from_utf8_lossy(&seen).contains("hidden-42-shell") {
        let n = peer.read(&mut buf).expect("the shell answers");
        assert!(n > 0, "the shell hung up");
        seen.extend_from_slice(&buf[..n]);
    }
}

#[test]
fn a_reverse_shell_under_a_mount_over_its_proc_entry_is_alerted_and_so_is_the_mount() {
    if !prerequisites(&["bash", "mount", "umount"]) {
        return;
    }
    let (shell, mut peer, port) = bash_reverse_shell();
    let pid = shell.0.as_ref().unwrap().id();
    let empty = ScratchDir::new("proc-hiding");
    let hiding = Hiding::over(pid, &empty);
    round_trip(&mut peer);
    // Hidden indeed, for whoever reads the host's /proc: no fds, no command line.
    let listed = std::fs::read_dir(format!("/proc/{pid}")).unwrap().count();
    assert_eq!(listed, 0, "the mount empties the shell's /proc entry");

    let agent = Agent::start(&["--interval", "250ms"]);
    let started = agent.wait_for("agent_started", |e| action(e) == "agent_started");
    assert_eq!(started["sockwatch"]["procfs"]["private"], true, "{started}");
    let shell_alert = agent.wait_for("the hidden shell's incident", |e| {
        action(e) == "incident_opened" && is_incident_for(e, port)
    });
    assert_eq!(shell_alert["process"]["pid"], pid, "{shell_alert}");
    assert_eq!(shell_alert["process"]["executable"], "/usr/bin/bash", "{shell_alert}");

    let mount_alert = agent.wait_for("the mount's alert", |e| {
        action(e) == "incident_opened" && is_mount_alert(e, pid)
    });
    assert_eq!(mount_alert["event"]["kind"], "alert");
    assert_eq!(mount_alert["event"]["severity"], 4, "{mount_alert}");
    assert_eq!(mount_alert["threat"]["technique"]["id"][0], "T1564", "{mount_alert}");
    let mount = &mount_alert["sockwatch"]["mount"];
    assert_eq!(mount["mount_point"], format!("/proc/{pid}"), "{mount_alert}");
    assert_eq!(mount["root"], empty.path.to_str().unwrap(), "{mount_alert}");
    assert_eq!(mount["hidden_process_known"], true, "{mount_alert}");
    // The process it hides, as the agent's own procfs shows it.
    assert_eq!(mount_alert["process"]["pid"], pid, "{mount_alert}");
    assert_eq!(mount_alert["process"]["name"], "bash", "{mount_alert}");

    drop(hiding);
    let id = mount_alert["sockwatch"]["incident"]["id"].clone();
    agent.wait_for("the mount's incident resolved", |e| {
        action(e) == "incident_resolved" && e["sockwatch"]["incident"]["id"] == id
    });
    let (status, _, _) = agent.stop();
    assert!(status.success());
}

#[test]
fn a_mount_over_proc_pid_in_another_mount_namespace_is_alerted_and_runtime_masks_are_not() {
    if !prerequisites(&["unshare", "mount", "sleep"]) {
        return;
    }
    let agent = Agent::start(&["--interval", "250ms", "--heartbeat", "100ms"]);
    let target = KillOnDrop::new(Command::new("sleep").arg("60").spawn().unwrap());
    let pid = target.0.as_ref().unwrap().id();
    let empty = ScratchDir::new("proc-hiding-mntns");
    // A container's mount namespace: the runtime masks /proc/kcore and makes /proc/sys
    // read-only (as Docker does), and something hides a process.
    // (Which masked files exist depends on the kernel's configuration.)
    let script = format!(
        "masked=0; for f in /proc/kcore /proc/keys /proc/timer_list /proc/sched_debug; do \
         if [ -e $f ]; then mount --bind /dev/null $f && masked=$((masked+1)); fi; done; \
         [ $masked -gt 0 ] && mount --bind /proc/sys /proc/sys && \
         mount -o remount,bind,ro /proc/sys && mount --bind {} /proc/{pid} && \
         readlink /proc/self/ns/mnt && exec sleep 60",
        empty.path.display()
    );
    let mut container = KillOnDrop::new(
        Command::new("unshare")
            .args(["--mount", "--propagation", "private", "sh", "-c", &script])
            .stdout(Stdio::piped())
            .spawn()
            .unwrap(),
    );
    let mut line = String::new();
    let stdout = container.0.as_mut().unwrap().stdout.take().unwrap();
    std::io::BufRead::read_line(&mut std::io::BufReader::new(stdout), &mut line).unwrap();
    let mntns: u64 = line.trim().trim_start_matches("mnt:[").trim_end_matches(']').parse().unwrap();

    let alert = agent.wait_for("the mount's alert", |e| {
        action(e) == "incident_opened" && is_mount_alert(e, pid)
    });
    assert_eq!(alert["sockwatch"]["mount"]["mount_namespace"], mntns, "{alert}");
    assert_eq!(alert["process"]["pid"], pid, "{alert}");
    // Seen through the namespace's own process, not the host's.
    assert_eq!(alert["sockwatch"]["mount"]["seen_through_pid"], container.0.as_ref().unwrap().id());
    // A few more scans: the masks never alert. (The namespace also holds copies of whatever was
    // mounted over /proc/<pid> on the host when it was made, other tests' included: those are
    // alerted, rightly.)
    let seq = alert["event"]["sequence"].as_u64().unwrap();
    agent.wait_for("a later heartbeat", |e| {
        action(e) == "heartbeat" && e["event"]["sequence"].as_u64() > Some(seq)
    });
    let masks: Vec<Value> = agent
        .events()
        .into_iter()
        .filter(|e| e["rule"]["id"][0] == RULE)
        .filter(|e| e["sockwatch"]["mount"]["mount_namespace"] == mntns)
        .filter(|e| {
            let point = e["sockwatch"]["mount"]["mount_point"].as_str().unwrap_or_default();
            !point.trim_start_matches("/proc/").starts_with(|c: char| c.is_ascii_digit())
        })
        .collect();
    assert!(masks.is_empty(), "runtime masks alerted: {masks:?}");
    let (status, _, _) = agent.stop();
    assert!(status.success());
}

#[test]
fn without_a_procfs_of_its_own_the_agent_says_so_and_still_alerts_the_mount() {
    if !prerequisites(&["setpriv", "sleep", "mount"]) {
        return;
    }
    let target = KillOnDrop::new(Command::new("sleep").arg("60").spawn().unwrap());
    let pid = target.0.as_ref().unwrap().id();
    let empty = ScratchDir::new("proc-hiding-shared");
    let _hiding = Hiding::over(pid, &empty);
    let state = ScratchDir::new("proc-hiding-state");
    // Root without CAP_SYS_ADMIN: no procfs of its own.
    let wrapper = ["setpriv", "--bounding-set=-sys_admin", "--inh-caps=-sys_admin"];
    let agent = Agent::start_through(&wrapper, &state.path, &["--interval", "250ms"]);
    let notice =
        agent.wait_for("private_procfs_unavailable", |e| action(e) == "private_procfs_unavailable");
    assert_eq!(notice["event"]["severity"], 3, "{notice}");
    assert!(notice["sockwatch"]["error"].to_string().contains("Operation not permitted"));
    let alert = agent.wait_for("the mount's alert", |e| {
        action(e) == "incident_opened" && is_mount_alert(e, pid)
    });
    // Its /proc entry is the empty directory: the process behind it is not known.
    assert_eq!(alert["sockwatch"]["mount"]["hidden_process_known"], false, "{alert}");
    let (status, _, _) = agent.stop();
    assert!(status.success());
}
