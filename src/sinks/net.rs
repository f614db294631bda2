//! The one tokio runtime every network sink's I/O runs on.
//!
//! A lane stays a thread of its own: it owns its queue and spool, and blocks on its batch while
//! a receiver is away, which is the back-pressure the router counts. Only the requests are
//! futures, driven by the runtime's worker; so a thousand idle connections, TLS handshakes and
//! timeouts cost one thread, not one per lane, and the scan thread never touches any of it.

use std::sync::OnceLock;

/// One worker is plenty: lanes wait on their own threads, the worker only moves bytes.
const WORKERS: usize = 1;

static RUNTIME: OnceLock<Result<tokio::runtime::Runtime, String>> = OnceLock::new();

/// The shared runtime, started on first use (an agent without network sinks never starts it).
pub(crate) fn runtime() -> Result<&'static tokio::runtime::Runtime, String> {
    RUNTIME
        .get_or_init(|| {
            install_crypto();
            tokio::runtime::Builder::new_multi_thread()
                .worker_threads(WORKERS)
                .thread_name("sockwatch-net")
                .enable_io()
                .enable_time()
                .build()
                .map_err(|e| format!("cannot start the network runtime: {e}"))
        })
        .as_ref()
        .map_err(Clone::clone)
}

/// rustls needs one cryptography provider for the process. *ring* is the one already built
/// for the rest of the crate; aws-lc-rs (reqwest's default) would add a C and assembler build
/// of its own for nothing the sinks need.
pub(crate) fn install_crypto() {
    // Err only when one is installed already, which is all this asks for.
    let _ = rustls::crypto::ring::default_provider().install_default();
}

/// Said at every start of a lane that accepts any server certificate.
pub(crate) fn warn_insecure(sink: &str, lane: super::Lane) {
    warn(
        sink,
        lane,
        "tls.insecure_skip_verify: any server certificate is accepted; events and credentials \
         can be read by whoever answers",
    );
}

/// A warning about a lane's settings, on stderr at every start of the lane.
pub(crate) fn warn(sink: &str, lane: super::Lane, message: &str) {
    let warning = serde_json::json!({
        "sockwatch": "warning",
        "sink": sink,
        "lane": format!("{lane:?}").to_lowercase(),
        "message": message,
    });
    eprintln!("{warning}");
}

/// An error cause by cause ("error sending request: client error (Connect): tcp connect error:
/// Connection refused"), each said once, after `reason` when it is not empty.
pub(crate) fn causes(mut reason: String, error: &dyn std::error::Error) -> String {
    let mut cause = Some(error);
    while let Some(e) = cause {
        let text = e.to_string();
        if !text.is_empty() && !reason.contains(&text) {
            if !reason.is_empty() {
                reason.push_str(": ");
            }
            reason.push_str(&text);
        }
        cause = e.source();
    }
    reason
}
