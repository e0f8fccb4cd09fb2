package latchkey_test

import (
	"net/netip"
	"testing"

	"github.com/latchkeyhq/latchkey"
)

func TestWebhookTargetsRefuseWhatIsNotGlobal(t *testing.T) {
	var def latchkey.WebhookTargets
	refused := []string{
		"127.0.0.1", "127.255.255.254", "0.0.0.0", "0.1.2.3", // loopback, unspecified, this network
		"10.0.0.5", "172.16.0.1", "172.31.255.255", "192.168.1.1", // RFC 1918
		"100.64.0.1", "100.127.255.255", // CGNAT
		"169.254.169.254", "169.254.0.1", // link-local, metadata
		"224.0.0.1", "239.255.255.250", // multicast
		"255.255.255.255", "240.0.0.1", // broadcast, reserved
		"192.0.0.8", "192.0.2.1", "198.18.0.1", "198.51.100.7", "203.0.113.9", "192.88.99.1",
		"::", "::1", "fc00::1", "fd12:3456::1", "fe80::1", "fe80::1%eth0", "fec0::1", "ff02::1", "ff05::2",
		"::ffff:127.0.0.1", "::ffff:10.0.0.5", "::ffff:169.254.169.254", // IPv4-mapped
		"::127.0.0.1", "::10.0.0.5", // IPv4-compatible
		"64:ff9b::a00:5", "64:ff9b::7f00:1", "64:ff9b::a9fe:a9fe", // NAT64 of private, loopback, metadata
		"64:ff9b:1::1", "100::1", // local-use NAT64, discard-only
		"2001::1", "2001:db8::1", "2002:a00:5::1", "3fff::1",
	}
	for _, s := range refused {
		if def.Allowed(netip.MustParseAddr(s)) {
			t.Errorf("Allowed(%s) = true by default", s)
		}
	}
	allowed := []string{"1.1.1.1", "8.8.8.8", "93.184.215.14", "100.63.255.255", "100.128.0.0", "172.32.0.1", "2606:4700::1111", "2a00:1450::1", "::ffff:8.8.8.8", "64:ff9b::808:808"}
	for _, s := range allowed {
		if !def.Allowed(netip.MustParseAddr(s)) {
			t.Errorf("Allowed(%s) = false by default", s)
		}
	}
	if def.Allowed(netip.Addr{}) {
		t.Error("the zero address is allowed")
	}

	lo := latchkey.WebhookTargets{AllowPrivate: []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8"), netip.MustParsePrefix("fd00::/8")}}
	for _, s := range []string{"127.0.0.1", "::ffff:127.0.0.1", "127.9.9.9", "fd12::1", "64:ff9b::7f00:1", "8.8.8.8"} {
		if !lo.Allowed(netip.MustParseAddr(s)) {
			t.Errorf("with 127.0.0.0/8 and fd00::/8 allowed: Allowed(%s) = false", s)
		}
	}
	for _, s := range []string{"10.0.0.5", "169.254.169.254", "::1", "0.0.0.0", "fc00::1"} {
		if lo.Allowed(netip.MustParseAddr(s)) {
			t.Errorf("with 127.0.0.0/8 and fd00::/8 allowed: Allowed(%s) = true", s)
		}
	}
}

func TestWebhookTargetsCheckURL(t *testing.T) {
	var def latchkey.WebhookTargets
	for _, u := range []string{
		"http://127.0.0.1:8080/in", "https://[::1]/", "http://10.0.0.5/", "http://169.254.169.254/latest/meta-data/",
		"http://[::ffff:127.0.0.1]/", "http://[fe80::1%25eth0]/", "http://0.0.0.0:80/", "http://100.64.0.1/",
		"http://224.0.0.1/", "http://255.255.255.255/", "http://localhost:8080/", "http://LocalHost./",
		"http://a.localhost/", "http://2130706433/", "http://127.1/", "http://0x7f000001/", "http://10.0.0.017/",
		"http://host.0x1f/",
	} {
		if err := def.CheckURL(u); latchkey.ErrorCode(err) != latchkey.EInvalid {
			t.Errorf("CheckURL(%q) = %v, want invalid", u, err)
		}
	}
	for _, u := range []string{"https://hooks.example.com/in", "http://8.8.8.8:81/", "https://[2606:4700::1111]/", "https://x1.example2/"} {
		if err := def.CheckURL(u); err != nil {
			t.Errorf("CheckURL(%q) = %v, want nil", u, err)
		}
	}
	lo := latchkey.WebhookTargets{AllowPrivate: []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8"), netip.MustParsePrefix("::1/128")}}
	for _, u := range []string{"http://127.0.0.1:8080/in", "http://[::1]/", "http://localhost:1/"} {
		if err := lo.CheckURL(u); err != nil {
			t.Errorf("with loopback allowed: CheckURL(%q) = %v, want nil", u, err)
		}
	}
	if err := lo.CheckURL("http://10.0.0.5/"); latchkey.ErrorCode(err) != latchkey.EInvalid {
		t.Errorf("with loopback allowed: 10.0.0.5 = %v, want invalid", err)
	}
}

func FuzzWebhookTargetsCheckURL(f *testing.F) {
	for _, s := range []string{"http://127.0.0.1:8080/in", "https://[fe80::1%25eth0]/", "https://hooks.example.com/", "http://0x7f.1/", "http://localhost./", "http://[::ffff:a00:5]:1/"} {
		f.Add(s)
	}
	var def latchkey.WebhookTargets
	f.Fuzz(func(t *testing.T, u string) {
		if latchkey.ValidateWebhookURL(u) != nil {
			return
		}
		err := def.CheckURL(u)
		if err != nil && latchkey.ErrorCode(err) != latchkey.EInvalid {
			t.Fatalf("CheckURL(%q) = %v, want nil or invalid", u, err)
		}
	})
}
