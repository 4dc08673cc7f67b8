package zstack_test

import (
	"strings"
	"testing"

	"github.com/vmrestore/vmrestore/internal/zstack"
)

const psA = "ae47a25fd7cf3a349035d01060a8a224"

func TestParseSystemTag(t *testing.T) {
	label63 := strings.Repeat("a", 63)
	host255 := strings.Join([]string{label63, label63, label63, label63}, ".") // 4*63+3 = 255
	short256 := strings.Repeat("a.", 128)[:255] + "a"                          // short labels, 256 characters
	tests := []struct {
		tag     string
		want    zstack.SystemTag // Raw is filled in by the test
		wantErr string
	}{
		{"staticIp::" + l3A + "::10.0.0.5", zstack.SystemTag{Kind: zstack.TagStaticIP, L3: l3A, Value: "10.0.0.5"}, ""},
		{"staticIp::" + l3A + "::0.0.0.0", zstack.SystemTag{Kind: zstack.TagStaticIP, L3: l3A, Value: "0.0.0.0"}, ""},
		{"staticIp::" + l3A + "::fd00--1", zstack.SystemTag{}, `"fd00::1" is not an IPv4 address`},
		{"staticIp::" + l3A + "::10.0.0.256", zstack.SystemTag{}, `"10.0.0.256" is not an IPv4 address`},
		{"staticIp::" + l3A + "::010.0.0.5", zstack.SystemTag{}, "is not an IPv4 address"},
		{"staticIp::" + l3A + "::", zstack.SystemTag{}, `"" is not an IPv4 address`},
		{"staticIp::" + l3A + "::10.0.0.5::x", zstack.SystemTag{}, "is not an IPv4 address"},
		{"staticIp::" + l3A, zstack.SystemTag{}, "must be staticIp::{l3NetworkUuid}::{ip}"},
		{"staticIp::" + strings.ToUpper(l3A) + "::10.0.0.5", zstack.SystemTag{}, "must be staticIp::{l3NetworkUuid}::{ip}"},
		{"staticIp::::10.0.0.5", zstack.SystemTag{}, "must be staticIp::{l3NetworkUuid}::{ip}"},
		{"staticIp::", zstack.SystemTag{}, "must be staticIp::{l3NetworkUuid}::{ip}"},
		{"customMac::" + l3A + "::FA:16:3E:00:00:01", zstack.SystemTag{Kind: zstack.TagCustomMac, L3: l3A, Value: "fa:16:3e:00:00:01"}, ""},
		{"customMac::" + l3A + "::fa:16:3e:00:00:01", zstack.SystemTag{Kind: zstack.TagCustomMac, L3: l3A, Value: "fa:16:3e:00:00:01"}, ""},
		{"customMac::" + l3A + "::01:00:5e:00:00:01", zstack.SystemTag{}, "is a multicast address"},
		{"customMac::" + l3A + "::ff:ff:ff:ff:ff:ff", zstack.SystemTag{}, "mac[ff:ff:ff:ff:ff:ff]"},
		{"customMac::" + l3A + "::00:00:00:00:00:00", zstack.SystemTag{}, "is not a usable address"},
		{"customMac::" + l3A + "::fa-16-3e-00-00-01", zstack.SystemTag{}, "is not six colon-separated hex octets"},
		{"customMac::nope::fa:16:3e:00:00:01", zstack.SystemTag{}, "must be customMac::{l3NetworkUuid}::{mac}"},
		{"customMac::" + l3A, zstack.SystemTag{}, "must be customMac::{l3NetworkUuid}::{mac}"},
		{"hostname::web-01", zstack.SystemTag{Kind: zstack.TagHostname, Value: "web-01"}, ""},
		{"hostname::Web-01.Example.COM", zstack.SystemTag{Kind: zstack.TagHostname, Value: "Web-01.Example.COM"}, ""},
		{"hostname::a", zstack.SystemTag{Kind: zstack.TagHostname, Value: "a"}, ""},
		{"hostname::1-2", zstack.SystemTag{Kind: zstack.TagHostname, Value: "1-2"}, ""},
		{"hostname::" + label63, zstack.SystemTag{Kind: zstack.TagHostname, Value: label63}, ""},
		{"hostname::" + host255, zstack.SystemTag{Kind: zstack.TagHostname, Value: host255}, ""},
		{"hostname::" + short256, zstack.SystemTag{}, "is not a valid hostname"},
		{"hostname::" + short256[:255], zstack.SystemTag{Kind: zstack.TagHostname, Value: short256[:255]}, ""},
		{"hostname::" + label63 + "a", zstack.SystemTag{}, "is not a valid hostname"},
		{"hostname::", zstack.SystemTag{}, `"" is not a valid hostname`},
		{"hostname::-web", zstack.SystemTag{}, "is not a valid hostname"},
		{"hostname::web-", zstack.SystemTag{}, "is not a valid hostname"},
		{"hostname::web..local", zstack.SystemTag{}, "is not a valid hostname"},
		{"hostname::web.", zstack.SystemTag{}, "is not a valid hostname"},
		{"hostname::.web", zstack.SystemTag{}, "is not a valid hostname"},
		{"hostname::web_01", zstack.SystemTag{}, "is not a valid hostname"},
		{"hostname::web 01", zstack.SystemTag{}, "is not a valid hostname"},
		{"hostname::wéb", zstack.SystemTag{}, "is not a valid hostname"},
		{"hostname::web::x", zstack.SystemTag{}, "is not a valid hostname"},
		{"primaryStorageUuidForDataVolume::" + psA, zstack.SystemTag{Kind: zstack.TagPSForDataVol, Value: psA}, ""},
		{"primaryStorageUuidForDataVolume::" + strings.ToUpper(psA), zstack.SystemTag{}, "is not a valid uuid"},
		{"primaryStorageUuidForDataVolume::", zstack.SystemTag{}, `"" is not a valid uuid`},
		// Tags vmrestore does not act on are kept without a kind and without an error.
		{"foo::bar", zstack.SystemTag{}, ""},
		{"resourceConfig::vm::x::y", zstack.SystemTag{}, ""},
		{"StaticIp::" + l3A + "::10.0.0.5", zstack.SystemTag{}, ""},
		{"staticIp", zstack.SystemTag{}, ""},
		{"hostname", zstack.SystemTag{}, ""},
		{"hostname:web", zstack.SystemTag{}, ""},
		{"", zstack.SystemTag{}, ""},
		{"::", zstack.SystemTag{}, ""},
	}
	for _, tc := range tests {
		name := tc.tag
		if len(name) > 60 {
			name = name[:60]
		}
		t.Run(name, func(t *testing.T) {
			got, err := zstack.ParseSystemTag(tc.tag)
			if got.Raw != tc.tag {
				t.Fatalf("Raw = %q, want the tag itself", got.Raw)
			}
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("ParseSystemTag = %+v, %v; want error containing %q", got, err, tc.wantErr)
				}
				if !strings.Contains(err.Error(), "system tag[") {
					t.Fatalf("error %q does not quote the tag", err)
				}
				if got.Kind != "" {
					t.Fatalf("a rejected tag has Kind %q", got.Kind)
				}
				return
			}
			if err != nil {
				t.Fatalf("ParseSystemTag: %v", err)
			}
			tc.want.Raw = tc.tag
			if got != tc.want {
				t.Fatalf("got  %+v\nwant %+v", got, tc.want)
			}
		})
	}
}
