//! Which addresses a metadata-document fetch may connect to (draft-ietf-oauth-client-id-metadata-
//! document, "SSRF attacks": never a special-use address of RFC 6890). A `client_id` is chosen by
//! whoever sends the authorization request, so without this rule anyone could make the server
//! open connections to its own loopback, the cloud metadata service (169.254.169.254) or the
//! private network behind it. Pure: the fetcher resolves names and asks here for every address.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// Why an address is refused (shown in the error page, so a developer knows what to fix).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Special {
    Unspecified,
    Loopback,
    /// RFC 1918 and IPv6 unique-local (fc00::/7).
    Private,
    /// 100.64.0.0/10 (RFC 6598), carrier-grade NAT.
    SharedAddressSpace,
    /// 169.254.0.0/16, fe80::/10 (the cloud metadata services live here).
    LinkLocal,
    Multicast,
    Broadcast,
    /// 192.0.2.0/24, 198.51.100.0/24, 203.0.113.0/24, 2001:db8::/32, 3fff::/20.
    Documentation,
    /// 198.18.0.0/15 (RFC 2544).
    Benchmarking,
    /// 0.0.0.0/8, 240.0.0.0/4, 192.0.0.0/24, IPv6 discard, ORCHID, site-local and other
    /// IANA special-purpose blocks.
    Reserved,
}

impl Special {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Unspecified => "an unspecified address",
            Self::Loopback => "a loopback address",
            Self::Private => "a private-network address",
            Self::SharedAddressSpace => "a shared (carrier-grade NAT) address",
            Self::LinkLocal => "a link-local address",
            Self::Multicast => "a multicast address",
            Self::Broadcast => "the broadcast address",
            Self::Documentation => "a documentation address",
            Self::Benchmarking => "a benchmarking address",
            Self::Reserved => "a reserved special-purpose address",
        }
    }
}

/// `None` for a public unicast address a fetch may connect to.
pub fn special(ip: IpAddr) -> Option<Special> {
    match ip {
        IpAddr::V4(v4) => special_v4(v4),
        IpAddr::V6(v6) => special_v6(v6),
    }
}

/// Whether a fetch may connect to `ip`. `allow_loopback` is the test-only
/// `insecure_cimd_loopback` setting: loopback addresses, and nothing else special, become allowed.
pub fn allowed(ip: IpAddr, allow_loopback: bool) -> Result<(), Special> {
    match special(ip) {
        None => Ok(()),
        Some(Special::Loopback) if allow_loopback => Ok(()),
        Some(s) => Err(s),
    }
}

fn special_v4(ip: Ipv4Addr) -> Option<Special> {
    let [a, b, c, _] = ip.octets();
    Some(match (a, b, c) {
        _ if ip.is_unspecified() => Special::Unspecified,
        (0, _, _) => Special::Reserved,
        (127, _, _) => Special::Loopback,
        (10, _, _) | (172, 16..=31, _) | (192, 168, _) => Special::Private,
        (100, 64..=127, _) => Special::SharedAddressSpace,
        (169, 254, _) => Special::LinkLocal,
        (192, 0, 0) => Special::Reserved,
        (192, 0, 2) | (198, 51, 100) | (203, 0, 113) => Special::Documentation,
        (198, 18..=19, _) => Special::Benchmarking,
        (224..=239, _, _) => Special::Multicast,
        _ if ip.is_broadcast() => Special::Broadcast,
        (240..=255, _, _) => Special::Reserved,
        _ => return None,
    })
}

fn special_v6(ip: Ipv6Addr) -> Option<Special> {
    // An IPv4 address in IPv6 clothing is judged as the IPv4 address it reaches: ::ffff:127.0.0.1
    // is loopback. Mapped (::ffff:0:0/96), the deprecated compatible form (::/96), NAT64
    // (64:ff9b::/96) and 6to4 (2002::/16) all carry one.
    if let Some(v4) = embedded_v4(ip) {
        return special_v4(v4);
    }
    let s = ip.segments();
    Some(match s[0] {
        _ if ip.is_unspecified() => Special::Unspecified,
        _ if ip.is_loopback() => Special::Loopback,
        0xfc00..=0xfdff => Special::Private,
        0xfe80..=0xfebf => Special::LinkLocal,
        // Site-local (deprecated, RFC 3879): still routed privately by some networks.
        0xfec0..=0xfeff => Special::Reserved,
        0xff00..=0xffff => Special::Multicast,
        0x2001 if s[1] == 0x0db8 => Special::Documentation,
        0x3fff if s[1] <= 0x0fff => Special::Documentation,
        // 2001::/23: IETF protocol assignments (Teredo, ORCHID, benchmarking 2001:2::/48...).
        0x2001 if s[1] < 0x0200 => Special::Reserved,
        // 100::/64 discard-only.
        0x0100 if s[1] == 0 && s[2] == 0 && s[3] == 0 => Special::Reserved,
        // Anything else below 2000::/3 is not global unicast.
        x if !(0x2000..=0x3fff).contains(&x) => Special::Reserved,
        _ => return None,
    })
}

/// The IPv4 address an IPv6 address stands for, in the forms that reach one.
fn embedded_v4(ip: Ipv6Addr) -> Option<Ipv4Addr> {
    let s = ip.segments();
    let tail = Ipv4Addr::new((s[6] >> 8) as u8, s[6] as u8, (s[7] >> 8) as u8, s[7] as u8);
    match s {
        // ::ffff:a.b.c.d (mapped)
        [0, 0, 0, 0, 0, 0xffff, _, _] => Some(tail),
        // ::a.b.c.d (compatible, deprecated), but not :: and ::1 themselves
        [0, 0, 0, 0, 0, 0, _, _] if !ip.is_unspecified() && !ip.is_loopback() => Some(tail),
        // 64:ff9b::a.b.c.d (NAT64, RFC 6052) and 64:ff9b:1::/48 (local-use NAT64, RFC 8215)
        [0x64, 0xff9b, 0, 0, 0, 0, _, _] => Some(tail),
        [0x64, 0xff9b, 1, ..] => Some(tail),
        // 2002:AABB:CCDD::/48 (6to4)
        [0x2002, hi, lo, ..] => Some(Ipv4Addr::new((hi >> 8) as u8, hi as u8, (lo >> 8) as u8, lo as u8)),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn of(s: &str) -> Option<Special> {
        special(s.parse().unwrap())
    }

    #[test]
    fn ipv4_special_ranges_are_refused() {
        for (ip, want) in [
            ("0.0.0.0", Special::Unspecified),
            ("0.1.2.3", Special::Reserved),
            ("127.0.0.1", Special::Loopback),
            ("127.255.255.254", Special::Loopback),
            ("10.0.0.1", Special::Private),
            ("172.16.0.1", Special::Private),
            ("172.31.255.255", Special::Private),
            ("192.168.1.1", Special::Private),
            ("100.64.0.1", Special::SharedAddressSpace),
            ("100.127.255.255", Special::SharedAddressSpace),
            ("169.254.169.254", Special::LinkLocal),
            ("192.0.0.8", Special::Reserved),
            ("192.0.2.1", Special::Documentation),
            ("198.51.100.7", Special::Documentation),
            ("203.0.113.9", Special::Documentation),
            ("198.18.0.1", Special::Benchmarking),
            ("198.19.255.255", Special::Benchmarking),
            ("224.0.0.1", Special::Multicast),
            ("239.255.255.250", Special::Multicast),
            ("240.0.0.1", Special::Reserved),
            ("255.255.255.255", Special::Broadcast),
        ] {
            assert_eq!(of(ip), Some(want), "{ip}");
        }
    }

    #[test]
    fn ipv4_public_addresses_and_range_edges_are_allowed() {
        for ip in [
            "1.1.1.1",
            "8.8.8.8",
            "172.15.255.255",
            "172.32.0.0",
            "100.63.255.255",
            "100.128.0.0",
            "169.253.0.1",
            "198.17.0.1",
            "198.20.0.1",
            "223.255.255.255",
            "192.0.1.1",
            "11.0.0.1",
        ] {
            assert_eq!(of(ip), None, "{ip}");
        }
    }

    #[test]
    fn ipv6_special_ranges_are_refused() {
        for (ip, want) in [
            ("::", Special::Unspecified),
            ("::1", Special::Loopback),
            ("fc00::1", Special::Private),
            ("fd12:3456::1", Special::Private),
            ("fe80::1", Special::LinkLocal),
            ("febf::1", Special::LinkLocal),
            ("fec0::1", Special::Reserved),
            ("ff02::1", Special::Multicast),
            ("2001:db8::1", Special::Documentation),
            ("3fff::1", Special::Documentation),
            ("2001::1", Special::Reserved),
            ("2001:10::1", Special::Reserved),
            ("100::1", Special::Reserved),
            ("4000::1", Special::Reserved),
            ("1000::1", Special::Reserved),
        ] {
            assert_eq!(of(ip), Some(want), "{ip}");
        }
    }

    #[test]
    fn ipv4_in_ipv6_forms_are_judged_as_their_ipv4_address() {
        for (ip, want) in [
            ("::ffff:127.0.0.1", Special::Loopback),
            ("::ffff:10.1.2.3", Special::Private),
            ("::ffff:169.254.169.254", Special::LinkLocal),
            ("::ffff:0.0.0.0", Special::Unspecified),
            ("::127.0.0.1", Special::Loopback),
            ("::192.168.0.1", Special::Private),
            ("64:ff9b::a9fe:a9fe", Special::LinkLocal),
            ("64:ff9b:1::7f00:1", Special::Loopback),
            ("2002:7f00:1::1", Special::Loopback),
            ("2002:c0a8:101::1", Special::Private),
        ] {
            assert_eq!(of(ip), Some(want), "{ip}");
        }
        for ip in ["::ffff:8.8.8.8", "64:ff9b::808:808", "2002:808:808::1", "2606:4700::1111", "2a00:1450::1"] {
            assert_eq!(of(ip), None, "{ip}");
        }
    }

    #[test]
    fn the_loopback_setting_allows_loopback_and_nothing_else() {
        let ip = |s: &str| s.parse::<IpAddr>().unwrap();
        assert_eq!(allowed(ip("127.0.0.1"), false), Err(Special::Loopback));
        assert_eq!(allowed(ip("127.0.0.1"), true), Ok(()));
        assert_eq!(allowed(ip("::1"), true), Ok(()));
        assert_eq!(allowed(ip("::ffff:127.0.0.1"), true), Ok(()));
        assert_eq!(allowed(ip("10.0.0.1"), true), Err(Special::Private));
        assert_eq!(allowed(ip("169.254.169.254"), true), Err(Special::LinkLocal));
        assert_eq!(allowed(ip("8.8.8.8"), false), Ok(()));
    }
}
