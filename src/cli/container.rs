//! A process's container as a person reads it in a table or a JSON listing: the pod
//! (`namespace/pod`) or the container's name when it is proven, the short id otherwise, and a
//! claim the agent disproved marked as one.

use crate::model::{Container, Process, Verification};
use serde_json::{Value, json};

/// Docker's short form: enough to tell containers apart on one host.
const SHORT_ID: usize = 12;

fn short_id(container: &Container) -> String {
    let id = container.id.escape_visible();
    id.chars().take(SHORT_ID).collect()
}

/// `shop/api-7d4b9c` (a pod), `web-1`, `3f4e8a2b9c1d?` (unproven), `!3f4e8a2b9c1d` (a claim
/// the process's mount namespace disproves), `-` on the host.
pub(super) fn label(process: Option<&Process>) -> String {
    let Some(container) = process.and_then(|p| p.container.as_deref()) else {
        return "-".into();
    };
    match container.verification {
        Verification::InitNamespace => {
            let pod = container
                .pod
                .as_ref()
                .and_then(|p| Some((p.namespace.as_ref()?, p.name.as_ref()?)));
            match (pod, &container.name) {
                (Some((namespace, pod)), _) => {
                    format!("{}/{}", namespace.escape_visible(), pod.escape_visible())
                }
                (None, Some(name)) => name.escape_visible(),
                (None, None) => short_id(container),
            }
        }
        Verification::NoState => format!("{}?", short_id(container)),
        Verification::NamespaceDiffers | Verification::InitGone => {
            format!("!{}", short_id(container))
        }
    }
}

/// The container in a JSON listing; `null` on the host. Names only for a proven container.
pub(super) fn describe(process: Option<&Process>) -> Value {
    let Some(container) = process.and_then(|p| p.container.as_deref()) else {
        return Value::Null;
    };
    let text = |t: Option<&crate::model::RawText>| t.map(|t| t.escape_visible());
    let mut described = json!({
        "id": container.id.escape_visible(),
        "runtime": container.runtime.map(|r| r.name()),
        "verification": container.verification.name(),
    });
    if container.verified() {
        described["name"] = json!(text(container.name.as_ref()));
        described["image"] = json!(text(container.image.as_ref()));
        if let Some(pod) = &container.pod {
            described["pod"] = json!({
                "name": text(pod.name.as_ref()),
                "namespace": text(pod.namespace.as_ref()),
                "uid": text(pod.uid.as_ref()),
            });
        }
    }
    described
}
