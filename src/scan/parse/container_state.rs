//! What container runtimes write about a container in their state directories: an OCI bundle's
//! `config.json` annotations (containerd's CRI plugin, CRI-O), Docker's `config.v2.json`,
//! podman's `containers.json` and systemd-machined's machine records. Written by root-owned
//! daemons, but filled with names and images a container's creator chose: every string stays
//! hostile text, and a file of the wrong shape is an error, never a panic.

use serde::Deserialize;
use std::collections::HashMap;

/// What a state file says of one container. Each field is absent when the file does not say.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ContainerRecord {
    pub name: Option<String>,
    pub image: Option<String>,
    pub image_id: Option<String>,
    pub pod_name: Option<String>,
    pub pod_namespace: Option<String>,
    pub pod_uid: Option<String>,
    /// The container's init as the runtime started it, when the file names it.
    pub init_pid: Option<u32>,
}

#[derive(Deserialize)]
struct OciConfig {
    #[serde(default)]
    annotations: Option<HashMap<String, String>>,
}

/// An OCI runtime `config.json`: containerd's CRI plugin annotates it with
/// `io.kubernetes.cri.*`, CRI-O with `io.kubernetes.cri-o.*` and `io.kubernetes.pod.*`; nerdctl
/// with `nerdctl/name`. A sandbox (pause) container is named after its pod.
pub fn parse_oci_config(json: &[u8]) -> Result<ContainerRecord, serde_json::Error> {
    let config: OciConfig = serde_json::from_slice(json)?;
    let annotations = config.annotations.unwrap_or_default();
    let get = |keys: &[&str]| {
        keys.iter().find_map(|k| annotations.get(*k)).filter(|v| !v.is_empty()).cloned()
    };
    let sandbox = get(&["io.kubernetes.cri.container-type", "io.kubernetes.cri-o.ContainerType"])
        .is_some_and(|t| t == "sandbox");
    let pod_name = get(&["io.kubernetes.cri.sandbox-name", "io.kubernetes.pod.name"]);
    let name = match sandbox {
        true => pod_name.clone(),
        false => get(&[
            "io.kubernetes.cri.container-name",
            "io.kubernetes.container.name",
            "nerdctl/name",
        ]),
    };
    Ok(ContainerRecord {
        name,
        image: get(&["io.kubernetes.cri.image-name", "io.kubernetes.cri-o.ImageName"]),
        image_id: get(&["io.kubernetes.cri-o.ImageRef"]),
        pod_name,
        pod_namespace: get(&["io.kubernetes.cri.sandbox-namespace", "io.kubernetes.pod.namespace"]),
        pod_uid: get(&["io.kubernetes.cri.sandbox-uid", "io.kubernetes.pod.uid"]),
        init_pid: None,
    })
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "PascalCase", default)]
struct DockerConfig {
    name: Option<String>,
    image: Option<String>,
    config: Option<DockerContainerConfig>,
    state: Option<DockerState>,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "PascalCase", default)]
struct DockerContainerConfig {
    image: Option<String>,
    labels: Option<HashMap<String, String>>,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "PascalCase", default)]
struct DockerState {
    running: bool,
    pid: i64,
}

/// Docker's `containers/ID/config.v2.json`: the name (`/web`, shown without its slash), the
/// image as given to `docker run` and its id, the pod labels cri-dockerd sets, and the init's
/// pid while the container runs.
pub fn parse_docker_config(json: &[u8]) -> Result<ContainerRecord, serde_json::Error> {
    let docker: DockerConfig = serde_json::from_slice(json)?;
    let config = docker.config.unwrap_or_default();
    let labels = config.labels.unwrap_or_default();
    let label = |key: &str| labels.get(key).filter(|v| !v.is_empty()).cloned();
    let state = docker.state.unwrap_or_default();
    let name = docker.name.map(|n| n.strip_prefix('/').map(str::to_string).unwrap_or(n));
    Ok(ContainerRecord {
        name: label("io.kubernetes.container.name").or(name).filter(|n| !n.is_empty()),
        image: config.image.filter(|i| !i.is_empty()),
        image_id: docker.image.filter(|i| !i.is_empty()),
        pod_name: label("io.kubernetes.pod.name"),
        pod_namespace: label("io.kubernetes.pod.namespace"),
        pod_uid: label("io.kubernetes.pod.uid"),
        init_pid: state.running.then(|| u32::try_from(state.pid).ok()).flatten().filter(|&p| p > 0),
    })
}

#[derive(Deserialize)]
struct StorageContainer {
    id: String,
    #[serde(default)]
    names: Vec<String>,
    #[serde(default)]
    image: Option<String>,
    #[serde(default)]
    metadata: Option<String>,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct StorageMetadata {
    #[serde(rename = "image-name")]
    image_name: Option<String>,
    name: Option<String>,
}

/// containers/storage's `overlay-containers/containers.json` (podman, CRI-O): the container's
/// names, image id, and the image name podman keeps in its metadata string.
pub fn parse_storage_containers(
    json: &[u8],
    id: &str,
) -> Result<Option<ContainerRecord>, serde_json::Error> {
    let containers: Vec<StorageContainer> = serde_json::from_slice(json)?;
    let Some(found) = containers.into_iter().find(|c| c.id == id) else { return Ok(None) };
    let metadata: StorageMetadata =
        found.metadata.as_deref().and_then(|m| serde_json::from_str(m).ok()).unwrap_or_default();
    Ok(Some(ContainerRecord {
        name: found.names.into_iter().next().or(metadata.name).filter(|n| !n.is_empty()),
        image: metadata.image_name.filter(|i| !i.is_empty()),
        image_id: found.image.filter(|i| !i.is_empty()),
        ..ContainerRecord::default()
    }))
}

/// systemd-machined's `/run/systemd/machines/NAME` (an environment file): a container's leader
/// pid. Virtual machines (`CLASS=vm`) are no container.
pub fn parse_machine(text: &[u8]) -> Option<ContainerRecord> {
    let mut record = ContainerRecord::default();
    let mut container = false;
    for line in text.split(|&b| b == b'\n') {
        let Ok(line) = std::str::from_utf8(line) else { continue };
        match line.split_once('=') {
            Some(("NAME", name)) if !name.is_empty() => record.name = Some(name.to_string()),
            Some(("LEADER", pid)) => record.init_pid = parse_pid(pid.as_bytes()),
            Some(("CLASS", class)) => container = class == "container",
            _ => {}
        }
    }
    container.then_some(record)
}

/// A pid file: decimal digits, maybe a newline.
pub fn parse_pid(text: &[u8]) -> Option<u32> {
    let text = std::str::from_utf8(text).ok()?.trim();
    text.parse::<u32>().ok().filter(|&p| p > 0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// The annotations containerd 1.7's CRI plugin writes into a pod container's bundle.
    const CONTAINERD_CONFIG: &str = r#"{"ociVersion":"1.1.0","process":{"args":["nginx"]},
        "annotations":{"io.kubernetes.cri.container-name":"web",
        "io.kubernetes.cri.container-type":"container",
        "io.kubernetes.cri.image-name":"docker.io/library/nginx:1.25",
        "io.kubernetes.cri.sandbox-id":"aaaa",
        "io.kubernetes.cri.sandbox-name":"web-7d4b9c-x2x",
        "io.kubernetes.cri.sandbox-namespace":"shop",
        "io.kubernetes.cri.sandbox-uid":"8d1f2c3a-4b5e-6f70-8192-a3b4c5d6e7f8"}}"#;

    #[test]
    fn containerd_cri_annotations() {
        let record = parse_oci_config(CONTAINERD_CONFIG.as_bytes()).unwrap();
        assert_eq!(record.name.as_deref(), Some("web"));
        assert_eq!(record.image.as_deref(), Some("docker.io/library/nginx:1.25"));
        assert_eq!(record.pod_name.as_deref(), Some("web-7d4b9c-x2x"));
        assert_eq!(record.pod_namespace.as_deref(), Some("shop"));
        assert_eq!(record.pod_uid.as_deref(), Some("8d1f2c3a-4b5e-6f70-8192-a3b4c5d6e7f8"));
        let sandbox = CONTAINERD_CONFIG.replace(
            r#""io.kubernetes.cri.container-type":"container""#,
            r#""io.kubernetes.cri.container-type":"sandbox""#,
        );
        assert_eq!(
            parse_oci_config(sandbox.as_bytes()).unwrap().name.as_deref(),
            Some("web-7d4b9c-x2x")
        );
    }

    #[test]
    fn crio_annotations() {
        let json = r#"{"annotations":{"io.kubernetes.container.name":"api",
            "io.kubernetes.pod.name":"api-1","io.kubernetes.pod.namespace":"prod",
            "io.kubernetes.cri-o.ImageName":"quay.io/acme/api:2","io.kubernetes.cri-o.ImageRef":"sha256:ab"}}"#;
        let record = parse_oci_config(json.as_bytes()).unwrap();
        assert_eq!(
            (record.name.as_deref(), record.image.as_deref(), record.pod_namespace.as_deref()),
            (Some("api"), Some("quay.io/acme/api:2"), Some("prod"))
        );
        assert_eq!(record.image_id.as_deref(), Some("sha256:ab"));
        // A plain bundle (docker's own containerd task) says nothing.
        assert_eq!(
            parse_oci_config(br#"{"ociVersion":"1.1.0"}"#).unwrap(),
            ContainerRecord::default()
        );
        assert_eq!(
            parse_oci_config(br#"{"annotations":null}"#).unwrap(),
            ContainerRecord::default()
        );
    }

    #[test]
    fn docker_config_v2() {
        let json = r#"{"ID":"3f4e","Name":"/web","Image":"sha256:9c7a",
            "Config":{"Image":"nginx:1.25","Labels":{"com.docker.compose.project":"shop"}},
            "State":{"Running":true,"Pid":4242}}"#;
        let record = parse_docker_config(json.as_bytes()).unwrap();
        assert_eq!(
            (record.name.as_deref(), record.image.as_deref(), record.image_id.as_deref()),
            (Some("web"), Some("nginx:1.25"), Some("sha256:9c7a"))
        );
        assert_eq!(record.init_pid, Some(4242));
        let stopped = json.replace(r#""Running":true"#, r#""Running":false"#);
        assert_eq!(parse_docker_config(stopped.as_bytes()).unwrap().init_pid, None);
        let nulls = r#"{"Name":"/x","Config":{"Labels":null},"State":null}"#;
        assert_eq!(parse_docker_config(nulls.as_bytes()).unwrap().name.as_deref(), Some("x"));
        // cri-dockerd's labels name the pod.
        let cri = r#"{"Name":"/k8s_web_web-1_shop_uid_0","Config":{"Image":"nginx","Labels":{
            "io.kubernetes.container.name":"web","io.kubernetes.pod.name":"web-1",
            "io.kubernetes.pod.namespace":"shop"}}}"#;
        let record = parse_docker_config(cri.as_bytes()).unwrap();
        assert_eq!(
            (record.name.as_deref(), record.pod_name.as_deref()),
            (Some("web"), Some("web-1"))
        );
    }

    #[test]
    fn podman_storage_list() {
        let json = r#"[{"id":"aa","names":["other"]},{"id":"bb","names":["db"],"image":"5f1e",
            "metadata":"{\"image-name\":\"docker.io/library/postgres:16\",\"name\":\"db\"}"}]"#;
        let record = parse_storage_containers(json.as_bytes(), "bb").unwrap().unwrap();
        assert_eq!(
            (record.name.as_deref(), record.image.as_deref(), record.image_id.as_deref()),
            (Some("db"), Some("docker.io/library/postgres:16"), Some("5f1e"))
        );
        assert_eq!(parse_storage_containers(json.as_bytes(), "cc").unwrap(), None);
    }

    #[test]
    fn machined_records() {
        let record =
            parse_machine(b"NAME=build\nSCOPE=machine-build.scope\nCLASS=container\nLEADER=777\n");
        assert_eq!(record.map(|r| (r.name, r.init_pid)), Some((Some("build".into()), Some(777))));
        assert_eq!(parse_machine(b"NAME=vm1\nCLASS=vm\nLEADER=9\n"), None);
        assert_eq!(parse_pid(b"4242\n"), Some(4242));
        for bad in [&b""[..], b"0", b"-1", b"12x", b"99999999999"] {
            assert_eq!(parse_pid(bad), None);
        }
    }

    proptest! {
        #[test]
        fn hostile_state_never_panics(data in proptest::collection::vec(any::<u8>(), 0..512)) {
            let _ = parse_oci_config(&data);
            let _ = parse_docker_config(&data);
            let _ = parse_storage_containers(&data, "x");
            let _ = parse_machine(&data);
            let _ = parse_pid(&data);
        }
    }
}
