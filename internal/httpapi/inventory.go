package httpapi

import (
	"errors"
	"net/http"
	"reflect"
	"sort"
	"sync"
	"syscall"

	"github.com/labstack/echo/v4"

	"github.com/vmrestore/vmrestore/internal/auth"
	"github.com/vmrestore/vmrestore/internal/catalog"
	"github.com/vmrestore/vmrestore/internal/query"
	"github.com/vmrestore/vmrestore/internal/store"
	"github.com/vmrestore/vmrestore/internal/zstack"
)

// Catalog inventories, in ZStack's field names. Fields vmrestore adds beyond ZStack's are
// marked; ZStack clients ignore fields they do not know.

// ZoneInventory is a zone.
type ZoneInventory struct {
	UUID        string `json:"uuid"`
	Name        string `json:"name"`
	Description string `json:"description,omitempty"`
	State       string `json:"state"`
	Type        string `json:"type"`
}

// ClusterInventory is a cluster.
type ClusterInventory struct {
	UUID           string `json:"uuid"`
	Name           string `json:"name"`
	Description    string `json:"description,omitempty"`
	State          string `json:"state"`
	HypervisorType string `json:"hypervisorType"`
	ZoneUUID       string `json:"zoneUuid"`
	Type           string `json:"type"`
	Architecture   string `json:"architecture"`
	// vmrestore: attachments.
	AttachedL2NetworkUUIDs      []string `json:"attachedL2NetworkUuids"`
	AttachedPrimaryStorageUUIDs []string `json:"attachedPrimaryStorageUuids"`
}

// HostInventory is a host with its capacity.
type HostInventory struct {
	UUID                    string `json:"uuid"`
	Name                    string `json:"name"`
	Description             string `json:"description,omitempty"`
	ZoneUUID                string `json:"zoneUuid"`
	ClusterUUID             string `json:"clusterUuid"`
	ManagementIP            string `json:"managementIp,omitempty"`
	HypervisorType          string `json:"hypervisorType"`
	State                   string `json:"state"`
	Status                  string `json:"status"`
	TotalCPUCapacity        int64  `json:"totalCpuCapacity"`
	AvailableCPUCapacity    int64  `json:"availableCpuCapacity"`
	CPUSockets              int64  `json:"cpuSockets"`
	TotalMemoryCapacity     int64  `json:"totalMemoryCapacity"`
	AvailableMemoryCapacity int64  `json:"availableMemoryCapacity"`
	CPUNum                  int64  `json:"cpuNum"`
	Architecture            string `json:"architecture"`
	// vmrestore: VMs restored onto the host.
	VMCount int64 `json:"vmCount"`
}

// PrimaryStorageInventory is a primary storage with its capacity. For LocalStorage the
// capacities add up every host's share.
type PrimaryStorageInventory struct {
	UUID                 string   `json:"uuid"`
	Name                 string   `json:"name"`
	Description          string   `json:"description,omitempty"`
	ZoneUUID             string   `json:"zoneUuid"`
	URL                  string   `json:"url"`
	Type                 string   `json:"type"`
	State                string   `json:"state"`
	Status               string   `json:"status"`
	TotalCapacity        int64    `json:"totalCapacity"`
	AvailableCapacity    int64    `json:"availableCapacity"`
	AttachedClusterUUIDs []string `json:"attachedClusterUuids"`
	// vmrestore: capacity kept free, volumes restored onto it, and why it is Disconnected
	// when the workers' probe found its directory missing or read-only.
	ReservedCapacity int64  `json:"reservedCapacity"`
	VolumeCount      int64  `json:"volumeCount"`
	StatusReason     string `json:"statusReason,omitempty"`
}

// BackupStorageInventory is a backup storage; capacities are read from its filesystem.
type BackupStorageInventory struct {
	UUID              string   `json:"uuid"`
	Name              string   `json:"name"`
	Description       string   `json:"description,omitempty"`
	URL               string   `json:"url"`
	Type              string   `json:"type"`
	State             string   `json:"state"`
	Status            string   `json:"status"`
	TotalCapacity     int64    `json:"totalCapacity"`
	AvailableCapacity int64    `json:"availableCapacity"`
	AttachedZoneUUIDs []string `json:"attachedZoneUuids"`
	// vmrestore: clone limits.
	MaxConcurrentClones     int   `json:"maxConcurrentClones"`
	BandwidthBytesPerSecond int64 `json:"bandwidthBytesPerSecond"`
}

// IPRangeInventory is an IP range.
type IPRangeInventory struct {
	UUID          string `json:"uuid"`
	L3NetworkUUID string `json:"l3NetworkUuid"`
	Name          string `json:"name,omitempty"`
	StartIP       string `json:"startIp"`
	EndIP         string `json:"endIp"`
	Netmask       string `json:"netmask"`
	Gateway       string `json:"gateway"`
	IPVersion     int    `json:"ipVersion"`
}

// L3NetworkInventory is an L3 network with its address usage.
type L3NetworkInventory struct {
	UUID          string             `json:"uuid"`
	Name          string             `json:"name"`
	Description   string             `json:"description,omitempty"`
	Type          string             `json:"type"`
	ZoneUUID      string             `json:"zoneUuid"`
	L2NetworkUUID string             `json:"l2NetworkUuid"`
	State         string             `json:"state"`
	Category      string             `json:"category"`
	IPVersion     int                `json:"ipVersion"`
	DNS           []string           `json:"dns"`
	IPRanges      []IPRangeInventory `json:"ipRanges"`
	// vmrestore: allocation strategy and address counts (the gateway counts as used).
	IPAllocatorStrategy string `json:"ipAllocatorStrategy"`
	TotalIPCount        int64  `json:"totalIpCount"`
	UsedIPCount         int64  `json:"usedIpCount"`
}

// InstanceOfferingInventory is an instance offering.
type InstanceOfferingInventory struct {
	UUID               string `json:"uuid"`
	Name               string `json:"name"`
	Description        string `json:"description,omitempty"`
	CPUNum             int64  `json:"cpuNum"`
	CPUSpeed           int64  `json:"cpuSpeed"`
	MemorySize         int64  `json:"memorySize"`
	ReservedMemorySize int64  `json:"reservedMemorySize"`
	AllocatorStrategy  string `json:"allocatorStrategy"`
	SortKey            int    `json:"sortKey"`
	Type               string `json:"type"`
	State              string `json:"state"`
	// vmrestore: primary storage strategy.
	PrimaryStorageAllocatorStrategy string `json:"primaryStorageAllocatorStrategy"`
}

// VolumeBackupInventory is one volume backup of a group.
type VolumeBackupInventory struct {
	UUID              string                      `json:"uuid"`
	Name              string                      `json:"name"`
	VolumeUUID        string                      `json:"volumeUuid,omitempty"`
	Type              string                      `json:"type"`
	Size              int64                       `json:"size"`
	State             string                      `json:"state"`
	Status            string                      `json:"status"`
	GroupUUID         string                      `json:"groupUuid"`
	BackupStorageRefs []BackupStorageRefInventory `json:"backupStorageRefs"`
	CreateDate        zstack.Date                 `json:"createDate"`
	// vmrestore: what the backup holds.
	Format      string `json:"format"`
	ActualSize  int64  `json:"actualSize"`
	DeviceID    int    `json:"deviceId"`
	VMName      string `json:"vmName,omitempty"`
	VMUUID      string `json:"vmUuid,omitempty"`
	AccountUUID string `json:"accountUuid,omitempty"`
}

// BackupStorageRefInventory places a volume backup on a backup storage.
type BackupStorageRefInventory struct {
	VolumeBackupUUID  string `json:"volumeBackupUuid"`
	BackupStorageUUID string `json:"backupStorageUuid"`
	InstallPath       string `json:"installPath"`
	Status            string `json:"status"`
}

// knownFields caches each inventory type's queryable fields.
var knownFields sync.Map // reflect.Type → map[string]bool

func fieldsOf(v any) map[string]bool {
	t := reflect.TypeOf(v)
	if f, ok := knownFields.Load(t); ok {
		return f.(map[string]bool)
	}
	f, _ := knownFields.LoadOrStore(t, query.Fields(t))
	return f.(map[string]bool)
}

// answerList applies the query parameters (and the {uuid} path variable) to items and writes
// {"inventories": [...]} (or {"total": N} with count=true; both with replyWithCount=true).
func answerList[T any](c echo.Context, items []T, inventory string) error {
	q, err := query.Parse(c.QueryParams())
	if err != nil {
		return zstack.InvalidArgument("%v", err)
	}
	if u := c.Param("uuid"); u != "" {
		q.Conditions = append(q.Conditions, query.Condition{Field: "uuid", Op: "=", Value: u})
	}
	maps, err := query.ToItems(items)
	if err != nil {
		return err
	}
	var zero T
	res, err := q.Apply(maps, fieldsOf(zero), inventory)
	if err != nil {
		var qe *query.Error
		if errors.As(err, &qe) {
			return zstack.InvalidArgument("%v", err)
		}
		return err
	}
	if q.Count {
		return writeJSON(c, http.StatusOK, map[string]any{"total": res.Total})
	}
	body := map[string]any{"inventories": res.Items}
	if res.Items == nil {
		body["inventories"] = []any{}
	}
	if q.ReplyWithCount {
		body["total"] = res.Total
	}
	return writeJSON(c, http.StatusOK, body)
}

func (s *Server) catalog(c echo.Context) (*catalog.Index, error) {
	ix, err := s.Catalog.Current(c.Request().Context())
	if errors.Is(err, store.ErrNotFound) {
		return nil, zstack.Errorf(zstack.CodeInternal, "no site catalog is loaded; start the api with VMRESTORE_SITE")
	}
	return ix, err
}

func (s *Server) listZones() echo.HandlerFunc {
	return func(c echo.Context) error {
		ix, err := s.catalog(c)
		if err != nil {
			return err
		}
		out := make([]ZoneInventory, 0, len(ix.Site.Zones))
		for _, z := range ix.Site.Zones {
			out = append(out, ZoneInventory{UUID: z.UUID, Name: z.Name, Description: z.Description, State: z.State, Type: "zstack"})
		}
		return answerList(c, out, "ZoneInventory")
	}
}

func (s *Server) listClusters() echo.HandlerFunc {
	return func(c echo.Context) error {
		ix, err := s.catalog(c)
		if err != nil {
			return err
		}
		out := make([]ClusterInventory, 0, len(ix.Site.Clusters))
		for _, cl := range ix.Site.Clusters {
			out = append(out, ClusterInventory{UUID: cl.UUID, Name: cl.Name, Description: cl.Description, State: cl.State,
				HypervisorType: cl.HypervisorType, ZoneUUID: cl.ZoneUUID, Type: "zstack", Architecture: cl.Architecture,
				AttachedL2NetworkUUIDs: nonNil(cl.L2NetworkUUIDs), AttachedPrimaryStorageUUIDs: nonNil(cl.PrimaryStorageUUIDs)})
		}
		return answerList(c, out, "ClusterInventory")
	}
}

func nonNil(s []string) []string {
	if s == nil {
		return []string{}
	}
	return s
}

func (s *Server) listHosts() echo.HandlerFunc {
	return func(c echo.Context) error {
		ix, err := s.catalog(c)
		if err != nil {
			return err
		}
		hosts := ix.Site.Hosts
		if u := c.Param("uuid"); u != "" {
			hosts = nil
			if h := ix.Hosts[u]; h != nil {
				hosts = []catalog.Host{*h}
			}
		}
		fields := make([]string, 0, 3*len(hosts))
		for _, h := range hosts {
			fields = append(fields, store.FieldHostCPU(h.UUID), store.FieldHostMemory(h.UUID), store.FieldHostVMs(h.UUID))
		}
		usage, err := s.Store.Usage(c.Request().Context(), fields)
		if err != nil {
			return err
		}
		out := make([]HostInventory, 0, len(hosts))
		for i, h := range hosts {
			capa := ix.HostCapacity(&h)
			cpu, mem, vms := usage[3*i], usage[3*i+1], usage[3*i+2]
			cl := ix.Clusters[h.ClusterUUID]
			out = append(out, HostInventory{UUID: h.UUID, Name: h.Name, Description: h.Description, ZoneUUID: cl.ZoneUUID,
				ClusterUUID: h.ClusterUUID, ManagementIP: h.ManagementIP, HypervisorType: cl.HypervisorType, State: h.State,
				Status: h.Status, TotalCPUCapacity: capa.CPU, AvailableCPUCapacity: capa.CPU - cpu.Used, CPUSockets: h.CPUSockets,
				TotalMemoryCapacity: capa.Memory, AvailableMemoryCapacity: capa.Memory - mem.Used, CPUNum: h.CPUNum,
				Architecture: cl.Architecture, VMCount: vms.Used})
		}
		return answerList(c, out, "HostInventory")
	}
}

func (s *Server) listPrimaryStorages() echo.HandlerFunc {
	return func(c echo.Context) error {
		ix, err := s.catalog(c)
		if err != nil {
			return err
		}
		down, err := s.Store.StoragesDown(c.Request().Context())
		if err != nil {
			return err
		}
		out := make([]PrimaryStorageInventory, 0, len(ix.Site.PrimaryStorages))
		for i := range ix.Site.PrimaryStorages {
			ps := &ix.Site.PrimaryStorages[i]
			// One capacity field per storage, or per host for LocalStorage.
			var hosts []*catalog.Host
			fields := []string{store.FieldStorageVols(ps.UUID)}
			if ps.Type == catalog.PSLocalStorage {
				for _, cl := range ix.ClustersByStorage[ps.UUID] {
					for _, h := range ix.HostsByCluster[cl.UUID] {
						hosts = append(hosts, h)
						fields = append(fields, store.FieldStorageBytes(ps.UUID, h.UUID))
					}
				}
			} else {
				fields = append(fields, store.FieldStorageBytes(ps.UUID, ""))
			}
			usage, err := s.Store.Usage(c.Request().Context(), fields)
			if err != nil {
				return err
			}
			var total, reserved, used int64
			if ps.Type == catalog.PSLocalStorage {
				for j, h := range hosts {
					t, r := ix.StorageCapacity(ps, h)
					total, reserved, used = total+t, reserved+r, used+usage[j+1].Used
				}
			} else {
				total, reserved = ix.StorageCapacity(ps, nil)
				used = usage[1].Used
			}
			attached := []string{}
			for _, cl := range ix.ClustersByStorage[ps.UUID] {
				attached = append(attached, cl.UUID)
			}
			out = append(out, PrimaryStorageInventory{UUID: ps.UUID, Name: ps.Name, Description: ps.Description,
				ZoneUUID: ps.ZoneUUID, URL: ps.URL, Type: ps.Type, State: ps.State, Status: ps.Status,
				TotalCapacity: total, AvailableCapacity: max(total-used, 0), AttachedClusterUUIDs: attached,
				ReservedCapacity: reserved, VolumeCount: usage[0].Used})
			if why, ok := down[ps.UUID]; ok {
				out[len(out)-1].Status, out[len(out)-1].StatusReason = catalog.StatusDisconnected, why
			}
		}
		return answerList(c, out, "PrimaryStorageInventory")
	}
}

func (s *Server) listBackupStorages() echo.HandlerFunc {
	return func(c echo.Context) error {
		ix, err := s.catalog(c)
		if err != nil {
			return err
		}
		out := make([]BackupStorageInventory, 0, len(ix.Site.BackupStorages))
		for _, b := range ix.Site.BackupStorages {
			inv := BackupStorageInventory{UUID: b.UUID, Name: b.Name, Description: b.Description, URL: b.URL,
				Type: b.Type, State: b.State, Status: b.Status, AttachedZoneUUIDs: nonNil(b.ZoneUUIDs),
				MaxConcurrentClones: b.MaxConcurrentClones, BandwidthBytesPerSecond: int64(b.BandwidthBytesPerSecond)}
			var st syscall.Statfs_t
			if err := syscall.Statfs(b.URL, &st); err == nil {
				inv.TotalCapacity = int64(st.Blocks) * st.Bsize
				inv.AvailableCapacity = int64(st.Bavail) * st.Bsize
			}
			out = append(out, inv)
		}
		return answerList(c, out, "BackupStorageInventory")
	}
}

func (s *Server) listL3Networks() echo.HandlerFunc {
	return func(c echo.Context) error {
		ix, err := s.catalog(c)
		if err != nil {
			return err
		}
		out := make([]L3NetworkInventory, 0, len(ix.Site.L3Networks))
		for _, l3 := range ix.Site.L3Networks {
			if u := c.Param("uuid"); u != "" && u != l3.UUID {
				continue
			}
			used, err := s.Store.CountUsedIPs(c.Request().Context(), l3.UUID)
			if err != nil {
				return err
			}
			inv := L3NetworkInventory{UUID: l3.UUID, Name: l3.Name, Description: l3.Description, Type: l3.Type,
				ZoneUUID: l3.ZoneUUID, L2NetworkUUID: l3.L2NetworkUUID, State: l3.State, Category: l3.Category,
				IPVersion: l3.IPVersion, DNS: nonNil(l3.DNS), IPRanges: []IPRangeInventory{},
				IPAllocatorStrategy: l3.IPAllocatorStrategy, UsedIPCount: used}
			for _, r := range l3.IPRanges {
				inv.IPRanges = append(inv.IPRanges, IPRangeInventory{UUID: r.UUID, L3NetworkUUID: l3.UUID, Name: r.Name,
					StartIP: r.StartIP, EndIP: r.EndIP, Netmask: r.Netmask, Gateway: r.Gateway, IPVersion: 4})
			}
			for _, r := range ix.Ranges[l3.UUID] {
				inv.TotalIPCount += r.Size()
				if r.Contains(r.GatewayLong()) {
					inv.UsedIPCount++
				}
			}
			out = append(out, inv)
		}
		return answerList(c, out, "L3NetworkInventory")
	}
}

func (s *Server) listInstanceOfferings() echo.HandlerFunc {
	return func(c echo.Context) error {
		ix, err := s.catalog(c)
		if err != nil {
			return err
		}
		out := make([]InstanceOfferingInventory, 0, len(ix.Site.InstanceOfferings))
		for _, o := range ix.Site.InstanceOfferings {
			out = append(out, InstanceOfferingInventory{UUID: o.UUID, Name: o.Name, Description: o.Description,
				CPUNum: o.CPUNum, CPUSpeed: o.CPUSpeed, MemorySize: int64(o.MemorySize), ReservedMemorySize: int64(o.ReservedMemorySize),
				AllocatorStrategy: o.AllocatorStrategy, Type: o.Type, State: o.State,
				PrimaryStorageAllocatorStrategy: o.PrimaryStorageAllocatorStrategy})
		}
		return answerList(c, out, "InstanceOfferingInventory")
	}
}

// listVolumeBackups is GET /zstack/v1/volume-backups: every volume backup of every indexed
// group an account may see.
func (s *Server) listVolumeBackups() echo.HandlerFunc {
	return func(c echo.Context) error {
		groups, err := s.Store.ListBackupGroups(c.Request().Context())
		if err != nil {
			return err
		}
		ix, err := s.catalog(c)
		if err != nil {
			return err
		}
		sess := session(c)
		sort.Slice(groups, func(a, b int) bool { return groups[a].CreateDate.Before(groups[b].CreateDate) })
		var out []VolumeBackupInventory
		for _, g := range groups {
			if !auth.IsAdmin(sess) && g.AccountUUID != sess.AccountUUID {
				continue // a group without an owner belongs to admin
			}
			for _, v := range g.Volumes {
				inv := VolumeBackupInventory{UUID: v.UUID, Name: g.Name, VolumeUUID: v.VolumeUUID, Type: v.Type, Size: v.Size,
					State: "Enabled", Status: "Ready", GroupUUID: g.GroupUUID, CreateDate: zstack.Date{Time: g.CreateDate},
					Format: v.Format, ActualSize: v.ActualSize, DeviceID: v.DeviceID, VMName: g.VM.Name, VMUUID: g.VM.UUID,
					AccountUUID: g.AccountUUID, BackupStorageRefs: []BackupStorageRefInventory{}}
				for _, bsu := range g.BackupStorageUUIDs {
					path := ""
					if bs := ix.BackupStorages[bsu]; bs != nil {
						path = bs.URL + "/vm-backups/" + g.GroupUUID + "/" + v.File
					}
					inv.BackupStorageRefs = append(inv.BackupStorageRefs, BackupStorageRefInventory{
						VolumeBackupUUID: v.UUID, BackupStorageUUID: bsu, InstallPath: path, Status: "Ready"})
				}
				out = append(out, inv)
			}
		}
		return answerList(c, out, "VolumeBackupInventory")
	}
}

// listVMs is GET /zstack/v1/vm-instances[/{uuid}]: the VMs an account may see.
func (s *Server) listVMs() echo.HandlerFunc {
	return func(c echo.Context) error {
		ctx := c.Request().Context()
		sess := session(c)
		if u := c.Param("uuid"); u != "" {
			vm, owner, err := s.Store.GetVM(ctx, u)
			if errors.Is(err, store.ErrNotFound) || err == nil && !canSee(sess, owner) {
				return answerList(c, []zstack.VmInstanceInventory{}, "VmInstanceInventory")
			}
			if err != nil {
				return err
			}
			return answerList(c, []zstack.VmInstanceInventory{*vm}, "VmInstanceInventory")
		}
		vms, err := s.Store.ListVMs(ctx, ownerFilter(sess))
		if err != nil {
			return err
		}
		out := make([]zstack.VmInstanceInventory, len(vms))
		for i, v := range vms {
			out[i] = *v
		}
		return answerList(c, out, "VmInstanceInventory")
	}
}
