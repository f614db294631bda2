//! Request bodies on the wire (../shared/research/sinks-anchors.md §4) and what a receiver's
//! answer says about each event in them.

use super::otlp::{self, Encoding};
use super::retry::{Verdict, by_status};
use crate::event::Encoded;
use crate::sinks::Schema;
use serde::Deserialize;
use std::sync::Arc;
use std::time::Duration;

/// `format = "…"`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Format {
    /// One event per line, each line ending in a newline (a generic webhook).
    #[default]
    Ndjson,
    /// Splunk HTTP Event Collector envelopes, concatenated.
    SplunkHec,
    /// Elasticsearch / OpenSearch `_bulk`: a `create` action with `_id` = `event.id` before each
    /// event, so a batch sent twice is stored once.
    ElasticsearchBulk,
    /// OTLP/HTTP logs: what `type = "otlp"` sends, not a `format` of `type = "http"`.
    #[serde(skip)]
    Otlp(Encoding),
}

/// `splunk = { … }`: the HEC envelope's metadata.
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SplunkFields {
    /// `index` (the token's default index when absent).
    pub index: Option<String>,
    /// `source` (default `sockwatch`).
    pub source: Option<String>,
    /// `sourcetype` (default `sockwatch:ecs`, or `sockwatch:ocsf` for `schema = "ocsf"`).
    pub sourcetype: Option<String>,
}

/// What a body needs besides the events.
#[derive(Clone, Debug, Default)]
pub struct Envelope {
    /// `host` of HEC envelopes.
    pub host: String,
    /// HEC metadata.
    pub splunk: SplunkFields,
    /// `_index` of bulk actions (the URL's index when absent).
    pub index: Option<String>,
    /// The shape of the events (the default HEC `sourcetype` names it).
    pub schema: Schema,
    /// `host.id`, an OTLP resource attribute.
    pub host_id: String,
}

impl Format {
    /// `Content-Type` of the body.
    pub fn content_type(self) -> &'static str {
        match self {
            Format::Ndjson | Format::ElasticsearchBulk => "application/x-ndjson",
            Format::SplunkHec => "application/json",
            Format::Otlp(encoding) => encoding.content_type(),
        }
    }

    /// The bytes one event adds to a body (for splitting batches by size).
    pub fn cost(self, event: &Encoded) -> usize {
        event.line.len()
            + match self {
                Format::Ndjson => 0,
                Format::SplunkHec => 160,
                Format::ElasticsearchBulk => 80,
                // The attributes repeat a few fields; protobuf framing is small.
                Format::Otlp(_) => 400,
            }
    }

    /// Appends the body for `events` to `out`.
    pub fn body(self, events: &[Arc<Encoded>], envelope: &Envelope, out: &mut Vec<u8>) {
        if let Format::Otlp(encoding) = self {
            return otlp::body(events, envelope, encoding, out);
        }
        for event in events {
            match self {
                Format::Ndjson => out.extend_from_slice(&event.line),
                Format::SplunkHec => splunk_hec(event, envelope, out),
                Format::ElasticsearchBulk => {
                    let action = match &envelope.index {
                        Some(index) => {
                            serde_json::json!({"create": {"_index": index, "_id": event.id}})
                        }
                        None => serde_json::json!({"create": {"_id": event.id}}),
                    };
                    serde_json::to_writer(&mut *out, &action).expect("writing to a Vec");
                    out.push(b'\n');
                    out.extend_from_slice(&event.line);
                }
                Format::Otlp(_) => unreachable!("one request for the batch, above"),
            }
        }
    }

    /// What a response means for each event of the batch it answered, in batch order. `None`
    /// when the whole batch shares the verdict on the status.
    pub fn per_event(self, status: u16, body: &[u8], events: usize) -> Option<Vec<Verdict>> {
        match self {
            Format::ElasticsearchBulk if (200..300).contains(&status) => {
                Some(bulk_items(body, events))
            }
            Format::SplunkHec if status == 400 => hec_invalid_event(body, events),
            Format::Otlp(encoding) if (200..300).contains(&status) => {
                otlp::partial_success(body, encoding, events)
            }
            _ => None,
        }
    }

    /// The verdict on a whole-batch answer.
    pub fn verdict(self, status: u16, body: &[u8], retry_after: Option<Duration>) -> Verdict {
        if let Format::Otlp(_) = self {
            return otlp::verdict(status, body, retry_after);
        }
        match (self, by_status(status, retry_after)) {
            // HEC puts its reason in the body: keep it (it never holds the token).
            (Format::SplunkHec, Verdict::Reject { reason }) => match hec_reply(body) {
                Some(HecReply { code, text, .. }) => {
                    Verdict::Reject { reason: format!("{reason}: HEC code {code}: {text}") }
                }
                None => Verdict::Reject { reason },
            },
            (_, verdict) => verdict,
        }
    }
}

/// `{"time","host","source","sourcetype","index","event","fields"}`, with the event embedded as
/// the JSON it already is, one envelope per line.
fn splunk_hec(event: &Encoded, envelope: &Envelope, out: &mut Vec<u8>) {
    let time = event.at_ms as f64 / 1000.0;
    let splunk = &envelope.splunk;
    let mut head = serde_json::json!({
        "time": time,
        "host": envelope.host,
        "source": splunk.source.as_deref().unwrap_or("sockwatch"),
        "sourcetype": splunk.sourcetype.as_deref().unwrap_or(match envelope.schema {
            Schema::Ecs => "sockwatch:ecs",
            Schema::Ocsf => "sockwatch:ocsf",
        }),
        // Indexed fields: flat strings, for tstats and fast filters.
        "fields": {
            "event.kind": event.kind,
            "event.action": event.action,
            "event.severity": event.severity.to_string(),
        },
    });
    if let Some(index) = &splunk.index {
        head["index"] = serde_json::json!(index);
    }
    let head = serde_json::to_vec(&head).expect("a JSON value always serialises");
    // `{…head…,"event":<line>}`: the head without its closing brace, then the event.
    out.extend_from_slice(&head[..head.len() - 1]);
    out.extend_from_slice(b",\"event\":");
    out.extend_from_slice(event.line.strip_suffix(b"\n").unwrap_or(&event.line));
    out.extend_from_slice(b"}\n");
}

/// A HEC answer body: `{"text", "code"[, "invalid-event-number"]}`, the text made printable.
struct HecReply {
    code: i64,
    text: String,
    invalid_event: Option<usize>,
}

fn hec_reply(body: &[u8]) -> Option<HecReply> {
    #[derive(Deserialize)]
    struct Reply {
        code: i64,
        #[serde(default)]
        text: String,
        #[serde(rename = "invalid-event-number")]
        invalid_event: Option<usize>,
    }
    let Reply { code, text, invalid_event } = serde_json::from_slice(body).ok()?;
    let text = text.chars().filter(|c| !c.is_control()).take(200).collect();
    Some(HecReply { code, text, invalid_event })
}

/// HEC code 6 (invalid data format) names the first event it could not read
/// (`invalid-event-number`): HEC indexes a batch in order and stops there. That event is refused;
/// the ones before it are in; the ones after it are sent again, so one bad event does not take
/// its batch with it. `None` (the whole batch shares the 400) for any other answer.
fn hec_invalid_event(body: &[u8], events: usize) -> Option<Vec<Verdict>> {
    let reply = hec_reply(body)?;
    let invalid = reply.invalid_event.filter(|&n| reply.code == 6 && n < events)?;
    let mut verdicts = vec![Verdict::Delivered; invalid];
    verdicts.push(Verdict::Reject { reason: format!("HTTP 400: HEC code 6: {}", reply.text) });
    verdicts.resize(
        events,
        Verdict::Retry { after: None, reason: "sent after an event HEC refused".into() },
    );
    Some(verdicts)
}

/// Per-item results of a `_bulk` answer: 2xx and 409 (already stored: a resent batch) are
/// delivered, 429 and 5xx retried, other statuses rejected with the error type. An answer that
/// cannot be read, or lists the wrong number of items, retries the whole batch: `create` with
/// fixed ids makes that safe.
fn bulk_items(body: &[u8], events: usize) -> Vec<Verdict> {
    #[derive(Deserialize)]
    struct Bulk {
        #[serde(default)]
        errors: bool,
        #[serde(default)]
        items: Vec<std::collections::HashMap<String, Item>>,
    }
    #[derive(Deserialize)]
    struct Item {
        status: u16,
        #[serde(default)]
        error: Option<ItemError>,
    }
    #[derive(Deserialize)]
    struct ItemError {
        #[serde(rename = "type", default)]
        kind: String,
        #[serde(default)]
        reason: String,
    }
    let unreadable = |why: &str| {
        vec![Verdict::Retry { after: None, reason: format!("bulk answer {why}") }; events]
    };
    let Ok(bulk) = serde_json::from_slice::<Bulk>(body) else {
        return unreadable("is not JSON");
    };
    if !bulk.errors && bulk.items.is_empty() {
        // Some proxies strip the body; `errors: false` alone still says all went in.
        return vec![Verdict::Delivered; events];
    }
    if bulk.items.len() != events {
        return unreadable("lists a different number of items");
    }
    bulk.items
        .into_iter()
        .map(|item| {
            let Some(item) = item.into_values().next() else {
                return Verdict::Retry { after: None, reason: "bulk item without a result".into() };
            };
            match item.status {
                200..=299 | 409 => Verdict::Delivered,
                429 | 500..=599 => {
                    Verdict::Retry { after: None, reason: format!("bulk item {}", item.status) }
                }
                status => {
                    // The server's words, for the operator: which field failed to map, say.
                    let (kind, why) = item.error.map(|e| (e.kind, e.reason)).unwrap_or_default();
                    let printable = |s: String, n| -> String {
                        s.chars().filter(|c| !c.is_control()).take(n).collect()
                    };
                    let (kind, why) = (printable(kind, 100), printable(why, 300));
                    let reason = if why.is_empty() {
                        format!("bulk item {status} {kind}")
                    } else {
                        format!("bulk item {status} {kind}: {why}")
                    };
                    Verdict::Reject { reason }
                }
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::EventKind;

    fn event(id: &str, line: &str) -> Arc<Encoded> {
        Arc::new(Encoded {
            kind: EventKind::Alert,
            severity: 4,
            action: "incident_opened".into(),
            line: format!("{line}\n").into_bytes(),
            id: id.into(),
            at_ms: 1_764_000_000_123,
        })
    }

    fn lines(body: &[u8]) -> Vec<serde_json::Value> {
        body.split(|&b| b == b'\n')
            .filter(|l| !l.is_empty())
            .map(|l| serde_json::from_slice(l).unwrap())
            .collect()
    }

    #[test]
    fn ndjson_is_the_lines_with_a_trailing_newline() {
        let mut out = Vec::new();
        let events = [event("a", r#"{"x":1}"#), event("b", r#"{"x":2}"#)];
        Format::Ndjson.body(&events, &Envelope::default(), &mut out);
        assert_eq!(out, b"{\"x\":1}\n{\"x\":2}\n");
    }

    #[test]
    fn bulk_creates_with_the_event_id() {
        let mut out = Vec::new();
        let envelope = Envelope { index: Some("sockwatch".into()), ..Envelope::default() };
        Format::ElasticsearchBulk.body(&[event("id-1", r#"{"x":1}"#)], &envelope, &mut out);
        assert!(out.ends_with(b"\n"), "a bulk body must end with a newline");
        let parsed = lines(&out);
        assert_eq!(
            parsed[0],
            serde_json::json!({"create": {"_index": "sockwatch", "_id": "id-1"}})
        );
        assert_eq!(parsed[1], serde_json::json!({"x": 1}));
    }

    #[test]
    fn hec_envelopes_carry_epoch_seconds_and_flat_fields() {
        let mut out = Vec::new();
        let envelope = Envelope {
            host: "web-1".into(),
            splunk: SplunkFields { index: Some("edr".into()), ..SplunkFields::default() },
            index: None,
            schema: Schema::Ecs,
            host_id: String::new(),
        };
        let events = [event("a", r#"{"x":1}"#), event("b", r#"{"x":2}"#)];
        Format::SplunkHec.body(&events, &envelope, &mut out);
        let parsed = lines(&out);
        assert_eq!(parsed.len(), 2);
        assert_eq!(parsed[0]["time"], serde_json::json!(1_764_000_000.123));
        assert_eq!(parsed[0]["host"], "web-1");
        assert_eq!(parsed[0]["index"], "edr");
        assert_eq!(parsed[0]["sourcetype"], "sockwatch:ecs");
        assert_eq!(parsed[0]["event"], serde_json::json!({"x": 1}));
        assert_eq!(parsed[0]["fields"]["event.kind"], "alert");
        assert_eq!(parsed[0]["fields"]["event.severity"], "4");
        assert_eq!(parsed[1]["event"], serde_json::json!({"x": 2}));
    }

    #[test]
    fn bulk_items_settle_one_by_one() {
        let body = br#"{"errors":true,"items":[
            {"create":{"status":201}},
            {"create":{"status":409,"error":{"type":"version_conflict_engine_exception"}}},
            {"create":{"status":429,"error":{"type":"es_rejected_execution_exception"}}},
            {"create":{"status":400,"error":{"type":"mapper_parsing_exception"}}},
            {"create":{"status":503}}]}"#;
        let verdicts = Format::ElasticsearchBulk.per_event(200, body, 5).unwrap();
        assert_eq!(verdicts[0], Verdict::Delivered);
        assert_eq!(verdicts[1], Verdict::Delivered, "409 on create: stored by an earlier send");
        assert!(matches!(verdicts[2], Verdict::Retry { .. }));
        assert_eq!(
            verdicts[3],
            Verdict::Reject { reason: "bulk item 400 mapper_parsing_exception".into() }
        );
        assert!(matches!(verdicts[4], Verdict::Retry { .. }));
        // Unreadable or mismatched answers retry everything (ids make that idempotent).
        let garbage = Format::ElasticsearchBulk.per_event(200, b"<html>", 2).unwrap();
        assert!(garbage.iter().all(|v| matches!(v, Verdict::Retry { .. })));
        let short = Format::ElasticsearchBulk.per_event(200, br#"{"errors":true,"items":[]}"#, 2);
        assert!(short.unwrap().iter().all(|v| matches!(v, Verdict::Retry { .. })));
        assert_eq!(Format::ElasticsearchBulk.per_event(503, b"", 2), None);
        assert_eq!(Format::Ndjson.per_event(200, b"", 2), None);
    }

    #[test]
    fn hec_rejections_keep_the_reply_code_and_text() {
        let verdict = Format::SplunkHec.verdict(403, br#"{"text":"Invalid token","code":4}"#, None);
        assert_eq!(
            verdict,
            Verdict::Reject { reason: "HTTP 403: HEC code 4: Invalid token".into() }
        );
        let busy = Format::SplunkHec.verdict(503, br#"{"text":"Server is busy","code":9}"#, None);
        assert!(matches!(busy, Verdict::Retry { .. }));
    }

    #[test]
    fn hec_code_6_refuses_the_event_it_names_and_resends_the_rest() {
        let body = br#"{"text":"Invalid data format","code":6,"invalid-event-number":2}"#;
        let verdicts = Format::SplunkHec.per_event(400, body, 4).unwrap();
        assert_eq!(verdicts[..2], [Verdict::Delivered, Verdict::Delivered]);
        assert_eq!(
            verdicts[2],
            Verdict::Reject { reason: "HTTP 400: HEC code 6: Invalid data format".into() }
        );
        assert!(matches!(verdicts[3], Verdict::Retry { .. }));
        // Any other 400, or a number outside the batch, is the whole batch's.
        let index = br#"{"text":"Incorrect index","code":7,"invalid-event-number":1}"#;
        assert_eq!(Format::SplunkHec.per_event(400, index, 4), None);
        let beyond = br#"{"text":"Invalid data format","code":6,"invalid-event-number":4}"#;
        assert_eq!(Format::SplunkHec.per_event(400, beyond, 4), None);
        assert_eq!(Format::SplunkHec.per_event(400, b"oops", 4), None);
    }
}
