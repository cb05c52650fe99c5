//! Which addresses outbound requests (federation, URL previews) may connect to: nothing in the
//! denylist unless the allowlist names it. IPv4-mapped IPv6 addresses (`::ffff:127.0.0.1`) are
//! judged as the IPv4 address.

use ipnet::IpNet;
use std::net::IpAddr;

#[derive(Debug, Clone)]
pub struct IpPolicy {
    deny: Vec<IpNet>,
    allow: Vec<IpNet>,
}

fn parse(ranges: &[String]) -> Vec<IpNet> {
    // Config validation rejected anything else; a bare address is a single-host range.
    ranges
        .iter()
        .filter_map(|r| r.parse::<IpNet>().ok().or_else(|| r.parse::<IpAddr>().ok().map(IpNet::from)))
        .collect()
}

impl IpPolicy {
    pub fn new(deny: &[String], allow: &[String]) -> Self {
        IpPolicy { deny: parse(deny), allow: parse(allow) }
    }

    pub fn allows(&self, ip: IpAddr) -> bool {
        let ip = match ip {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(IpAddr::V6(v6), IpAddr::V4),
            v4 => v4,
        };
        self.allow.iter().any(|net| net.contains(&ip)) || !self.deny.iter().any(|net| net.contains(&ip))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use myelin_core::config::UrlPreviewConfig;

    #[test]
    fn default_denylist() {
        let config = UrlPreviewConfig::default();
        let policy = IpPolicy::new(&config.ip_range_denylist, &[]);
        for denied in [
            "127.0.0.1",
            "10.1.2.3",
            "192.168.1.1",
            "172.20.0.1",
            "100.64.0.1",
            "169.254.169.254",
            "::1",
            "fe80::1",
            "fd00::1",
            "::ffff:127.0.0.1",
            "::ffff:10.0.0.1",
            "0.0.0.0",
            "224.0.0.1",
        ] {
            assert!(!policy.allows(denied.parse().unwrap()), "{denied}");
        }
        for allowed in ["93.184.215.14", "2606:4700::1111", "::ffff:93.184.215.14"] {
            assert!(policy.allows(allowed.parse().unwrap()), "{allowed}");
        }
        let policy = IpPolicy::new(&config.ip_range_denylist, &["127.0.0.2/32".to_owned()]);
        assert!(policy.allows("127.0.0.2".parse().unwrap()));
        assert!(!policy.allows("127.0.0.1".parse().unwrap()));
    }
}
