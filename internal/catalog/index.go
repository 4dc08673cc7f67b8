package catalog

import "math"

// Index is a validated Site with lookups by uuid and by attachment. It is immutable: a
// catalog change builds a new Index.
type Index struct {
	Site    *Site
	Version int64

	Zones             map[string]*Zone
	Clusters          map[string]*Cluster
	Hosts             map[string]*Host
	PrimaryStorages   map[string]*PrimaryStorage
	BackupStorages    map[string]*BackupStorage
	L2Networks        map[string]*L2Network
	L3Networks        map[string]*L3Network
	InstanceOfferings map[string]*InstanceOffering

	// HostsByCluster lists each cluster's hosts in site-file order.
	HostsByCluster map[string][]*Host
	// ClustersByL2 lists the clusters attached to each L2 network.
	ClustersByL2 map[string][]*Cluster
	// StoragesByCluster lists the primary storages attached to each cluster.
	StoragesByCluster map[string][]*PrimaryStorage
	// ClustersByStorage lists the clusters each primary storage is attached to.
	ClustersByStorage map[string][]*Cluster
	// Ranges holds each L3 network's ranges in integer form.
	Ranges map[string][]Range
}

// NewIndex indexes a site that passed Validate.
func NewIndex(s *Site, version int64) *Index {
	ix := &Index{
		Site:              s,
		Version:           version,
		Zones:             make(map[string]*Zone, len(s.Zones)),
		Clusters:          make(map[string]*Cluster, len(s.Clusters)),
		Hosts:             make(map[string]*Host, len(s.Hosts)),
		PrimaryStorages:   make(map[string]*PrimaryStorage, len(s.PrimaryStorages)),
		BackupStorages:    make(map[string]*BackupStorage, len(s.BackupStorages)),
		L2Networks:        make(map[string]*L2Network, len(s.L2Networks)),
		L3Networks:        make(map[string]*L3Network, len(s.L3Networks)),
		InstanceOfferings: make(map[string]*InstanceOffering, len(s.InstanceOfferings)),
		HostsByCluster:    make(map[string][]*Host, len(s.Clusters)),
		ClustersByL2:      make(map[string][]*Cluster, len(s.L2Networks)),
		StoragesByCluster: make(map[string][]*PrimaryStorage, len(s.Clusters)),
		ClustersByStorage: make(map[string][]*Cluster, len(s.PrimaryStorages)),
		Ranges:            make(map[string][]Range, len(s.L3Networks)),
	}
	for i := range s.Zones {
		ix.Zones[s.Zones[i].UUID] = &s.Zones[i]
	}
	for i := range s.PrimaryStorages {
		ix.PrimaryStorages[s.PrimaryStorages[i].UUID] = &s.PrimaryStorages[i]
	}
	for i := range s.BackupStorages {
		ix.BackupStorages[s.BackupStorages[i].UUID] = &s.BackupStorages[i]
	}
	for i := range s.L2Networks {
		ix.L2Networks[s.L2Networks[i].UUID] = &s.L2Networks[i]
	}
	for i := range s.L3Networks {
		l3 := &s.L3Networks[i]
		ix.L3Networks[l3.UUID] = l3
		for _, r := range l3.IPRanges {
			if pr, err := ParseRange(r); err == nil {
				ix.Ranges[l3.UUID] = append(ix.Ranges[l3.UUID], pr)
			}
		}
	}
	for i := range s.InstanceOfferings {
		ix.InstanceOfferings[s.InstanceOfferings[i].UUID] = &s.InstanceOfferings[i]
	}
	for i := range s.Clusters {
		c := &s.Clusters[i]
		ix.Clusters[c.UUID] = c
		for _, l2 := range c.L2NetworkUUIDs {
			ix.ClustersByL2[l2] = append(ix.ClustersByL2[l2], c)
		}
		for _, psu := range c.PrimaryStorageUUIDs {
			if ps := ix.PrimaryStorages[psu]; ps != nil {
				ix.StoragesByCluster[c.UUID] = append(ix.StoragesByCluster[c.UUID], ps)
				ix.ClustersByStorage[psu] = append(ix.ClustersByStorage[psu], c)
			}
		}
	}
	for i := range s.Hosts {
		h := &s.Hosts[i]
		ix.Hosts[h.UUID] = h
		ix.HostsByCluster[h.ClusterUUID] = append(ix.HostsByCluster[h.ClusterUUID], h)
	}
	return ix
}

// ZoneOfHost returns the zone of a host (through its cluster).
func (ix *Index) ZoneOfHost(h *Host) string {
	if c := ix.Clusters[h.ClusterUUID]; c != nil {
		return c.ZoneUUID
	}
	return ""
}

// HostCapacity is what a host can give to VMs: CPU after over-provisioning and memory after
// over-provisioning minus the memory reserved for the host itself.
type HostCapacity struct {
	CPU    int64
	Memory int64
}

// HostCapacity computes a host's allocatable CPU and memory (host settings override cluster ones).
func (ix *Index) HostCapacity(h *Host) HostCapacity {
	c := ix.Clusters[h.ClusterUUID]
	cpuRatio, memRatio, reserved := DefaultCPUOverProvisioningRatio, DefaultMemoryOverProvisioningRatio, DefaultReservedHostMemory
	if c != nil {
		cpuRatio, memRatio, reserved = c.CPUOverProvisioningRatio, c.MemoryOverProvisioningRatio, c.ReservedHostMemory
	}
	if h.CPUOverProvisioningRatio > 0 {
		cpuRatio = h.CPUOverProvisioningRatio
	}
	if h.MemoryOverProvisioningRatio > 0 {
		memRatio = h.MemoryOverProvisioningRatio
	}
	if h.ReservedMemory > 0 {
		reserved = h.ReservedMemory
	}
	mem := int64(math.Floor(float64(h.MemorySize)*memRatio)) - int64(reserved)
	if mem < 0 {
		mem = 0
	}
	return HostCapacity{CPU: int64(math.Floor(float64(h.CPUNum) * cpuRatio)), Memory: mem}
}

// StorageCapacity is the allocatable capacity of a primary storage (or, for LocalStorage, of
// one host's share of it): total × over-provisioning ratio, with the reserve that must stay free.
func (ix *Index) StorageCapacity(ps *PrimaryStorage, h *Host) (total, reserved int64) {
	raw := ps.TotalCapacity
	if ps.Type == PSLocalStorage {
		raw = ps.CapacityPerHost
		if h != nil && h.LocalStorageCapacity > 0 {
			raw = h.LocalStorageCapacity
		}
	}
	return int64(math.Floor(float64(raw) * ps.OverProvisioningRatio)), int64(ps.ReservedCapacity)
}

// HostUsable reports whether a host may receive VMs: it, its cluster and its zone are
// Enabled and the host is Connected.
func (ix *Index) HostUsable(h *Host) bool {
	c := ix.Clusters[h.ClusterUUID]
	if c == nil || c.State != StateEnabled || h.State != StateEnabled || h.Status != StatusConnected {
		return false
	}
	z := ix.Zones[c.ZoneUUID]
	return z != nil && z.State == StateEnabled
}

// StorageUsable reports whether a primary storage is Enabled and Connected.
func StorageUsable(ps *PrimaryStorage) bool {
	return ps.State == StateEnabled && ps.Status == StatusConnected
}

// Has reports whether uuid names anything the site declares: a zone, cluster, host, primary
// or backup storage, L2 or L3 network, IP range, instance offering or account. Such a uuid
// cannot become a new resource's uuid, as in ZStack, where every resource uuid is unique.
func (ix *Index) Has(uuid string) bool {
	if ix.Zones[uuid] != nil || ix.Clusters[uuid] != nil || ix.Hosts[uuid] != nil ||
		ix.PrimaryStorages[uuid] != nil || ix.BackupStorages[uuid] != nil || ix.L2Networks[uuid] != nil ||
		ix.L3Networks[uuid] != nil || ix.InstanceOfferings[uuid] != nil {
		return true
	}
	for _, l3 := range ix.Site.L3Networks {
		for _, r := range l3.IPRanges {
			if r.UUID == uuid {
				return true
			}
		}
	}
	for _, a := range ix.Site.Accounts {
		if a.UUID == uuid {
			return true
		}
	}
	return false
}
