//! The spool's on-disk record: one encoded event, length-prefixed and checksummed, so that a
//! record torn by a crash (or a flipped bit) is recognised as such and never parsed as an event.
//!
//! ```text
//! record  = length:u32le crc32:u32le payload[length]
//! payload = version:u8 kind:u8 severity:u8 at_ms:u64le
//!           action_len:u8 action id_len:u8 id line
//! ```
//! The CRC covers the payload. Nothing in a record is trusted before its CRC matches.

use crate::event::{Encoded, EventKind};
use std::borrow::Cow;

/// Bytes before the payload.
pub const HEADER: usize = 8;
/// Larger records are corruption: no event line comes near this (long fields are capped).
pub const MAX_PAYLOAD: usize = 16 * 1024 * 1024;
const VERSION: u8 = 1;

/// Why bytes are not a record.
#[derive(Debug, PartialEq, Eq)]
pub enum Bad {
    /// The bytes end inside a record: written in part (a crash mid-write), or still being written.
    Torn,
    /// The bytes are not a record this version wrote.
    Corrupt(&'static str),
}

/// Appends `event` as one record to `out`; returns the record's size.
pub fn encode(event: &Encoded, out: &mut Vec<u8>) -> usize {
    let start = out.len();
    out.extend_from_slice(&[0; HEADER]);
    out.push(VERSION);
    out.push(kind_code(event.kind));
    out.push(event.severity);
    out.extend_from_slice(&event.at_ms.to_le_bytes());
    push_short(out, event.action.as_bytes());
    push_short(out, event.id.as_bytes());
    out.extend_from_slice(&event.line);
    let payload = &out[start + HEADER..];
    let length = u32::try_from(payload.len()).unwrap_or(u32::MAX);
    let crc = crc32fast::hash(payload);
    out[start..start + 4].copy_from_slice(&length.to_le_bytes());
    out[start + 4..start + 8].copy_from_slice(&crc.to_le_bytes());
    out.len() - start
}

/// Action and id are short by construction (an action name, a UUID); anything longer is cut
/// rather than written unreadably.
fn push_short(out: &mut Vec<u8>, bytes: &[u8]) {
    let bytes = &bytes[..bytes.len().min(255)];
    out.push(bytes.len() as u8);
    out.extend_from_slice(bytes);
}

/// The record at the start of `bytes` and its size.
pub fn decode(bytes: &[u8]) -> Result<(Encoded, usize), Bad> {
    if bytes.len() < HEADER {
        return Err(Bad::Torn);
    }
    let length = u32::from_le_bytes(bytes[0..4].try_into().expect("4 bytes")) as usize;
    let crc = u32::from_le_bytes(bytes[4..8].try_into().expect("4 bytes"));
    if length > MAX_PAYLOAD {
        return Err(Bad::Corrupt("length out of range"));
    }
    let Some(payload) = bytes.get(HEADER..HEADER + length) else {
        return Err(Bad::Torn);
    };
    if crc32fast::hash(payload) != crc {
        return Err(Bad::Corrupt("checksum mismatch"));
    }
    let mut reader = Reader(payload);
    if reader.byte()? != VERSION {
        return Err(Bad::Corrupt("unknown record version"));
    }
    let kind = match reader.byte()? {
        0 => EventKind::Event,
        1 => EventKind::State,
        2 => EventKind::Alert,
        _ => return Err(Bad::Corrupt("unknown event kind")),
    };
    let severity = reader.byte()?;
    let at_ms = u64::from_le_bytes(reader.take(8)?.try_into().expect("8 bytes"));
    let action = reader.short_text()?;
    let id = reader.short_text()?;
    let line = reader.0.to_vec();
    let action = Cow::Owned(action);
    Ok((Encoded { kind, severity, action, line, id, at_ms }, HEADER + length))
}

fn kind_code(kind: EventKind) -> u8 {
    match kind {
        EventKind::Event => 0,
        EventKind::State => 1,
        EventKind::Alert => 2,
    }
}

struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], Bad> {
        if self.0.len() < n {
            return Err(Bad::Corrupt("payload shorter than its fields"));
        }
        let (head, rest) = self.0.split_at(n);
        self.0 = rest;
        Ok(head)
    }

    fn byte(&mut self) -> Result<u8, Bad> {
        Ok(self.take(1)?[0])
    }

    fn short_text(&mut self) -> Result<String, Bad> {
        let n = self.byte()? as usize;
        String::from_utf8(self.take(n)?.to_vec()).map_err(|_| Bad::Corrupt("text not UTF-8"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn event(kind: EventKind, line: &[u8]) -> Encoded {
        Encoded {
            kind,
            severity: 7,
            action: Cow::Borrowed("socket_opened"),
            line: line.to_vec(),
            id: "0191d5c0-0000-7000-8000-000000000000".into(),
            at_ms: 1_732_500_000_123,
        }
    }

    fn same(a: &Encoded, b: &Encoded) -> bool {
        (a.kind, a.severity, &a.action, &a.line, &a.id, a.at_ms)
            == (b.kind, b.severity, &b.action, &b.line, &b.id, b.at_ms)
    }

    #[test]
    fn a_record_reads_back_as_the_event_it_was() {
        let mut out = Vec::new();
        let original = event(EventKind::Alert, b"{\"x\":1}\n");
        let size = encode(&original, &mut out);
        assert_eq!(size, out.len());
        let (read, used) = decode(&out).expect("a whole record");
        assert!(same(&read, &original));
        assert_eq!(used, size);
    }

    #[test]
    fn every_prefix_of_a_record_is_torn_and_every_bit_flip_is_caught() {
        let mut out = Vec::new();
        encode(&event(EventKind::Event, b"{\"line\":true}\n"), &mut out);
        for cut in 0..out.len() {
            assert_eq!(decode(&out[..cut]).err(), Some(Bad::Torn), "cut at {cut}");
        }
        for bit in 0..out.len() * 8 {
            let mut flipped = out.clone();
            flipped[bit / 8] ^= 1 << (bit % 8);
            match decode(&flipped) {
                Err(Bad::Corrupt(_)) | Err(Bad::Torn) => {}
                Ok(_) => panic!("bit {bit} flipped and still read as a record"),
            }
        }
    }

    proptest! {
        #[test]
        fn records_round_trip(
            kind in 0u8..3,
            severity: u8,
            at_ms: u64,
            action in "[a-z_]{0,40}",
            id in "[0-9a-f-]{0,36}",
            line in proptest::collection::vec(any::<u8>(), 0..2000),
        ) {
            let kind = [EventKind::Event, EventKind::State, EventKind::Alert][kind as usize];
            let original = Encoded { kind, severity, action: Cow::Owned(action), line, id, at_ms };
            let mut out = vec![0xAA];
            encode(&original, &mut out);
            let (read, used) = decode(&out[1..]).expect("round trip");
            prop_assert!(same(&read, &original));
            prop_assert_eq!(used, out.len() - 1);
        }

        #[test]
        fn hostile_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..300)) {
            let _ = decode(&bytes);
        }
    }
}
