//! `type = "http"`: batches of events POSTed to a SIEM (a generic NDJSON webhook, Splunk HEC or
//! an Elasticsearch `_bulk` endpoint), gzip'd, retried through outages, in order.
//!
//! One `HttpSink` serves one lane: the daemon runs two per configured sink, one for alerts and
//! one for telemetry, each with its own queue and thread, so an alert never waits behind a
//! backlog of socket events. A lane blocks on its batch while the receiver is away (retrying with
//! backoff); its queue absorbs what comes meanwhile, and what the queue cannot hold is dropped and
//! counted by the router.

mod format;
mod otlp;
mod retry;
pub(super) mod secret;

pub use format::{Envelope, Format, SplunkFields};
pub use otlp::Encoding as OtlpEncoding;
pub(crate) use retry::Backoff;
pub use retry::{Verdict, parse_retry_after};
pub use secret::{AuthConfig, Secret};

use super::lane::{LaneSettings, NetLane, Transport};
use super::{SinkContext, SinkError, SinkStats, SpoolConfig};
use crate::event::{Encoded, EventKind};
use crate::model::{Bounded, Interval};
use flate2::write::GzEncoder;
use serde::Deserialize;
use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

/// `[[sinks]] type = "http"`.
#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HttpSinkConfig {
    /// Where batches are POSTed (`http://` or `https://`).
    pub url: String,
    /// Body format.
    #[serde(default)]
    pub format: Format,
    /// Most events in one request (default 500).
    pub batch_max_events: Option<Bounded<1, 100_000>>,
    /// Most bytes of one request before compression (default 1 MiB).
    pub batch_max_bytes: Option<Bounded<1024, 104_857_600>>,
    /// Longest a telemetry event waits for its batch to fill (default 1s). Alerts never wait.
    pub batch_max_wait: Option<Interval>,
    /// gzip request bodies (default true).
    pub gzip: Option<bool>,
    /// Longest one request may take, connect to last byte of the answer (default 10s).
    pub timeout: Option<Interval>,
    /// Extra request headers. `Authorization` is refused here: credentials go in `auth`, read
    /// from a file.
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    /// Credentials.
    pub auth: Option<AuthConfig>,
    /// TLS settings for `https://`.
    pub tls: Option<TlsSettings>,
    /// The proxy requests go through: `http://HOST:PORT` (or `https://`), or `"direct"` for
    /// none. Absent: the environment's `HTTPS_PROXY`/`HTTP_PROXY`/`ALL_PROXY`, minus
    /// `NO_PROXY`.
    pub proxy: Option<String>,
    /// Credentials for the proxy (basic), the password read from a file.
    pub proxy_auth: Option<ProxyAuth>,
    /// Splunk HEC envelope metadata (`format = "splunk_hec"`).
    pub splunk: Option<SplunkFields>,
    /// `_index` of bulk actions (`format = "elasticsearch_bulk"`; else the URL's index).
    pub index: Option<String>,
    /// At shutdown, how long undelivered events may still be retried (default 5s).
    pub shutdown_grace: Option<Interval>,
    /// A write-ahead disk spool (off by default: a bounded memory queue).
    pub spool: Option<SpoolConfig>,
    /// Event kinds this sink takes (all when absent).
    pub kinds: Option<Vec<EventKind>>,
    /// Lowest `event.severity` taken (all when absent).
    pub min_severity: Option<super::MinSeverity>,
    /// `ecs` (default) or `ocsf`.
    #[serde(default)]
    pub schema: super::Schema,
}

/// `tls = { … }`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsSettings {
    /// PEM file of the CAs to trust instead of the system's.
    pub ca_file: Option<PathBuf>,
    /// PEM file of a client certificate chain (mutual TLS).
    pub client_cert_file: Option<PathBuf>,
    /// PEM file of the client certificate's private key.
    pub client_key_file: Option<PathBuf>,
    /// Accept any server certificate. Warned about at every start.
    #[serde(default)]
    pub insecure_skip_verify: bool,
}

/// `proxy_auth = { … }`.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProxyAuth {
    /// The proxy user.
    pub username: String,
    /// File holding the proxy user's password.
    pub password_file: PathBuf,
}

/// Which events a lane carries.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Lane {
    /// `event.kind = alert`: sent as soon as they come.
    Alerts,
    /// Everything else: batched.
    Telemetry,
}

const DEFAULT_MAX_EVENTS: usize = 500;
const DEFAULT_MAX_BYTES: usize = 1024 * 1024;
const DEFAULT_MAX_WAIT: Duration = Duration::from_secs(1);
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);
const DEFAULT_SHUTDOWN_GRACE: Duration = Duration::from_secs(5);
/// Answers are read up to this size (a bulk answer lists every item).
const MAX_ANSWER: usize = 16 * 1024 * 1024;

/// One lane of an HTTP sink.
pub type HttpSink = NetLane<HttpPoster>;

/// How an HTTP lane hands a batch over: one POST.
pub struct HttpPoster {
    url: String,
    format: Format,
    envelope: Envelope,
    gzip: bool,
    headers: Vec<(String, String)>,
    authorization: Option<Secret>,
    client: reqwest::Client,
    runtime: &'static tokio::runtime::Runtime,
    body: Vec<u8>,
}

impl HttpSinkConfig {
    /// The name counters and errors use: the URL without credentials or query.
    pub fn name(&self) -> String {
        let url = self.url.split(['?', '#']).next().unwrap_or_default();
        let url = match url.split_once("://") {
            Some((scheme, rest)) => {
                let rest = rest.rsplit_once('@').map_or(rest, |(_, host)| host);
                format!("{scheme}://{rest}")
            }
            None => url.to_string(),
        };
        match self.format {
            Format::Otlp(_) => format!("otlp:{url}"),
            _ => format!("http:{url}"),
        }
    }

    /// Batching of a lane: (most events, longest wait for a batch to fill).
    pub fn batching(&self, lane: Lane) -> (usize, Duration) {
        let max = self.batch_max_events.map_or(DEFAULT_MAX_EVENTS, |b| b.0);
        super::lane::batching(lane, max, self.batch_max_wait.map_or(DEFAULT_MAX_WAIT, |i| i.0))
    }
}

/// What opening a lane needs from the settings, read and checked.
struct Prepared {
    headers: Vec<(String, String)>,
    authorization: Option<Secret>,
    client: reqwest::Client,
}

impl HttpSinkConfig {
    /// Checks the settings and reads the credential and TLS files: everything opening the sink
    /// would refuse, found without sending anything (`config check` stops here).
    pub fn check(&self) -> Result<(), String> {
        self.prepare().map(drop)
    }

    fn prepare(&self) -> Result<Prepared, String> {
        let scheme = self.url.split_once("://").map(|(s, _)| s.to_ascii_lowercase());
        if !matches!(scheme.as_deref(), Some("http" | "https")) {
            let name = self.name();
            let url = name.split_once(':').map_or(name.as_str(), |(_, url)| url);
            let key = match self.format {
                Format::Otlp(_) => "endpoint",
                _ => "url",
            };
            return Err(format!("{key} must start with http:// or https://, not {url:?}"));
        }
        let mut headers = Vec::new();
        for (key, value) in &self.headers {
            let lower = key.to_ascii_lowercase();
            if matches!(lower.as_str(), "authorization" | "proxy-authorization") {
                return Err(format!(
                    "header {key:?}: credentials go in `auth`, read from a file, not inline"
                ));
            }
            if matches!(
                lower.as_str(),
                "content-type" | "content-encoding" | "content-length" | "host"
            ) {
                return Err(format!("header {key:?} is set by the sink itself"));
            }
            headers.push((key.clone(), value.clone()));
        }
        let authorization = self
            .auth
            .as_ref()
            .map(AuthConfig::header)
            .transpose()
            .map_err(|e| format!("auth: {e}"))?;
        let client = reqwest::Client::builder()
            .user_agent(concat!("sockwatch/", env!("CARGO_PKG_VERSION")))
            // A redirect would resend events somewhere the configuration does not name.
            .redirect(reqwest::redirect::Policy::none())
            .http1_only();
        let client = tls_config(client, &self.tls.clone().unwrap_or_default())?;
        let client = self.proxy_config(client)?;
        let timeout = self.timeout.map_or(DEFAULT_TIMEOUT, |i| i.0);
        // Built here, so that what building refuses (a certificate rustls rejects) is a
        // configuration error `config check` finds too.
        let client = client.timeout(timeout).build().map_err(transport_error)?;
        Ok(Prepared { headers, authorization, client })
    }

    fn proxy_config(
        &self,
        client: reqwest::ClientBuilder,
    ) -> Result<reqwest::ClientBuilder, String> {
        let Some(url) = &self.proxy else {
            if self.proxy_auth.is_some() {
                return Err("proxy_auth needs a `proxy`".into());
            }
            return Ok(client);
        };
        if url == "direct" {
            return match self.proxy_auth {
                Some(_) => {
                    Err("proxy_auth with proxy = \"direct\" has nothing to log in to".into())
                }
                None => Ok(client.no_proxy()),
            };
        }
        let parsed = reqwest::Url::parse(url).map_err(|e| format!("proxy {url:?}: {e}"))?;
        if !matches!(parsed.scheme(), "http" | "https") || parsed.host_str().is_none() {
            return Err(format!(
                "proxy must be http://HOST:PORT, https://HOST:PORT or \"direct\", not {url:?}"
            ));
        }
        if !parsed.username().is_empty() || parsed.password().is_some() {
            return Err("proxy: credentials go in `proxy_auth`, the password read from a file, \
                        not in the URL"
                .into());
        }
        let mut proxy = reqwest::Proxy::all(parsed).map_err(|e| format!("proxy {url:?}: {e}"))?;
        if let Some(auth) = &self.proxy_auth {
            let password = Secret::read(&auth.password_file)
                .map_err(|e| format!("proxy_auth.password_file: {e}"))?;
            proxy = proxy.basic_auth(&auth.username, password.expose());
        }
        Ok(client.proxy(proxy))
    }
}

fn config_error(name: &str, message: String) -> SinkError {
    SinkError::Config { sink: name.to_string(), message }
}

/// Opens one lane of an HTTP (or OTLP) sink: checks the settings, reads the credentials and TLS
/// files, and builds the client. Nothing is sent yet: a receiver that is down at start is an
/// outage like any other.
pub fn open(
    config: &HttpSinkConfig,
    lane: Lane,
    context: SinkContext,
    stats: Arc<SinkStats>,
) -> Result<HttpSink, SinkError> {
    let name = format!("{}#{}", config.name(), format!("{lane:?}").to_lowercase());
    let Prepared { headers, authorization, client } =
        config.prepare().map_err(|message| config_error(&name, message))?;
    let runtime = super::net::runtime().map_err(|message| config_error(&name, message))?;
    if config.tls.as_ref().is_some_and(|t| t.insecure_skip_verify) {
        super::net::warn_insecure(&name, lane);
    }
    let poster = HttpPoster {
        url: config.url.clone(),
        format: config.format,
        envelope: Envelope {
            host: context.host_name.clone(),
            host_id: context.host_id.clone(),
            splunk: config.splunk.clone().unwrap_or_default(),
            schema: config.schema,
            index: config.index.clone(),
        },
        gzip: config.gzip.unwrap_or(true),
        headers,
        authorization,
        client,
        runtime,
        body: Vec::new(),
    };
    let settings = LaneSettings {
        max_bytes: config.batch_max_bytes.map_or(DEFAULT_MAX_BYTES, |b| b.0),
        grace: config.shutdown_grace.map_or(DEFAULT_SHUTDOWN_GRACE, |i| i.0),
        batching: config.batching(lane),
        spooled: config.spool.is_some(),
    };
    Ok(NetLane::new(name, poster, settings, context, stats))
}

impl Transport for HttpPoster {
    fn cost(&self, event: &Encoded) -> usize {
        self.format.cost(event)
    }

    /// One POST of `events`: the verdict on each.
    fn send(&mut self, events: &[Arc<Encoded>]) -> Vec<Verdict> {
        self.body.clear();
        self.format.body(events, &self.envelope, &mut self.body);
        let mut request =
            self.client.post(&self.url).header("Content-Type", self.format.content_type());
        for (key, value) in &self.headers {
            request = request.header(key, value);
        }
        if let Some(authorization) = &self.authorization {
            request = request.header("Authorization", authorization.expose());
        }
        let request = if self.gzip {
            let mut gz = GzEncoder::new(
                Vec::with_capacity(self.body.len() / 4),
                flate2::Compression::fast(),
            );
            match gz.write_all(&self.body).and_then(|()| gz.finish()) {
                Ok(compressed) => request.header("Content-Encoding", "gzip").body(compressed),
                Err(e) => return vec![retry_all(format!("gzip: {e}")); events.len()],
            }
        } else {
            request.body(self.body.clone())
        };
        let answered = self.runtime.block_on(async {
            let response = request.send().await?;
            let status = response.status().as_u16();
            let retry_after = response
                .headers()
                .get("retry-after")
                .and_then(|v| v.to_str().ok())
                .and_then(retry::parse_retry_after);
            Ok::<_, reqwest::Error>((status, retry_after, read_answer(response).await))
        });
        let (status, retry_after, answer) = match answered {
            Ok(answered) => answered,
            // Transport failures (refused, reset, timeout, TLS, proxy): retried.
            Err(e) => return vec![retry_all(transport_error(e)); events.len()],
        };
        let answer = match answer {
            Ok(answer) => answer,
            Err(e) if (200..300).contains(&status) && self.format == Format::ElasticsearchBulk => {
                // Items unknown: resend; `create` with fixed ids keeps that idempotent.
                return vec![retry_all(format!("reading the bulk answer: {e}")); events.len()];
            }
            Err(_) => Vec::new(),
        };
        match self.format.per_event(status, &answer, events.len()) {
            Some(verdicts) => verdicts,
            None => vec![self.format.verdict(status, &answer, retry_after); events.len()],
        }
    }
}

fn retry_all(reason: String) -> Verdict {
    Verdict::Retry { after: None, reason }
}

/// The answer's body, up to `MAX_ANSWER` bytes.
async fn read_answer(mut response: reqwest::Response) -> Result<Vec<u8>, String> {
    let mut answer = Vec::new();
    while let Some(chunk) = response.chunk().await.map_err(transport_error)? {
        if answer.len() + chunk.len() > MAX_ANSWER {
            return Err(format!("answer larger than {MAX_ANSWER} bytes"));
        }
        answer.extend_from_slice(&chunk);
    }
    Ok(answer)
}

/// What went wrong, cause by cause ("error sending request: client error (Connect): tcp connect
/// error: Connection refused"). The URL is left out: its query may carry a token.
fn transport_error(error: reqwest::Error) -> String {
    let error = error.without_url();
    let reason = if error.is_timeout() { "timed out".to_string() } else { String::new() };
    super::net::causes(reason, &error)
}

fn tls_config(
    client: reqwest::ClientBuilder,
    settings: &TlsSettings,
) -> Result<reqwest::ClientBuilder, String> {
    super::net::install_crypto();
    let client = match &settings.ca_file {
        // Only these: a sink pinned to its SIEM's CA trusts nothing else.
        Some(path) => {
            client.tls_certs_only(certificates(path).map_err(|e| format!("tls.ca_file: {e}"))?)
        }
        // The system's trust store: where an enterprise CA is installed.
        None => client,
    };
    let client = match (&settings.client_cert_file, &settings.client_key_file) {
        (Some(cert), Some(key)) => {
            let mut pem = read_pem(cert).map_err(|e| format!("tls.client_cert_file: {e}"))?;
            if certificates(cert).is_err() {
                return Err(format!(
                    "tls.client_cert_file: {}: no certificate in it",
                    cert.display()
                ));
            }
            // The key's own error would not name the file; it never holds key material.
            let key_pem = secret::read_private(key)
                .map_err(|e| format!("tls.client_key_file: cannot read {}: {e}", key.display()))?;
            pem.push(b'\n');
            pem.extend_from_slice(key_pem.as_bytes());
            let identity = reqwest::Identity::from_pem(&pem).map_err(|_| {
                format!("tls.client_key_file: {}: no private key in it", key.display())
            })?;
            client.identity(identity)
        }
        (None, None) => client,
        _ => return Err("client_cert_file and client_key_file go together".into()),
    };
    Ok(client.tls_danger_accept_invalid_certs(settings.insecure_skip_verify))
}

fn read_pem(path: &Path) -> Result<Vec<u8>, String> {
    std::fs::read(path).map_err(|e| format!("cannot read {}: {e}", path.display()))
}

/// The certificates of a PEM file (at least one).
fn certificates(path: &Path) -> Result<Vec<reqwest::Certificate>, String> {
    let pem = read_pem(path)?;
    let certs = reqwest::Certificate::from_pem_bundle(&pem)
        .map_err(|e| format!("{}: {}", path.display(), transport_error(e)))?;
    if certs.is_empty() {
        return Err(format!("{}: no certificate in it", path.display()));
    }
    Ok(certs)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(url: &str) -> HttpSinkConfig {
        HttpSinkConfig {
            url: url.into(),
            format: Format::Ndjson,
            batch_max_events: None,
            batch_max_bytes: None,
            batch_max_wait: None,
            gzip: None,
            timeout: None,
            headers: BTreeMap::new(),
            auth: None,
            tls: None,
            proxy: None,
            proxy_auth: None,
            splunk: None,
            index: None,
            shutdown_grace: None,
            spool: None,
            kinds: None,
            min_severity: None,
            schema: crate::sinks::Schema::Ecs,
        }
    }

    #[test]
    fn names_hide_credentials_and_queries() {
        assert_eq!(config("https://u:pw@siem:8088/x?token=abc").name(), "http:https://siem:8088/x");
        assert_eq!(config("http://127.0.0.1:9/").name(), "http:http://127.0.0.1:9/");
    }

    #[test]
    fn a_proxy_is_an_http_url_without_credentials_or_direct() {
        let check = |proxy: Option<&str>, auth: Option<&str>| {
            let mut c = config("https://siem:8088/");
            c.proxy = proxy.map(String::from);
            c.proxy_auth = auth.map(|file| ProxyAuth {
                username: "agent".into(),
                password_file: PathBuf::from(file),
            });
            c.check()
        };
        assert_eq!(check(Some("http://proxy.corp:3128"), None), Ok(()));
        assert_eq!(check(Some("https://proxy.corp"), None), Ok(()));
        assert_eq!(check(Some("direct"), None), Ok(()));
        for (proxy, auth, error) in [
            (Some("socks5://proxy:1080"), None, "proxy must be http://"),
            (Some("proxy.corp:3128"), None, "proxy must be http://"),
            (Some("http://agent:pw@proxy:3128"), None, "credentials go in `proxy_auth`"),
            (Some("direct"), Some("/nonexistent"), "has nothing to log in to"),
            (None, Some("/nonexistent"), "proxy_auth needs a `proxy`"),
            (Some("http://proxy:3128"), Some("/nonexistent"), "proxy_auth.password_file"),
        ] {
            let verdict = check(proxy, auth);
            assert!(verdict.as_ref().is_err_and(|e| e.contains(error)), "{proxy:?}: {verdict:?}");
        }
    }
}
