package catalog

import (
	"encoding/binary"
	"fmt"
	"net/netip"
)

// Range is an IP range with its addresses as integers (ZStack's ipInLong).
type Range struct {
	UUID    string
	Start   int64
	End     int64
	Netmask string
	Gateway string
	gateway int64
}

// Size is the number of addresses in the range.
func (r Range) Size() int64 { return r.End - r.Start + 1 }

// Contains reports whether the address (as an integer) lies in the range.
func (r Range) Contains(ip int64) bool { return ip >= r.Start && ip <= r.End }

// GatewayLong is the gateway as an integer.
func (r Range) GatewayLong() int64 { return r.gateway }

// IPToLong converts a dotted IPv4 address to ZStack's ipInLong; ok is false for anything else.
func IPToLong(s string) (int64, bool) {
	a, err := netip.ParseAddr(s)
	if err != nil || !a.Is4() {
		return 0, false
	}
	b := a.As4()
	return int64(binary.BigEndian.Uint32(b[:])), true
}

// LongToIP converts ipInLong back to dotted form.
func LongToIP(v int64) string {
	var b [4]byte
	binary.BigEndian.PutUint32(b[:], uint32(v))
	return netip.AddrFrom4(b).String()
}

// ParseRange checks an IPRange (IPv4 addresses, contiguous netmask, start ≤ end, all of
// start, end and gateway in one subnet) and returns it in integer form.
func ParseRange(r IPRange) (Range, error) {
	start, ok := IPToLong(r.StartIP)
	if !ok {
		return Range{}, fmt.Errorf("startIp %q is not an IPv4 address", r.StartIP)
	}
	end, ok := IPToLong(r.EndIP)
	if !ok {
		return Range{}, fmt.Errorf("endIp %q is not an IPv4 address", r.EndIP)
	}
	mask, ok := IPToLong(r.Netmask)
	if !ok {
		return Range{}, fmt.Errorf("netmask %q is not an IPv4 netmask", r.Netmask)
	}
	if inv := ^uint32(mask); inv&(inv+1) != 0 || mask == 0 {
		return Range{}, fmt.Errorf("netmask %q is not contiguous", r.Netmask)
	}
	gw, ok := IPToLong(r.Gateway)
	if !ok {
		return Range{}, fmt.Errorf("gateway %q is not an IPv4 address", r.Gateway)
	}
	if start > end {
		return Range{}, fmt.Errorf("startIp %s is after endIp %s", r.StartIP, r.EndIP)
	}
	if end-start+1 > MaxRangeSize {
		return Range{}, fmt.Errorf("range %s-%s has more than %d addresses", r.StartIP, r.EndIP, MaxRangeSize)
	}
	if start&mask != end&mask || gw&mask != start&mask {
		return Range{}, fmt.Errorf("startIp %s, endIp %s and gateway %s are not all in one subnet of netmask %s",
			r.StartIP, r.EndIP, r.Gateway, r.Netmask)
	}
	return Range{UUID: r.UUID, Start: start, End: end, Netmask: r.Netmask, Gateway: r.Gateway, gateway: gw}, nil
}
