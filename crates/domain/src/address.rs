//! Which network addresses a webhook may be delivered to.
//!
//! A webhook service calls URLs chosen by its users, so without a check it is
//! a ready-made SSRF proxy into the network it runs in. Every address the
//! service would connect to — an IP literal in the URL, or each address a host
//! name resolves to, both at registration and again at connect time — goes
//! through [`AddressPolicy::check`].

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::str::FromStr;

/// Why an address is not a public unicast destination.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AddressClass {
    /// A globally routable unicast address.
    Public,
    /// 127.0.0.0/8, ::1
    Loopback,
    /// 10/8, 172.16/12, 192.168/16, fc00::/7
    Private,
    /// 169.254/16 (except the metadata address), fe80::/10
    LinkLocal,
    /// 100.64.0.0/10 (carrier-grade NAT)
    SharedCgnat,
    /// 169.254.169.254 and fd00:ec2::254: cloud instance metadata.
    CloudMetadata,
    /// 224/4, ff00::/8
    Multicast,
    /// 0.0.0.0/8, ::
    Unspecified,
    /// Documentation, benchmarking, reserved and other special-purpose ranges.
    Reserved,
}

impl AddressClass {
    /// A short human description used in error messages.
    pub fn describe(self) -> &'static str {
        match self {
            AddressClass::Public => "a public address",
            AddressClass::Loopback => "a loopback address",
            AddressClass::Private => "a private-network address",
            AddressClass::LinkLocal => "a link-local address",
            AddressClass::SharedCgnat => "a carrier-grade NAT (100.64.0.0/10) address",
            AddressClass::CloudMetadata => "the cloud metadata address",
            AddressClass::Multicast => "a multicast address",
            AddressClass::Unspecified => "an unspecified address",
            AddressClass::Reserved => "a reserved special-purpose address",
        }
    }
}

/// Classifies an address. IPv4-mapped and IPv4-compatible IPv6 addresses are
/// classified by the IPv4 address they carry, so `::ffff:127.0.0.1` is loopback.
pub fn classify(ip: IpAddr) -> AddressClass {
    match ip {
        IpAddr::V4(v4) => classify_v4(v4),
        IpAddr::V6(v6) => classify_v6(v6),
    }
}

fn classify_v4(ip: Ipv4Addr) -> AddressClass {
    let [a, b, c, _] = ip.octets();
    if ip == Ipv4Addr::new(169, 254, 169, 254) {
        AddressClass::CloudMetadata
    } else if a == 0 {
        AddressClass::Unspecified
    } else if a == 127 {
        AddressClass::Loopback
    } else if a == 10 || (a == 172 && (16..=31).contains(&b)) || (a == 192 && b == 168) {
        AddressClass::Private
    } else if a == 169 && b == 254 {
        AddressClass::LinkLocal
    } else if a == 100 && (64..=127).contains(&b) {
        AddressClass::SharedCgnat
    } else if (224..=239).contains(&a) {
        AddressClass::Multicast
    } else if a >= 240 // reserved and broadcast
        || (a == 192 && b == 0 && c == 0) // IETF protocol assignments
        || (a == 192 && b == 0 && c == 2) // TEST-NET-1
        || (a == 198 && b == 51 && c == 100) // TEST-NET-2
        || (a == 203 && b == 0 && c == 113) // TEST-NET-3
        || (a == 198 && (b == 18 || b == 19)) // benchmarking
        || (a == 192 && b == 88 && c == 99)
    // 6to4 relay anycast
    {
        AddressClass::Reserved
    } else {
        AddressClass::Public
    }
}

fn classify_v6(ip: Ipv6Addr) -> AddressClass {
    if let Some(v4) = ip.to_ipv4_mapped() {
        return classify_v4(v4);
    }
    let seg = ip.segments();
    if ip.is_unspecified() {
        return AddressClass::Unspecified;
    }
    if ip.is_loopback() {
        return AddressClass::Loopback;
    }
    // IPv4-compatible (deprecated) ::a.b.c.d and NAT64 64:ff9b::/96 embed an IPv4 address.
    if seg[0..6] == [0, 0, 0, 0, 0, 0] || seg[0..6] == [0x64, 0xff9b, 0, 0, 0, 0] {
        let v4 = Ipv4Addr::new(
            (seg[6] >> 8) as u8,
            seg[6] as u8,
            (seg[7] >> 8) as u8,
            seg[7] as u8,
        );
        return classify_v4(v4);
    }
    if ip == Ipv6Addr::new(0xfd00, 0x0ec2, 0, 0, 0, 0, 0, 0x254) {
        return AddressClass::CloudMetadata;
    }
    match seg[0] {
        s if s & 0xfe00 == 0xfc00 => AddressClass::Private,
        s if s & 0xffc0 == 0xfe80 => AddressClass::LinkLocal,
        s if s & 0xffc0 == 0xfec0 => AddressClass::Reserved, // deprecated site-local
        s if s & 0xff00 == 0xff00 => AddressClass::Multicast,
        0x2001 if seg[1] == 0x0db8 => AddressClass::Reserved, // documentation
        0x2002 => AddressClass::Reserved,                     // 6to4 can embed any IPv4
        0x0100 if seg[1..4] == [0, 0, 0] => AddressClass::Reserved, // discard-only
        s if s & 0xe000 == 0x2000 => AddressClass::Public,    // global unicast 2000::/3
        _ => AddressClass::Reserved,
    }
}

/// An IP network in CIDR notation, such as `10.0.0.0/8` or `::1/128`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cidr {
    network: IpAddr,
    prefix: u8,
}

/// A CIDR that could not be parsed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("'{0}' is not a CIDR block (expected e.g. 10.0.0.0/8 or ::1/128)")]
pub struct InvalidCidr(pub String);

impl FromStr for Cidr {
    type Err = InvalidCidr;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let err = || InvalidCidr(s.to_string());
        let s = s.trim();
        let (addr, prefix) = match s.split_once('/') {
            Some((addr, prefix)) => (addr, Some(prefix)),
            None => (s, None),
        };
        let network: IpAddr = addr.parse().map_err(|_| err())?;
        let max = if network.is_ipv4() { 32 } else { 128 };
        let prefix = match prefix {
            Some(p) => p.parse::<u8>().map_err(|_| err())?,
            None => max,
        };
        if prefix > max {
            return Err(err());
        }
        Ok(Cidr { network, prefix })
    }
}

impl fmt::Display for Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.network, self.prefix)
    }
}

impl Cidr {
    /// Whether `ip` lies in this block. An IPv4-mapped IPv6 address is
    /// compared as the IPv4 address it carries.
    pub fn contains(&self, ip: IpAddr) -> bool {
        let ip = match ip {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map(IpAddr::V4).unwrap_or(ip),
            v4 => v4,
        };
        match (self.network, ip) {
            (IpAddr::V4(net), IpAddr::V4(ip)) => {
                let mask = u32::MAX
                    .checked_shl(32 - u32::from(self.prefix))
                    .unwrap_or(0);
                u32::from(net) & mask == u32::from(ip) & mask
            }
            (IpAddr::V6(net), IpAddr::V6(ip)) => {
                let mask = u128::MAX
                    .checked_shl(128 - u32::from(self.prefix))
                    .unwrap_or(0);
                u128::from(net) & mask == u128::from(ip) & mask
            }
            _ => false,
        }
    }
}

/// An address the policy refuses to connect to.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{ip} is {} and is not in WEBHOOK_ALLOWED_CIDRS", .class.describe())]
pub struct BlockedAddress {
    /// The refused address.
    pub ip: IpAddr,
    /// Why it is refused.
    pub class: AddressClass,
}

/// The destinations webhooks may reach: public unicast addresses, plus the
/// blocks listed in `WEBHOOK_ALLOWED_CIDRS`, plus loopback in `--dev`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AddressPolicy {
    allowed: Vec<Cidr>,
    allow_loopback: bool,
}

impl AddressPolicy {
    /// A policy allowing public addresses and the given blocks; loopback too when `allow_loopback`.
    pub fn new(allowed: Vec<Cidr>, allow_loopback: bool) -> Self {
        AddressPolicy {
            allowed,
            allow_loopback,
        }
    }

    /// The configured allow-list.
    pub fn allowed(&self) -> &[Cidr] {
        &self.allowed
    }

    /// Whether `ip` is explicitly allow-listed (so plain `http` is accepted for it).
    pub fn is_allow_listed(&self, ip: IpAddr) -> bool {
        self.allowed.iter().any(|c| c.contains(ip))
            || (self.allow_loopback && classify(ip) == AddressClass::Loopback)
    }

    /// Accepts public addresses and allow-listed ones; refuses everything else.
    pub fn check(&self, ip: IpAddr) -> Result<(), BlockedAddress> {
        let class = classify(ip);
        if class == AddressClass::Public || self.is_allow_listed(ip) {
            Ok(())
        } else {
            Err(BlockedAddress { ip, class })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn classifies_special_ranges() {
        let cases = [
            ("127.0.0.1", AddressClass::Loopback),
            ("127.255.0.9", AddressClass::Loopback),
            ("0.0.0.0", AddressClass::Unspecified),
            ("::1", AddressClass::Loopback),
            ("::", AddressClass::Unspecified),
            ("::ffff:127.0.0.1", AddressClass::Loopback),
            ("::ffff:10.1.2.3", AddressClass::Private),
            ("::127.0.0.1", AddressClass::Loopback),
            ("64:ff9b::a9fe:a9fe", AddressClass::CloudMetadata),
            ("169.254.169.254", AddressClass::CloudMetadata),
            ("169.254.1.1", AddressClass::LinkLocal),
            ("10.0.0.1", AddressClass::Private),
            ("172.16.0.1", AddressClass::Private),
            ("172.31.255.255", AddressClass::Private),
            ("172.32.0.1", AddressClass::Public),
            ("192.168.1.1", AddressClass::Private),
            ("100.64.0.1", AddressClass::SharedCgnat),
            ("100.127.255.255", AddressClass::SharedCgnat),
            ("100.128.0.1", AddressClass::Public),
            ("224.0.0.1", AddressClass::Multicast),
            ("255.255.255.255", AddressClass::Reserved),
            ("192.0.2.1", AddressClass::Reserved),
            ("fc00::1", AddressClass::Private),
            ("fd12:3456::1", AddressClass::Private),
            ("fe80::1", AddressClass::LinkLocal),
            ("ff02::1", AddressClass::Multicast),
            ("fd00:ec2::254", AddressClass::CloudMetadata),
            ("8.8.8.8", AddressClass::Public),
            ("2606:4700:4700::1111", AddressClass::Public),
        ];
        for (addr, class) in cases {
            assert_eq!(classify(ip(addr)), class, "{addr}");
        }
    }

    #[test]
    fn cidr_parsing_and_containment() {
        let net: Cidr = "10.0.0.0/8".parse().unwrap();
        assert!(net.contains(ip("10.200.1.1")));
        assert!(net.contains(ip("::ffff:10.0.0.1")));
        assert!(!net.contains(ip("11.0.0.1")));
        let all: Cidr = "0.0.0.0/0".parse().unwrap();
        assert!(all.contains(ip("1.2.3.4")));
        let one: Cidr = "::1".parse().unwrap();
        assert_eq!(one.to_string(), "::1/128");
        assert!(one.contains(ip("::1")));
        assert!("10.0.0.0/33".parse::<Cidr>().is_err());
        assert!("nonsense".parse::<Cidr>().is_err());
    }

    #[test]
    fn policy_allows_public_and_listed_only() {
        let strict = AddressPolicy::default();
        assert!(strict.check(ip("8.8.8.8")).is_ok());
        let err = strict.check(ip("127.0.0.1")).unwrap_err();
        assert_eq!(err.class, AddressClass::Loopback);
        assert!(err.to_string().contains("loopback"));
        let listed = AddressPolicy::new(vec!["127.0.0.0/8".parse().unwrap()], false);
        assert!(listed.check(ip("127.0.0.1")).is_ok());
        assert!(listed.check(ip("::1")).is_err());
        let dev = AddressPolicy::new(vec![], true);
        assert!(dev.check(ip("::1")).is_ok());
        assert!(dev.check(ip("10.0.0.1")).is_err());
    }
}
