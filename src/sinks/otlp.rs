//! `type = "otlp"`: events as OpenTelemetry LogRecords, POSTed to an OTLP/HTTP receiver's
//! `/v1/logs` (a Collector, an agent such as rotel, or a vendor's intake).
//!
//! Delivery is the HTTP sink's — two lanes, batching, gzip, retries, spool, accounting, TLS and
//! proxies — with the body, the content type and the reading of answers OTLP defines
//! (`sinks/http/otlp.rs`).

use super::http::{AuthConfig, Format, HttpSinkConfig, OtlpEncoding, ProxyAuth, TlsSettings};
use super::{MinSeverity, SpoolConfig};
use crate::event::EventKind;
use crate::model::{Bounded, Interval};
use serde::Deserialize;
use std::collections::BTreeMap;

/// `[[sinks]] type = "otlp"`. The keys mean what they mean for `type = "http"`.
#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OtlpSinkConfig {
    /// The receiver's base URL (`http://collector:4318`); `/v1/logs` is appended unless the
    /// URL already ends with it.
    pub endpoint: String,
    /// `protobuf` (default) or `json`.
    #[serde(default)]
    pub encoding: OtlpEncoding,
    /// Most LogRecords in one request (default 500).
    pub batch_max_events: Option<Bounded<1, 100_000>>,
    /// Most bytes of one request's events before encoding (default 1 MiB).
    pub batch_max_bytes: Option<Bounded<1024, 104_857_600>>,
    /// Longest a telemetry event waits for its batch to fill (default 1s). Alerts never wait.
    pub batch_max_wait: Option<Interval>,
    /// gzip request bodies (default true).
    pub gzip: Option<bool>,
    /// Longest one request may take (default 10s).
    pub timeout: Option<Interval>,
    /// Extra request headers (a vendor's tenant header); credentials go in `auth`.
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    /// Credentials.
    pub auth: Option<AuthConfig>,
    /// TLS settings for `https://`.
    pub tls: Option<TlsSettings>,
    /// A forward proxy, or `"direct"`.
    pub proxy: Option<String>,
    /// Credentials for the proxy.
    pub proxy_auth: Option<ProxyAuth>,
    /// At shutdown, how long undelivered events may still be retried (default 5s).
    pub shutdown_grace: Option<Interval>,
    /// A write-ahead disk spool.
    pub spool: Option<SpoolConfig>,
    /// Event kinds this sink takes (all when absent).
    pub kinds: Option<Vec<EventKind>>,
    /// Lowest `event.severity` taken (all when absent).
    pub min_severity: Option<MinSeverity>,
}

impl OtlpSinkConfig {
    /// Where requests go: the endpoint's `/v1/logs`.
    pub fn logs_url(&self) -> String {
        let base = self.endpoint.trim_end_matches('/');
        match base.ends_with("/v1/logs") {
            true => base.to_string(),
            false => format!("{base}/v1/logs"),
        }
    }

    /// The HTTP sink that delivers for it.
    pub fn http(&self) -> HttpSinkConfig {
        HttpSinkConfig {
            url: self.logs_url(),
            format: Format::Otlp(self.encoding),
            batch_max_events: self.batch_max_events,
            batch_max_bytes: self.batch_max_bytes,
            batch_max_wait: self.batch_max_wait,
            gzip: self.gzip,
            timeout: self.timeout,
            headers: self.headers.clone(),
            auth: self.auth.clone(),
            tls: self.tls.clone(),
            proxy: self.proxy.clone(),
            proxy_auth: self.proxy_auth.clone(),
            splunk: None,
            index: None,
            shutdown_grace: self.shutdown_grace,
            spool: self.spool.clone(),
            kinds: self.kinds.clone(),
            min_severity: self.min_severity,
            schema: super::Schema::Ecs,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_logs_path_is_appended_once() {
        let config = |endpoint: &str| -> OtlpSinkConfig {
            toml::from_str(&format!("endpoint = \"{endpoint}\"")).unwrap()
        };
        for (endpoint, url) in [
            ("http://collector:4318", "http://collector:4318/v1/logs"),
            ("http://collector:4318/", "http://collector:4318/v1/logs"),
            ("https://gw.example/otlp", "https://gw.example/otlp/v1/logs"),
            ("http://collector:4318/v1/logs", "http://collector:4318/v1/logs"),
        ] {
            assert_eq!(config(endpoint).logs_url(), url);
            assert_eq!(config(endpoint).http().name(), format!("otlp:{url}"));
        }
        assert_eq!(config("http://c:4318").encoding, OtlpEncoding::Protobuf);
        assert!(toml::from_str::<OtlpSinkConfig>("endpoint = \"x\"\nformat = \"ndjson\"").is_err());
        assert!(toml::from_str::<HttpSinkConfig>("url = \"x\"\nformat = \"otlp\"").is_err());
    }
}
