// Package job defines a restore job: the validated request it carries, its states and stages,
// and the checkpoints each stage of the worker pipeline records so that a re-run resumes
// instead of repeating work.
package job

import (
	"fmt"
	"reflect"
	"slices"
	"strings"

	"github.com/vmrestore/vmrestore/internal/zstack"
)

// Limits on request sizes, beyond ZStack's own (name ≤ 255, description ≤ 2048).
const (
	MaxNameLen        = 255
	MaxDescriptionLen = 2048
	MaxTags           = 256
	MaxTagLen         = 4096
	MaxL3Networks     = zstack.MaxNics
)

// Request is a CreateVmFromVmBackup call after ZStack's request-level validation: every
// field checked, defaults applied, system tags and vmNicParams folded into one NIC list.
// Rules that need the catalog or the backup group are checked by the worker's resolve stage.
type Request struct {
	GroupUUID            string   `json:"groupUuid"`
	Name                 string   `json:"name"`
	Description          string   `json:"description,omitempty"`
	InstanceOfferingUUID string   `json:"instanceOfferingUuid,omitempty"`
	CPUNum               int64    `json:"cpuNum,omitempty"`
	MemorySize           int64    `json:"memorySize,omitempty"`
	ReservedMemorySize   int64    `json:"reservedMemorySize,omitempty"`
	BackupStorageUUID    string   `json:"backupStorageUuid,omitempty"`
	Type                 string   `json:"type"`
	ZoneUUID             string   `json:"zoneUuid,omitempty"`
	ClusterUUID          string   `json:"clusterUuid,omitempty"`
	HostUUID             string   `json:"hostUuid,omitempty"`
	RootPrimaryStorage   string   `json:"rootPrimaryStorageUuid,omitempty"`
	DataPrimaryStorage   string   `json:"dataPrimaryStorageUuid,omitempty"`
	DefaultL3NetworkUUID string   `json:"defaultL3NetworkUuid,omitempty"`
	NICs                 []NIC    `json:"nics,omitempty"`
	Hostname             string   `json:"hostname,omitempty"`
	ResourceUUID         string   `json:"resourceUuid,omitempty"`
	TagUUIDs             []string `json:"tagUuids,omitempty"`
	Strategy             string   `json:"strategy"`
	SystemTags           []string `json:"systemTags,omitempty"`
	UserTags             []string `json:"userTags,omitempty"`
	RootVolumeSystemTags []string `json:"rootVolumeSystemTags,omitempty"`
	DataVolumeSystemTags []string `json:"dataVolumeSystemTags,omitempty"`
	// BootCheck, from the system tag bootCheck::<mode>::<seconds>, makes the job prove that
	// the guest booted before it succeeds.
	BootCheck *BootCheck `json:"bootCheck,omitempty"`
	// Instant, from "instant": true or the system tag instantRestore::true, runs the VM at
	// once from qcow2 overlays over its backups and pulls the data in while it runs (the
	// hydrate stage).
	Instant bool `json:"instant,omitempty"`
}

// NIC is what the request asks of one NIC: its L3 network (in l3NetworkUuids order) and
// whatever vmNicParams and system tags fixed for it.
type NIC struct {
	L3NetworkUUID     string   `json:"l3NetworkUuid"`
	StaticIP          string   `json:"staticIp,omitempty"`
	Mac               string   `json:"mac,omitempty"`
	DriverType        string   `json:"driverType"`
	State             string   `json:"state"`
	MetaData          string   `json:"metaData,omitempty"`
	OutboundBandwidth int64    `json:"outboundBandwidth,omitempty"`
	InboundBandwidth  int64    `json:"inboundBandwidth,omitempty"`
	MultiQueueNum     int64    `json:"multiQueueNum,omitempty"`
	SgUUIDs           []string `json:"sgUuids,omitempty"`
}

var (
	vmTypes    = []string{"UserVm", "ApplianceVm"}
	strategies = []string{zstack.StrategyInstantStart, zstack.StrategyJustCreate, zstack.StrategyCreateStopped}
)

func argerr(format string, args ...any) *zstack.ErrorCode {
	return zstack.InvalidArgument(format, args...)
}

func checkUUID(field, v string) *zstack.ErrorCode {
	if v != "" && !zstack.IsUUID(v) {
		return argerr("%s[%s] is not a valid uuid: it must be 32 lowercase hex characters without '-'", field, v)
	}
	return nil
}

func checkTags(field string, tags []string) *zstack.ErrorCode {
	if len(tags) > MaxTags {
		return argerr("%s has %d entries, more than %d", field, len(tags), MaxTags)
	}
	for i, t := range tags {
		if t == "" || len(t) > MaxTagLen || strings.ContainsRune(t, 0) {
			return argerr("%s[%d] must be a non-empty string of at most %d characters without NUL", field, i, MaxTagLen)
		}
	}
	return nil
}

func oneOf(v string, list []string) bool {
	for _, x := range list {
		if v == x {
			return true
		}
	}
	return false
}

// FromZStack validates a CreateVmFromVmBackup call as ZStack's API interceptor does and
// returns the normalized request, or a SYS.1007 ErrorCode whose details name the field.
//
// groupUUID is the group of the route's path; empty on a route without one (the native
// POST /api/v1/restores), where the body names it. A groupUuid in the body must agree with
// the path's. Like ZStack's Go SDK, which cannot leave an integer out, 0 for cpuNum,
// memorySize or reservedMemorySize means "not set". A key the call does not define is
// ignored, as ZStack ignores it, unless it is a near-miss of a real name (see
// zstack.NearMiss): that is refused with the name it probably meant.
func FromZStack(groupUUID string, body *zstack.CreateVmFromVmBackupRequest) (*Request, *zstack.ErrorCode) {
	p := &body.Params
	if err := checkUnknownKeys(body); err != nil {
		return nil, err
	}
	groupUUID, err := groupOf(groupUUID, body)
	if err != nil {
		return nil, err
	}
	if len(p.DiskAOs) > 0 {
		return nil, argerr("diskAOs is not supported: vmrestore restores the disks of the backup group; leave diskAOs out")
	}
	if err := checkFields(body); err != nil {
		return nil, err
	}
	r := &Request{
		GroupUUID: groupUUID, Name: p.Name, Description: p.Description,
		InstanceOfferingUUID: p.InstanceOfferingUUID, BackupStorageUUID: p.BackupStorageUUID,
		Type: p.Type, ZoneUUID: p.ZoneUUID, ClusterUUID: p.ClusterUUID, HostUUID: p.HostUUID,
		RootPrimaryStorage: p.PrimaryStorageUUIDForRootVolume, DataPrimaryStorage: p.PrimaryStorageUUIDForDataVolume,
		DefaultL3NetworkUUID: p.DefaultL3NetworkUUID, ResourceUUID: p.ResourceUUID, TagUUIDs: p.TagUUIDs,
		Strategy: p.Strategy, SystemTags: body.SystemTags, UserTags: body.UserTags,
		RootVolumeSystemTags: p.RootVolumeSystemTags, DataVolumeSystemTags: p.DataVolumeSystemTags,
	}
	if err := r.setSize(p); err != nil {
		return nil, err
	}
	if err := r.setTypeAndStrategy(); err != nil {
		return nil, err
	}
	if len(p.L3NetworkUUIDs) == 0 && p.ZoneUUID == "" && p.ClusterUUID == "" && p.HostUUID == "" {
		return nil, argerr("could not create vm, because at least one of field (l3NetworkUuids,zoneUuid,clusterUuid,hostUuid) should be set")
	}
	byL3, defaultFromNic, err := r.setNICs(p)
	if err != nil {
		return nil, err
	}
	if err := r.applySystemTags(body.SystemTags, byL3); err != nil {
		return nil, err
	}
	if err := r.setDefaultL3(p.L3NetworkUUIDs, byL3, defaultFromNic); err != nil {
		return nil, err
	}
	if err := checkBootCheck(r); err != nil {
		return nil, err
	}
	r.Instant = r.Instant || body.Instant
	if err := checkInstant(r); err != nil {
		return nil, err
	}
	return r, nil
}

// groupOf is the group to restore: the path's, or else the body's (groupUuid, or
// params.groupUuid); a group in the body must agree with the path's.
func groupOf(groupUUID string, body *zstack.CreateVmFromVmBackupRequest) (string, *zstack.ErrorCode) {
	for _, g := range []struct{ where, v string }{{"groupUuid", body.GroupUUID}, {"params.groupUuid", body.Params.GroupUUID}} {
		switch {
		case g.v == "" || g.v == groupUUID:
		case groupUUID == "":
			groupUUID = g.v
		default:
			return "", argerr("%s[%s] differs from the group of the path[%s]; send one group", g.where, g.v, groupUUID)
		}
	}
	if err := checkUUID("groupUuid", groupUUID); err != nil {
		return "", err
	}
	if groupUUID == "" {
		return "", argerr("groupUuid is required")
	}
	return groupUUID, nil
}

// checkFields checks the call's fields one by one, as ZStack's @APIParam annotations do:
// name and description, the uuids, the L3 networks and tag uuids, the tag lists.
func checkFields(body *zstack.CreateVmFromVmBackupRequest) *zstack.ErrorCode {
	p := &body.Params
	switch name := p.Name; {
	case strings.TrimSpace(name) == "":
		return argerr("field[name] of message[APICreateVmFromVmBackupMsg] is mandatory, can not be null or empty")
	case len([]rune(name)) > MaxNameLen:
		return argerr("field[name] must be at most %d characters, got %d", MaxNameLen, len([]rune(name)))
	case strings.ContainsRune(name, 0):
		return argerr("field[name] contains a NUL character")
	}
	if len([]rune(p.Description)) > MaxDescriptionLen {
		return argerr("field[description] must be at most %d characters", MaxDescriptionLen)
	}
	for _, f := range []struct{ name, v string }{
		{"instanceOfferingUuid", p.InstanceOfferingUUID}, {"backupStorageUuid", p.BackupStorageUUID},
		{"zoneUuid", p.ZoneUUID}, {"clusterUuid", p.ClusterUUID}, {"hostUuid", p.HostUUID},
		{"primaryStorageUuidForRootVolume", p.PrimaryStorageUUIDForRootVolume},
		{"primaryStorageUuidForDataVolume", p.PrimaryStorageUUIDForDataVolume},
		{"defaultL3NetworkUuid", p.DefaultL3NetworkUUID}, {"resourceUuid", p.ResourceUUID},
	} {
		if err := checkUUID(f.name, f.v); err != nil {
			return err
		}
	}
	if err := checkL3NetworkUUIDs(p.L3NetworkUUIDs); err != nil {
		return err
	}
	if err := checkTagUUIDs(p.TagUUIDs); err != nil {
		return err
	}
	for _, t := range []struct {
		name string
		v    []string
	}{{"systemTags", body.SystemTags}, {"userTags", body.UserTags}, {"rootVolumeSystemTags", p.RootVolumeSystemTags}, {"dataVolumeSystemTags", p.DataVolumeSystemTags}} {
		if err := checkTags(t.name, t.v); err != nil {
			return err
		}
	}
	return nil
}

// checkL3NetworkUUIDs: at most MaxL3Networks uuids, none empty, none twice.
func checkL3NetworkUUIDs(l3s []string) *zstack.ErrorCode {
	if len(l3s) > MaxL3Networks {
		return argerr("l3NetworkUuids has %d entries, more than %d", len(l3s), MaxL3Networks)
	}
	seenL3 := map[string]bool{}
	for i, u := range l3s {
		if err := checkUUID(fmt.Sprintf("l3NetworkUuids[%d]", i), u); err != nil {
			return err
		}
		if u == "" {
			return argerr("l3NetworkUuids[%d] is empty", i)
		}
		if seenL3[u] {
			return argerr("l3NetworkUuids contains l3 network[uuid:%s] twice; a VM gets one NIC per L3 network", u)
		}
		seenL3[u] = true
	}
	return nil
}

// checkTagUUIDs: at most MaxTags uuids, none empty.
func checkTagUUIDs(tags []string) *zstack.ErrorCode {
	if len(tags) > MaxTags {
		return argerr("tagUuids has %d entries, more than %d", len(tags), MaxTags)
	}
	for i, u := range tags {
		if err := checkUUID(fmt.Sprintf("tagUuids[%d]", i), u); err != nil {
			return err
		}
		if u == "" {
			return argerr("tagUuids[%d] is empty", i)
		}
	}
	return nil
}

// setSize sets CPU and memory: an offering, or both cpuNum and memorySize.
func (r *Request) setSize(p *zstack.CreateVmFromVmBackupParams) *zstack.ErrorCode {
	cpuNum, memorySize, reserved := unsetIfZero(p.CPUNum), unsetIfZero(p.MemorySize), unsetIfZero(p.ReservedMemorySize)
	if p.InstanceOfferingUUID == "" {
		if cpuNum == nil || memorySize == nil {
			return argerr("instanceOfferingUuid or cpuNum and memorySize must be set")
		}
	}
	if cpuNum != nil {
		if *cpuNum <= 0 || *cpuNum > 1024 {
			return argerr("cpuNum[%d] must be between 1 and 1024", *cpuNum)
		}
		r.CPUNum = *cpuNum
	}
	if memorySize != nil {
		if *memorySize <= 0 {
			return argerr("memorySize[%d] must be a positive number of bytes", *memorySize)
		}
		r.MemorySize = *memorySize
	}
	if reserved != nil {
		if *reserved < 0 {
			return argerr("reservedMemorySize[%d] cannot be negative", *reserved)
		}
		if p.InstanceOfferingUUID == "" && *reserved > r.MemorySize {
			return argerr("reservedMemorySize[%d] cannot be larger than memorySize[%d]", *reserved, r.MemorySize)
		}
		r.ReservedMemorySize = *reserved
	}
	return nil
}

// setTypeAndStrategy checks type and strategy, or sets their defaults (UserVm, InstantStart).
func (r *Request) setTypeAndStrategy() *zstack.ErrorCode {
	if r.Type == "" {
		r.Type = "UserVm"
	} else if !oneOf(r.Type, vmTypes) {
		return argerr("type[%s] is not one of %v", r.Type, vmTypes)
	}
	if r.Strategy == "" {
		r.Strategy = zstack.StrategyInstantStart
	} else if !oneOf(r.Strategy, strategies) {
		return argerr("strategy[%s] is not one of %v", r.Strategy, strategies)
	}
	return nil
}

// setNICs makes one NIC per L3 network, with what vmNicParams gives for it. It returns the
// NICs by L3 network, and the L3 of the NIC vmNicParams marks as the default ("" if none).
func (r *Request) setNICs(p *zstack.CreateVmFromVmBackupParams) (map[string]*NIC, string, *zstack.ErrorCode) {
	r.NICs = make([]NIC, len(p.L3NetworkUUIDs))
	byL3 := map[string]*NIC{}
	for i, u := range p.L3NetworkUUIDs {
		r.NICs[i] = NIC{L3NetworkUUID: u, DriverType: "virtio", State: "enable"}
		byL3[u] = &r.NICs[i]
	}
	defaultFromNic := ""
	if p.VMNicParams == "" {
		return byL3, "", nil
	}
	if len(p.L3NetworkUUIDs) == 0 {
		return nil, "", argerr("vmNicParams needs l3NetworkUuids")
	}
	params, err := zstack.ParseVMNicParams(p.VMNicParams)
	if err != nil {
		return nil, "", argerr("%v", err)
	}
	seen := map[string]bool{}
	for i, np := range params {
		nic := byL3[np.L3NetworkUUID]
		if nic == nil {
			return nil, "", argerr("vmNicParams[%d].l3NetworkUuid[%s] is not in l3NetworkUuids %v", i, np.L3NetworkUUID, p.L3NetworkUUIDs)
		}
		if seen[np.L3NetworkUUID] {
			return nil, "", argerr("vmNicParams has more than one entry for l3 network[uuid:%s]", np.L3NetworkUUID)
		}
		seen[np.L3NetworkUUID] = true
		nic.StaticIP, nic.Mac, nic.DriverType, nic.State, nic.MetaData = np.IP, np.Mac, np.DriverType, np.State, np.MetaData
		nic.SgUUIDs = np.SgUUIDs
		if np.OutboundBandwidth != nil {
			nic.OutboundBandwidth = *np.OutboundBandwidth
		}
		if np.InboundBandwidth != nil {
			nic.InboundBandwidth = *np.InboundBandwidth
		}
		if np.MultiQueueNum != nil {
			nic.MultiQueueNum = *np.MultiQueueNum
		}
		if np.IsDefaultNic {
			if defaultFromNic != "" {
				return nil, "", argerr("vmNicParams marks more than one NIC with isDefaultNic")
			}
			defaultFromNic = np.L3NetworkUUID
		}
	}
	return byL3, defaultFromNic, nil
}

// applySystemTags applies the system tags vmrestore acts on: a boot check, static IPs and
// custom MACs of the NICs, the hostname, the data volumes' primary storage.
func (r *Request) applySystemTags(tags []string, byL3 map[string]*NIC) *zstack.ErrorCode {
	for _, raw := range tags {
		if strings.HasPrefix(raw, InstantTagPrefix) {
			instant, err := ParseInstantTag(raw)
			if err != nil {
				return argerr("%v", err)
			}
			r.Instant = r.Instant || instant
			continue
		}
		if strings.HasPrefix(raw, BootCheckTagPrefix) {
			b, err := ParseBootCheckTag(raw)
			if err != nil {
				return argerr("%v", err)
			}
			if r.BootCheck != nil {
				return argerr("systemTags has more than one bootCheck tag")
			}
			r.BootCheck = b
			continue
		}
		tag, err := zstack.ParseSystemTag(raw)
		if err != nil {
			return argerr("%v", err)
		}
		switch tag.Kind {
		case zstack.TagStaticIP, zstack.TagCustomMac:
			nic := byL3[tag.L3]
			if nic == nil {
				return argerr("system tag[%s] names l3 network[uuid:%s], which is not in l3NetworkUuids", raw, tag.L3)
			}
			field := &nic.StaticIP
			if tag.Kind == zstack.TagCustomMac {
				field = &nic.Mac
			}
			if *field != "" && *field != tag.Value {
				return argerr("system tag[%s] conflicts with %s already given for l3 network[uuid:%s]", raw, *field, tag.L3)
			}
			*field = tag.Value
		case zstack.TagHostname:
			r.Hostname = tag.Value
		case zstack.TagPSForDataVol:
			if r.DataPrimaryStorage != "" && r.DataPrimaryStorage != tag.Value {
				return argerr("system tag[%s] conflicts with primaryStorageUuidForDataVolume[%s]", raw, r.DataPrimaryStorage)
			}
			r.DataPrimaryStorage = tag.Value
		}
	}
	return nil
}

// setDefaultL3 settles the default L3 network: required with more than one L3, and one of them.
func (r *Request) setDefaultL3(l3s []string, byL3 map[string]*NIC, defaultFromNic string) *zstack.ErrorCode {
	switch {
	case r.DefaultL3NetworkUUID != "" && byL3[r.DefaultL3NetworkUUID] == nil:
		return argerr("defaultL3NetworkUuid[%s] is not in l3NetworkUuids %v", r.DefaultL3NetworkUUID, l3s)
	case r.DefaultL3NetworkUUID != "" && defaultFromNic != "" && defaultFromNic != r.DefaultL3NetworkUUID:
		return argerr("defaultL3NetworkUuid[%s] and the NIC marked isDefaultNic (l3 network[uuid:%s]) disagree", r.DefaultL3NetworkUUID, defaultFromNic)
	case r.DefaultL3NetworkUUID == "" && defaultFromNic != "":
		r.DefaultL3NetworkUUID = defaultFromNic
	case r.DefaultL3NetworkUUID == "" && len(l3s) == 1:
		r.DefaultL3NetworkUUID = l3s[0]
	case r.DefaultL3NetworkUUID == "" && len(l3s) > 1:
		return argerr("there are more than one L3 network specified in l3NetworkUuids, but defaultL3NetworkUuid is null")
	}
	return nil
}

// unsetIfZero reads 0 as "not set", as the Go SDK sends integers it cannot leave out.
func unsetIfZero(n *int64) *int64 {
	if n == nil || *n == 0 {
		return nil
	}
	return n
}

// checkUnknownKeys refuses the keys among the body's unknown ones ("params." before those of
// params) that are near-misses of a real name of the call; the others are ignored. A body
// without params whose top level holds the parameters (a call that could not succeed: it
// names no VM) is told where they go.
func checkUnknownKeys(body *zstack.CreateVmFromVmBackupRequest) *zstack.ErrorCode {
	top, params := zstack.CreateVmFromVmBackupKeys()
	if reflect.ValueOf(body.Params).IsZero() {
		var misplaced []string
		for _, k := range body.Unknown {
			if !strings.HasPrefix(k, "params.") && slices.Contains(params, k) {
				misplaced = append(misplaced, k)
			}
		}
		if len(misplaced) > 0 {
			return argerr(`the body has no "params", and %s at its top level: CreateVmFromVmBackup's parameters go inside "params", as in {"params": {"name": "web01-dr", ...}, "systemTags": [...]}`,
				strings.Join(misplaced, ", "))
		}
	}
	for _, k := range body.Unknown {
		where, key, known := "the body", k, top
		if rest, ok := strings.CutPrefix(k, "params."); ok {
			where, key, known = "params", rest, params
		}
		if real, ok := zstack.NearMiss(key, known); ok {
			if strings.EqualFold(real, key) {
				return argerr("%s has unknown field(s) %s; parameter names are case-sensitive, did you mean %q?", where, key, real)
			}
			return argerr("%s has unknown field(s) %s; did you mean %q? (other unknown fields are ignored, as ZStack ignores them)", where, key, real)
		}
	}
	return nil
}
