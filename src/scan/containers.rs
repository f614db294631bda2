//! Container identity for every process: the container its cgroup path claims (parsed once per
//! distinct path), what the runtime's state files say of that container (read once per
//! container, again when the file changes), and whether the process really is in it. Files
//! only, never a runtime socket: nothing here can hang on a dead daemon, and a container
//! started before the agent is named like any other.
//!
//! The proof is the mount namespace. The state file names the container's init; a process
//! that shares that init's mount namespace is in the container, since joining another mount
//! namespace takes CAP_SYS_ADMIN over its owner. A process in a cgroup it named after someone
//! else's container (any user can, in a delegated subtree) is not, and rules never see that
//! container's name, image or pod for it.

use super::parse::{
    ContainerRecord, parse_boot_time_ms, parse_docker_config, parse_machine, parse_oci_config,
    parse_pid, parse_stat, parse_storage_containers,
};
use super::procfs::{namespace_inode, open_dir, read_record};
use crate::model::{
    CgroupClaim, Container, ContainerSources, MetadataSource, Pod, Process, RawText, Runtime,
    Verification, claim_of_cgroup,
};
use rustc_hash::FxHashMap;
use rustix::fd::{AsFd, BorrowedFd};
use std::io::Read as _;
use std::os::unix::fs::{MetadataExt as _, OpenOptionsExt as _};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// A state file larger than this is not read (a `config.v2.json` with a huge environment).
const STATE_FILE_CAP: u64 = 4 << 20;
/// podman's list of every container it knows.
const STORAGE_LIST_CAP: u64 = 16 << 20;
/// How often a known container's state file is checked for a change (a restart names a new
/// init), and how often a container with none is looked for again.
const RECHECK_FOUND: Duration = Duration::from_secs(10);
const RECHECK_MISSING: Duration = Duration::from_secs(5);
/// A process whose mount namespace is not its container's init's brings the check forward (the
/// container may have restarted), but not more often than this.
const RECHECK_DIFFERING: Duration = Duration::from_secs(1);

/// A state file's (inode, size, mtime seconds, mtime nanoseconds): unchanged, nothing to re-read.
type FileStamp = (u64, u64, i64, i64);

/// A state file as read.
struct StateFile {
    bytes: Vec<u8>,
    stamp: FileStamp,
    mtime_ms: i64,
}

/// What the runtime's state says of one container, and its init as found in /proc.
struct State {
    record: ContainerRecord,
    source: MetadataSource,
    runtime: Option<Runtime>,
    /// The main state file's.
    stamp: FileStamp,
    init: Init,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Init {
    /// The init's mount namespace.
    Alive(u64),
    /// Named but gone, or a later process under its pid.
    Gone,
    /// The state names no init.
    Unnamed,
}

struct Known {
    state: Option<State>,
    /// `None` until the state is first looked for.
    checked_at: Option<Instant>,
    seen_at_scan: u64,
    /// Identities handed out, one per verification outcome, shared by every process.
    shown: Vec<Arc<Container>>,
}

impl Known {
    /// Whether a process in mount namespace `mntns` is shown to be in this container.
    fn verification(&self, mntns: Option<u64>) -> Verification {
        match self.state.as_ref().map(|s| s.init) {
            None | Some(Init::Unnamed) => Verification::NoState,
            Some(Init::Gone) => Verification::InitGone,
            Some(Init::Alive(init)) if mntns == Some(init) => Verification::InitNamespace,
            Some(Init::Alive(_)) => Verification::NamespaceDiffers,
        }
    }

    /// Whether the state should be looked at again for a process in `mntns`.
    fn due(&self, mntns: Option<u64>, now: Instant) -> bool {
        let Some(checked_at) = self.checked_at else { return true };
        let wait = match (&self.state, self.verification(mntns)) {
            (None, _) => RECHECK_MISSING,
            (Some(_), Verification::NamespaceDiffers | Verification::InitGone) => RECHECK_DIFFERING,
            (Some(_), _) => RECHECK_FOUND,
        };
        now.duration_since(checked_at) >= wait
    }
}

/// A cgroup path's claim, and the last full scan a process had that path.
struct Claimed {
    claim: Option<Arc<CgroupClaim>>,
    seen_at_scan: u64,
}

pub(crate) struct Containers {
    reader: StateReader,
    claims: FxHashMap<RawText, Claimed>,
    known: FxHashMap<String, Known>,
    /// Full scans begun: what neither was claimed in the last one is forgotten.
    scan: u64,
}

/// Reads what the runtimes' state files say of a container, and finds its init in /proc.
struct StateReader {
    sources: ContainerSources,
    boot_time_ms: Option<u64>,
    ticks_per_second: u64,
    buf: Vec<u8>,
}

impl Containers {
    pub fn new(proc_dir: BorrowedFd<'_>) -> Self {
        let mut buf = Vec::new();
        let boot_time_ms = read_record(proc_dir, "stat", &mut buf, 1 << 20)
            .ok()
            .and_then(|_| parse_boot_time_ms(&buf));
        Containers {
            reader: StateReader {
                sources: ContainerSources::default(),
                boot_time_ms,
                ticks_per_second: rustix::param::clock_ticks_per_second().max(1),
                buf,
            },
            claims: FxHashMap::default(),
            known: FxHashMap::default(),
            scan: 0,
        }
    }

    /// New sources forget what the old ones said.
    pub fn set_sources(&mut self, sources: ContainerSources) {
        if sources != self.reader.sources {
            self.reader.sources = sources;
            self.known.clear();
        }
    }

    /// Names the container of every process in a full scan, then forgets containers and cgroup
    /// paths no process claims any more.
    pub fn identify_all(&mut self, proc_dir: BorrowedFd<'_>, processes: &mut [Process]) {
        self.scan += 1;
        for process in processes.iter_mut() {
            self.identify(proc_dir, process);
        }
        let scan = self.scan;
        self.known.retain(|_, k| k.seen_at_scan == scan);
        self.claims.retain(|_, c| c.seen_at_scan == scan);
    }

    /// Names the container of one process (`None` on the host).
    pub fn identify(&mut self, proc_dir: BorrowedFd<'_>, process: &mut Process) {
        process.container = None;
        let Some(cgroup) = &process.cgroup else { return };
        let scan = self.scan;
        let claimed = match self.claims.get_mut(cgroup) {
            Some(claimed) => claimed,
            None => self.claims.entry(cgroup.clone()).or_insert(Claimed {
                claim: claim_of_cgroup(cgroup.as_bytes()).map(Arc::new),
                seen_at_scan: scan,
            }),
        };
        claimed.seen_at_scan = scan;
        let Some(claim) = claimed.claim.clone() else { return };
        let known = self.known.entry(claim.id.clone()).or_insert_with(|| Known {
            state: None,
            checked_at: None,
            seen_at_scan: scan,
            shown: Vec::new(),
        });
        known.seen_at_scan = scan;
        let now = Instant::now();
        if known.due(process.mntns, now) {
            let previous = known.state.as_ref().map(|s| s.stamp);
            known.checked_at = Some(now);
            if let Found::New(state) = self.reader.read_state(proc_dir, &claim, previous) {
                known.state = state.map(|s| *s);
                known.shown.clear();
            }
        }
        let verification = known.verification(process.mntns);
        let shown = known.shown.iter().find(|c| c.verification == verification).cloned();
        process.container = Some(shown.unwrap_or_else(|| {
            let container = Arc::new(describe(&claim, known.state.as_ref(), verification));
            known.shown.push(container.clone());
            container
        }));
    }
}

impl StateReader {
    /// The state of the claimed container, from the first source that has it.
    fn read_state(
        &mut self,
        proc_dir: BorrowedFd<'_>,
        claim: &CgroupClaim,
        previous: Option<FileStamp>,
    ) -> Found {
        let id = claim.id.as_str();
        let sources = &self.sources;
        let containerd = || containerd_bundle(&sources.containerd, id);
        let docker = || {
            sources
                .docker
                .iter()
                .map(|root| root.join("containers").join(id).join("config.v2.json"))
        };
        let storage = || {
            sources
                .containers_storage
                .iter()
                .map(|root| root.join("overlay-containers").join(id).join("userdata"))
        };
        let mut candidates: Vec<(MetadataSource, PathBuf)> = Vec::new();
        let add_containerd = |c: &mut Vec<_>| {
            c.extend(containerd().into_iter().map(|p| (MetadataSource::ContainerdBundle, p)))
        };
        match claim.runtime {
            Some(Runtime::Docker) => {
                candidates.extend(docker().map(|p| (MetadataSource::DockerConfig, p)))
            }
            Some(Runtime::Containerd) => add_containerd(&mut candidates),
            Some(Runtime::CriO | Runtime::Podman) => {
                candidates.extend(storage().map(|p| (MetadataSource::ContainersStorage, p)))
            }
            Some(Runtime::SystemdNspawn) => {
                // A name with a path in it is no machine name (`-` unescapes to `/`).
                let plain = !id.contains('/') && id != "." && id != "..";
                if let (Some(dir), true) = (&sources.machines, plain) {
                    candidates.push((MetadataSource::Machined, dir.join(id)));
                }
            }
            Some(Runtime::Lxc) => {}
            None => {
                add_containerd(&mut candidates);
                candidates.extend(docker().map(|p| (MetadataSource::DockerConfig, p)));
                candidates.extend(storage().map(|p| (MetadataSource::ContainersStorage, p)));
            }
        }
        for (source, path) in candidates {
            let main = match source {
                MetadataSource::ContainerdBundle | MetadataSource::ContainersStorage => {
                    path.join("config.json")
                }
                _ => path.clone(),
            };
            let Ok(StateFile { bytes, stamp, mtime_ms }) = read_state_file(&main, STATE_FILE_CAP)
            else {
                continue;
            };
            if previous == Some(stamp) {
                return Found::Unchanged;
            }
            let parsed = match source {
                MetadataSource::DockerConfig => parse_docker_config(&bytes).ok(),
                MetadataSource::Machined => parse_machine(&bytes),
                _ => parse_oci_config(&bytes).ok(),
            };
            let Some(mut record) = parsed else { continue };
            let pid_file = match source {
                MetadataSource::ContainerdBundle => Some(path.join("init.pid")),
                MetadataSource::ContainersStorage => Some(path.join("pidfile")),
                _ => None,
            };
            if let Some(pid_file) = pid_file {
                record.init_pid =
                    read_state_file(&pid_file, 64).ok().and_then(|file| parse_pid(&file.bytes));
            }
            let runtime = claim.runtime.or(match source {
                MetadataSource::ContainerdBundle => Some(Runtime::Containerd),
                MetadataSource::DockerConfig => Some(Runtime::Docker),
                MetadataSource::ContainersStorage if record.pod_name.is_some() => {
                    Some(Runtime::CriO)
                }
                MetadataSource::ContainersStorage => Some(Runtime::Podman),
                _ => None,
            });
            if runtime == Some(Runtime::Podman) && record.name.is_none() {
                self.podman_names(&path, id, &mut record);
            }
            let init = match record.init_pid {
                None => Init::Unnamed,
                Some(pid) => self.init(proc_dir, pid, mtime_ms),
            };
            return Found::New(Some(Box::new(State { record, source, runtime, stamp, init })));
        }
        Found::New(None)
    }

    /// The name and image podman keeps in containers/storage's list, beside `userdata`'s root.
    fn podman_names(&self, userdata: &Path, id: &str, record: &mut ContainerRecord) {
        let Some(list) =
            userdata.parent().and_then(Path::parent).map(|d| d.join("containers.json"))
        else {
            return;
        };
        let Ok(file) = read_state_file(&list, STORAGE_LIST_CAP) else { return };
        if let Ok(Some(found)) = parse_storage_containers(&file.bytes, id) {
            record.name = record.name.take().or(found.name);
            record.image = record.image.take().or(found.image);
            record.image_id = record.image_id.take().or(found.image_id);
        }
    }

    /// The init a state file names: alive when its pid runs a process that started before the
    /// file was last written (a later one is a stranger under a recycled pid).
    fn init(&mut self, proc_dir: BorrowedFd<'_>, pid: u32, state_mtime_ms: i64) -> Init {
        let Ok(dir) = open_dir(proc_dir, &pid.to_string()) else { return Init::Gone };
        let Ok(_) = read_record(dir.as_fd(), "stat", &mut self.buf, 4096) else {
            return Init::Gone;
        };
        let Ok(stat) = parse_stat(&self.buf) else { return Init::Gone };
        if let Some(boot) = self.boot_time_ms {
            let started_ms = boot + stat.start_ticks * 1000 / self.ticks_per_second;
            // btime is whole seconds: a second's grace.
            if started_ms as i64 > state_mtime_ms + 1000 {
                return Init::Gone;
            }
        }
        namespace_inode(dir.as_fd(), "ns/mnt").map_or(Init::Gone, Init::Alive)
    }
}

enum Found {
    Unchanged,
    New(Option<Box<State>>),
}

/// Every `io.containerd.runtime.v2.task/NAMESPACE/ID` directory under the roots (containerd
/// namespaces: `k8s.io` for Kubernetes, `moby` for docker, `default` for nerdctl and ctr).
fn containerd_bundle(roots: &[PathBuf], id: &str) -> Vec<PathBuf> {
    let mut bundles = Vec::new();
    for root in roots {
        let tasks = root.join("io.containerd.runtime.v2.task");
        let Ok(namespaces) = std::fs::read_dir(&tasks) else { continue };
        for namespace in namespaces.flatten() {
            let bundle = namespace.path().join(id);
            if bundle.is_dir() {
                bundles.push(bundle);
            }
        }
    }
    bundles
}

/// A state file's bytes, its (inode, size, mtime) and its mtime in milliseconds: a regular file
/// (no link followed at the end, no FIFO waited on) of at most `cap` bytes.
fn read_state_file(path: &Path, cap: u64) -> std::io::Result<StateFile> {
    let mut file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK | libc::O_NOCTTY)
        .open(path)?;
    let meta = file.metadata()?;
    if !meta.is_file() || meta.len() > cap {
        return Err(std::io::Error::other("not a regular file of bounded size"));
    }
    let mut bytes = Vec::with_capacity(meta.len() as usize);
    file.by_ref().take(cap).read_to_end(&mut bytes)?;
    let stamp = (meta.ino(), meta.len(), meta.mtime(), meta.mtime_nsec());
    let mtime_ms = meta.mtime() * 1000 + meta.mtime_nsec() / 1_000_000;
    Ok(StateFile { bytes, stamp, mtime_ms })
}

/// The identity shown for a process: the claim, and the state's names when there is one.
fn describe(claim: &CgroupClaim, state: Option<&State>, verification: Verification) -> Container {
    let text = |s: &Option<String>| s.as_deref().map(RawText::from);
    let empty = ContainerRecord::default();
    let record = state.map_or(&empty, |s| &s.record);
    let runtime = claim.runtime.or(state.and_then(|s| s.runtime));
    let pod_uid = record.pod_uid.clone().or(claim.pod_uid.clone());
    let pod = (pod_uid.is_some() || record.pod_name.is_some()).then(|| Pod {
        uid: text(&pod_uid),
        name: text(&record.pod_name),
        namespace: text(&record.pod_namespace),
        qos: claim.qos,
    });
    let nameless_runtime = matches!(runtime, Some(Runtime::Lxc | Runtime::SystemdNspawn));
    let complete = match (&record.name, &record.image) {
        (Some(_), Some(_)) => true,
        (Some(_), None) => nameless_runtime,
        _ => nameless_runtime && state.is_none() && claim.runtime.is_some(),
    } && pod.as_ref().is_none_or(|p| p.name.is_some() && p.namespace.is_some());
    // An lxc or nspawn container is named by its cgroup: the claim is its name.
    let name =
        text(&record.name).or_else(|| nameless_runtime.then(|| RawText::from(claim.id.as_str())));
    Container {
        id: RawText::from(claim.id.as_str()),
        runtime,
        name,
        image: text(&record.image),
        image_id: text(&record.image_id),
        pod,
        source: state.map_or(MetadataSource::Cgroup, |s| s.source),
        complete,
        verification,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ID: &str = "3f4e8a2b9c1d0e7f6a5b4c3d2e1f0a9b8c7d6e5f4a3b2c1d0e9f8a7b6c5d4e3f";

    fn claim(runtime: Option<Runtime>) -> CgroupClaim {
        CgroupClaim { id: ID.into(), runtime, pod_uid: None, qos: None }
    }

    #[test]
    fn completeness_is_stated_not_guessed() {
        let bare = describe(&claim(Some(Runtime::Docker)), None, Verification::NoState);
        assert_eq!((bare.complete, bare.source, bare.name), (false, MetadataSource::Cgroup, None));
        let record = ContainerRecord {
            name: Some("web".into()),
            image: Some("nginx".into()),
            ..Default::default()
        };
        let state = State {
            record,
            source: MetadataSource::DockerConfig,
            runtime: Some(Runtime::Docker),
            stamp: (1, 2, 3, 4),
            init: Init::Alive(9),
        };
        let full = describe(&claim(None), Some(&state), Verification::InitNamespace);
        assert!(full.complete && full.verified());
        assert_eq!(full.runtime, Some(Runtime::Docker));
        // In a pod, the pod's name and namespace are part of it.
        let mut in_pod = claim(Some(Runtime::Containerd));
        in_pod.pod_uid = Some("u".into());
        assert!(!describe(&in_pod, Some(&state), Verification::InitNamespace).complete);
        let lxc = describe(&claim(Some(Runtime::Lxc)), None, Verification::NoState);
        assert_eq!(lxc.name.as_ref().map(|n| n.to_string()), Some(ID.to_string()));
    }

    #[test]
    fn state_files_must_be_small_regular_files() {
        let dir = std::env::temp_dir().join(format!("sockwatch-state-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("config.json");
        std::fs::write(&file, b"{}").unwrap();
        assert_eq!(read_state_file(&file, 64).unwrap().bytes, b"{}");
        assert!(read_state_file(&file, 1).is_err());
        let link = dir.join("link.json");
        let _ = std::fs::remove_file(&link);
        std::os::unix::fs::symlink(&file, &link).unwrap();
        assert!(read_state_file(&link, 64).is_err(), "a link at the end is not followed");
        assert!(read_state_file(&dir, 64).is_err());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
