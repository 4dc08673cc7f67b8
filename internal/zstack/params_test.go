package zstack_test

import (
	"encoding/json"
	"fmt"
	"reflect"
	"strings"
	"testing"

	"github.com/vmrestore/vmrestore/internal/zstack"
)

const (
	l3A = "d50554f493153be78f6740e18e598046"
	l3B = "e61665a5a4264cf89a7851f29f6a9157"
	sgA = "0a1b2c3d4e5f40718293a4b5c6d7e8f9"
)

func i64(v int64) *int64 { return &v }

// nicJSON builds a one-entry vmNicParams string from extra "key": value pairs.
func nicJSON(tb testing.TB, extra string) string {
	tb.Helper()
	s := `[{"l3NetworkUuid":"` + l3A + `"`
	if extra != "" {
		s += "," + extra
	}
	return s + "}]"
}

func TestParseVMNicParamsAccepts(t *testing.T) {
	many := make([]string, 64)
	for i := range many {
		many[i] = fmt.Sprintf(`{"l3NetworkUuid":"%s"}`, l3A)
	}
	tests := []struct {
		name string
		in   string
		want []zstack.VMNicParam
	}{
		{"empty list", `[]`, []zstack.VMNicParam{}},
		{"empty list with spaces", " \n[ ]\t", []zstack.VMNicParam{}},
		{"minimal entry gets defaults", nicJSON(t, ""),
			[]zstack.VMNicParam{{L3NetworkUUID: l3A, DriverType: "virtio", State: "enable"}}},
		{"every field", `[{"l3NetworkUuid":"` + l3A + `","mac":"FA:16:3E:0A:0B:0C","ip":"10.0.0.5","netmask":"255.255.255.0",
			"gateway":"10.0.0.1","ip6":"fd00::5","prefix6":"64","gateway6":"fd00::1","metaData":"m","driverType":"e1000",
			"state":"disable","outboundBandwidth":8192,"inboundBandwidth":32212254720,"multiQueueNum":256,
			"isDefaultNic":true,"sgUuids":["` + sgA + `"]}]`,
			[]zstack.VMNicParam{{L3NetworkUUID: l3A, Mac: "fa:16:3e:0a:0b:0c", IP: "10.0.0.5", Netmask: "255.255.255.0",
				Gateway: "10.0.0.1", IP6: "fd00::5", Prefix6: "64", Gateway6: "fd00::1", MetaData: "m", DriverType: "e1000",
				State: "disable", OutboundBandwidth: i64(8192), InboundBandwidth: i64(32212254720), MultiQueueNum: i64(256),
				IsDefaultNic: true, SgUUIDs: []string{sgA}}}},
		{"two entries keep order", `[{"l3NetworkUuid":"` + l3B + `","driverType":"rtl8139"},{"l3NetworkUuid":"` + l3A + `","driverType":"pcnet","state":"enable"}]`,
			[]zstack.VMNicParam{{L3NetworkUUID: l3B, DriverType: "rtl8139", State: "enable"}, {L3NetworkUUID: l3A, DriverType: "pcnet", State: "enable"}}},
		{"multiQueueNum 1", nicJSON(t, `"multiQueueNum":1`),
			[]zstack.VMNicParam{{L3NetworkUUID: l3A, DriverType: "virtio", State: "enable", MultiQueueNum: i64(1)}}},
		{"null optional fields", nicJSON(t, `"mac":null,"outboundBandwidth":null,"sgUuids":null`),
			[]zstack.VMNicParam{{L3NetworkUUID: l3A, DriverType: "virtio", State: "enable"}}},
		{"metaData of 4096", nicJSON(t, `"metaData":"`+strings.Repeat("x", 4096)+`"`),
			[]zstack.VMNicParam{{L3NetworkUUID: l3A, DriverType: "virtio", State: "enable", MetaData: strings.Repeat("x", 4096)}}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := zstack.ParseVMNicParams(tc.in)
			if err != nil {
				t.Fatalf("ParseVMNicParams: %v", err)
			}
			if len(got) != len(tc.want) || (len(got) > 0 && !reflect.DeepEqual(got, tc.want)) {
				t.Fatalf("got  %+v\nwant %+v", got, tc.want)
			}
		})
	}
	t.Run("64 entries", func(t *testing.T) {
		got, err := zstack.ParseVMNicParams("[" + strings.Join(many, ",") + "]")
		if err != nil || len(got) != 64 {
			t.Fatalf("got %d entries, err %v", len(got), err)
		}
	})
	t.Run("JSON null is no entries", func(t *testing.T) {
		got, err := zstack.ParseVMNicParams("null")
		if err != nil || len(got) != 0 {
			t.Fatalf("got %v, %v", got, err)
		}
	})
}

func TestParseVMNicParamsRejects(t *testing.T) {
	many := make([]string, 65)
	for i := range many {
		many[i] = fmt.Sprintf(`{"l3NetworkUuid":"%s"}`, l3A)
	}
	tests := []struct {
		name string
		in   string
		want string // substring of the error
	}{
		{"empty string", "", "vmNicParams is not a JSON list of NIC objects"},
		{"only spaces", "   ", "vmNicParams is not a JSON list of NIC objects"},
		{"an object", `{"l3NetworkUuid":"` + l3A + `"}`, "vmNicParams is not a JSON list of NIC objects"},
		{"list of numbers", `[1,2]`, "vmNicParams is not a JSON list of NIC objects"},
		{"list of strings", `["` + l3A + `"]`, "vmNicParams is not a JSON list of NIC objects"},
		{"truncated", `[{"l3NetworkUuid":"` + l3A + `"`, "vmNicParams is not a JSON list of NIC objects"},
		{"unknown field", nicJSON(t, `"vlan":5`), `unknown field "vlan"`},
		{"wrong type bandwidth", nicJSON(t, `"outboundBandwidth":"8192"`), "vmNicParams is not a JSON list"},
		{"wrong type isDefaultNic", nicJSON(t, `"isDefaultNic":"true"`), "vmNicParams is not a JSON list"},
		{"fraction bandwidth", nicJSON(t, `"inboundBandwidth":8192.5`), "vmNicParams is not a JSON list"},
		{"trailing list", `[] []`, "vmNicParams has trailing data after the JSON list"},
		{"trailing word", `[] x`, "vmNicParams has trailing data after the JSON list"},
		{"65 entries", "[" + strings.Join(many, ",") + "]", "vmNicParams has 65 entries, more than 64"},
		{"missing l3", `[{"ip":"10.0.0.5"}]`, "vmNicParams[0].l3NetworkUuid[] is not a valid uuid"},
		{"upper-case l3", `[{"l3NetworkUuid":"` + strings.ToUpper(l3A) + `"}]`, "vmNicParams[0].l3NetworkUuid[" + strings.ToUpper(l3A) + "] is not a valid uuid"},
		{"dashed l3", `[{"l3NetworkUuid":"d50554f4-9315-3be7-8f67-40e18e598046"}]`, "is not a valid uuid"},
		{"second entry is checked", `[{"l3NetworkUuid":"` + l3A + `"},{"l3NetworkUuid":"x"}]`, "vmNicParams[1].l3NetworkUuid[x]"},
		{"bad mac", nicJSON(t, `"mac":"fa:16:3e:0a:0b"`), "vmNicParams[0].mac: mac[fa:16:3e:0a:0b] is not six colon-separated hex octets"},
		{"multicast mac", nicJSON(t, `"mac":"01:00:5e:00:00:01"`), "vmNicParams[0].mac: mac[01:00:5e:00:00:01] is a multicast address"},
		{"zero mac", nicJSON(t, `"mac":"00:00:00:00:00:00"`), "vmNicParams[0].mac: mac[00:00:00:00:00:00] is not a usable address"},
		{"ip not an address", nicJSON(t, `"ip":"10.0.0"`), "vmNicParams[0].ip[10.0.0] is not an IPv4 address"},
		{"ip is IPv6", nicJSON(t, `"ip":"fd00::5"`), "vmNicParams[0].ip[fd00::5] is not an IPv4 address"},
		{"ip is IPv4-mapped IPv6", nicJSON(t, `"ip":"::ffff:10.0.0.5"`), "vmNicParams[0].ip[::ffff:10.0.0.5] is not an IPv4 address"},
		{"ip with leading zero", nicJSON(t, `"ip":"10.0.0.05"`), "vmNicParams[0].ip[10.0.0.05] is not an IPv4 address"},
		{"ip with space", nicJSON(t, `"ip":" 10.0.0.5"`), "is not an IPv4 address"},
		{"netmask out of range", nicJSON(t, `"netmask":"255.255.255.256"`), "vmNicParams[0].netmask[255.255.255.256] is not an IPv4 address"},
		{"gateway is a name", nicJSON(t, `"gateway":"router"`), "vmNicParams[0].gateway[router] is not an IPv4 address"},
		{"ip6 is IPv4", nicJSON(t, `"ip6":"10.0.0.5"`), "vmNicParams[0].ip6[10.0.0.5] is not an IPv6 address"},
		{"gateway6 garbage", nicJSON(t, `"gateway6":"fd00:::1"`), "vmNicParams[0].gateway6[fd00:::1] is not an IPv6 address"},
		{"driver type unknown", nicJSON(t, `"driverType":"vmxnet3"`), "vmNicParams[0].driverType[vmxnet3] is not one of [virtio e1000 rtl8139 pcnet]"},
		{"driver type case", nicJSON(t, `"driverType":"VirtIO"`), "driverType[VirtIO] is not one of"},
		{"state unknown", nicJSON(t, `"state":"up"`), "vmNicParams[0].state[up] must be enable or disable"},
		{"state case", nicJSON(t, `"state":"Enable"`), "state[Enable] must be enable or disable"},
		{"outbound too small", nicJSON(t, `"outboundBandwidth":8191`), "vmNicParams[0].outboundBandwidth[8191] is out of range [8192, 32212254720]"},
		{"outbound too large", nicJSON(t, `"outboundBandwidth":32212254721`), "outboundBandwidth[32212254721] is out of range"},
		{"outbound zero", nicJSON(t, `"outboundBandwidth":0`), "outboundBandwidth[0] is out of range"},
		{"inbound negative", nicJSON(t, `"inboundBandwidth":-1`), "vmNicParams[0].inboundBandwidth[-1] is out of range"},
		{"inbound too large", nicJSON(t, `"inboundBandwidth":32212254721`), "inboundBandwidth[32212254721] is out of range"},
		{"multiQueueNum zero", nicJSON(t, `"multiQueueNum":0`), "vmNicParams[0].multiQueueNum[0] is out of range [1, 256]"},
		{"multiQueueNum 257", nicJSON(t, `"multiQueueNum":257`), "multiQueueNum[257] is out of range [1, 256]"},
		{"metaData too long", nicJSON(t, `"metaData":"`+strings.Repeat("x", 4097)+`"`), "vmNicParams[0].metaData is longer than 4096 characters"},
		{"sg uuid bad", nicJSON(t, `"sgUuids":["`+sgA+`","nope"]`), `vmNicParams[0].sgUuids: "nope" is not a valid uuid`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := zstack.ParseVMNicParams(tc.in)
			if err == nil {
				t.Fatalf("ParseVMNicParams(%.80q) = %+v, want an error containing %q", tc.in, got, tc.want)
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %q does not contain %q", err, tc.want)
			}
			if got != nil {
				t.Fatalf("a failed parse returned entries: %+v", got)
			}
		})
	}
}

func TestParseVMNicParamsRejectsTrailingClosingBracket(t *testing.T) {
	for _, in := range []string{`[]]`, `[]}`, nicJSON(t, "") + `]`, nicJSON(t, "") + `}{`} {
		if got, err := zstack.ParseVMNicParams(in); err == nil {
			t.Errorf("ParseVMNicParams(%q) = %+v, want a trailing-data error", in, got)
		}
	}
}

func TestParseVMNicParamsRoundTrips(t *testing.T) {
	in := `[{"l3NetworkUuid":"` + l3A + `","mac":"FA:16:3E:0A:0B:0C","ip":"10.0.0.5","driverType":"e1000","outboundBandwidth":10000,"sgUuids":["` + sgA + `"]},{"l3NetworkUuid":"` + l3B + `","state":"disable","multiQueueNum":4,"isDefaultNic":true}]`
	first, err := zstack.ParseVMNicParams(in)
	if err != nil {
		t.Fatal(err)
	}
	b, err := json.Marshal(first)
	if err != nil {
		t.Fatal(err)
	}
	second, err := zstack.ParseVMNicParams(string(b))
	if err != nil {
		t.Fatalf("re-parsing %s: %v", b, err)
	}
	if !reflect.DeepEqual(first, second) {
		t.Fatalf("round trip changed the NICs:\n%+v\n%+v", first, second)
	}
}

func TestNormalizeMac(t *testing.T) {
	tests := []struct {
		in      string
		want    string
		wantErr string
	}{
		{"fa:16:3e:0a:0b:0c", "fa:16:3e:0a:0b:0c", ""},
		{"FA:16:3E:0A:0B:0C", "fa:16:3e:0a:0b:0c", ""},
		{"Fa:16:3e:0A:0b:0C", "fa:16:3e:0a:0b:0c", ""},
		{"02:00:00:00:00:00", "02:00:00:00:00:00", ""}, // locally administered unicast
		{"00:00:00:00:00:01", "00:00:00:00:00:01", ""},
		{"fe:ff:ff:ff:ff:ff", "fe:ff:ff:ff:ff:ff", ""},
		{"01:00:5e:00:00:01", "", "is a multicast address"},
		{"33:33:00:00:00:01", "", "is a multicast address"},
		{"ff:ff:ff:ff:ff:ff", "", "mac[ff:ff:ff:ff:ff:ff]"},
		{"FF:FF:FF:FF:FF:FF", "", "mac[FF:FF:FF:FF:FF:FF]"},
		{"00:00:00:00:00:00", "", "mac[00:00:00:00:00:00] is not a usable address"},
		{"", "", "mac[] is not six colon-separated hex octets"},
		{"fa-16-3e-0a-0b-0c", "", "is not six colon-separated hex octets"},
		{"fa.16.3e.0a.0b.0c", "", "is not six colon-separated hex octets"},
		{"fa163e0a0b0c", "", "is not six colon-separated hex octets"},
		{"fa:16:3e:0a:0b", "", "is not six colon-separated hex octets"},
		{"fa:16:3e:0a:0b:0c:0d", "", "is not six colon-separated hex octets"},
		{"fa:16:3e:0a:0b:0g", "", "is not six colon-separated hex octets"},
		{"fa:16:3e:0a:0b:c", "", "is not six colon-separated hex octets"},
		{"fa:16:3e:0a:0b:0c ", "", "is not six colon-separated hex octets"},
		{" fa:16:3e:0a:0b:0c", "", "is not six colon-separated hex octets"},
		{"fa:16:3e:0a:0b:+c", "", "is not six colon-separated hex octets"},
		{"fa16:3e:0a:0b:0c:", "", "is not six colon-separated hex octets"},
		{"fa:163:e0a:0b:0c0", "", "is not six colon-separated hex octets"},
		{"fa::16:3e:0a:0b:0", "", "is not six colon-separated hex octets"},
		{"ｆａ:16:3e:0a:0b", "", "is not six colon-separated hex octets"},
		{"fa:16:3e:0a:0b:0\x00", "", "is not six colon-separated hex octets"},
	}
	for _, tc := range tests {
		t.Run(tc.in, func(t *testing.T) {
			got, err := zstack.NormalizeMac(tc.in)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("NormalizeMac(%q) = %q, %v; want error containing %q", tc.in, got, err, tc.wantErr)
				}
				if got != "" {
					t.Fatalf("a rejected MAC returned %q", got)
				}
				return
			}
			if err != nil || got != tc.want {
				t.Fatalf("NormalizeMac(%q) = %q, %v; want %q", tc.in, got, err, tc.want)
			}
		})
	}
}

func TestDriverTypesAndBounds(t *testing.T) {
	if !reflect.DeepEqual(zstack.DriverTypes, []string{"virtio", "e1000", "rtl8139", "pcnet"}) {
		t.Fatalf("DriverTypes = %v", zstack.DriverTypes)
	}
	if zstack.MinBandwidth != 8192 || zstack.MaxBandwidth != 32212254720 || zstack.MaxMultiQueueNum != 256 {
		t.Fatal("bandwidth / multi-queue bounds differ from the contract")
	}
}
