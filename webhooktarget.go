package latchkey

import (
	"net/netip"
	"net/url"
	"strings"
)

// WebhookTargets decides which addresses webhook deliveries may connect
// to: by default only globally routable unicast addresses, so that a
// tenant cannot aim the server at its own network (loopback, private,
// link-local and metadata addresses, and the like). AllowPrivate names
// the networks an operator allows besides (--webhook-allow-private), for
// receivers inside the network.
//
// The dispatcher applies Allowed to every address it connects to, after
// the host name is resolved (so a name that resolves, or is rebound, to
// such an address is refused); CheckURL refuses at creation the URLs whose
// host is such an address written out.
type WebhookTargets struct {
	AllowPrivate []netip.Prefix
}

// notGlobal4 are the IPv4 ranges of the IANA special-purpose registry that
// are not globally reachable, with multicast and the reserved 240/4 (which
// holds the limited broadcast address).
var notGlobal4 = []netip.Prefix{
	netip.MustParsePrefix("0.0.0.0/8"),       // this network, unspecified
	netip.MustParsePrefix("10.0.0.0/8"),      // private
	netip.MustParsePrefix("100.64.0.0/10"),   // shared address space (CGNAT)
	netip.MustParsePrefix("127.0.0.0/8"),     // loopback
	netip.MustParsePrefix("169.254.0.0/16"),  // link-local, cloud metadata
	netip.MustParsePrefix("172.16.0.0/12"),   // private
	netip.MustParsePrefix("192.0.0.0/24"),    // IETF protocol assignments
	netip.MustParsePrefix("192.0.2.0/24"),    // documentation
	netip.MustParsePrefix("192.88.99.0/24"),  // 6to4 relay anycast (deprecated)
	netip.MustParsePrefix("192.168.0.0/16"),  // private
	netip.MustParsePrefix("198.18.0.0/15"),   // benchmarking
	netip.MustParsePrefix("198.51.100.0/24"), // documentation
	netip.MustParsePrefix("203.0.113.0/24"),  // documentation
	netip.MustParsePrefix("224.0.0.0/4"),     // multicast
	netip.MustParsePrefix("240.0.0.0/4"),     // reserved, broadcast
}

var (
	// global6 is IPv6 global unicast; everything outside it (loopback,
	// unspecified, IPv4-compatible, unique local fc00::/7, link-local
	// fe80::/10, site-local, multicast ff00::/8, discard-only) is refused.
	global6 = netip.MustParsePrefix("2000::/3")
	// notGlobal6 are the parts of 2000::/3 that are not global unicast,
	// or that carry an IPv4 address whose check they would get round.
	notGlobal6 = []netip.Prefix{
		netip.MustParsePrefix("2001::/23"),     // IETF protocol assignments, Teredo
		netip.MustParsePrefix("2001:db8::/32"), // documentation
		netip.MustParsePrefix("2002::/16"),     // 6to4 (deprecated)
		netip.MustParsePrefix("3fff::/20"),     // documentation
	}
	// nat64 is the well-known NAT64 prefix: its addresses reach the IPv4
	// address in their last 32 bits, which is checked instead.
	nat64 = netip.MustParsePrefix("64:ff9b::/96")
)

// Allowed reports whether a delivery may connect to a: a is inside one of
// AllowPrivate, or is a global unicast address. IPv4-mapped IPv6 addresses
// are checked as the IPv4 address they map, NAT64 addresses (64:ff9b::/96)
// as the IPv4 address they embed; a zone is ignored.
func (t WebhookTargets) Allowed(a netip.Addr) bool {
	if !a.IsValid() {
		return false
	}
	a = a.WithZone("").Unmap()
	for _, p := range t.AllowPrivate {
		if p.Contains(a) {
			return true
		}
	}
	if a.Is4() {
		for _, p := range notGlobal4 {
			if p.Contains(a) {
				return false
			}
		}
		return true
	}
	if nat64.Contains(a) {
		b := a.As16()
		return t.Allowed(netip.AddrFrom4([4]byte(b[12:])))
	}
	if !global6.Contains(a) {
		return false
	}
	for _, p := range notGlobal6 {
		if p.Contains(a) {
			return false
		}
	}
	return true
}

// CheckURL refuses a webhook URL (one ValidateWebhookURL accepts) whose
// host deliveries could never reach: an IP address Allowed refuses,
// "localhost" or a name under .localhost (which resolve to loopback), or a
// host that is neither an IP address nor a DNS name (127.1, 2130706433,
// 0x7f000001: numeric forms some resolvers read as IPv4 addresses).
// Errors: EInvalid.
func (t WebhookTargets) CheckURL(u string) error {
	p, err := url.Parse(u)
	if err != nil {
		return Errorf(EInvalid, "url: not a URL")
	}
	host := p.Hostname()
	if a, err := netip.ParseAddr(host); err == nil {
		if !t.Allowed(a) {
			return Errorf(EInvalid, "url: %s is not a public address (loopback, private, link-local, multicast or otherwise reserved), which webhooks may not reach; an operator can allow an internal network with --webhook-allow-private", clip(host, 60))
		}
		return nil
	}
	name := strings.ToLower(strings.TrimSuffix(host, "."))
	if name == "localhost" || strings.HasSuffix(name, ".localhost") {
		lo := netip.AddrFrom4([4]byte{127, 0, 0, 1})
		if !t.Allowed(lo) || !t.Allowed(netip.IPv6Loopback()) {
			return Errorf(EInvalid, "url: %s is the server itself, which webhooks may not reach; an operator can allow loopback with --webhook-allow-private 127.0.0.0/8,::1/128", clip(host, 60))
		}
		return nil
	}
	last := name[strings.LastIndexByte(name, '.')+1:]
	if last == "" || strings.HasPrefix(last, "0x") || strings.Trim(last, "0123456789") == "" {
		return Errorf(EInvalid, "url: host %.60q is neither an IP address nor a DNS name", host)
	}
	return nil
}
