package job_test

import (
	"encoding/json"
	"fmt"
	"reflect"
	"strings"
	"testing"

	"github.com/vmrestore/vmrestore/internal/job"
	"github.com/vmrestore/vmrestore/internal/zstack"
)

const (
	group    = "6e0c3b6a1f2d4c5b8a9e7d6c5b4a3f21"
	l3A      = "d50554f493153be78f6740e18e598046"
	l3B      = "e61665a5a4264cf89a7851f29f6a9157"
	l3C      = "0123456789abcdef0123456789abcdef"
	zone     = "1e48b41ec4b63660b38a72d271c0164b"
	cluster  = "f29498f04b1e3c319bdaeb6b3f8259f3"
	host     = "e18cf66eedb3306686a1d4685bbb63af"
	psRoot   = "ae47a25fd7cf3a349035d01060a8a224"
	psData   = "b1c2d3e4f5a6478899aabbccddeeff00"
	offering = "f53ad9f147203b499dfbd93ce41b7a8e"
	bs       = "c3d4e5f6a7b8490a9b1c2d3e4f5a6b7c"
	resUUID  = "8a2e5d8c3b4f4e7dac1a9f8e7d6c5b43"
	tagUUID  = "7f1d4c7b2a3e4d6c9b0f8e7d6c5b4a32"
	sg       = "0a1b2c3d4e5f40718293a4b5c6d7e8f9"
)

func i64(v int64) *int64 { return &v }

// baseBody is a valid request: a name, cpuNum and memorySize, one L3 network.
func baseBody() *zstack.CreateVmFromVmBackupRequest {
	return &zstack.CreateVmFromVmBackupRequest{Params: zstack.CreateVmFromVmBackupParams{
		Name: "web-01", CPUNum: i64(2), MemorySize: i64(2 << 30), L3NetworkUUIDs: []string{l3A},
	}}
}

func nics(entries ...string) string { return "[" + strings.Join(entries, ",") + "]" }

func nic(l3 string, extra string) string {
	s := `{"l3NetworkUuid":"` + l3 + `"`
	if extra != "" {
		s += "," + extra
	}
	return s + "}"
}

func repeat(s string, n int) []string {
	out := make([]string, n)
	for i := range out {
		out[i] = s
	}
	return out
}

func uuids(n int) []string {
	out := make([]string, n)
	for i := range out {
		out[i] = fmt.Sprintf("%032x", i+1)
	}
	return out
}

func TestFromZStackRejects(t *testing.T) {
	type mod func(g *string, b *zstack.CreateVmFromVmBackupRequest)
	params := func(f func(p *zstack.CreateVmFromVmBackupParams)) mod {
		return func(_ *string, b *zstack.CreateVmFromVmBackupRequest) { f(&b.Params) }
	}
	sysTags := func(tags ...string) mod {
		return func(_ *string, b *zstack.CreateVmFromVmBackupRequest) { b.SystemTags = tags }
	}
	twoL3 := func(p *zstack.CreateVmFromVmBackupParams) {
		p.L3NetworkUUIDs = []string{l3A, l3B}
		p.DefaultL3NetworkUUID = l3A
	}
	tests := []struct {
		name string
		mod  mod
		want string // substring of details
	}{
		// group uuid
		{"group uuid not hex", func(g *string, _ *zstack.CreateVmFromVmBackupRequest) { *g = "not-a-uuid" },
			"groupUuid[not-a-uuid] is not a valid uuid: it must be 32 lowercase hex characters without '-'"},
		{"group uuid upper case", func(g *string, _ *zstack.CreateVmFromVmBackupRequest) { *g = strings.ToUpper(group) },
			"groupUuid[" + strings.ToUpper(group) + "] is not a valid uuid"},
		{"group uuid dashed", func(g *string, _ *zstack.CreateVmFromVmBackupRequest) { *g = "6e0c3b6a-1f2d-4c5b-8a9e-7d6c5b4a3f21" },
			"groupUuid[6e0c3b6a-1f2d-4c5b-8a9e-7d6c5b4a3f21] is not a valid uuid"},
		{"group uuid empty", func(g *string, _ *zstack.CreateVmFromVmBackupRequest) { *g = "" }, "groupUuid is required"},
		{"group uuid in params differs from the path's", params(func(p *zstack.CreateVmFromVmBackupParams) { p.GroupUUID = l3A }),
			"params.groupUuid[" + l3A + "] differs from the group of the path[" + group + "]; send one group"},
		{"group uuid at the top differs from the path's", func(_ *string, b *zstack.CreateVmFromVmBackupRequest) { b.GroupUUID = l3A },
			"groupUuid[" + l3A + "] differs from the group of the path[" + group + "]"},
		{"no path, two groups in the body", func(g *string, b *zstack.CreateVmFromVmBackupRequest) {
			*g, b.GroupUUID, b.Params.GroupUUID = "", group, l3A
		}, "params.groupUuid[" + l3A + "] differs from the group of the path[" + group + "]"},
		{"no path, group in the body not a uuid", func(g *string, b *zstack.CreateVmFromVmBackupRequest) { *g, b.GroupUUID = "", "web01" },
			"groupUuid[web01] is not a valid uuid"},

		// keys the call does not define: near-misses of real names are refused
		{"a typo in params", func(_ *string, b *zstack.CreateVmFromVmBackupRequest) { b.Unknown = []string{"params.clustreUuid"} },
			`params has unknown field(s) clustreUuid; did you mean "clusterUuid"?`},
		{"a parameter in another case", func(_ *string, b *zstack.CreateVmFromVmBackupRequest) { b.Unknown = []string{"params.hostUUid"} },
			`params has unknown field(s) hostUUid; parameter names are case-sensitive, did you mean "hostUuid"?`},
		{"a plural for a singular", func(_ *string, b *zstack.CreateVmFromVmBackupRequest) { b.Unknown = []string{"params.l3NetworkUuid"} },
			`did you mean "l3NetworkUuids"?`},
		{"a typo at the top level", func(_ *string, b *zstack.CreateVmFromVmBackupRequest) { b.Unknown = []string{"systemTag"} },
			`the body has unknown field(s) systemTag; did you mean "systemTags"?`},
		{"a near-miss among ignored keys", func(_ *string, b *zstack.CreateVmFromVmBackupRequest) {
			b.Unknown = []string{"params.imageUuid", "params.vmNicParam"}
		}, `params has unknown field(s) vmNicParam; did you mean "vmNicParams"?`},
		{"parameters without params", func(_ *string, b *zstack.CreateVmFromVmBackupRequest) {
			b.Params, b.Unknown = zstack.CreateVmFromVmBackupParams{}, []string{"instanceOfferingUuid", "l3NetworkUuids", "name", "vmName"}
		}, `the body has no "params", and instanceOfferingUuid, l3NetworkUuids, name at its top level: CreateVmFromVmBackup's parameters go inside "params"`},
		{"diskAOs", params(func(p *zstack.CreateVmFromVmBackupParams) { p.DiskAOs = []json.RawMessage{json.RawMessage(`{}`)} }),
			"diskAOs is not supported"},

		// name and description
		{"name empty", params(func(p *zstack.CreateVmFromVmBackupParams) { p.Name = "" }),
			"field[name] of message[APICreateVmFromVmBackupMsg] is mandatory, can not be null or empty"},
		{"name blank", params(func(p *zstack.CreateVmFromVmBackupParams) { p.Name = " \t\n" }),
			"field[name] of message[APICreateVmFromVmBackupMsg] is mandatory"},
		{"name 256 characters", params(func(p *zstack.CreateVmFromVmBackupParams) { p.Name = strings.Repeat("n", 256) }),
			"field[name] must be at most 255 characters, got 256"},
		{"name 256 multi-byte characters", params(func(p *zstack.CreateVmFromVmBackupParams) { p.Name = strings.Repeat("名", 256) }),
			"field[name] must be at most 255 characters, got 256"},
		{"name with NUL", params(func(p *zstack.CreateVmFromVmBackupParams) { p.Name = "web\x0001" }),
			"field[name] contains a NUL character"},
		{"description 2049 characters", params(func(p *zstack.CreateVmFromVmBackupParams) { p.Description = strings.Repeat("d", 2049) }),
			"field[description] must be at most 2048 characters"},
		{"description 2049 multi-byte characters", params(func(p *zstack.CreateVmFromVmBackupParams) { p.Description = strings.Repeat("é", 2049) }),
			"field[description] must be at most 2048 characters"},

		// uuid fields
		{"instanceOfferingUuid", params(func(p *zstack.CreateVmFromVmBackupParams) { p.InstanceOfferingUUID = "x" }), "instanceOfferingUuid[x] is not a valid uuid"},
		{"backupStorageUuid", params(func(p *zstack.CreateVmFromVmBackupParams) { p.BackupStorageUUID = "x" }), "backupStorageUuid[x] is not a valid uuid"},
		{"zoneUuid", params(func(p *zstack.CreateVmFromVmBackupParams) { p.ZoneUUID = strings.ToUpper(zone) }), "zoneUuid[" + strings.ToUpper(zone) + "] is not a valid uuid"},
		{"clusterUuid", params(func(p *zstack.CreateVmFromVmBackupParams) { p.ClusterUUID = cluster + "0" }), "clusterUuid[" + cluster + "0] is not a valid uuid"},
		{"hostUuid", params(func(p *zstack.CreateVmFromVmBackupParams) { p.HostUUID = host[:31] }), "hostUuid[" + host[:31] + "] is not a valid uuid"},
		{"primaryStorageUuidForRootVolume", params(func(p *zstack.CreateVmFromVmBackupParams) { p.PrimaryStorageUUIDForRootVolume = "x" }), "primaryStorageUuidForRootVolume[x] is not a valid uuid"},
		{"primaryStorageUuidForDataVolume", params(func(p *zstack.CreateVmFromVmBackupParams) { p.PrimaryStorageUUIDForDataVolume = "x" }), "primaryStorageUuidForDataVolume[x] is not a valid uuid"},
		{"defaultL3NetworkUuid", params(func(p *zstack.CreateVmFromVmBackupParams) { p.DefaultL3NetworkUUID = "x" }), "defaultL3NetworkUuid[x] is not a valid uuid"},
		{"resourceUuid", params(func(p *zstack.CreateVmFromVmBackupParams) { p.ResourceUUID = "x" }), "resourceUuid[x] is not a valid uuid"},

		// l3NetworkUuids
		{"65 L3 networks", params(func(p *zstack.CreateVmFromVmBackupParams) { p.L3NetworkUUIDs = uuids(65) }),
			"l3NetworkUuids has 65 entries, more than 64"},
		{"L3 not a uuid", params(func(p *zstack.CreateVmFromVmBackupParams) { p.L3NetworkUUIDs = []string{l3A, "l3-b"} }),
			"l3NetworkUuids[1][l3-b] is not a valid uuid"},
		{"L3 empty", params(func(p *zstack.CreateVmFromVmBackupParams) { p.L3NetworkUUIDs = []string{""} }),
			"l3NetworkUuids[0] is empty"},
		{"L3 twice", params(func(p *zstack.CreateVmFromVmBackupParams) { p.L3NetworkUUIDs = []string{l3A, l3B, l3A} }),
			"l3NetworkUuids contains l3 network[uuid:" + l3A + "] twice"},

		// tagUuids and tags
		{"257 tagUuids", params(func(p *zstack.CreateVmFromVmBackupParams) { p.TagUUIDs = uuids(257) }), "tagUuids has 257 entries, more than 256"},
		{"tagUuid not a uuid", params(func(p *zstack.CreateVmFromVmBackupParams) { p.TagUUIDs = []string{tagUUID, "t"} }), "tagUuids[1][t] is not a valid uuid"},
		{"257 systemTags", sysTags(repeat("a::b", 257)...), "systemTags has 257 entries, more than 256"},
		{"empty systemTag", sysTags("hostname::a", ""), "systemTags[1] must be a non-empty string of at most 4096 characters without NUL"},
		{"systemTag of 4097", sysTags(strings.Repeat("x", 4097)), "systemTags[0] must be a non-empty string of at most 4096"},
		{"systemTag with NUL", sysTags("a\x00b"), "systemTags[0] must be a non-empty string"},
		{"empty userTag", func(_ *string, b *zstack.CreateVmFromVmBackupRequest) { b.UserTags = []string{""} }, "userTags[0] must be a non-empty string"},
		{"257 userTags", func(_ *string, b *zstack.CreateVmFromVmBackupRequest) { b.UserTags = repeat("u", 257) }, "userTags has 257 entries"},
		{"rootVolumeSystemTag with NUL", params(func(p *zstack.CreateVmFromVmBackupParams) { p.RootVolumeSystemTags = []string{"ok", "\x00"} }),
			"rootVolumeSystemTags[1] must be a non-empty string"},
		{"dataVolumeSystemTag too long", params(func(p *zstack.CreateVmFromVmBackupParams) {
			p.DataVolumeSystemTags = []string{strings.Repeat("x", 4097)}
		}),
			"dataVolumeSystemTags[0] must be a non-empty string"},
		{"257 dataVolumeSystemTags", params(func(p *zstack.CreateVmFromVmBackupParams) { p.DataVolumeSystemTags = repeat("d", 257) }),
			"dataVolumeSystemTags has 257 entries"},

		// cpu and memory
		{"no offering, no cpu", params(func(p *zstack.CreateVmFromVmBackupParams) { p.CPUNum = nil }),
			"instanceOfferingUuid or cpuNum and memorySize must be set"},
		{"no offering, no memory", params(func(p *zstack.CreateVmFromVmBackupParams) { p.MemorySize = nil }),
			"instanceOfferingUuid or cpuNum and memorySize must be set"},
		{"no offering, neither", params(func(p *zstack.CreateVmFromVmBackupParams) { p.CPUNum, p.MemorySize = nil, nil }),
			"instanceOfferingUuid or cpuNum and memorySize must be set"},
		// 0 is "not set" (the Go SDK cannot leave an integer out): without an offering, memory alone is not enough.
		{"cpuNum 0", params(func(p *zstack.CreateVmFromVmBackupParams) { p.CPUNum = i64(0) }), "instanceOfferingUuid or cpuNum and memorySize must be set"},
		{"cpuNum negative", params(func(p *zstack.CreateVmFromVmBackupParams) { p.CPUNum = i64(-4) }), "cpuNum[-4] must be between 1 and 1024"},
		{"cpuNum 1025", params(func(p *zstack.CreateVmFromVmBackupParams) { p.CPUNum = i64(1025) }), "cpuNum[1025] must be between 1 and 1024"},
		{"memorySize 0", params(func(p *zstack.CreateVmFromVmBackupParams) { p.MemorySize = i64(0) }), "instanceOfferingUuid or cpuNum and memorySize must be set"},
		{"memorySize negative", params(func(p *zstack.CreateVmFromVmBackupParams) { p.MemorySize = i64(-1) }), "memorySize[-1] must be a positive number of bytes"},
		{"reservedMemorySize negative", params(func(p *zstack.CreateVmFromVmBackupParams) { p.ReservedMemorySize = i64(-1) }),
			"reservedMemorySize[-1] cannot be negative"},
		{"reservedMemorySize above memory", params(func(p *zstack.CreateVmFromVmBackupParams) { p.ReservedMemorySize = i64(2<<30 + 1) }),
			fmt.Sprintf("reservedMemorySize[%d] cannot be larger than memorySize[%d]", 2<<30+1, 2<<30)},

		// type and strategy
		{"type unknown", params(func(p *zstack.CreateVmFromVmBackupParams) { p.Type = "Container" }), "type[Container] is not one of [UserVm ApplianceVm]"},
		{"type case", params(func(p *zstack.CreateVmFromVmBackupParams) { p.Type = "uservm" }), "type[uservm] is not one of"},
		{"strategy unknown", params(func(p *zstack.CreateVmFromVmBackupParams) { p.Strategy = "StartLater" }),
			"strategy[StartLater] is not one of [InstantStart JustCreate CreateStopped]"},
		{"strategy case", params(func(p *zstack.CreateVmFromVmBackupParams) { p.Strategy = "instantstart" }), "strategy[instantstart] is not one of"},

		// scope
		{"no l3, zone, cluster or host", params(func(p *zstack.CreateVmFromVmBackupParams) { p.L3NetworkUUIDs = nil }),
			"could not create vm, because at least one of field (l3NetworkUuids,zoneUuid,clusterUuid,hostUuid) should be set"},
		{"empty l3 list and no scope", params(func(p *zstack.CreateVmFromVmBackupParams) { p.L3NetworkUUIDs = []string{} }),
			"at least one of field (l3NetworkUuids,zoneUuid,clusterUuid,hostUuid) should be set"},

		// vmNicParams
		{"vmNicParams without L3", params(func(p *zstack.CreateVmFromVmBackupParams) {
			p.L3NetworkUUIDs, p.ZoneUUID, p.VMNicParams = nil, zone, "[]"
		}), "vmNicParams needs l3NetworkUuids"},
		{"vmNicParams not JSON", params(func(p *zstack.CreateVmFromVmBackupParams) { p.VMNicParams = "l3=" + l3A }),
			"vmNicParams is not a JSON list of NIC objects"},
		{"vmNicParams an object", params(func(p *zstack.CreateVmFromVmBackupParams) { p.VMNicParams = nic(l3A, "") }),
			"vmNicParams is not a JSON list of NIC objects"},
		{"vmNicParams unknown field", params(func(p *zstack.CreateVmFromVmBackupParams) { p.VMNicParams = nics(nic(l3A, `"vlan":1`)) }),
			`unknown field "vlan"`},
		{"vmNicParams L3 not requested", params(func(p *zstack.CreateVmFromVmBackupParams) { p.VMNicParams = nics(nic(l3B, "")) }),
			"vmNicParams[0].l3NetworkUuid[" + l3B + "] is not in l3NetworkUuids [" + l3A + "]"},
		{"vmNicParams second entry L3 not requested", params(func(p *zstack.CreateVmFromVmBackupParams) {
			twoL3(p)
			p.VMNicParams = nics(nic(l3A, ""), nic(l3C, ""))
		}), "vmNicParams[1].l3NetworkUuid[" + l3C + "] is not in l3NetworkUuids"},
		{"vmNicParams two entries for one L3", params(func(p *zstack.CreateVmFromVmBackupParams) {
			twoL3(p)
			p.VMNicParams = nics(nic(l3B, ""), nic(l3B, ""))
		}), "vmNicParams has more than one entry for l3 network[uuid:" + l3B + "]"},
		{"vmNicParams bad driver", params(func(p *zstack.CreateVmFromVmBackupParams) { p.VMNicParams = nics(nic(l3A, `"driverType":"vmxnet3"`)) }),
			"vmNicParams[0].driverType[vmxnet3] is not one of [virtio e1000 rtl8139 pcnet]"},
		{"vmNicParams bad state", params(func(p *zstack.CreateVmFromVmBackupParams) { p.VMNicParams = nics(nic(l3A, `"state":"on"`)) }),
			"vmNicParams[0].state[on] must be enable or disable"},
		{"vmNicParams bandwidth low", params(func(p *zstack.CreateVmFromVmBackupParams) { p.VMNicParams = nics(nic(l3A, `"outboundBandwidth":100`)) }),
			"vmNicParams[0].outboundBandwidth[100] is out of range [8192, 32212254720]"},
		{"vmNicParams bandwidth high", params(func(p *zstack.CreateVmFromVmBackupParams) {
			p.VMNicParams = nics(nic(l3A, `"inboundBandwidth":32212254721`))
		}), "vmNicParams[0].inboundBandwidth[32212254721] is out of range"},
		{"vmNicParams multiQueueNum", params(func(p *zstack.CreateVmFromVmBackupParams) { p.VMNicParams = nics(nic(l3A, `"multiQueueNum":0`)) }),
			"vmNicParams[0].multiQueueNum[0] is out of range [1, 256]"},
		{"vmNicParams bad ip", params(func(p *zstack.CreateVmFromVmBackupParams) { p.VMNicParams = nics(nic(l3A, `"ip":"10.0.0.300"`)) }),
			"vmNicParams[0].ip[10.0.0.300] is not an IPv4 address"},
		{"vmNicParams bad mac", params(func(p *zstack.CreateVmFromVmBackupParams) {
			p.VMNicParams = nics(nic(l3A, `"mac":"01:00:5e:00:00:01"`))
		}),
			"vmNicParams[0].mac: mac[01:00:5e:00:00:01] is a multicast address"},
		{"vmNicParams bad sg", params(func(p *zstack.CreateVmFromVmBackupParams) { p.VMNicParams = nics(nic(l3A, `"sgUuids":["sg"]`)) }),
			`vmNicParams[0].sgUuids: "sg" is not a valid uuid`},
		{"two default NICs", params(func(p *zstack.CreateVmFromVmBackupParams) {
			p.L3NetworkUUIDs = []string{l3A, l3B}
			p.VMNicParams = nics(nic(l3A, `"isDefaultNic":true`), nic(l3B, `"isDefaultNic":true`))
		}), "vmNicParams marks more than one NIC with isDefaultNic"},

		// system tags
		{"staticIp malformed", sysTags("staticIp::" + l3A), "system tag[staticIp::" + l3A + "] must be staticIp::{l3NetworkUuid}::{ip}"},
		{"staticIp not IPv4", sysTags("staticIp::" + l3A + "::fd00--5"), `"fd00::5" is not an IPv4 address`},
		{"staticIp on another L3", sysTags("staticIp::" + l3B + "::10.0.0.5"),
			"system tag[staticIp::" + l3B + "::10.0.0.5] names l3 network[uuid:" + l3B + "], which is not in l3NetworkUuids"},
		{"customMac on another L3", sysTags("customMac::" + l3B + "::fa:16:3e:00:00:01"),
			"names l3 network[uuid:" + l3B + "], which is not in l3NetworkUuids"},
		{"customMac multicast", sysTags("customMac::" + l3A + "::01:00:5e:00:00:01"), "is a multicast address"},
		{"customMac all ones", sysTags("customMac::" + l3A + "::ff:ff:ff:ff:ff:ff"), "mac[ff:ff:ff:ff:ff:ff]"},
		{"customMac all zeros", sysTags("customMac::" + l3A + "::00:00:00:00:00:00"), "is not a usable address"},
		{"staticIp conflicts with vmNicParams", func(_ *string, b *zstack.CreateVmFromVmBackupRequest) {
			b.Params.VMNicParams = nics(nic(l3A, `"ip":"10.0.0.5"`))
			b.SystemTags = []string{"staticIp::" + l3A + "::10.0.0.6"}
		}, "system tag[staticIp::" + l3A + "::10.0.0.6] conflicts with 10.0.0.5 already given for l3 network[uuid:" + l3A + "]"},
		{"two staticIp tags for one L3", sysTags("staticIp::"+l3A+"::10.0.0.5", "staticIp::"+l3A+"::10.0.0.7"),
			"system tag[staticIp::" + l3A + "::10.0.0.7] conflicts with 10.0.0.5"},
		{"customMac conflicts with vmNicParams", func(_ *string, b *zstack.CreateVmFromVmBackupRequest) {
			b.Params.VMNicParams = nics(nic(l3A, `"mac":"fa:16:3e:00:00:01"`))
			b.SystemTags = []string{"customMac::" + l3A + "::fa:16:3e:00:00:02"}
		}, "conflicts with fa:16:3e:00:00:01 already given for l3 network[uuid:" + l3A + "]"},
		{"hostname invalid", sysTags("hostname::web_01"), `system tag[hostname::web_01]: "web_01" is not a valid hostname`},
		{"data PS tag invalid", sysTags("primaryStorageUuidForDataVolume::ps"), `system tag[primaryStorageUuidForDataVolume::ps]: "ps" is not a valid uuid`},
		{"data PS tag conflicts with the parameter", func(_ *string, b *zstack.CreateVmFromVmBackupRequest) {
			b.Params.PrimaryStorageUUIDForDataVolume = psRoot
			b.SystemTags = []string{"primaryStorageUuidForDataVolume::" + psData}
		}, "system tag[primaryStorageUuidForDataVolume::" + psData + "] conflicts with primaryStorageUuidForDataVolume[" + psRoot + "]"},
		{"two data PS tags", sysTags("primaryStorageUuidForDataVolume::"+psRoot, "primaryStorageUuidForDataVolume::"+psData),
			"conflicts with primaryStorageUuidForDataVolume[" + psRoot + "]"},

		// default L3
		{"two L3 and no default", params(func(p *zstack.CreateVmFromVmBackupParams) { p.L3NetworkUUIDs = []string{l3A, l3B} }),
			"there are more than one L3 network specified in l3NetworkUuids, but defaultL3NetworkUuid is null"},
		{"default not in the list", params(func(p *zstack.CreateVmFromVmBackupParams) { p.DefaultL3NetworkUUID = l3B }),
			"defaultL3NetworkUuid[" + l3B + "] is not in l3NetworkUuids [" + l3A + "]"},
		{"default without any L3", params(func(p *zstack.CreateVmFromVmBackupParams) {
			p.L3NetworkUUIDs, p.ZoneUUID, p.DefaultL3NetworkUUID = nil, zone, l3A
		}), "defaultL3NetworkUuid[" + l3A + "] is not in l3NetworkUuids []"},
		{"default and isDefaultNic disagree", params(func(p *zstack.CreateVmFromVmBackupParams) {
			twoL3(p)
			p.VMNicParams = nics(nic(l3B, `"isDefaultNic":true`))
		}), "defaultL3NetworkUuid[" + l3A + "] and the NIC marked isDefaultNic (l3 network[uuid:" + l3B + "]) disagree"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			g, b := group, baseBody()
			tc.mod(&g, b)
			r, err := job.FromZStack(g, b)
			if err == nil {
				t.Fatalf("FromZStack accepted the request: %+v", r)
			}
			if r != nil {
				t.Fatalf("FromZStack returned both a request and an error")
			}
			if err.Code != zstack.CodeInvalidArgument {
				t.Fatalf("code = %s, want SYS.1007 (%s)", err.Code, err.Details)
			}
			if err.Description != zstack.Description(zstack.CodeInvalidArgument) {
				t.Fatalf("description = %q", err.Description)
			}
			if !strings.Contains(err.Details, tc.want) {
				t.Fatalf("details %q\ndo not contain %q", err.Details, tc.want)
			}
		})
	}
}

func TestFromZStackRejectsEmptyTagUUID(t *testing.T) {
	b := baseBody()
	b.Params.TagUUIDs = []string{tagUUID, ""}
	r, err := job.FromZStack(group, b)
	if err == nil {
		t.Fatalf("accepted tagUuids %q: %+v", r.TagUUIDs, r)
	}
	if err.Code != zstack.CodeInvalidArgument || !strings.Contains(err.Details, "tagUuids[1]") {
		t.Fatalf("got %s %q", err.Code, err.Details)
	}
}

// accept runs FromZStack on a body that must be valid.
func accept(tb testing.TB, b *zstack.CreateVmFromVmBackupRequest) *job.Request {
	tb.Helper()
	r, err := job.FromZStack(group, b)
	if err != nil {
		tb.Fatalf("FromZStack: %s: %s", err.Code, err.Details)
	}
	return r
}

func TestFromZStackMinimalRequestGetsDefaults(t *testing.T) {
	r := accept(t, baseBody())
	want := &job.Request{
		GroupUUID: group, Name: "web-01", CPUNum: 2, MemorySize: 2 << 30, Type: "UserVm", Strategy: "InstantStart",
		DefaultL3NetworkUUID: l3A, NICs: []job.NIC{{L3NetworkUUID: l3A, DriverType: "virtio", State: "enable"}},
	}
	if !reflect.DeepEqual(r, want) {
		t.Fatalf("got  %+v\nwant %+v", r, want)
	}
}

func TestFromZStackAccepts(t *testing.T) {
	tests := []struct {
		name  string
		mod   func(b *zstack.CreateVmFromVmBackupRequest)
		check func(t *testing.T, r *job.Request)
	}{
		{"offering alone, zone scope, no NICs", func(b *zstack.CreateVmFromVmBackupRequest) {
			b.Params.CPUNum, b.Params.MemorySize, b.Params.L3NetworkUUIDs = nil, nil, nil
			b.Params.InstanceOfferingUUID, b.Params.ZoneUUID = offering, zone
		}, func(t *testing.T, r *job.Request) {
			if r.InstanceOfferingUUID != offering || r.CPUNum != 0 || r.MemorySize != 0 || r.ZoneUUID != zone {
				t.Fatalf("offering %q cpu %d mem %d zone %q", r.InstanceOfferingUUID, r.CPUNum, r.MemorySize, r.ZoneUUID)
			}
			if len(r.NICs) != 0 || r.DefaultL3NetworkUUID != "" {
				t.Fatalf("NICs %+v default %q", r.NICs, r.DefaultL3NetworkUUID)
			}
		}},
		{"offering with cpuNum and memorySize keeps the offering", func(b *zstack.CreateVmFromVmBackupRequest) {
			b.Params.InstanceOfferingUUID = offering
		}, func(t *testing.T, r *job.Request) {
			if r.InstanceOfferingUUID != offering {
				t.Fatalf("offering %q", r.InstanceOfferingUUID)
			}
		}},
		{"offering with only cpuNum", func(b *zstack.CreateVmFromVmBackupRequest) {
			b.Params.InstanceOfferingUUID, b.Params.MemorySize = offering, nil
		}, func(t *testing.T, r *job.Request) {
			if r.InstanceOfferingUUID != offering || r.MemorySize != 0 {
				t.Fatalf("offering %q mem %d", r.InstanceOfferingUUID, r.MemorySize)
			}
		}},
		{"offering: reservedMemorySize is checked against the offering later", func(b *zstack.CreateVmFromVmBackupRequest) {
			b.Params.InstanceOfferingUUID, b.Params.CPUNum, b.Params.MemorySize = offering, nil, nil
			b.Params.ReservedMemorySize = i64(1 << 40)
		}, func(t *testing.T, r *job.Request) {
			if r.ReservedMemorySize != 1<<40 {
				t.Fatalf("reserved %d", r.ReservedMemorySize)
			}
		}},
		{"reservedMemorySize equal to memory", func(b *zstack.CreateVmFromVmBackupRequest) {
			b.Params.ReservedMemorySize = i64(2 << 30)
		}, func(t *testing.T, r *job.Request) {
			if r.ReservedMemorySize != 2<<30 {
				t.Fatalf("reserved %d", r.ReservedMemorySize)
			}
		}},
		{"reservedMemorySize zero", func(b *zstack.CreateVmFromVmBackupRequest) { b.Params.ReservedMemorySize = i64(0) },
			func(t *testing.T, r *job.Request) {}},
		{"cpuNum bounds", func(b *zstack.CreateVmFromVmBackupRequest) {
			b.Params.CPUNum, b.Params.MemorySize = i64(1024), i64(1<<62)
		}, func(t *testing.T, r *job.Request) {
			if r.CPUNum != 1024 || r.MemorySize != 1<<62 {
				t.Fatalf("cpu %d mem %d", r.CPUNum, r.MemorySize)
			}
		}},
		{"host scope only", func(b *zstack.CreateVmFromVmBackupRequest) {
			b.Params.L3NetworkUUIDs, b.Params.HostUUID = nil, host
		}, func(t *testing.T, r *job.Request) {
			if r.HostUUID != host || len(r.NICs) != 0 {
				t.Fatalf("host %q NICs %v", r.HostUUID, r.NICs)
			}
		}},
		{"cluster scope only", func(b *zstack.CreateVmFromVmBackupRequest) {
			b.Params.L3NetworkUUIDs, b.Params.ClusterUUID = nil, cluster
		}, func(t *testing.T, r *job.Request) {
			if r.ClusterUUID != cluster {
				t.Fatalf("cluster %q", r.ClusterUUID)
			}
		}},
		{"ApplianceVm, JustCreate", func(b *zstack.CreateVmFromVmBackupRequest) {
			b.Params.Type, b.Params.Strategy = "ApplianceVm", "JustCreate"
		}, func(t *testing.T, r *job.Request) {
			if r.Type != "ApplianceVm" || r.Strategy != "JustCreate" {
				t.Fatalf("type %q strategy %q", r.Type, r.Strategy)
			}
		}},
		{"CreateStopped", func(b *zstack.CreateVmFromVmBackupRequest) { b.Params.Strategy = "CreateStopped" },
			func(t *testing.T, r *job.Request) {
				if r.Strategy != "CreateStopped" || r.Type != "UserVm" {
					t.Fatalf("strategy %q type %q", r.Strategy, r.Type)
				}
			}},
		{"name and description at their limits", func(b *zstack.CreateVmFromVmBackupRequest) {
			b.Params.Name, b.Params.Description = strings.Repeat("名", 255), strings.Repeat("é", 2048)
		}, func(t *testing.T, r *job.Request) {
			if r.Name != strings.Repeat("名", 255) || len([]rune(r.Description)) != 2048 {
				t.Fatalf("name/description changed")
			}
		}},
		{"name with inner and outer spaces is kept as given", func(b *zstack.CreateVmFromVmBackupRequest) { b.Params.Name = " web 01 " },
			func(t *testing.T, r *job.Request) {
				if r.Name != " web 01 " {
					t.Fatalf("name %q", r.Name)
				}
			}},
		{"two L3 with a default keep their order", func(b *zstack.CreateVmFromVmBackupRequest) {
			b.Params.L3NetworkUUIDs, b.Params.DefaultL3NetworkUUID = []string{l3B, l3A}, l3A
		}, func(t *testing.T, r *job.Request) {
			want := []job.NIC{{L3NetworkUUID: l3B, DriverType: "virtio", State: "enable"}, {L3NetworkUUID: l3A, DriverType: "virtio", State: "enable"}}
			if r.DefaultL3NetworkUUID != l3A || !reflect.DeepEqual(r.NICs, want) {
				t.Fatalf("default %q NICs %+v", r.DefaultL3NetworkUUID, r.NICs)
			}
		}},
		{"64 L3 networks", func(b *zstack.CreateVmFromVmBackupRequest) {
			b.Params.L3NetworkUUIDs = uuids(64)
			b.Params.DefaultL3NetworkUUID = uuids(64)[63]
		}, func(t *testing.T, r *job.Request) {
			if len(r.NICs) != 64 || r.NICs[63].L3NetworkUUID != uuids(64)[63] {
				t.Fatalf("%d NICs", len(r.NICs))
			}
		}},
		{"isDefaultNic picks the default", func(b *zstack.CreateVmFromVmBackupRequest) {
			b.Params.L3NetworkUUIDs = []string{l3A, l3B}
			b.Params.VMNicParams = nics(nic(l3B, `"isDefaultNic":true`))
		}, func(t *testing.T, r *job.Request) {
			if r.DefaultL3NetworkUUID != l3B {
				t.Fatalf("default %q", r.DefaultL3NetworkUUID)
			}
		}},
		{"isDefaultNic agreeing with defaultL3NetworkUuid", func(b *zstack.CreateVmFromVmBackupRequest) {
			b.Params.L3NetworkUUIDs, b.Params.DefaultL3NetworkUUID = []string{l3A, l3B}, l3B
			b.Params.VMNicParams = nics(nic(l3B, `"isDefaultNic":true`))
		}, func(t *testing.T, r *job.Request) {
			if r.DefaultL3NetworkUUID != l3B {
				t.Fatalf("default %q", r.DefaultL3NetworkUUID)
			}
		}},
		{"vmNicParams fill in the NIC", func(b *zstack.CreateVmFromVmBackupRequest) {
			b.Params.L3NetworkUUIDs, b.Params.DefaultL3NetworkUUID = []string{l3A, l3B}, l3A
			b.Params.VMNicParams = nics(nic(l3B, `"mac":"FA:16:3E:0A:0B:0C","ip":"10.0.1.5","netmask":"255.255.255.0","gateway":"10.0.1.1",
				"driverType":"e1000","state":"disable","metaData":"md","outboundBandwidth":8192,"inboundBandwidth":32212254720,
				"multiQueueNum":8,"sgUuids":["`+sg+`"]`))
		}, func(t *testing.T, r *job.Request) {
			want := []job.NIC{
				{L3NetworkUUID: l3A, DriverType: "virtio", State: "enable"},
				{L3NetworkUUID: l3B, StaticIP: "10.0.1.5", Mac: "fa:16:3e:0a:0b:0c", DriverType: "e1000", State: "disable",
					MetaData: "md", OutboundBandwidth: 8192, InboundBandwidth: 32212254720, MultiQueueNum: 8, SgUUIDs: []string{sg}},
			}
			if !reflect.DeepEqual(r.NICs, want) {
				t.Fatalf("NICs\n got %+v\nwant %+v", r.NICs, want)
			}
		}},
		{"vmNicParams null", func(b *zstack.CreateVmFromVmBackupRequest) { b.Params.VMNicParams = "null" },
			func(t *testing.T, r *job.Request) {
				if len(r.NICs) != 1 || r.NICs[0].DriverType != "virtio" {
					t.Fatalf("NICs %+v", r.NICs)
				}
			}},
		{"vmNicParams empty list", func(b *zstack.CreateVmFromVmBackupRequest) { b.Params.VMNicParams = " [ ] " },
			func(t *testing.T, r *job.Request) {
				if len(r.NICs) != 1 || r.DefaultL3NetworkUUID != l3A {
					t.Fatalf("NICs %+v", r.NICs)
				}
			}},
		{"staticIp and customMac tags", func(b *zstack.CreateVmFromVmBackupRequest) {
			b.Params.L3NetworkUUIDs, b.Params.DefaultL3NetworkUUID = []string{l3A, l3B}, l3A
			b.SystemTags = []string{"staticIp::" + l3B + "::10.0.1.9", "customMac::" + l3A + "::FA:16:3E:00:00:AA", "customMac::" + l3B + "::02:00:00:00:00:01"}
		}, func(t *testing.T, r *job.Request) {
			want := []job.NIC{
				{L3NetworkUUID: l3A, Mac: "fa:16:3e:00:00:aa", DriverType: "virtio", State: "enable"},
				{L3NetworkUUID: l3B, StaticIP: "10.0.1.9", Mac: "02:00:00:00:00:01", DriverType: "virtio", State: "enable"},
			}
			if !reflect.DeepEqual(r.NICs, want) {
				t.Fatalf("NICs\n got %+v\nwant %+v", r.NICs, want)
			}
			if len(r.SystemTags) != 3 {
				t.Fatalf("system tags not kept: %v", r.SystemTags)
			}
		}},
		{"tags repeating vmNicParams values agree", func(b *zstack.CreateVmFromVmBackupRequest) {
			b.Params.VMNicParams = nics(nic(l3A, `"ip":"10.0.0.5","mac":"fa:16:3e:00:00:01"`))
			b.SystemTags = []string{"staticIp::" + l3A + "::10.0.0.5", "customMac::" + l3A + "::FA:16:3E:00:00:01", "staticIp::" + l3A + "::10.0.0.5"}
		}, func(t *testing.T, r *job.Request) {
			if r.NICs[0].StaticIP != "10.0.0.5" || r.NICs[0].Mac != "fa:16:3e:00:00:01" {
				t.Fatalf("NIC %+v", r.NICs[0])
			}
		}},
		{"hostname tag", func(b *zstack.CreateVmFromVmBackupRequest) { b.SystemTags = []string{"hostname::web-01.example.com"} },
			func(t *testing.T, r *job.Request) {
				if r.Hostname != "web-01.example.com" {
					t.Fatalf("hostname %q", r.Hostname)
				}
			}},
		{"data primary storage from a tag", func(b *zstack.CreateVmFromVmBackupRequest) {
			b.SystemTags = []string{"primaryStorageUuidForDataVolume::" + psData}
		}, func(t *testing.T, r *job.Request) {
			if r.DataPrimaryStorage != psData {
				t.Fatalf("data PS %q", r.DataPrimaryStorage)
			}
		}},
		{"data primary storage tag agreeing with the parameter", func(b *zstack.CreateVmFromVmBackupRequest) {
			b.Params.PrimaryStorageUUIDForDataVolume = psData
			b.SystemTags = []string{"primaryStorageUuidForDataVolume::" + psData}
		}, func(t *testing.T, r *job.Request) {
			if r.DataPrimaryStorage != psData {
				t.Fatalf("data PS %q", r.DataPrimaryStorage)
			}
		}},
		{"unknown system tags are kept and ignored", func(b *zstack.CreateVmFromVmBackupRequest) {
			b.SystemTags = []string{"resourceConfig::vm::x", "foo", "StaticIp::" + l3B + "::1.2.3.4"}
		}, func(t *testing.T, r *job.Request) {
			if !reflect.DeepEqual(r.SystemTags, []string{"resourceConfig::vm::x", "foo", "StaticIp::" + l3B + "::1.2.3.4"}) {
				t.Fatalf("system tags %v", r.SystemTags)
			}
			if r.NICs[0].StaticIP != "" || r.Hostname != "" {
				t.Fatalf("an unknown tag changed the request: %+v", r)
			}
		}},
		{"tags at their limits", func(b *zstack.CreateVmFromVmBackupRequest) {
			b.SystemTags = append(repeat("x::y", 255), strings.Repeat("t", 4096))
			b.UserTags = repeat("u", 256)
			b.Params.TagUUIDs = uuids(256)
		}, func(t *testing.T, r *job.Request) {
			if len(r.SystemTags) != 256 || len(r.UserTags) != 256 || len(r.TagUUIDs) != 256 {
				t.Fatalf("tags %d/%d/%d", len(r.SystemTags), len(r.UserTags), len(r.TagUUIDs))
			}
		}},
		{"every field is carried", func(b *zstack.CreateVmFromVmBackupRequest) {
			p := &b.Params
			p.Description, p.BackupStorageUUID, p.ZoneUUID, p.ClusterUUID, p.HostUUID = "desc", bs, zone, cluster, host
			p.PrimaryStorageUUIDForRootVolume, p.PrimaryStorageUUIDForDataVolume = psRoot, psData
			p.ResourceUUID, p.TagUUIDs = resUUID, []string{tagUUID}
			p.RootVolumeSystemTags, p.DataVolumeSystemTags = []string{"r::1"}, []string{"d::1"}
			p.ReservedMemorySize = i64(1 << 20)
			b.UserTags = []string{"owner=ops"}
		}, func(t *testing.T, r *job.Request) {
			want := &job.Request{
				GroupUUID: group, Name: "web-01", Description: "desc", CPUNum: 2, MemorySize: 2 << 30, ReservedMemorySize: 1 << 20,
				BackupStorageUUID: bs, Type: "UserVm", ZoneUUID: zone, ClusterUUID: cluster, HostUUID: host,
				RootPrimaryStorage: psRoot, DataPrimaryStorage: psData, DefaultL3NetworkUUID: l3A,
				NICs:         []job.NIC{{L3NetworkUUID: l3A, DriverType: "virtio", State: "enable"}},
				ResourceUUID: resUUID, TagUUIDs: []string{tagUUID}, Strategy: "InstantStart",
				UserTags: []string{"owner=ops"}, RootVolumeSystemTags: []string{"r::1"}, DataVolumeSystemTags: []string{"d::1"},
			}
			if !reflect.DeepEqual(r, want) {
				t.Fatalf("got  %+v\nwant %+v", r, want)
			}
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			b := baseBody()
			tc.mod(b)
			r := accept(t, b)
			if r.GroupUUID != group || r.Type == "" || r.Strategy == "" {
				t.Fatalf("group %q type %q strategy %q", r.GroupUUID, r.Type, r.Strategy)
			}
			tc.check(t, r)
			// The request is stored as JSON with the job; it must survive that.
			raw, err := json.Marshal(r)
			if err != nil {
				t.Fatal(err)
			}
			var back job.Request
			if err := json.Unmarshal(raw, &back); err != nil {
				t.Fatal(err)
			}
			raw2, _ := json.Marshal(&back)
			if string(raw) != string(raw2) {
				t.Fatalf("JSON round trip differs:\n%s\n%s", raw, raw2)
			}
		})
	}
}

// Requests as ZStack's SDKs build them are accepted: every field under params (Java,
// Python), the path's group repeated in params (Python), the Go SDK's zeros for integers it
// cannot leave out, and keys ZStack ignores.
func TestFromZStackAcceptsWhatTheSDKsSend(t *testing.T) {
	b := baseBody()
	b.Params.GroupUUID = group
	b.GroupUUID = group
	b.Params.CPUNum, b.Params.MemorySize, b.Params.ReservedMemorySize = i64(0), i64(0), i64(0)
	b.Params.InstanceOfferingUUID = offering
	b.Params.DiskAOs = []json.RawMessage{}
	b.SystemTags, b.UserTags, b.RequestIP = []string{"hostname::sdk"}, []string{"u"}, "10.0.0.1"
	b.Unknown = []string{"params.imageUuid", "params.rootDiskOfferingUuid", "params.dataDiskSizes", "params.cpuNumber", "apiVersion", "x"}
	r := accept(t, b)
	if r.GroupUUID != group || r.InstanceOfferingUUID != offering || r.CPUNum != 0 || r.MemorySize != 0 || r.ReservedMemorySize != 0 ||
		r.Hostname != "sdk" || strings.Join(r.UserTags, ",") != "u" {
		t.Fatalf("%+v", r)
	}
	// The native route has no path group: the body names it.
	b.Unknown = nil
	r, ec := job.FromZStack("", b)
	if ec != nil || r.GroupUUID != group {
		t.Fatalf("group from the body: %+v %v", r, ec)
	}
	b.GroupUUID = ""
	r, ec = job.FromZStack("", b)
	if ec != nil || r.GroupUUID != group {
		t.Fatalf("group from params: %+v %v", r, ec)
	}
}

func TestFromZStackDoesNotModifyTheBody(t *testing.T) {
	b := baseBody()
	b.Params.L3NetworkUUIDs = []string{l3A, l3B}
	b.Params.VMNicParams = nics(nic(l3B, `"isDefaultNic":true,"mac":"FA:16:3E:00:00:01"`))
	b.SystemTags = []string{"hostname::h"}
	before, _ := json.Marshal(b)
	accept(t, b)
	after, _ := json.Marshal(b)
	if string(before) != string(after) {
		t.Fatalf("FromZStack changed its input:\n%s\n%s", before, after)
	}
}
