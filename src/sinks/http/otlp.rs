//! OTLP/HTTP logs bodies (`POST /v1/logs`) and what an OTLP receiver's answer says, per the
//! OTLP specification: the messages are `opentelemetry-proto`'s, encoded as protobuf or as
//! OTLP/JSON (lowerCamelCase keys, 64-bit integers as strings, enums as integers).
//!
//! Each event is one LogRecord: the canonical event's JSON text as the body (what every other
//! sink sends; a Collector's `json_parser` or the store makes it structured), the attributes
//! that OpenTelemetry's semantic conventions name (process, user, network peers, container,
//! pod, rule) beside it, `event_name` = `sockwatch.<action>`, and the severity mapped so that
//! every alert but an informational one is WARN or above. A structured (key-value list) body
//! was measured at 94 µs an event to build and encode against the text's few: it would hold a
//! lane below 10k events/s on a small host.

use super::Envelope;
use super::retry::Verdict;
use crate::event::Encoded;
use opentelemetry_proto::tonic::collector::logs::v1::{
    ExportLogsServiceRequest, ExportLogsServiceResponse,
};
use opentelemetry_proto::tonic::common::v1::{
    AnyValue, ArrayValue, InstrumentationScope, KeyValue, any_value,
};
use opentelemetry_proto::tonic::logs::v1::{LogRecord, ResourceLogs, ScopeLogs, SeverityNumber};
use opentelemetry_proto::tonic::resource::v1::Resource;
use prost::Message;
use serde::Deserialize;
use serde_json::Value;
use std::sync::Arc;
use std::time::Duration;

/// `encoding = "…"` of an OTLP sink.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Encoding {
    /// `application/x-protobuf` (what every collector takes; the default).
    #[default]
    Protobuf,
    /// OTLP/JSON, `application/json`.
    Json,
}

impl Encoding {
    pub(super) fn content_type(self) -> &'static str {
        match self {
            Encoding::Protobuf => "application/x-protobuf",
            Encoding::Json => "application/json",
        }
    }
}

/// The canonical event's fields that OpenTelemetry's semantic conventions have a name for,
/// read without building the whole event: every other field is skipped by the parser.
#[derive(Default, Deserialize)]
#[serde(default)]
struct Fields {
    process: ProcessFields,
    network: NetworkFields,
    source: Endpoint,
    destination: Endpoint,
    container: ContainerFields,
    orchestrator: OrchestratorFields,
    rule: RuleFields,
}

#[derive(Default, Deserialize)]
#[serde(default)]
struct ProcessFields {
    pid: Option<i64>,
    name: Option<String>,
    executable: Option<String>,
    command_line: Option<String>,
    parent: Pid,
    user: User,
}

#[derive(Default, Deserialize)]
#[serde(default)]
struct Pid {
    pid: Option<i64>,
}

#[derive(Default, Deserialize)]
#[serde(default)]
struct User {
    id: Option<String>,
    name: Option<String>,
}

#[derive(Default, Deserialize)]
#[serde(default)]
struct NetworkFields {
    transport: Option<String>,
}

#[derive(Default, Deserialize)]
#[serde(default)]
struct Endpoint {
    ip: Option<String>,
    port: Option<i64>,
}

#[derive(Default, Deserialize)]
#[serde(default)]
struct ContainerFields {
    id: Option<String>,
    name: Option<String>,
    runtime: Option<String>,
    image: Named,
}

#[derive(Default, Deserialize)]
#[serde(default)]
struct Named {
    name: Option<String>,
}

#[derive(Default, Deserialize)]
#[serde(default)]
struct OrchestratorFields {
    namespace: Option<String>,
    resource: OrchestratedResource,
}

#[derive(Default, Deserialize)]
#[serde(default)]
struct OrchestratedResource {
    name: Option<String>,
    id: Option<String>,
}

/// An incident's rules: one name, or several.
#[derive(Default, Deserialize)]
#[serde(default)]
struct RuleFields {
    name: Option<OneOrMany>,
    reference: Option<OneOrMany>,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum OneOrMany {
    One(String),
    Many(Vec<String>),
}

impl Fields {
    fn attributes(self, id: &str) -> Vec<KeyValue> {
        let Fields { process, network, source, destination, container, orchestrator, rule } = self;
        let texts = [
            ("process.executable.name", process.name),
            ("process.executable.path", process.executable),
            ("process.command_line", process.command_line),
            ("user.id", process.user.id),
            ("user.name", process.user.name),
            ("network.transport", network.transport),
            ("source.address", source.ip),
            ("destination.address", destination.ip),
            ("container.id", container.id),
            ("container.name", container.name),
            ("container.runtime", container.runtime),
            ("container.image.name", container.image.name),
            ("k8s.namespace.name", orchestrator.namespace),
            ("k8s.pod.name", orchestrator.resource.name),
            ("k8s.pod.uid", orchestrator.resource.id),
        ];
        let ints = [
            ("process.pid", process.pid),
            ("process.parent_pid", process.parent.pid),
            ("source.port", source.port),
            ("destination.port", destination.port),
        ];
        let lists =
            [("security_rule.name", rule.name), ("security_rule.reference", rule.reference)];
        let mut attributes = vec![text("log.record.uid", id)];
        attributes.extend(texts.into_iter().filter_map(|(k, v)| Some(text(k, &v?))));
        attributes.extend(
            ints.into_iter()
                .filter_map(|(k, v)| Some(pair(k, value(any_value::Value::IntValue(v?))))),
        );
        attributes.extend(lists.into_iter().filter_map(|(k, v)| {
            Some(pair(
                k,
                match v? {
                    OneOrMany::One(one) => value(any_value::Value::StringValue(one)),
                    OneOrMany::Many(many) => value(any_value::Value::ArrayValue(ArrayValue {
                        values: many
                            .into_iter()
                            .map(|s| value(any_value::Value::StringValue(s)))
                            .collect(),
                    })),
                },
            ))
        }));
        attributes
    }
}

/// Appends one export request holding `events` to `out`.
pub(super) fn body(
    events: &[Arc<Encoded>],
    envelope: &Envelope,
    encoding: Encoding,
    out: &mut Vec<u8>,
) {
    let request = ExportLogsServiceRequest {
        resource_logs: vec![ResourceLogs {
            resource: Some(Resource {
                attributes: vec![
                    text("service.name", "sockwatch"),
                    text("service.version", env!("CARGO_PKG_VERSION")),
                    text("host.name", &envelope.host),
                    text("host.id", &envelope.host_id),
                ],
                ..Default::default()
            }),
            scope_logs: vec![ScopeLogs {
                scope: Some(InstrumentationScope {
                    name: "sockwatch".into(),
                    version: env!("CARGO_PKG_VERSION").into(),
                    ..Default::default()
                }),
                log_records: events.iter().map(|e| record(e)).collect(),
                schema_url: String::new(),
            }],
            schema_url: String::new(),
        }],
    };
    match encoding {
        Encoding::Protobuf => request.encode(out).expect("a Vec grows as needed"),
        Encoding::Json => {
            serde_json::to_writer(out, &request).expect("the messages always serialise")
        }
    }
}

fn record(event: &Encoded) -> LogRecord {
    let time = event.at_ms.saturating_mul(1_000_000);
    let (severity, severity_text) = severity(event.severity);
    let line = event.line.strip_suffix(b"\n").unwrap_or(&event.line);
    // Every line is the encoder's own JSON; were one not, it still goes, without attributes.
    let fields: Fields = serde_json::from_slice(line).unwrap_or_default();
    LogRecord {
        time_unix_nano: time,
        observed_time_unix_nano: time,
        severity_number: severity as i32,
        severity_text: severity_text.into(),
        body: Some(value(any_value::Value::StringValue(
            String::from_utf8_lossy(line).into_owned(),
        ))),
        attributes: fields.attributes(&event.id),
        event_name: format!("sockwatch.{}", event.action),
        ..Default::default()
    }
}

/// `event.severity` (0 telemetry, 1 informational … 5 critical) as OpenTelemetry's.
fn severity(severity: u8) -> (SeverityNumber, &'static str) {
    match severity {
        0 => (SeverityNumber::Info, "INFO"),
        1 => (SeverityNumber::Info2, "informational"),
        2 => (SeverityNumber::Warn, "low"),
        3 => (SeverityNumber::Error, "medium"),
        4 => (SeverityNumber::Error2, "high"),
        _ => (SeverityNumber::Fatal, "critical"),
    }
}

fn text(key: &str, text: &str) -> KeyValue {
    pair(key, value(any_value::Value::StringValue(text.into())))
}

fn pair(key: &str, value: AnyValue) -> KeyValue {
    KeyValue { key: key.into(), value: Some(value), ..Default::default() }
}

fn value(value: any_value::Value) -> AnyValue {
    AnyValue { value: Some(value) }
}

/// A 2xx answer's `partial_success`: the receiver took the batch but refused some of its
/// records. OTLP says how many, not which: that many are counted as rejected (the last ones of
/// the batch, an arbitrary but fixed choice), the rest as delivered. `None` when all went in.
pub(super) fn partial_success(
    body: &[u8],
    encoding: Encoding,
    events: usize,
) -> Option<Vec<Verdict>> {
    let (rejected, message) = match encoding {
        Encoding::Protobuf => {
            let partial = ExportLogsServiceResponse::decode(body).ok()?.partial_success?;
            (partial.rejected_log_records, partial.error_message)
        }
        Encoding::Json => {
            // int64 is a string in OTLP/JSON; a number is taken too.
            let answer: Value = serde_json::from_slice(body).ok()?;
            let partial = answer.get("partialSuccess")?;
            let rejected = match partial.get("rejectedLogRecords") {
                Some(Value::String(n)) => n.parse().ok()?,
                Some(n) => n.as_i64()?,
                None => 0,
            };
            let message = partial.get("errorMessage").and_then(Value::as_str).unwrap_or("");
            (rejected, message.to_string())
        }
    };
    let rejected = usize::try_from(rejected).ok()?.min(events);
    if rejected == 0 {
        return None;
    }
    let message: String = message.chars().filter(|c| !c.is_control()).take(200).collect();
    let reason = match message.is_empty() {
        true => format!("OTLP partial success: {rejected} of {events} records rejected"),
        false => {
            format!("OTLP partial success: {rejected} of {events} records rejected: {message}")
        }
    };
    let mut verdicts = vec![Verdict::Delivered; events - rejected];
    verdicts.resize(events, Verdict::Reject { reason });
    Some(verdicts)
}

/// The verdict on a status, as OTLP/HTTP defines it: 429, 502, 503 and 504 are retried (after
/// `Retry-After`), 413 splits the batch, every other failure is final. The answer's `Status`
/// message, when it is JSON, says why.
pub(super) fn verdict(status: u16, body: &[u8], retry_after: Option<Duration>) -> Verdict {
    let reason = || {
        #[derive(Deserialize)]
        struct Status {
            #[serde(default)]
            message: String,
        }
        let message = serde_json::from_slice::<Status>(body).map(|s| s.message).unwrap_or_default();
        let message: String = message.chars().filter(|c| !c.is_control()).take(200).collect();
        match message.is_empty() {
            true => format!("HTTP {status}"),
            false => format!("HTTP {status}: {message}"),
        }
    };
    match status {
        200..=299 => Verdict::Delivered,
        413 => Verdict::Split,
        429 | 502 | 503 | 504 => Verdict::Retry { after: retry_after, reason: reason() },
        _ => Verdict::Reject { reason: reason() },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::EventKind;
    use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsPartialSuccess;

    fn event(severity: u8, line: &str) -> Arc<Encoded> {
        Arc::new(Encoded {
            kind: if severity == 0 { EventKind::Event } else { EventKind::Alert },
            severity,
            action: "incident_opened".into(),
            line: format!("{line}\n").into_bytes(),
            id: "id-1".into(),
            at_ms: 1_700_000_000_123,
        })
    }

    const ALERT: &str = r#"{"event":{"id":"id-1","severity":4},"process":{"pid":42,"user":{"id":"1000"}},
        "destination":{"ip":"127.0.0.1","port":4444},"rule":{"name":["A","B"]},"ratio":0.5,"none":null}"#;

    fn envelope() -> Envelope {
        Envelope { host: "web-1".into(), host_id: "abc".into(), ..Envelope::default() }
    }

    #[test]
    fn protobuf_bodies_carry_the_event_its_attributes_and_the_resource() {
        let mut out = Vec::new();
        body(&[event(4, ALERT), event(0, "not json")], &envelope(), Encoding::Protobuf, &mut out);
        let request = ExportLogsServiceRequest::decode(&out[..]).unwrap();
        let resource = request.resource_logs[0].resource.as_ref().unwrap();
        let keys: Vec<&str> = resource.attributes.iter().map(|kv| kv.key.as_str()).collect();
        assert_eq!(keys, ["service.name", "service.version", "host.name", "host.id"]);
        let records = &request.resource_logs[0].scope_logs[0].log_records;
        assert_eq!(records.len(), 2);
        let alert = &records[0];
        assert_eq!(alert.time_unix_nano, 1_700_000_000_123_000_000);
        assert_eq!((alert.severity_number, alert.severity_text.as_str()), (18, "high"));
        assert_eq!(alert.event_name, "sockwatch.incident_opened");
        let attribute = |key: &str| {
            alert.attributes.iter().find(|kv| kv.key == key).and_then(|kv| kv.value.clone())
        };
        let int = |n| Some(AnyValue { value: Some(any_value::Value::IntValue(n)) });
        assert_eq!(attribute("process.pid"), int(42));
        assert_eq!(attribute("destination.port"), int(4444));
        assert!(matches!(
            attribute("security_rule.name").and_then(|v| v.value),
            Some(any_value::Value::ArrayValue(a)) if a.values.len() == 2
        ));
        assert_eq!(
            attribute("log.record.uid"),
            Some(value(any_value::Value::StringValue("id-1".into())))
        );
        assert_eq!(attribute("user.id"), Some(value(any_value::Value::StringValue("1000".into()))));
        // The body is the event's JSON text, whole.
        let Some(any_value::Value::StringValue(body)) = alert.body.clone().unwrap().value else {
            panic!("{:?}", alert.body)
        };
        assert_eq!(body, ALERT);
        // A line that is not JSON is still delivered, without attributes but its id.
        let text = &records[1];
        assert_eq!(
            text.body.clone().unwrap().value,
            Some(any_value::Value::StringValue("not json".into()))
        );
        assert_eq!(text.attributes.len(), 1);
        assert_eq!((text.severity_number, text.severity_text.as_str()), (9, "INFO"));
    }

    #[test]
    fn json_bodies_follow_otlp_json() {
        let mut out = Vec::new();
        body(&[event(5, ALERT)], &envelope(), Encoding::Json, &mut out);
        let request: Value = serde_json::from_slice(&out).unwrap();
        let record = &request["resourceLogs"][0]["scopeLogs"][0]["logRecords"][0];
        // int64 as strings, enums as integers, lowerCamelCase keys.
        assert_eq!(record["timeUnixNano"], "1700000000123000000");
        assert_eq!(record["severityNumber"], 21);
        assert_eq!(record["eventName"], "sockwatch.incident_opened");
        let pid =
            record["attributes"].as_array().unwrap().iter().find(|kv| kv["key"] == "process.pid");
        assert_eq!(pid.unwrap()["value"], serde_json::json!({"intValue": "42"}));
    }

    #[test]
    fn a_partial_success_rejects_that_many_of_the_batch() {
        let answer = ExportLogsServiceResponse {
            partial_success: Some(ExportLogsPartialSuccess {
                rejected_log_records: 2,
                error_message: "over\nquota".into(),
            }),
        };
        let verdicts = partial_success(&answer.encode_to_vec(), Encoding::Protobuf, 5).unwrap();
        let rejected = verdicts.iter().filter(|v| matches!(v, Verdict::Reject { .. })).count();
        assert_eq!((verdicts.len(), rejected), (5, 2));
        let Verdict::Reject { reason } = &verdicts[4] else { panic!("{verdicts:?}") };
        assert_eq!(reason, "OTLP partial success: 2 of 5 records rejected: overquota");
        // OTLP/JSON writes int64 as a string; a number is taken too; more than the batch is
        // the whole batch.
        for json in [
            r#"{"partialSuccess":{"rejectedLogRecords":"9"}}"#,
            r#"{"partialSuccess":{"rejectedLogRecords":9}}"#,
        ] {
            let verdicts = partial_success(json.as_bytes(), Encoding::Json, 3).unwrap();
            assert!(verdicts.iter().all(|v| matches!(v, Verdict::Reject { .. })), "{json}");
        }
        // All accepted: an empty answer, an empty partial_success, a warning without rejections.
        for body in [&b""[..], b"{}", br#"{"partialSuccess":{"errorMessage":"slow down"}}"#] {
            assert_eq!(partial_success(body, Encoding::Json, 3), None);
        }
        assert_eq!(partial_success(b"", Encoding::Protobuf, 3), None);
        let negative = ExportLogsServiceResponse {
            partial_success: Some(ExportLogsPartialSuccess {
                rejected_log_records: -1,
                error_message: String::new(),
            }),
        };
        assert_eq!(partial_success(&negative.encode_to_vec(), Encoding::Protobuf, 3), None);
    }

    #[test]
    fn statuses_follow_the_otlp_specification() {
        let retried = |status| matches!(verdict(status, b"", None), Verdict::Retry { .. });
        for status in [429, 502, 503, 504] {
            assert!(retried(status), "{status}");
        }
        for status in [400, 401, 404, 500, 501] {
            assert!(matches!(verdict(status, b"", None), Verdict::Reject { .. }), "{status}");
        }
        assert_eq!(verdict(413, b"", None), Verdict::Split);
        assert_eq!(verdict(200, b"", None), Verdict::Delivered);
        let after = Some(Duration::from_secs(7));
        assert_eq!(
            verdict(503, br#"{"code":14,"message":"collector\tbusy"}"#, after),
            Verdict::Retry { after, reason: "HTTP 503: collectorbusy".into() }
        );
    }
}
