//! `[metrics] listen`: `/metrics` (Prometheus) and `/health` on a loopback address, from one
//! thread whatever the clients do. Connections are tasks on a single-threaded tokio runtime, at
//! most `MAX_CONNECTIONS` at once (more are closed as they arrive), each answered once and given
//! `CONNECTION_DEADLINE` in all: a local user opening thousands of idle connections costs the
//! agent file descriptors for a few seconds, never a thread each.

use super::metrics::{ScanFacts, registry};
use http_body_util::Full;
use hyper::body::Bytes;
use hyper::{Request, Response, StatusCode};
use serde_json::json;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Connections served at once.
const MAX_CONNECTIONS: usize = 32;
/// The longest one connection may take, connect to last byte.
const CONNECTION_DEADLINE: Duration = Duration::from_secs(5);

/// What the endpoints read.
pub(crate) struct Status {
    pub facts: Arc<Mutex<ScanFacts>>,
    pub sinks: Arc<super::RunningSinks>,
}

/// Listens on `listen` now (an address in use is an error at start) and serves from a thread
/// until `stop` is set.
pub(crate) fn serve(
    listen: SocketAddr,
    status: Status,
    stop: Arc<AtomicBool>,
) -> std::io::Result<std::thread::JoinHandle<()>> {
    let listener = std::net::TcpListener::bind(listen)?;
    listener.set_nonblocking(true)?;
    let runtime =
        tokio::runtime::Builder::new_current_thread().enable_io().enable_time().build()?;
    std::thread::Builder::new().name("metrics".into()).spawn(move || {
        runtime.block_on(async move {
            let Ok(listener) = tokio::net::TcpListener::from_std(listener) else { return };
            accept(listener, Arc::new(status), stop).await
        })
    })
}

async fn accept(listener: tokio::net::TcpListener, status: Arc<Status>, stop: Arc<AtomicBool>) {
    let slots = Arc::new(tokio::sync::Semaphore::new(MAX_CONNECTIONS));
    let registry = Arc::new(registry(status.facts.clone(), status.sinks.clone()));
    while !stop.load(Ordering::Relaxed) {
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            () = tokio::time::sleep(Duration::from_millis(250)) => continue,
        };
        let Ok((stream, _)) = accepted else {
            // Out of file descriptors, most likely: let some close before trying again.
            tokio::time::sleep(Duration::from_millis(100)).await;
            continue;
        };
        let Ok(slot) = slots.clone().try_acquire_owned() else {
            drop(stream);
            continue;
        };
        let (status, registry) = (status.clone(), registry.clone());
        tokio::spawn(async move {
            let service =
                hyper::service::service_fn(move |request: Request<hyper::body::Incoming>| {
                    let answer = respond(request.uri().path(), &status, &registry);
                    async move { Ok::<_, std::convert::Infallible>(answer) }
                });
            let connection = hyper::server::conn::http1::Builder::new()
                .keep_alive(false)
                .serve_connection(hyper_util::rt::TokioIo::new(stream), service);
            let _ = tokio::time::timeout(CONNECTION_DEADLINE, connection).await;
            drop(slot);
        });
    }
}

fn respond(
    path: &str,
    status: &Status,
    registry: &prometheus_client::registry::Registry,
) -> Response<Full<Bytes>> {
    let answer = |code: StatusCode, content_type: &str, body: String| {
        let mut response = Response::new(Full::new(Bytes::from(body)));
        *response.status_mut() = code;
        if let Ok(value) = content_type.parse() {
            response.headers_mut().insert(hyper::header::CONTENT_TYPE, value);
        }
        response
    };
    match path {
        "/metrics" => {
            let mut body = String::new();
            let _ = prometheus_client::encoding::text::encode(&mut body, registry);
            let kind = "application/openmetrics-text; version=1.0.0; charset=utf-8";
            answer(StatusCode::OK, kind, body)
        }
        "/health" => {
            let (code, body) = health(status);
            answer(code, "application/json", format!("{body}\n"))
        }
        _ => answer(StatusCode::NOT_FOUND, "text/plain", "not found\n".into()),
    }
}

/// `ok`; `degraded` (200) while a sink fails or detection runs on kept rules; `blind` (503) when
/// no scan has completed for three intervals (at least 10 s): the agent sees nothing new.
fn health(status: &Status) -> (StatusCode, serde_json::Value) {
    let facts = status.facts.lock().unwrap_or_else(|p| p.into_inner()).clone();
    let stale_after = (facts.interval * 3).max(Duration::from_secs(10));
    let age = facts.completed_at.map(|at| at.elapsed());
    let failing: Vec<String> = status
        .sinks
        .views()
        .iter()
        .filter(|sink| sink.stats.failing())
        .map(|sink| sink.name.clone())
        .collect();
    let mut problems = Vec::new();
    let blind = age.is_none_or(|age| age > stale_after);
    if blind {
        problems.push(match age {
            None => "no scan has completed yet".to_string(),
            Some(age) => format!("no scan has completed for {} ms", age.as_millis()),
        });
    }
    if !failing.is_empty() {
        problems.push(format!("failing sinks: {}", failing.join(", ")));
    }
    if facts.rules_degraded {
        problems.push("rules degraded: running on the last good rule set".into());
    }
    let (code, word) = match (blind, problems.is_empty()) {
        (true, _) => (StatusCode::SERVICE_UNAVAILABLE, "blind"),
        (false, true) => (StatusCode::OK, "ok"),
        (false, false) => (StatusCode::OK, "degraded"),
    };
    let body = json!({
        "status": word,
        "problems": problems,
        "scans": facts.scans,
        "last_scan_age_ms": age.map(|a| a.as_millis() as u64),
        "interval_ms": facts.interval.as_millis() as u64,
        "failing_sinks": failing,
        "rules_degraded": facts.rules_degraded,
    });
    (code, body)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Instant;

    fn status(facts: ScanFacts) -> Status {
        Status { facts: Arc::new(Mutex::new(facts)), sinks: Default::default() }
    }

    #[test]
    fn health_is_blind_until_a_scan_completes_and_when_scans_stop() {
        let interval = Duration::from_secs(1);
        let (code, body) = health(&status(ScanFacts { interval, ..Default::default() }));
        assert_eq!(
            (code, body["status"].as_str()),
            (StatusCode::SERVICE_UNAVAILABLE, Some("blind"))
        );
        assert_eq!(body["problems"][0], "no scan has completed yet");

        let recent = ScanFacts {
            interval,
            scans: 3,
            completed_at: Some(Instant::now()),
            ..Default::default()
        };
        let (code, body) = health(&status(recent));
        assert_eq!((code, body["status"].as_str()), (StatusCode::OK, Some("ok")), "{body}");

        let Some(long_ago) = Instant::now().checked_sub(Duration::from_secs(11)) else { return };
        let stalled =
            ScanFacts { interval, scans: 3, completed_at: Some(long_ago), ..Default::default() };
        let (code, body) = health(&status(stalled));
        assert_eq!(code, StatusCode::SERVICE_UNAVAILABLE, "{body}");
        assert!(body["problems"][0].as_str().unwrap().starts_with("no scan has completed for 11"));

        let degraded = ScanFacts {
            interval,
            completed_at: Some(Instant::now()),
            rules_degraded: true,
            ..Default::default()
        };
        let (code, body) = health(&status(degraded));
        assert_eq!((code, body["status"].as_str()), (StatusCode::OK, Some("degraded")), "{body}");
    }
}
