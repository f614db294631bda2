//! The kernel's process connector (include/uapi/linux/connector.h, cn_proc.h): each netlink
//! message carries a `cn_msg` (id, sequence, ack, length, flags: 20 bytes) and, for the process
//! events channel, a `proc_event` (what, cpu, timestamp: 16 bytes, then the event's data). Only
//! what the agent acts on is read: that a process executed, and the kernel's answer to a
//! subscription request (`subscription_request` builds one). The bytes come from a socket other
//! processes could address, so every length is checked.

use super::ParseError;
use super::netlink::{self, NLMSG_DONE, u16_at, u32_at};

const CN_MSG_LEN: usize = 20;
const PROC_EVENT_HEADER_LEN: usize = 16;
/// `CN_IDX_PROC` and `CN_VAL_PROC`: the process events channel (the index is also the multicast
/// group a listening socket binds to).
pub const CN_IDX_PROC: u32 = 1;
const CN_VAL_PROC: u32 = 1;
const PROC_EVENT_NONE: u32 = 0;
const PROC_EVENT_EXEC: u32 = 2;

/// One message from the process connector.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ProcEvent {
    /// A process called execve: its thread group (the pid /proc lists).
    Exec {
        /// `process_tgid`.
        tgid: u32,
    },
    /// The kernel's answer to a listen or ignore request. Answers go to every listener, so the
    /// request's number comes back with it, plus one. (The sequence number is the kernel's own
    /// since 6.x, not the request's.)
    Ack {
        /// 0, or a positive errno.
        errno: u32,
        /// `cn_msg.ack`.
        acknowledgement: u32,
    },
    /// Another event (fork, exit, uid change, …) or another connector channel.
    Other,
}

/// The events in one `recv` from a process connector socket, in order; iteration ends at the
/// first malformed message.
pub fn proc_events(buf: &[u8]) -> impl Iterator<Item = Result<ProcEvent, ParseError>> {
    netlink::parse_messages(buf, |message| parse_cn_msg(message.payload))
}

fn parse_cn_msg(payload: &[u8]) -> Result<ProcEvent, ParseError> {
    let header = payload.get(..CN_MSG_LEN).ok_or(ParseError::MissingField("cn_msg"))?;
    if u32_at(header, 0) != CN_IDX_PROC || u32_at(header, 4) != CN_VAL_PROC {
        return Ok(ProcEvent::Other);
    }
    let data_len = usize::from(u16_at(header, 16));
    let data = payload
        .get(CN_MSG_LEN..CN_MSG_LEN + data_len)
        .ok_or(ParseError::Malformed("cn_msg.len"))?;
    let event = data.get(..PROC_EVENT_HEADER_LEN).ok_or(ParseError::MissingField("proc_event"))?;
    let body = &data[PROC_EVENT_HEADER_LEN..];
    match u32_at(event, 0) {
        PROC_EVENT_NONE => {
            let errno = body.get(..4).ok_or(ParseError::MissingField("proc_event.ack"))?;
            Ok(ProcEvent::Ack { errno: u32_at(errno, 0), acknowledgement: u32_at(header, 12) })
        }
        PROC_EVENT_EXEC => {
            // process_pid, then process_tgid.
            let ids = body.get(..8).ok_or(ParseError::MissingField("proc_event.exec"))?;
            Ok(ProcEvent::Exec { tgid: u32_at(ids, 4) })
        }
        _ => Ok(ProcEvent::Other),
    }
}

/// `PROC_CN_MCAST_LISTEN` (start events flowing to sockets bound to the channel) or, with
/// `listen` false, `PROC_CN_MCAST_IGNORE` (the kernel counts listeners, and generates events
/// while any are left). `tag` is its acknowledgement number, to know the answer by.
pub fn subscription_request(listen: bool, tag: u32) -> Vec<u8> {
    let operation: u32 = if listen { 1 } else { 2 };
    let mut cn_msg = Vec::with_capacity(CN_MSG_LEN + 4);
    for field in [CN_IDX_PROC, CN_VAL_PROC, tag, tag] {
        cn_msg.extend_from_slice(&field.to_ne_bytes());
    }
    cn_msg.extend_from_slice(&4u16.to_ne_bytes());
    cn_msg.extend_from_slice(&0u16.to_ne_bytes());
    cn_msg.extend_from_slice(&operation.to_ne_bytes());
    netlink::frame(NLMSG_DONE, 0, &cn_msg)
}

#[cfg(test)]
mod tests {
    use super::*;
    use netlink::frame;
    use proptest::prelude::*;

    fn cn_msg(idx: u32, what: u32, body: &[u8]) -> Vec<u8> {
        let mut data = Vec::new();
        data.extend_from_slice(&what.to_ne_bytes());
        data.extend_from_slice(&1u32.to_ne_bytes()); // cpu
        data.extend_from_slice(&123_456_789u64.to_ne_bytes()); // timestamp_ns
        data.extend_from_slice(body);
        let mut out = Vec::new();
        for field in [idx, CN_VAL_PROC, 7, 0] {
            out.extend_from_slice(&field.to_ne_bytes());
        }
        out.extend_from_slice(&(data.len() as u16).to_ne_bytes());
        out.extend_from_slice(&0u16.to_ne_bytes());
        out.extend_from_slice(&data);
        out
    }

    fn exec(pid: u32, tgid: u32) -> Vec<u8> {
        let body: Vec<u8> = [pid, tgid].iter().flat_map(|v| v.to_ne_bytes()).collect();
        frame(NLMSG_DONE, 0, &cn_msg(CN_IDX_PROC, PROC_EVENT_EXEC, &body))
    }

    #[test]
    fn exec_ack_and_other_events_in_one_buffer() {
        let mut buf = exec(4242, 4240);
        buf.extend(frame(
            NLMSG_DONE,
            0,
            &cn_msg(CN_IDX_PROC, PROC_EVENT_NONE, &1u32.to_ne_bytes()),
        ));
        // A fork: parent pid, tgid, child pid, tgid.
        buf.extend(frame(NLMSG_DONE, 0, &cn_msg(CN_IDX_PROC, 1, &[0; 16])));
        // Another connector channel (CN_IDX_CIFS) is not ours, whatever it says.
        buf.extend(frame(NLMSG_DONE, 0, &cn_msg(2, PROC_EVENT_EXEC, &[0; 8])));
        let events: Vec<_> = proc_events(&buf).collect();
        assert_eq!(
            events,
            [
                Ok(ProcEvent::Exec { tgid: 4240 }),
                Ok(ProcEvent::Ack { errno: 1, acknowledgement: 0 }),
                Ok(ProcEvent::Other),
                Ok(ProcEvent::Other),
            ]
        );
    }

    #[test]
    fn captured_events_parse_whole() {
        // Captured on 6.18: the answer to a listen tagged 77, then a shell's fork, exec, exit.
        let captured = include_bytes!("../../../fuzz/seeds/net_tables/cnproc_events.bin");
        let events: Vec<_> = proc_events(captured).collect();
        assert!(events.iter().all(Result::is_ok), "{events:?}");
        assert_eq!(events[0], Ok(ProcEvent::Ack { errno: 0, acknowledgement: 78 }));
        assert!(events.iter().any(|e| matches!(e, Ok(ProcEvent::Exec { .. }))), "{events:?}");
    }

    #[test]
    fn a_listen_request_is_one_message_on_the_process_channel() {
        let request = subscription_request(true, 0xfeed);
        let payloads: Vec<_> =
            netlink::parse_messages(&request, |m| Ok(m.payload.to_vec())).collect();
        let [Ok(payload)] = &payloads[..] else { panic!("one message: {payloads:?}") };
        assert_eq!(payload.len(), CN_MSG_LEN + 4);
        assert_eq!(u32_at(payload, 0), CN_IDX_PROC);
        assert_eq!(u32_at(payload, 12), 0xfeed, "the tag, as acknowledgement number");
        assert_eq!(u32_at(payload, CN_MSG_LEN), 1, "PROC_CN_MCAST_LISTEN");
        let ignore = subscription_request(false, 0);
        assert_eq!(u32_at(&ignore, 16 + CN_MSG_LEN), 2, "PROC_CN_MCAST_IGNORE");
    }

    #[test]
    fn a_length_beyond_the_message_is_an_error_and_ends_the_buffer() {
        let mut payload = cn_msg(CN_IDX_PROC, PROC_EVENT_EXEC, &[0; 8]);
        payload[16..18].copy_from_slice(&200u16.to_ne_bytes());
        let mut buf = frame(NLMSG_DONE, 0, &payload);
        buf.extend(exec(1, 1));
        let events: Vec<_> = proc_events(&buf).collect();
        assert_eq!(events, [Err(ParseError::Malformed("cn_msg.len"))]);
    }

    #[test]
    fn short_events_are_errors() {
        let short_exec = frame(NLMSG_DONE, 0, &cn_msg(CN_IDX_PROC, PROC_EVENT_EXEC, &[0; 4]));
        assert_eq!(
            proc_events(&short_exec).collect::<Vec<_>>(),
            [Err(ParseError::MissingField("proc_event.exec"))]
        );
        let no_event = frame(NLMSG_DONE, 0, &cn_msg(CN_IDX_PROC, 0, &[])[..CN_MSG_LEN]);
        assert!(proc_events(&no_event).next().unwrap().is_err());
        assert!(proc_events(&exec(1, 1)[..20]).next().unwrap().is_err());
    }

    proptest! {
        #[test]
        fn any_bytes_parse_or_fail_without_panicking(bytes in proptest::collection::vec(any::<u8>(), 0..256)) {
            for event in proc_events(&bytes) {
                let _ = event;
            }
        }

        #[test]
        fn any_exec_reads_back_its_tgid(pid: u32, tgid: u32) {
            let buf = exec(pid, tgid);
            prop_assert_eq!(proc_events(&buf).collect::<Vec<_>>(), [Ok(ProcEvent::Exec { tgid })]);
        }
    }
}
