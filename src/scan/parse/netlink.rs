//! Netlink framing (include/uapi/linux/netlink.h): a receive buffer holds messages, each a
//! 16-byte `nlmsghdr` (length, type, flags, sequence, sender port) and a payload, padded to 4
//! bytes. Shared by the sock_diag dump reader and the process connector.

use super::ParseError;

pub(crate) const HEADER_LEN: usize = 16;
/// The kernel refused a request (an errno follows).
pub(crate) const NLMSG_ERROR: u16 = 2;
/// The end of a dump; also the type of every process connector message.
pub(crate) const NLMSG_DONE: u16 = 3;

/// One netlink message, borrowed from the receive buffer.
pub(crate) struct Message<'a> {
    pub kind: u16,
    pub flags: u16,
    pub payload: &'a [u8],
}

/// Takes the next message off `rest`. A length the buffer cannot hold is an error, and then
/// nothing after it can be trusted: callers stop at the first error.
fn next_message<'a>(rest: &mut &'a [u8]) -> Result<Message<'a>, ParseError> {
    let header = rest.get(..HEADER_LEN).ok_or(ParseError::MissingField("nlmsghdr"))?;
    let len = u32_at(header, 0) as usize;
    if len < HEADER_LEN || len > rest.len() {
        return Err(ParseError::Malformed("nlmsg_len"));
    }
    let message = Message {
        kind: u16_at(header, 4),
        flags: u16_at(header, 6),
        payload: &rest[HEADER_LEN..len],
    };
    *rest = rest.get(len.next_multiple_of(4)..).unwrap_or_default();
    Ok(message)
}

/// `parse` applied to each message of `buf`, in order; iteration ends after the first error.
pub(crate) fn parse_messages<'a, T>(
    buf: &'a [u8],
    parse: impl Fn(Message<'a>) -> Result<T, ParseError>,
) -> impl Iterator<Item = Result<T, ParseError>> {
    let mut rest = buf;
    std::iter::from_fn(move || {
        if rest.is_empty() {
            return None;
        }
        let parsed = next_message(&mut rest).and_then(&parse);
        if parsed.is_err() {
            rest = &[];
        }
        Some(parsed)
    })
}

/// Host-order fields: netlink speaks the kernel's byte order. Callers check the length first.
pub(crate) fn u16_at(bytes: &[u8], at: usize) -> u16 {
    u16::from_ne_bytes([bytes[at], bytes[at + 1]])
}

pub(crate) fn u32_at(bytes: &[u8], at: usize) -> u32 {
    u32::from_ne_bytes(bytes[at..at + 4].try_into().expect("4 bytes"))
}

/// One message: `payload` after a header, padded.
pub(crate) fn frame(kind: u16, flags: u16, payload: &[u8]) -> Vec<u8> {
    let len = (HEADER_LEN + payload.len()) as u32;
    let mut out = Vec::new();
    out.extend_from_slice(&len.to_ne_bytes());
    out.extend_from_slice(&kind.to_ne_bytes());
    out.extend_from_slice(&flags.to_ne_bytes());
    out.extend_from_slice(&[0; 8]);
    out.extend_from_slice(payload);
    out.resize(out.len().next_multiple_of(4), 0);
    out
}
