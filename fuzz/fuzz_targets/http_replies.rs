//! What a SIEM receiver (or something pretending to be one) answers: HEC replies, `_bulk` item
//! lists, OTLP partial successes (protobuf and JSON) and `Retry-After` headers. Never a panic; a verdict for every event of the batch, never
//! more; the receiver's `Retry-After` passed on as given; no control character carried into a reason (they
//! reach logs and events).
#![no_main]

use libfuzzer_sys::fuzz_target;
use sockwatch::sinks::{HttpFormat, OtlpEncoding, Verdict, parse_retry_after};

fuzz_target!(|data: &[u8]| {
    let Some((&[events, high, low], body)) = data.split_first_chunk::<3>() else { return };
    let events = usize::from(events);
    let status = 100 + u16::from_be_bytes([high, low]) % 500;
    // The header's delay; a verdict carries it unchanged (the backoff caps it at MAX_BACKOFF).
    let retry_after = std::str::from_utf8(body).ok().and_then(parse_retry_after);
    let reasons = |verdict: &Verdict| match verdict {
        Verdict::Retry { reason, after } => {
            assert!(after.is_none_or(|a| a == retry_after.unwrap_or(a)));
            Some(reason.clone())
        }
        Verdict::Reject { reason } => Some(reason.clone()),
        _ => None,
    };
    for format in [
        HttpFormat::Ndjson,
        HttpFormat::SplunkHec,
        HttpFormat::ElasticsearchBulk,
        HttpFormat::Otlp(OtlpEncoding::Protobuf),
        HttpFormat::Otlp(OtlpEncoding::Json),
    ] {
        let whole = format.verdict(status, body, retry_after);
        if let Some(reason) = reasons(&whole) {
            assert!(!reason.chars().any(char::is_control), "{reason:?}");
        }
        if let Some(each) = format.per_event(status, body, events) {
            assert_eq!(each.len(), events);
            for reason in each.iter().filter_map(reasons) {
                assert!(!reason.chars().any(char::is_control), "{reason:?}");
            }
        }
    }
});
