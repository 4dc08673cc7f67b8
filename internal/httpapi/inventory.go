package httpapi

import (
	"errors"
	"fmt"
	"math/bits"
	"net/http"
	"reflect"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/labstack/echo/v4"

	"github.com/vmrestore/vmrestore/internal/auth"
	"github.com/vmrestore/vmrestore/internal/catalog"
	"github.com/vmrestore/vmrestore/internal/query"
	"github.com/vmrestore/vmrestore/internal/store"
	"github.com/vmrestore/vmrestore/internal/zstack"
)

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
// {"inventories": [...]} (or {"total": N} with count=true; both with replyWithCount=true),
// with the schema ZStack always adds to a query reply.
func answerList[T any](c echo.Context, items []T, class *zstack.Class) error {
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
	inventory := class.Name[strings.LastIndex(class.Name, ".")+1:]
	res, err := q.Apply(maps, fieldsOf(zero), inventory)
	if err != nil {
		var qe *query.Error
		if errors.As(err, &qe) {
			return zstack.InvalidArgument("%v", err)
		}
		return err
	}
	if q.Count {
		return writeAnswer(c, true, field{"total", res.Total, nil})
	}
	inventories := res.Items
	if inventories == nil {
		inventories = []map[string]any{}
	}
	fields := []field{{"inventories", inventories, class}}
	if q.ReplyWithCount {
		fields = append(fields, field{"total", res.Total, nil})
	}
	return writeAnswer(c, true, fields...)
}

func (s *Server) catalog(c echo.Context) (*catalog.Index, error) {
	ix, err := s.Catalog.Current(c.Request().Context())
	if errors.Is(err, store.ErrNotFound) {
		return nil, zstack.Errorf(zstack.CodeInternal, "no site catalog is loaded; start the api with VMRESTORE_SITE")
	}
	return ix, err
}

// catalogWithDates returns the catalog and the dates of its objects.
func (s *Server) catalogWithDates(c echo.Context) (*catalog.Index, dates, error) {
	ix, err := s.catalog(c)
	if err != nil {
		return nil, nil, err
	}
	d, err := s.Store.CatalogDates(c.Request().Context())
	return ix, d, err
}

// dates are catalog objects' createDate and lastOpDate by uuid.
type dates map[string]store.ObjectDates

func (d dates) of(uuid string) (created, lastOp zstack.Date) {
	od := d[uuid]
	return zstack.Date{Time: od.Created.Truncate(time.Second)}, zstack.Date{Time: od.LastOp.Truncate(time.Second)}
}

func (s *Server) listZones() echo.HandlerFunc {
	return func(c echo.Context) error {
		ix, d, err := s.catalogWithDates(c)
		if err != nil {
			return err
		}
		out := make([]zstack.ZoneInventory, 0, len(ix.Site.Zones))
		for _, z := range ix.Site.Zones {
			inv := zstack.ZoneInventory{UUID: z.UUID, Name: z.Name, Description: z.Description, State: z.State, Type: "zstack"}
			inv.CreateDate, inv.LastOpDate = d.of(z.UUID)
			out = append(out, inv)
		}
		return answerList(c, out, zstack.ClassZone)
	}
}

func (s *Server) listClusters() echo.HandlerFunc {
	return func(c echo.Context) error {
		ix, d, err := s.catalogWithDates(c)
		if err != nil {
			return err
		}
		out := make([]zstack.ClusterInventory, 0, len(ix.Site.Clusters))
		for _, cl := range ix.Site.Clusters {
			inv := zstack.ClusterInventory{UUID: cl.UUID, Name: cl.Name, Description: cl.Description, State: cl.State,
				HypervisorType: cl.HypervisorType, ZoneUUID: cl.ZoneUUID, Type: "zstack", Architecture: cl.Architecture,
				AttachedL2NetworkUUIDs: nonNil(cl.L2NetworkUUIDs), AttachedPrimaryStorageUUIDs: nonNil(cl.PrimaryStorageUUIDs)}
			inv.CreateDate, inv.LastOpDate = d.of(cl.UUID)
			out = append(out, inv)
		}
		return answerList(c, out, zstack.ClassCluster)
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
		ix, d, err := s.catalogWithDates(c)
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
		out := make([]zstack.HostInventory, 0, len(hosts))
		for i, h := range hosts {
			capa := ix.HostCapacity(&h)
			cpu, mem, vms := usage[3*i], usage[3*i+1], usage[3*i+2]
			cl := ix.Clusters[h.ClusterUUID]
			inv := zstack.HostInventory{UUID: h.UUID, Name: h.Name, Description: h.Description, ZoneUUID: cl.ZoneUUID,
				ClusterUUID: h.ClusterUUID, ManagementIP: h.ManagementIP, HypervisorType: cl.HypervisorType, State: h.State,
				Status: h.Status, TotalCPUCapacity: capa.CPU, AvailableCPUCapacity: capa.CPU - cpu.Used, CPUSockets: h.CPUSockets,
				TotalMemoryCapacity: capa.Memory, AvailableMemoryCapacity: capa.Memory - mem.Used, CPUNum: h.CPUNum,
				Architecture: cl.Architecture, VMCount: vms.Used}
			inv.CreateDate, inv.LastOpDate = d.of(h.UUID)
			out = append(out, inv)
		}
		return answerList(c, out, zstack.ClassHost)
	}
}

func (s *Server) listPrimaryStorages() echo.HandlerFunc {
	return func(c echo.Context) error {
		ix, d, err := s.catalogWithDates(c)
		if err != nil {
			return err
		}
		down, err := s.Store.StoragesDown(c.Request().Context())
		if err != nil {
			return err
		}
		out := make([]zstack.PrimaryStorageInventory, 0, len(ix.Site.PrimaryStorages))
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
			inv := zstack.PrimaryStorageInventory{UUID: ps.UUID, Name: ps.Name, Description: ps.Description,
				ZoneUUID: ps.ZoneUUID, URL: ps.URL, Type: ps.Type, State: ps.State, Status: ps.Status,
				TotalCapacity: total, AvailableCapacity: max(total-used, 0), AttachedClusterUUIDs: attached,
				ReservedCapacity: reserved, VolumeCount: usage[0].Used}
			inv.CreateDate, inv.LastOpDate = d.of(ps.UUID)
			if why, ok := down[ps.UUID]; ok {
				inv.Status, inv.StatusReason = catalog.StatusDisconnected, why
			}
			out = append(out, inv)
		}
		return answerList(c, out, zstack.ClassPrimaryStorage)
	}
}

func (s *Server) listBackupStorages() echo.HandlerFunc {
	return func(c echo.Context) error {
		ix, d, err := s.catalogWithDates(c)
		if err != nil {
			return err
		}
		out := make([]zstack.BackupStorageInventory, 0, len(ix.Site.BackupStorages))
		for _, b := range ix.Site.BackupStorages {
			inv := zstack.BackupStorageInventory{UUID: b.UUID, Name: b.Name, Description: b.Description, URL: b.URL,
				Type: b.Type, State: b.State, Status: b.Status, AttachedZoneUUIDs: nonNil(b.ZoneUUIDs),
				MaxConcurrentClones: b.MaxConcurrentClones, BandwidthBytesPerSecond: int64(b.BandwidthBytesPerSecond)}
			inv.CreateDate, inv.LastOpDate = d.of(b.UUID)
			var st syscall.Statfs_t
			if err := syscall.Statfs(b.URL, &st); err == nil {
				inv.TotalCapacity = int64(st.Blocks) * st.Bsize
				inv.AvailableCapacity = int64(st.Bavail) * st.Bsize
			}
			out = append(out, inv)
		}
		return answerList(c, out, zstack.ClassBackupStorage)
	}
}

func (s *Server) listL3Networks() echo.HandlerFunc {
	return func(c echo.Context) error {
		ix, d, err := s.catalogWithDates(c)
		if err != nil {
			return err
		}
		out := make([]zstack.L3NetworkInventory, 0, len(ix.Site.L3Networks))
		for _, l3 := range ix.Site.L3Networks {
			if u := c.Param("uuid"); u != "" && u != l3.UUID {
				continue
			}
			used, err := s.Store.CountUsedIPs(c.Request().Context(), l3.UUID)
			if err != nil {
				return err
			}
			inv := zstack.L3NetworkInventory{UUID: l3.UUID, Name: l3.Name, Description: l3.Description, Type: l3.Type,
				ZoneUUID: l3.ZoneUUID, L2NetworkUUID: l3.L2NetworkUUID, State: l3.State, Category: l3.Category,
				IPVersion: l3.IPVersion, DNS: nonNil(l3.DNS), IPRanges: []zstack.IPRangeInventory{},
				IPAllocatorStrategy: l3.IPAllocatorStrategy, UsedIPCount: used}
			inv.CreateDate, inv.LastOpDate = d.of(l3.UUID)
			for _, r := range l3.IPRanges {
				ri := zstack.IPRangeInventory{UUID: r.UUID, L3NetworkUUID: l3.UUID, Name: r.Name, StartIP: r.StartIP, EndIP: r.EndIP,
					Netmask: r.Netmask, Gateway: r.Gateway, NetworkCIDR: networkCIDR(r.StartIP, r.Netmask), IPVersion: 4}
				ri.CreateDate, ri.LastOpDate = d.of(r.UUID)
				inv.IPRanges = append(inv.IPRanges, ri)
			}
			for _, r := range ix.Ranges[l3.UUID] {
				inv.TotalIPCount += r.Size()
				if r.Contains(r.GatewayLong()) {
					inv.UsedIPCount++
				}
			}
			out = append(out, inv)
		}
		return answerList(c, out, zstack.ClassL3Network)
	}
}

func (s *Server) listInstanceOfferings() echo.HandlerFunc {
	return func(c echo.Context) error {
		ix, d, err := s.catalogWithDates(c)
		if err != nil {
			return err
		}
		out := make([]zstack.InstanceOfferingInventory, 0, len(ix.Site.InstanceOfferings))
		for _, o := range ix.Site.InstanceOfferings {
			inv := zstack.InstanceOfferingInventory{UUID: o.UUID, Name: o.Name, Description: o.Description,
				CPUNum: o.CPUNum, CPUSpeed: o.CPUSpeed, MemorySize: int64(o.MemorySize), ReservedMemorySize: int64(o.ReservedMemorySize),
				AllocatorStrategy: o.AllocatorStrategy, Type: o.Type, State: o.State,
				PrimaryStorageAllocatorStrategy: o.PrimaryStorageAllocatorStrategy}
			inv.CreateDate, inv.LastOpDate = d.of(o.UUID)
			out = append(out, inv)
		}
		return answerList(c, out, zstack.ClassInstanceOffering)
	}
}

// visibleGroups returns the indexed backup groups a session may see, oldest first (a group
// without an owner belongs to admin).
func (s *Server) visibleGroups(c echo.Context) ([]store.IndexedGroup, error) {
	groups, err := s.Store.ListBackupGroups(c.Request().Context())
	if err != nil {
		return nil, err
	}
	sess := session(c)
	out := groups[:0]
	for _, g := range groups {
		if auth.IsAdmin(sess) || g.AccountUUID == sess.AccountUUID {
			out = append(out, g)
		}
	}
	sort.Slice(out, func(a, b int) bool {
		if !out[a].CreateDate.Equal(out[b].CreateDate) {
			return out[a].CreateDate.Before(out[b].CreateDate)
		}
		return out[a].GroupUUID < out[b].GroupUUID
	})
	return out, nil
}

// listVolumeBackups is GET /zstack/v1/volume-backups: every volume backup of every indexed
// group an account may see.
func (s *Server) listVolumeBackups() echo.HandlerFunc {
	return func(c echo.Context) error {
		groups, err := s.visibleGroups(c)
		if err != nil {
			return err
		}
		ix, err := s.catalog(c)
		if err != nil {
			return err
		}
		var out []zstack.VolumeBackupInventory
		for _, g := range groups {
			date := zstack.Date{Time: g.CreateDate.Truncate(time.Second)}
			for _, v := range g.Volumes {
				inv := zstack.VolumeBackupInventory{UUID: v.UUID, Name: g.Name, VolumeUUID: v.VolumeUUID, Type: v.Type, Size: v.Size,
					State: "Enabled", Status: "Ready", GroupUUID: g.GroupUUID, Mode: "full", VMInstanceUUID: g.VM.UUID,
					CreateDate: date, LastOpDate: date, Format: v.Format, ActualSize: v.ActualSize, DeviceID: v.DeviceID,
					VMName: g.VM.Name, AccountUUID: g.AccountUUID, BackupStorageRefs: []zstack.BackupStorageRefInventory{}}
				for _, bsu := range g.BackupStorageUUIDs {
					path := ""
					if bs := ix.BackupStorages[bsu]; bs != nil {
						path = bs.URL + "/vm-backups/" + g.GroupUUID + "/" + v.File
					}
					inv.BackupStorageRefs = append(inv.BackupStorageRefs, zstack.BackupStorageRefInventory{
						VolumeBackupUUID: v.UUID, BackupStorageUUID: bsu, InstallPath: path, Status: "Ready",
						CreateDate: date, LastOpDate: date})
				}
				out = append(out, inv)
			}
		}
		return answerList(c, out, zstack.ClassVolumeBackup)
	}
}

// listImages is GET /zstack/v1/images: the images the backed-up VMs an account may see were
// created from, known by reference from their backup groups (uuid, platform, OS, format and
// size of the root volume); vmrestore holds no copy of them. Their dates are those of the
// oldest and newest group that names them.
func (s *Server) listImages() echo.HandlerFunc {
	return func(c echo.Context) error {
		groups, err := s.visibleGroups(c)
		if err != nil {
			return err
		}
		byUUID := map[string]int{}
		var out []zstack.ImageInventory
		for _, g := range groups {
			u := g.VM.ImageUUID
			if u == "" {
				continue
			}
			date := zstack.Date{Time: g.CreateDate.Truncate(time.Second)}
			if i, ok := byUUID[u]; ok {
				if date.After(out[i].LastOpDate.Time) {
					out[i].LastOpDate = date
				}
				continue
			}
			inv := zstack.ImageInventory{UUID: u, Name: "image-of-" + g.VM.Name, State: "Enabled", Status: "Ready",
				Description: fmt.Sprintf("the image VM %s was created from, as its backup groups name it; vmrestore holds no copy of it", g.VM.Name),
				MediaType:   "RootVolumeTemplate", GuestOsType: g.VM.GuestOsType, Type: "zstack", Platform: g.VM.Platform,
				Architecture: g.VM.Architecture, CreateDate: date, LastOpDate: date, BackupStorageRefs: []zstack.ImageBackupStorageRefInventory{}}
			if root := g.Root(); root != nil {
				inv.Format, inv.Size = root.Format, root.Size
			}
			byUUID[u] = len(out)
			out = append(out, inv)
		}
		return answerList(c, out, zstack.ClassImage)
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
				return answerList(c, []zstack.VmInstanceInventory{}, zstack.ClassVmInstance)
			}
			if err != nil {
				return err
			}
			return answerList(c, []zstack.VmInstanceInventory{*vm}, zstack.ClassVmInstance)
		}
		vms, err := s.Store.ListVMs(ctx, ownerFilter(sess))
		if err != nil {
			return err
		}
		out := make([]zstack.VmInstanceInventory, len(vms))
		for i, v := range vms {
			out[i] = *v
		}
		return answerList(c, out, zstack.ClassVmInstance)
	}
}

// freeIPs is GetFreeIp: GET /zstack/v1/l3-networks/{uuid}/ip/free,
// /zstack/v1/l3-networks/ip-ranges/{uuid}/ip/free, or /zstack/v1/l3-networks/ip/free with
// l3NetworkUuid or ipRangeUuid: the addresses of the ranges that no NIC holds and that are
// not the gateway, in range order, from start (an address, default 0.0.0.0) on, at most
// limit (default 100) of them.
func (s *Server) freeIPs(byRange bool) echo.HandlerFunc {
	return func(c echo.Context) error {
		l3UUID, rangeUUID := c.QueryParam("l3NetworkUuid"), c.QueryParam("ipRangeUuid")
		if u := c.Param("uuid"); u != "" && byRange {
			rangeUUID = u
		} else if u != "" {
			l3UUID = u
		}
		limit := 100
		if v := c.QueryParam("limit"); v != "" {
			n, err := strconv.Atoi(v)
			if err != nil {
				return plain(http.StatusBadRequest, "Invalid query parameter[limit], it must be an integer, got %q", v)
			}
			limit = n
		}
		start := int64(0)
		if v := c.QueryParam("start"); v != "" {
			ip, ok := catalog.IPToLong(v)
			if !ok {
				return zstack.InvalidArgument("start[%s] is not an IPv4 address", v)
			}
			start = ip
		}
		ix, err := s.catalog(c)
		if err != nil {
			return err
		}
		if l3UUID == "" && rangeUUID == "" {
			return zstack.InvalidArgument("either l3NetworkUuid or ipRangeUuid must be set")
		}
		if rangeUUID != "" && l3UUID == "" {
			for l3, rs := range ix.Ranges {
				for _, r := range rs {
					if r.UUID == rangeUUID {
						l3UUID = l3
					}
				}
			}
			if l3UUID == "" {
				return zstack.InvalidArgument("invalid field[ipRangeUuid], resource[uuids:[%s], type:IpRangeVO] not found", rangeUUID)
			}
		}
		ranges, ok := ix.Ranges[l3UUID]
		if !ok {
			return zstack.InvalidArgument("invalid field[l3NetworkUuid], resource[uuids:[%s], type:L3NetworkVO] not found", l3UUID)
		}
		used, err := s.Store.UsedIPs(c.Request().Context(), l3UUID)
		if err != nil {
			return err
		}
		out := []zstack.FreeIPInventory{}
		for _, r := range ranges {
			if rangeUUID != "" && r.UUID != rangeUUID {
				continue
			}
			for ip := max(r.Start, start); ip <= r.End && len(out) < limit; ip++ {
				if _, taken := used[strconv.FormatInt(ip, 10)]; taken || ip == r.GatewayLong() {
					continue
				}
				out = append(out, zstack.FreeIPInventory{IPRangeUUID: r.UUID, IP: catalog.LongToIP(ip), Netmask: r.Netmask, Gateway: r.Gateway})
			}
		}
		return writeAnswer(c, false, field{"inventories", out, zstack.ClassFreeIP})
	}
}

// networkCIDR is the network of an address and netmask in CIDR form (10.10.0.0/24), or ""
// when either is not IPv4.
func networkCIDR(ip, netmask string) string {
	a, ok := catalog.IPToLong(ip)
	m, ok2 := catalog.IPToLong(netmask)
	if !ok || !ok2 {
		return ""
	}
	return fmt.Sprintf("%s/%d", catalog.LongToIP(a&m), bits.OnesCount32(uint32(m)))
}
