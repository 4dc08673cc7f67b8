package zstack

import (
	"fmt"
	"net/netip"
	"strings"
)

// System tag kinds understood at VM creation.
const (
	TagStaticIP     = "staticIp"
	TagCustomMac    = "customMac"
	TagHostname     = "hostname"
	TagPSForDataVol = "primaryStorageUuidForDataVolume"
)

// SystemTag is a parsed creation-time system tag. Kind is empty for tags vmrestore does not
// act on; those are kept with the job and otherwise ignored.
type SystemTag struct {
	Kind  string
	L3    string // staticIp, customMac
	Value string // the IP, the MAC, the hostname, or the primary storage uuid
	Raw   string
}

// ParseSystemTag recognises staticIp::{l3Uuid}::{ip}, customMac::{l3Uuid}::{mac},
// hostname::{name} and primaryStorageUuidForDataVolume::{uuid}. A tag of a recognised kind
// with a malformed value is an error; any other tag is returned with an empty Kind.
func ParseSystemTag(tag string) (SystemTag, error) {
	t := SystemTag{Raw: tag}
	kind, rest, found := strings.Cut(tag, "::")
	if !found {
		return t, nil
	}
	switch kind {
	case TagStaticIP:
		l3, ip, ok := strings.Cut(rest, "::")
		if !ok || !IsUUID(l3) {
			return t, fmt.Errorf("system tag[%s] must be staticIp::{l3NetworkUuid}::{ip}", tag)
		}
		// ZStack writes IPv6 colons as '--' inside tags.
		ip = strings.ReplaceAll(ip, "--", "::")
		a, err := netip.ParseAddr(ip)
		if err != nil || !a.Is4() {
			return t, fmt.Errorf("system tag[%s]: %q is not an IPv4 address", tag, ip)
		}
		t.Kind, t.L3, t.Value = TagStaticIP, l3, a.String()
	case TagCustomMac:
		l3, mac, ok := strings.Cut(rest, "::")
		if !ok || !IsUUID(l3) {
			return t, fmt.Errorf("system tag[%s] must be customMac::{l3NetworkUuid}::{mac}", tag)
		}
		m, err := NormalizeMac(mac)
		if err != nil {
			return t, fmt.Errorf("system tag[%s]: %v", tag, err)
		}
		t.Kind, t.L3, t.Value = TagCustomMac, l3, m
	case TagHostname:
		if !validHostname(rest) {
			return t, fmt.Errorf("system tag[%s]: %q is not a valid hostname (letters, digits, '-' and '.', at most 255 characters)", tag, rest)
		}
		t.Kind, t.Value = TagHostname, rest
	case TagPSForDataVol:
		if !IsUUID(rest) {
			return t, fmt.Errorf("system tag[%s]: %q is not a valid uuid", tag, rest)
		}
		t.Kind, t.Value = TagPSForDataVol, rest
	}
	return t, nil
}

func validHostname(s string) bool {
	if s == "" || len(s) > 255 {
		return false
	}
	for _, label := range strings.Split(s, ".") {
		if label == "" || len(label) > 63 || label[0] == '-' || label[len(label)-1] == '-' {
			return false
		}
		for _, c := range label {
			if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-') {
				return false
			}
		}
	}
	return true
}
