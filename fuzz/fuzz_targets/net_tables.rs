//! Lines of the /proc/net tables (a unix socket's name is chosen by its creator and may hold any
//! byte but NUL), and the same bytes as a sock_diag dump reply and as process connector messages
//! (any local process can address the agent's connector socket). None may panic; a unix name
//! comes back byte for byte.
#![no_main]

use libfuzzer_sys::fuzz_target;
use sockwatch::scan::parse::{self, ByteOrder};

fuzz_target!(|data: &[u8]| {
    for message in parse::diag_messages(data) {
        if let Ok(parse::DiagMessage::Record { payload, .. }) = message {
            let _ = parse::parse_inet_record(payload);
            let _ = parse::parse_destroyed_record(payload);
            if let Ok(parse::UnixDiagRecord { name: Some(name), .. }) =
                parse::parse_unix_record(payload)
            {
                let within = payload.as_ptr_range();
                assert!(within.start <= name.as_ptr() && name.as_ptr_range().end <= within.end);
            }
        }
    }
    for event in parse::proc_events(data) {
        let _ = event;
    }
    for line in data.split(|&b| b == b'\n') {
        let _ = parse::parse_inet_line(line, ByteOrder::Little);
        let _ = parse::parse_inet_line(line, ByteOrder::Big);
        if let Ok(row) = parse::parse_unix_line(line) {
            assert!(line.ends_with(row.name.as_bytes()));
        }
        let _ = parse::parse_packet_line(line);
        let _ = parse::parse_netlink_line(line);
    }
});
