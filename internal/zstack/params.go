package zstack

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/netip"
	"strings"
)

// CreateVmFromVmBackupRequest is the body of POST /zstack/v1/vm-instances/from/vm-backups/{groupUuid}.
// ZStack's SDKs send systemTags, userTags and requestIp at the top level or inside params
// (the Java and Python SDKs put every field of the action under params); the decoder merges
// them here, the top level winning as in ZStack's RestServer.
type CreateVmFromVmBackupRequest struct {
	Params     CreateVmFromVmBackupParams `json:"params"`
	SystemTags []string                   `json:"systemTags"`
	UserTags   []string                   `json:"userTags"`
	RequestIP  string                     `json:"requestIp"`
	// GroupUUID is the group of the native POST /api/v1/restores; a ZStack client may also
	// repeat the path's group here.
	GroupUUID string `json:"groupUuid"`
	// Instant asks for an instant restore (vmrestore's addition, the same as the system tag
	// instantRestore::true): the VM runs from its backup at once and the data follows.
	Instant bool `json:"instant"`
	// Unknown lists the body's keys that this call does not define ("params." before the
	// keys of params). ZStack ignores them; validation refuses only near-misses of real
	// parameter names (see UnknownKeyProblem).
	Unknown []string `json:"-"`
}

// CreateVmFromVmBackupParams are the API's parameters (contract §6). Numbers are pointers so
// that "absent" and "zero" can be told apart, as ZStack does.
type CreateVmFromVmBackupParams struct {
	Name                            string   `json:"name"`
	InstanceOfferingUUID            string   `json:"instanceOfferingUuid"`
	BackupStorageUUID               string   `json:"backupStorageUuid"`
	CPUNum                          *int64   `json:"cpuNum"`
	MemorySize                      *int64   `json:"memorySize"`
	ReservedMemorySize              *int64   `json:"reservedMemorySize"`
	L3NetworkUUIDs                  []string `json:"l3NetworkUuids"`
	VMNicParams                     string   `json:"vmNicParams"`
	Type                            string   `json:"type"`
	ZoneUUID                        string   `json:"zoneUuid"`
	ClusterUUID                     string   `json:"clusterUuid"`
	HostUUID                        string   `json:"hostUuid"`
	PrimaryStorageUUIDForRootVolume string   `json:"primaryStorageUuidForRootVolume"`
	PrimaryStorageUUIDForDataVolume string   `json:"primaryStorageUuidForDataVolume"`
	Description                     string   `json:"description"`
	RootVolumeSystemTags            []string `json:"rootVolumeSystemTags"`
	DataVolumeSystemTags            []string `json:"dataVolumeSystemTags"`
	DefaultL3NetworkUUID            string   `json:"defaultL3NetworkUuid"`
	ResourceUUID                    string   `json:"resourceUuid"`
	TagUUIDs                        []string `json:"tagUuids"`
	Strategy                        string   `json:"strategy"`
	// DiskAOs (newer ZStack releases) describes extra disks; vmrestore restores the
	// group's disks and refuses a non-empty list.
	DiskAOs []json.RawMessage `json:"diskAOs"`
	// Fields the SDKs send inside params as well as at the top level (see the request).
	GroupUUID  string   `json:"groupUuid"`
	SystemTags []string `json:"systemTags"`
	UserTags   []string `json:"userTags"`
	RequestIP  string   `json:"requestIp"`
}

// SDKOnlyParams are keys ZStack's SDKs put inside params that carry nothing for the API
// message (credentials and the client's own polling settings, as the TypeScript SDK sends
// them). They are accepted and ignored, never logged.
var SDKOnlyParams = []string{"sessionId", "accessKeyId", "accessKeySecret", "timeout", "pollingInterval", "apiId"}

// VMNicParam is one entry of the vmNicParams JSON string.
type VMNicParam struct {
	L3NetworkUUID     string   `json:"l3NetworkUuid"`
	Mac               string   `json:"mac,omitempty"`
	IP                string   `json:"ip,omitempty"`
	Netmask           string   `json:"netmask,omitempty"`
	Gateway           string   `json:"gateway,omitempty"`
	IP6               string   `json:"ip6,omitempty"`
	Prefix6           string   `json:"prefix6,omitempty"`
	Gateway6          string   `json:"gateway6,omitempty"`
	MetaData          string   `json:"metaData,omitempty"`
	DriverType        string   `json:"driverType,omitempty"`
	State             string   `json:"state,omitempty"`
	OutboundBandwidth *int64   `json:"outboundBandwidth,omitempty"`
	InboundBandwidth  *int64   `json:"inboundBandwidth,omitempty"`
	MultiQueueNum     *int64   `json:"multiQueueNum,omitempty"`
	IsDefaultNic      bool     `json:"isDefaultNic,omitempty"`
	SgUUIDs           []string `json:"sgUuids,omitempty"`
}

// NIC driver types ZStack accepts.
var DriverTypes = []string{"virtio", "e1000", "rtl8139", "pcnet"}

// Bounds from the contract.
const (
	MinBandwidth     = 8192
	MaxBandwidth     = 32212254720
	MaxMultiQueueNum = 256
	MaxNics          = 64
)

// ParseVMNicParams decodes the vmNicParams string (a JSON array of objects) and checks each
// entry on its own: UUIDs, addresses, driver type, state and numeric bounds. Rules that relate
// the entries to l3NetworkUuids are checked by the caller.
func ParseVMNicParams(s string) ([]VMNicParam, error) {
	dec := json.NewDecoder(bytes.NewReader([]byte(s)))
	dec.DisallowUnknownFields()
	var nics []VMNicParam
	if err := dec.Decode(&nics); err != nil {
		return nil, fmt.Errorf("vmNicParams is not a JSON list of NIC objects: %v", err)
	}
	if _, err := dec.Token(); err != io.EOF {
		return nil, fmt.Errorf("vmNicParams has trailing data after the JSON list")
	}
	if len(nics) > MaxNics {
		return nil, fmt.Errorf("vmNicParams has %d entries, more than %d", len(nics), MaxNics)
	}
	for i := range nics {
		n := &nics[i]
		where := fmt.Sprintf("vmNicParams[%d]", i)
		if !IsUUID(n.L3NetworkUUID) {
			return nil, fmt.Errorf("%s.l3NetworkUuid[%s] is not a valid uuid", where, n.L3NetworkUUID)
		}
		if n.Mac != "" {
			mac, err := NormalizeMac(n.Mac)
			if err != nil {
				return nil, fmt.Errorf("%s.mac: %v", where, err)
			}
			n.Mac = mac
		}
		for _, f := range []struct{ name, v string }{{"ip", n.IP}, {"netmask", n.Netmask}, {"gateway", n.Gateway}} {
			if f.v != "" {
				if a, err := netip.ParseAddr(f.v); err != nil || !a.Is4() {
					return nil, fmt.Errorf("%s.%s[%s] is not an IPv4 address", where, f.name, f.v)
				}
			}
		}
		for _, f := range []struct{ name, v string }{{"ip6", n.IP6}, {"gateway6", n.Gateway6}} {
			if f.v != "" {
				if a, err := netip.ParseAddr(f.v); err != nil || !a.Is6() {
					return nil, fmt.Errorf("%s.%s[%s] is not an IPv6 address", where, f.name, f.v)
				}
			}
		}
		if n.DriverType == "" {
			n.DriverType = "virtio"
		} else if !contains(DriverTypes, n.DriverType) {
			return nil, fmt.Errorf("%s.driverType[%s] is not one of %v", where, n.DriverType, DriverTypes)
		}
		switch n.State {
		case "":
			n.State = "enable"
		case "enable", "disable":
		default:
			return nil, fmt.Errorf("%s.state[%s] must be enable or disable", where, n.State)
		}
		for _, f := range []struct {
			name string
			v    *int64
		}{{"outboundBandwidth", n.OutboundBandwidth}, {"inboundBandwidth", n.InboundBandwidth}} {
			if f.v != nil && (*f.v < MinBandwidth || *f.v > MaxBandwidth) {
				return nil, fmt.Errorf("%s.%s[%d] is out of range [%d, %d]", where, f.name, *f.v, MinBandwidth, MaxBandwidth)
			}
		}
		if n.MultiQueueNum != nil && (*n.MultiQueueNum < 1 || *n.MultiQueueNum > MaxMultiQueueNum) {
			return nil, fmt.Errorf("%s.multiQueueNum[%d] is out of range [1, %d]", where, *n.MultiQueueNum, MaxMultiQueueNum)
		}
		if len(n.MetaData) > 4096 {
			return nil, fmt.Errorf("%s.metaData is longer than 4096 characters", where)
		}
		for _, sg := range n.SgUUIDs {
			if !IsUUID(sg) {
				return nil, fmt.Errorf("%s.sgUuids: %q is not a valid uuid", where, sg)
			}
		}
	}
	return nics, nil
}

// NormalizeMac lower-cases a MAC address and checks that it is six colon-separated octets,
// unicast, and neither all zeros nor all ones.
func NormalizeMac(s string) (string, error) {
	m := strings.ToLower(s)
	if len(m) != 17 {
		return "", fmt.Errorf("mac[%s] is not six colon-separated hex octets", s)
	}
	var octets [6]byte
	for i := 0; i < 6; i++ {
		if i > 0 && m[3*i-1] != ':' {
			return "", fmt.Errorf("mac[%s] is not six colon-separated hex octets", s)
		}
		var v byte
		for _, c := range []byte(m[3*i : 3*i+2]) {
			switch {
			case c >= '0' && c <= '9':
				v = v<<4 | (c - '0')
			case c >= 'a' && c <= 'f':
				v = v<<4 | (c - 'a' + 10)
			default:
				return "", fmt.Errorf("mac[%s] is not six colon-separated hex octets", s)
			}
		}
		octets[i] = v
	}
	if octets[0]&1 == 1 {
		return "", fmt.Errorf("mac[%s] is a multicast address; a NIC needs a unicast one", s)
	}
	if m == "00:00:00:00:00:00" || m == "ff:ff:ff:ff:ff:ff" {
		return "", fmt.Errorf("mac[%s] is not a usable address", s)
	}
	return m, nil
}

func contains(list []string, v string) bool {
	for _, x := range list {
		if x == v {
			return true
		}
	}
	return false
}
