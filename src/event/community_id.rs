//! Community ID v1 (the flow hash Zeek, Suricata and Elastic share): SHA-1 over the seed, both
//! addresses, the protocol and both ports, lower endpoint first, base64, prefixed `1:`.

use base64::Engine as _;
use sha1::{Digest, Sha1};
use std::net::IpAddr;

/// The Community ID of a TCP/UDP flow, or `None` when the address families differ.
pub fn community_id(protocol: u8, a: (IpAddr, u16), b: (IpAddr, u16)) -> Option<String> {
    let octets = |ip: IpAddr| -> Vec<u8> {
        match ip {
            IpAddr::V4(v4) => v4.octets().to_vec(),
            IpAddr::V6(v6) => v6.octets().to_vec(),
        }
    };
    let (ea, eb) = ((octets(a.0), a.1), (octets(b.0), b.1));
    if ea.0.len() != eb.0.len() {
        return None;
    }
    let (lo, hi) = if ea <= eb { (ea, eb) } else { (eb, ea) };
    let mut hasher = Sha1::new();
    hasher.update(0u16.to_be_bytes()); // seed
    hasher.update(&lo.0);
    hasher.update(&hi.0);
    hasher.update([protocol, 0]);
    hasher.update(lo.1.to_be_bytes());
    hasher.update(hi.1.to_be_bytes());
    Some(format!("1:{}", base64::engine::general_purpose::STANDARD.encode(hasher.finalize())))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Vectors from Zeek's community-id test suite.
    #[test]
    fn matches_published_vectors() {
        let a = ("1.2.3.4".parse().unwrap(), 1122);
        let b = ("5.6.7.8".parse().unwrap(), 3344);
        assert_eq!(community_id(6, a, b).unwrap(), "1:wCb3OG7yAFWelaUydu0D+125CLM=");
        assert_eq!(community_id(6, b, a).unwrap(), "1:wCb3OG7yAFWelaUydu0D+125CLM=");
        assert_eq!(community_id(17, a, b).unwrap(), "1:0Mu9InQx6z4ZiCZM/7HXi2WMhOg=");
        assert_eq!(community_id(6, a, ("::1".parse().unwrap(), 1)), None);
    }
}
