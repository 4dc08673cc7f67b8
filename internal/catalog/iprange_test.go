package catalog_test

import (
	"strings"
	"testing"

	"github.com/vmrestore/vmrestore/internal/catalog"
)

func TestIPToLongAndBack(t *testing.T) {
	tests := []struct {
		ip   string
		want int64
		ok   bool
	}{
		{"0.0.0.0", 0, true},
		{"0.0.0.1", 1, true},
		{"10.0.0.1", 167772161, true},
		{"192.168.1.1", 3232235777, true},
		{"255.255.255.255", 4294967295, true},
		{"128.0.0.0", 2147483648, true},
		{"", 0, false},
		{"10.0.0", 0, false},
		{"10.0.0.256", 0, false},
		{"10.0.0.01", 0, false},
		{"fd00::1", 0, false},
		{"::ffff:10.0.0.1", 0, false},
		{" 10.0.0.1", 0, false},
		{"10.0.0.1/24", 0, false},
	}
	for _, tc := range tests {
		t.Run(tc.ip, func(t *testing.T) {
			got, ok := catalog.IPToLong(tc.ip)
			if ok != tc.ok || got != tc.want {
				t.Fatalf("IPToLong(%q) = %d, %v; want %d, %v", tc.ip, got, ok, tc.want, tc.ok)
			}
			if ok {
				if back := catalog.LongToIP(got); back != tc.ip {
					t.Fatalf("LongToIP(%d) = %q, want %q", got, back, tc.ip)
				}
			}
		})
	}
}

func TestLongToIPTruncatesToThirtyTwoBits(t *testing.T) {
	tests := []struct {
		v    int64
		want string
	}{
		{0, "0.0.0.0"},
		{4294967295, "255.255.255.255"},
		{4294967296, "0.0.0.0"},
		{-1, "255.255.255.255"},
		{167772161, "10.0.0.1"},
	}
	for _, tc := range tests {
		if got := catalog.LongToIP(tc.v); got != tc.want {
			t.Errorf("LongToIP(%d) = %q, want %q", tc.v, got, tc.want)
		}
	}
}

func TestParseRange(t *testing.T) {
	r := func(start, end, mask, gw string) catalog.IPRange {
		return catalog.IPRange{UUID: "r", StartIP: start, EndIP: end, Netmask: mask, Gateway: gw}
	}
	ok := []struct {
		name      string
		in        catalog.IPRange
		start     string
		size      int64
		gatewayIn bool
	}{
		{"/24", r("10.0.0.10", "10.0.0.200", "255.255.255.0", "10.0.0.1"), "10.0.0.10", 191, false},
		{"one address", r("10.0.0.10", "10.0.0.10", "255.255.255.0", "10.0.0.1"), "10.0.0.10", 1, false},
		{"gateway inside the range", r("10.0.0.1", "10.0.0.254", "255.255.255.0", "10.0.0.1"), "10.0.0.1", 254, true},
		{"/32", r("10.0.0.5", "10.0.0.5", "255.255.255.255", "10.0.0.5"), "10.0.0.5", 1, true},
		{"/8 of 2^24 addresses", r("10.0.0.0", "10.255.255.255", "255.0.0.0", "10.0.0.1"), "10.0.0.0", 1 << 24, true},
		{"/16", r("172.16.0.1", "172.16.255.254", "255.255.0.0", "172.16.0.1"), "172.16.0.1", 65534, true},
		{"/1", r("128.0.0.1", "128.0.0.2", "128.0.0.0", "255.255.255.255"), "128.0.0.1", 2, false},
	}
	for _, tc := range ok {
		t.Run(tc.name, func(t *testing.T) {
			got, err := catalog.ParseRange(tc.in)
			if err != nil {
				t.Fatalf("ParseRange: %v", err)
			}
			start, _ := catalog.IPToLong(tc.start)
			gw, _ := catalog.IPToLong(tc.in.Gateway)
			if got.Start != start || got.Size() != tc.size || got.End != start+tc.size-1 {
				t.Fatalf("start %d end %d size %d", got.Start, got.End, got.Size())
			}
			if got.UUID != "r" || got.Netmask != tc.in.Netmask || got.Gateway != tc.in.Gateway || got.GatewayLong() != gw {
				t.Fatalf("range = %+v", got)
			}
			if got.Contains(gw) != tc.gatewayIn {
				t.Fatalf("Contains(gateway) = %v", got.Contains(gw))
			}
			if !got.Contains(got.Start) || !got.Contains(got.End) || got.Contains(got.Start-1) || got.Contains(got.End+1) {
				t.Fatal("Contains is not inclusive of exactly [Start, End]")
			}
		})
	}
	bad := []struct {
		name string
		in   catalog.IPRange
		want string
	}{
		{"start", r("10.0.0", "10.0.0.9", "255.255.255.0", "10.0.0.1"), `startIp "10.0.0" is not an IPv4 address`},
		{"start v6", r("fd00::1", "10.0.0.9", "255.255.255.0", "10.0.0.1"), `startIp "fd00::1" is not an IPv4 address`},
		{"end", r("10.0.0.1", "x", "255.255.255.0", "10.0.0.1"), `endIp "x" is not an IPv4 address`},
		{"netmask", r("10.0.0.1", "10.0.0.9", "24", "10.0.0.1"), `netmask "24" is not an IPv4 netmask`},
		{"netmask zero", r("10.0.0.1", "10.0.0.9", "0.0.0.0", "10.0.0.1"), `netmask "0.0.0.0" is not contiguous`},
		{"netmask holes", r("10.0.0.1", "10.0.0.9", "255.255.0.255", "10.0.0.1"), `netmask "255.255.0.255" is not contiguous`},
		{"netmask inverted", r("10.0.0.1", "10.0.0.9", "0.0.0.255", "10.0.0.1"), `netmask "0.0.0.255" is not contiguous`},
		{"gateway", r("10.0.0.1", "10.0.0.9", "255.255.255.0", ""), `gateway "" is not an IPv4 address`},
		{"reversed", r("10.0.0.9", "10.0.0.1", "255.255.255.0", "10.0.0.1"), "startIp 10.0.0.9 is after endIp 10.0.0.1"},
		{"too big", r("10.0.0.0", "11.0.0.0", "254.0.0.0", "10.0.0.1"), "range 10.0.0.0-11.0.0.0 has more than 16777216 addresses"},
		{"end in another subnet", r("10.0.0.1", "10.0.1.1", "255.255.255.0", "10.0.0.1"),
			"startIp 10.0.0.1, endIp 10.0.1.1 and gateway 10.0.0.1 are not all in one subnet of netmask 255.255.255.0"},
		{"gateway in another subnet", r("10.0.0.1", "10.0.0.9", "255.255.255.0", "10.0.1.1"), "are not all in one subnet"},
	}
	for _, tc := range bad {
		t.Run(tc.name, func(t *testing.T) {
			got, err := catalog.ParseRange(tc.in)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("ParseRange = %+v, %v; want error containing %q", got, err, tc.want)
			}
		})
	}
}
