//! A process's container and pod in the event schema: ECS `container.*` and `orchestrator.*`,
//! and under `sockwatch.container` where the names came from, whether they are complete and
//! whether the process was proven to be in the container.
//!
//! A claim the agent disproved (the process is not in the mount namespace of the container its
//! cgroup names) never fills `container.*`: a SIEM joining on `container.id` would otherwise
//! file an intruder's shell under someone else's nginx. It is kept as
//! `sockwatch.container.claimed_id`.

use super::text::{NAME_CAP, PATH_CAP, put_text};
use crate::model::{Container, Process, Verification};
use serde_json::{Map, Value, json};

/// Writes what is known of `process`'s container into `event` (nothing on the host).
pub(super) fn put_container(event: &mut Value, process: &Process, truncated: &mut Vec<String>) {
    let Some(container) = process.container.as_deref() else { return };
    let mut details = Map::new();
    details.insert("verification".into(), json!(container.verification.name()));
    details.insert("verified".into(), json!(container.verified()));
    details.insert("metadata_source".into(), json!(container.source.name()));
    details.insert("metadata_complete".into(), json!(container.complete));
    let disproved =
        matches!(container.verification, Verification::NamespaceDiffers | Verification::InitGone);
    if disproved {
        let path = "sockwatch.container.claimed_id";
        put_text(&mut details, "claimed_id", container.id.as_bytes(), NAME_CAP, path, truncated);
        event["sockwatch"]["container"] = Value::Object(details);
        return;
    }
    if let Some(qos) = container.pod.as_ref().and_then(|p| p.qos) {
        details.insert("k8s_qos_class".into(), json!(qos.name()));
    }
    event["sockwatch"]["container"] = Value::Object(details);
    event["container"] = ecs_container(container, truncated);
    if let Some(pod) = &container.pod {
        let mut resource = Map::new();
        resource.insert("type".into(), json!("pod"));
        let mut orchestrator = Map::new();
        orchestrator.insert("type".into(), json!("kubernetes"));
        if let Some(name) = &pod.name {
            let path = "orchestrator.resource.name";
            put_text(&mut resource, "name", name.as_bytes(), NAME_CAP, path, truncated);
        }
        if let Some(uid) = &pod.uid {
            put_text(
                &mut resource,
                "id",
                uid.as_bytes(),
                NAME_CAP,
                "orchestrator.resource.id",
                truncated,
            );
        }
        if let Some(namespace) = &pod.namespace {
            let path = "orchestrator.namespace";
            put_text(
                &mut orchestrator,
                "namespace",
                namespace.as_bytes(),
                NAME_CAP,
                path,
                truncated,
            );
        }
        orchestrator.insert("resource".into(), Value::Object(resource));
        event["orchestrator"] = Value::Object(orchestrator);
    }
}

fn ecs_container(container: &Container, truncated: &mut Vec<String>) -> Value {
    let mut ecs = Map::new();
    put_text(&mut ecs, "id", container.id.as_bytes(), NAME_CAP, "container.id", truncated);
    if let Some(runtime) = container.runtime {
        ecs.insert("runtime".into(), json!(runtime.name()));
    }
    if let Some(name) = &container.name {
        put_text(&mut ecs, "name", name.as_bytes(), NAME_CAP, "container.name", truncated);
    }
    let mut image = Map::new();
    if let Some(name) = &container.image {
        put_text(&mut image, "name", name.as_bytes(), PATH_CAP, "container.image.name", truncated);
    }
    if let Some(id) = &container.image_id {
        let mut hash = Map::new();
        put_text(&mut hash, "all", id.as_bytes(), NAME_CAP, "container.image.hash.all", truncated);
        // ECS makes it a list.
        if let Some(one) = hash.remove("all") {
            hash.insert("all".into(), Value::Array(vec![one]));
        }
        image.insert("hash".into(), Value::Object(hash));
    }
    if !image.is_empty() {
        ecs.insert("image".into(), Value::Object(image));
    }
    Value::Object(ecs)
}
