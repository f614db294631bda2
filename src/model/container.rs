//! Which container a process runs in: what its cgroup path claims, and what the runtime's own
//! state files say about that container. A cgroup path is a claim, not a proof: an unprivileged
//! user with a delegated cgroup subtree (`user@1000.service`) can create
//! `docker-<any id>.scope` inside it. A container's name, image and pod are therefore only
//! trusted when the process shares the mount namespace of the container's init as the runtime
//! recorded it (`Container::verified`), and rules see them only then.

use super::RawText;
use serde::{Deserialize, Serialize};

/// The runtime a container belongs to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Runtime {
    Docker,
    Containerd,
    CriO,
    Podman,
    Lxc,
    SystemdNspawn,
}

impl Runtime {
    /// The name events and rules use.
    pub fn name(self) -> &'static str {
        match self {
            Runtime::Docker => "docker",
            Runtime::Containerd => "containerd",
            Runtime::CriO => "cri-o",
            Runtime::Podman => "podman",
            Runtime::Lxc => "lxc",
            Runtime::SystemdNspawn => "systemd-nspawn",
        }
    }
}

/// A Kubernetes pod's quality-of-service class, from its cgroup slice.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Qos {
    Guaranteed,
    Burstable,
    BestEffort,
}

impl Qos {
    pub fn name(self) -> &'static str {
        match self {
            Qos::Guaranteed => "guaranteed",
            Qos::Burstable => "burstable",
            Qos::BestEffort => "besteffort",
        }
    }
}

/// What a cgroup path says about the container a process is in.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct CgroupClaim {
    /// The container id (64 hex digits) or, for lxc and systemd-nspawn, the container's name.
    pub id: String,
    /// `None` when the layout does not tell (a bare id under `kubepods/…/pod<uid>/`).
    pub runtime: Option<Runtime>,
    /// The Kubernetes pod's uid, when the path runs through a `kubepods` pod slice.
    pub pod_uid: Option<String>,
    pub qos: Option<Qos>,
}

/// Where a container's name, image and pod were read.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MetadataSource {
    /// Nothing beyond the cgroup path: no state file was found for the id.
    Cgroup,
    /// containerd's task bundle (`config.json` with CRI annotations, `init.pid`).
    ContainerdBundle,
    /// Docker's `config.v2.json`.
    DockerConfig,
    /// containers/storage (CRI-O, podman): `userdata/config.json` and `userdata/pidfile`.
    ContainersStorage,
    /// systemd-machined's record of a machine (`/run/systemd/machines/NAME`).
    Machined,
}

impl MetadataSource {
    pub fn name(self) -> &'static str {
        match self {
            MetadataSource::Cgroup => "cgroup",
            MetadataSource::ContainerdBundle => "containerd_bundle",
            MetadataSource::DockerConfig => "docker_config",
            MetadataSource::ContainersStorage => "containers_storage",
            MetadataSource::Machined => "machined",
        }
    }
}

/// Whether the process was shown to be in the container its cgroup names.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Verification {
    /// The process shares the mount namespace of the container's init, as the runtime's state
    /// names it (and that init started before the state was written, so it is no recycled pid).
    InitNamespace,
    /// No state file names the container's init: only the cgroup path speaks for it.
    NoState,
    /// The init the state names is gone, or is a later process under a recycled pid.
    InitGone,
    /// The process is not in the init's mount namespace: its cgroup claims a container it is
    /// not in.
    NamespaceDiffers,
}

impl Verification {
    pub fn name(self) -> &'static str {
        match self {
            Verification::InitNamespace => "init_namespace",
            Verification::NoState => "no_state",
            Verification::InitGone => "init_gone",
            Verification::NamespaceDiffers => "namespace_differs",
        }
    }
}

/// A Kubernetes pod, as far as the host knows it.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Pod {
    pub uid: Option<RawText>,
    pub name: Option<RawText>,
    pub namespace: Option<RawText>,
    pub qos: Option<Qos>,
}

/// A container and what is known of it. Names and images come from files a container's owner
/// chose: hostile text like anything from /proc.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Container {
    pub id: RawText,
    pub runtime: Option<Runtime>,
    pub name: Option<RawText>,
    /// The image as the container was created from it (`nginx:1.25`, `docker.io/library/…`).
    pub image: Option<RawText>,
    /// The image's id or digest, when the state records it.
    pub image_id: Option<RawText>,
    pub pod: Option<Pod>,
    pub source: MetadataSource,
    /// Name and image (and, in a pod, the pod's name and namespace) are all known.
    pub complete: bool,
    pub verification: Verification,
}

impl Container {
    /// The process is proven to be in this container: its name, image and pod can be trusted.
    pub fn verified(&self) -> bool {
        self.verification == Verification::InitNamespace
    }
}

/// Where the runtimes keep the state files that name containers, their images and pods
/// (`[containers]` in the config). Read as files: no runtime socket is ever opened.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ContainerSources {
    /// containerd roots, holding `io.containerd.runtime.v2.task/NAMESPACE/ID/`.
    pub containerd: Vec<std::path::PathBuf>,
    /// Docker data roots, holding `containers/ID/config.v2.json`.
    pub docker: Vec<std::path::PathBuf>,
    /// containers/storage roots (CRI-O, podman), holding `overlay-containers/ID/userdata/`.
    pub containers_storage: Vec<std::path::PathBuf>,
    /// systemd-machined's records, one file per machine.
    pub machines: Option<std::path::PathBuf>,
}

impl Default for ContainerSources {
    fn default() -> Self {
        let paths = |list: &[&str]| list.iter().map(std::path::PathBuf::from).collect();
        ContainerSources {
            containerd: paths(&["/run/containerd", "/run/k3s/containerd"]),
            docker: paths(&["/var/lib/docker"]),
            containers_storage: paths(&["/run/containers/storage", "/var/lib/containers/storage"]),
            machines: Some("/run/systemd/machines".into()),
        }
    }
}

/// The container a cgroup path places a process in: the innermost component that names one (a
/// systemd service running inside a container, podman's `/container` leaf and nested engines
/// all sit below it), with the Kubernetes pod slice above it if any. Layouts: docker
/// (`docker-ID.scope`, `/docker/ID`), containerd (`cri-containerd-ID.scope`,
/// `…:cri-containerd:ID`), CRI-O (`crio-ID.scope`, `crio-ID`), podman (`libpod-ID.scope`,
/// `libpod-ID`), a bare id (cgroupfs drivers), lxc (`lxc.payload.NAME`, `/lxc/NAME`) and
/// systemd-nspawn (`machine.slice/machine-NAME.scope`). Runtime monitors (`crio-conmon-ID`,
/// `libpod-conmon-ID`, `lxc.monitor.NAME`) are not the container.
pub fn claim_of_cgroup(path: &[u8]) -> Option<CgroupClaim> {
    let path = std::str::from_utf8(path).ok()?;
    let components: Vec<&str> = path.split('/').filter(|c| !c.is_empty()).collect();
    let (at, id, runtime) = components.iter().enumerate().rev().find_map(|(at, c)| {
        let parent = at.checked_sub(1).map(|p| components[p]);
        container_component(c, parent).map(|(id, runtime)| (at, id, runtime))
    })?;
    let (pod_uid, qos) = components[..at]
        .iter()
        .enumerate()
        .rev()
        .find_map(|(i, c)| pod_component(c, &components[..i]))
        .map_or((None, None), |(uid, qos)| (Some(uid), Some(qos)));
    Some(CgroupClaim { id, runtime, pod_uid, qos })
}

fn container_component(component: &str, parent: Option<&str>) -> Option<(String, Option<Runtime>)> {
    let id = |s: &str| is_container_id(s).then(|| s.to_string());
    // containerd's systemd cgroup names for cgroupfs hosts: `SLICE:cri-containerd:ID`.
    if let Some((_, rest)) = component.split_once(':') {
        let (prefix, rest_id) = rest.split_once(':')?;
        let runtime = match prefix {
            "cri-containerd" => Runtime::Containerd,
            "crio" => Runtime::CriO,
            "docker" => Runtime::Docker,
            _ => return None,
        };
        return id(rest_id).map(|i| (i, Some(runtime)));
    }
    let prefixed = [
        ("docker-", Runtime::Docker),
        ("cri-containerd-", Runtime::Containerd),
        ("crio-", Runtime::CriO),
        ("libpod-", Runtime::Podman),
    ];
    for (prefix, runtime) in prefixed {
        if let Some(rest) = component.strip_prefix(prefix) {
            let rest = rest.strip_suffix(".scope").unwrap_or(rest);
            return id(rest).map(|i| (i, Some(runtime)));
        }
    }
    if is_container_id(component) {
        let runtime = match parent {
            Some("docker") => Some(Runtime::Docker),
            Some("libpod_parent") => Some(Runtime::Podman),
            _ => None,
        };
        return Some((component.to_string(), runtime));
    }
    if let Some(name) = component.strip_prefix("lxc.payload.")
        && !name.is_empty()
    {
        return Some((name.to_string(), Some(Runtime::Lxc)));
    }
    if parent == Some("lxc") || parent == Some("lxc.payload") {
        return Some((component.to_string(), Some(Runtime::Lxc)));
    }
    if parent == Some("machine.slice")
        && let Some(escaped) = component.strip_prefix("machine-")
        && let Some(escaped) = escaped.strip_suffix(".scope")
    {
        let name = systemd_unescape(escaped);
        // libvirt's virtual machines live here too: their qemu is no container.
        if !name.is_empty() && !name.starts_with("qemu-") {
            return Some((name, Some(Runtime::SystemdNspawn)));
        }
    }
    None
}

/// A pod slice (`kubepods-QOS-podUID.slice`, `kubepods-podUID.slice`) or a cgroupfs pod
/// directory (`kubepods/QOS/podUID`, `kubepods/podUID`). Guaranteed pods sit right under
/// kubepods. The systemd form writes the uid's dashes as underscores.
fn pod_component(component: &str, above: &[&str]) -> Option<(String, Qos)> {
    let qos_named = |name: &str| match name {
        "besteffort" => Some(Qos::BestEffort),
        "burstable" => Some(Qos::Burstable),
        _ => None,
    };
    if let Some(rest) = component.strip_prefix("kubepods-")
        && let Some(rest) = rest.strip_suffix(".slice")
    {
        let (qos, uid) = match rest.split_once("-pod") {
            Some((qos, uid)) => (qos_named(qos)?, uid),
            None => (Qos::Guaranteed, rest.strip_prefix("pod")?),
        };
        let uid = uid.replace('_', "-");
        return is_pod_uid(&uid).then_some((uid, qos));
    }
    let uid = component.strip_prefix("pod")?;
    if !is_pod_uid(uid) {
        return None;
    }
    match above {
        [.., "kubepods"] => Some((uid.to_string(), Qos::Guaranteed)),
        [.., "kubepods", qos] => Some((uid.to_string(), qos_named(qos)?)),
        _ => None,
    }
}

fn is_container_id(s: &str) -> bool {
    s.len() == 64 && s.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

/// A UUID as Kubernetes writes pod uids (lowercase, dashed).
fn is_pod_uid(s: &str) -> bool {
    let groups: Vec<&str> = s.split('-').collect();
    groups.iter().map(|g| g.len()).eq([8, 4, 4, 4, 12])
        && groups.iter().all(|g| g.bytes().all(|b| b.is_ascii_hexdigit()))
}

/// systemd's unit-name escaping: `\xNN` for a byte, `-` for `/`. A name that does not decode to
/// UTF-8 is kept escaped.
fn systemd_unescape(escaped: &str) -> String {
    let bytes = escaped.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut at = 0;
    while at < bytes.len() {
        let hex = bytes.get(at + 2..at + 4).and_then(|h| std::str::from_utf8(h).ok());
        match (bytes[at], bytes.get(at + 1), hex.and_then(|h| u8::from_str_radix(h, 16).ok())) {
            (b'\\', Some(b'x'), Some(byte)) => {
                out.push(byte);
                at += 4;
            }
            (b'-', ..) => {
                out.push(b'/');
                at += 1;
            }
            (byte, ..) => {
                out.push(byte);
                at += 1;
            }
        }
    }
    String::from_utf8(out).unwrap_or_else(|_| escaped.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const ID: &str = "3f4e8a2b9c1d0e7f6a5b4c3d2e1f0a9b8c7d6e5f4a3b2c1d0e9f8a7b6c5d4e3f";
    const UID: &str = "8d1f2c3a-4b5e-6f70-8192-a3b4c5d6e7f8";

    /// (id, runtime, pod uid, QoS class).
    type Claimed = (String, Option<&'static str>, Option<String>, Option<Qos>);

    fn claim(path: &str) -> Option<Claimed> {
        claim_of_cgroup(path.as_bytes())
            .map(|c| (c.id, c.runtime.map(Runtime::name), c.pod_uid, c.qos))
    }

    #[test]
    fn every_runtime_layout_names_its_container() {
        let cases = [
            (format!("/system.slice/docker-{ID}.scope"), "docker"),
            (format!("/docker/{ID}"), "docker"),
            (format!("/system.slice/cri-containerd-{ID}.scope"), "containerd"),
            (format!("/machine.slice/libpod-{ID}.scope/container"), "podman"),
            (format!("/machine.slice/libpod-{ID}.scope"), "podman"),
            (format!("/libpod_parent/{ID}"), "podman"),
            (format!("/system.slice/crio-{ID}.scope"), "cri-o"),
            (format!("/crio-{ID}"), "cri-o"),
            (
                format!("/system.slice/containerd.service/kubepods-pod1.slice:cri-containerd:{ID}"),
                "containerd",
            ),
            // A service inside a container that runs systemd.
            (format!("/system.slice/docker-{ID}.scope/system.slice/nginx.service"), "docker"),
        ];
        for (path, runtime) in cases {
            let (id, found, ..) = claim(&path).unwrap_or_else(|| panic!("{path}"));
            assert_eq!((id.as_str(), found), (ID, Some(runtime)), "{path}");
        }
        assert_eq!(claim("/lxc.payload.web1").unwrap().0, "web1");
        assert_eq!(claim("/lxc/web1/init.scope").unwrap().0, "web1");
        let nspawn = claim("/machine.slice/machine-build\\x2dbox.scope/payload").unwrap();
        assert_eq!((nspawn.0.as_str(), nspawn.1), ("build-box", Some("systemd-nspawn")));
    }

    #[test]
    fn pods_give_uid_and_qos() {
        let underscored = UID.replace('-', "_");
        let systemd = format!(
            "/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod{underscored}.slice/cri-containerd-{ID}.scope"
        );
        assert_eq!(
            claim(&systemd),
            Some((ID.into(), Some("containerd"), Some(UID.into()), Some(Qos::BestEffort)))
        );
        let guaranteed = format!("/kubepods.slice/kubepods-pod{underscored}.slice/crio-{ID}.scope");
        assert_eq!(claim(&guaranteed).unwrap().3, Some(Qos::Guaranteed));
        let cgroupfs = format!("/kubepods/burstable/pod{UID}/{ID}");
        assert_eq!(
            claim(&cgroupfs),
            Some((ID.into(), None, Some(UID.into()), Some(Qos::Burstable)))
        );
        assert_eq!(claim(&format!("/kubepods/pod{UID}/{ID}")).unwrap().3, Some(Qos::Guaranteed));
    }

    #[test]
    fn hosts_monitors_and_look_alikes_are_no_container() {
        for path in [
            "/",
            "/init.scope",
            "/user.slice/user-1000.slice/session-3.scope",
            "/system.slice/containerd.service",
            "/system.slice/docker.service",
            &format!("/machine.slice/libpod-conmon-{ID}.scope"),
            &format!("/system.slice/crio-conmon-{ID}.scope"),
            "/lxc.monitor.web1",
            "/machine.slice/machine-qemu\\x2d1\\x2dvm.scope",
            // Too short, upper case, one digit too many.
            "/system.slice/docker-3f4e8a2b.scope",
            &format!("/system.slice/docker-{}.scope", ID.to_uppercase()),
            &format!("/system.slice/docker-{ID}0.scope"),
        ] {
            assert_eq!(claim(path), None, "{path}");
        }
    }

    #[test]
    fn the_innermost_container_wins() {
        let inner = "a".repeat(64);
        let path = format!("/docker/{ID}/docker/{inner}");
        assert_eq!(claim(&path).unwrap().0, inner);
    }

    #[test]
    fn systemd_escapes_decode() {
        assert_eq!(systemd_unescape(r"a\x2db-c"), "a-b/c");
        assert_eq!(systemd_unescape(r"\x"), r"\x");
        assert_eq!(systemd_unescape(r"\xff"), r"\xff");
    }

    proptest! {
        #[test]
        fn any_path_parses_without_panic(path in proptest::collection::vec(any::<u8>(), 0..300)) {
            let _ = claim_of_cgroup(&path);
        }

        #[test]
        fn a_claimed_id_is_a_component_of_the_path(
            parts in proptest::collection::vec("[a-z0-9.:_\\\\-]{0,70}", 0..6)
        ) {
            let path = format!("/{}", parts.join("/"));
            if let Some(claim) = claim_of_cgroup(path.as_bytes()) {
                prop_assert!(path.contains(&claim.id) || claim.runtime == Some(Runtime::SystemdNspawn));
            }
        }
    }
}
