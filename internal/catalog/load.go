package catalog

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"os"
	"path/filepath"
	"strings"

	"go.yaml.in/yaml/v3"

	"github.com/vmrestore/vmrestore/internal/zstack"
)

// MaxRangeSize bounds the addresses of one IP range (a /8), so an address bitmap stays small.
const MaxRangeSize = 1 << 24

// MaxSiteFileSize bounds the site file; a site of 10,000 hosts is a few MiB of YAML.
const MaxSiteFileSize = 64 << 20

// LoadFile reads, defaults and validates a site file. A storage url that is a relative path
// is taken relative to the folder of the file (the site and its storages kept in one
// folder); the catalog holds the absolute path.
func LoadFile(path string) (*Site, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("site file: %w", err)
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, MaxSiteFileSize+1))
	if err != nil {
		return nil, fmt.Errorf("site file %s: %w", path, err)
	}
	if len(data) > MaxSiteFileSize {
		return nil, fmt.Errorf("site file %s is larger than %d bytes", path, MaxSiteFileSize)
	}
	base, err := filepath.Abs(filepath.Dir(path))
	if err != nil {
		return nil, fmt.Errorf("site file %s: %w", path, err)
	}
	s, err := parse(data, base)
	if err != nil {
		return nil, fmt.Errorf("site file %s: %w", path, err)
	}
	return s, nil
}

// Parse decodes a site from YAML (JSON is YAML too), rejecting unknown fields, then fills in
// ZStack's defaults and validates every reference. The error lists every problem found.
// Storage urls must be absolute (LoadFile also takes them relative to the file).
func Parse(data []byte) (*Site, error) { return parse(data, "") }

// parse is Parse with relative storage urls resolved against base (when not empty).
func parse(data []byte, base string) (*Site, error) {
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	var s Site
	if err := dec.Decode(&s); err != nil {
		if errors.Is(err, io.EOF) {
			return nil, errors.New("the site is empty")
		}
		return nil, fmt.Errorf("cannot parse: %w", err)
	}
	if base != "" {
		s.resolveURLs(base)
	}
	s.applyDefaults()
	if err := s.Validate(); err != nil {
		return nil, err
	}
	return &s, nil
}

// resolveURLs makes the relative storage urls (inside base: no "..") absolute under base;
// anything else is left to Validate.
func (s *Site) resolveURLs(base string) {
	fix := func(u *string) {
		if *u != "" && !strings.ContainsRune(*u, 0) && filepath.IsLocal(*u) {
			*u = filepath.Join(base, *u)
		}
	}
	for i := range s.PrimaryStorages {
		fix(&s.PrimaryStorages[i].URL)
	}
	for i := range s.BackupStorages {
		fix(&s.BackupStorages[i].URL)
	}
}

// Normalize fills in ZStack's defaults and validates, as Parse does for a file; for sites
// built in code.
func (s *Site) Normalize() error {
	s.applyDefaults()
	return s.Validate()
}

func orString(v *string, def string) {
	if *v == "" {
		*v = def
	}
}

func (s *Site) applyDefaults() {
	for i := range s.Zones {
		orString(&s.Zones[i].State, StateEnabled)
	}
	for i := range s.Clusters {
		c := &s.Clusters[i]
		orString(&c.State, StateEnabled)
		orString(&c.HypervisorType, "KVM")
		orString(&c.Architecture, "x86_64")
		if c.CPUOverProvisioningRatio == 0 {
			c.CPUOverProvisioningRatio = DefaultCPUOverProvisioningRatio
		}
		if c.MemoryOverProvisioningRatio == 0 {
			c.MemoryOverProvisioningRatio = DefaultMemoryOverProvisioningRatio
		}
		if c.ReservedHostMemory == 0 {
			c.ReservedHostMemory = DefaultReservedHostMemory
		}
	}
	for i := range s.Hosts {
		h := &s.Hosts[i]
		orString(&h.State, StateEnabled)
		orString(&h.Status, StatusConnected)
		if h.CPUSockets == 0 {
			h.CPUSockets = 1
		}
	}
	for i := range s.PrimaryStorages {
		p := &s.PrimaryStorages[i]
		orString(&p.State, StateEnabled)
		orString(&p.Status, StatusConnected)
		if p.ReservedCapacity == 0 {
			p.ReservedCapacity = DefaultPSReservedCapacity
		}
		if p.OverProvisioningRatio == 0 {
			p.OverProvisioningRatio = 1
		}
	}
	for i := range s.BackupStorages {
		b := &s.BackupStorages[i]
		orString(&b.State, StateEnabled)
		orString(&b.Status, StatusConnected)
		orString(&b.Type, "ImageStoreBackupStorage")
		if b.MaxConcurrentClones == 0 {
			b.MaxConcurrentClones = DefaultMaxConcurrentClones
		}
		if len(b.ZoneUUIDs) == 0 {
			for _, z := range s.Zones {
				b.ZoneUUIDs = append(b.ZoneUUIDs, z.UUID)
			}
		}
	}
	for i := range s.L2Networks {
		orString(&s.L2Networks[i].Type, "L2NoVlanNetwork")
	}
	zoneOfL2 := map[string]string{}
	for _, l2 := range s.L2Networks {
		zoneOfL2[l2.UUID] = l2.ZoneUUID
	}
	for i := range s.L3Networks {
		l3 := &s.L3Networks[i]
		orString(&l3.State, StateEnabled)
		orString(&l3.Type, "L3BasicNetwork")
		orString(&l3.Category, "Private")
		orString(&l3.IPAllocatorStrategy, IPRandom)
		if l3.IPVersion == 0 {
			l3.IPVersion = 4
		}
		l3.ZoneUUID = zoneOfL2[l3.L2NetworkUUID]
	}
	for i := range s.InstanceOfferings {
		o := &s.InstanceOfferings[i]
		orString(&o.State, StateEnabled)
		orString(&o.Type, "UserVm")
		orString(&o.AllocatorStrategy, HostDefault)
		orString(&o.PrimaryStorageAllocatorStrategy, PSDefault)
	}
	for i := range s.Accounts {
		orString(&s.Accounts[i].Type, AccountNormal)
	}
}

// problems collects validation messages with the path of the offending entry.
type problems []string

func (p *problems) addf(format string, args ...any) { *p = append(*p, fmt.Sprintf(format, args...)) }

func (p problems) err() error {
	switch len(p) {
	case 0:
		return nil
	case 1:
		return errors.New(p[0])
	}
	return fmt.Errorf("%d problems:\n  %s", len(p), strings.Join(p, "\n  "))
}

func oneOf(v string, allowed ...string) bool {
	for _, a := range allowed {
		if v == a {
			return true
		}
	}
	return false
}

// Validate checks formats, enums and every cross-reference of the site, each kind of
// object in turn, and reports every problem found.
func (s *Site) Validate() error {
	v := &siteValidator{site: s, seen: map[string]string{}, zones: map[string]*Zone{}, l2s: map[string]*L2Network{},
		pss: map[string]*PrimaryStorage{}, clusters: map[string]*Cluster{}}
	v.checkZones()
	v.checkL2Networks()
	v.checkPrimaryStorages()
	v.checkClusters()
	v.checkHosts()
	v.checkBackupStorages()
	v.checkL3Networks()
	v.checkInstanceOfferings()
	v.checkAccounts()
	return v.problems.err()
}

// siteValidator collects a site's problems; the objects checked so far, by uuid, are what
// later ones refer to.
type siteValidator struct {
	site *Site
	problems
	seen     map[string]string // uuid → where it was first used
	zones    map[string]*Zone
	l2s      map[string]*L2Network
	pss      map[string]*PrimaryStorage
	clusters map[string]*Cluster
}

// uuid checks a uuid's form and that no other object of the site has it.
func (v *siteValidator) uuid(where, uuid string) {
	if !zstack.IsUUID(uuid) {
		v.addf("%s: uuid %q is not 32 lowercase hex characters", where, uuid)
		return
	}
	if prev, dup := v.seen[uuid]; dup {
		v.addf("%s: uuid %s is already used by %s", where, uuid, prev)
	}
	v.seen[uuid] = where
}

func (v *siteValidator) name(where, name string) {
	if strings.TrimSpace(name) == "" {
		v.addf("%s: name is required", where)
	} else if len(name) > 255 {
		v.addf("%s: name is longer than 255 characters", where)
	}
}

// dir checks a storage url: an absolute, clean directory path.
func (v *siteValidator) dir(where, url string) {
	switch {
	case url == "":
		v.addf("%s: url (a directory) is required", where)
	case strings.ContainsRune(url, 0):
		v.addf("%s: url contains a NUL byte", where)
	case !filepath.IsAbs(url):
		v.addf("%s: url %q must be an absolute directory path (in a site file, it may also be relative to the file's folder, without '..')", where, url)
	case filepath.Clean(url) != strings.TrimSuffix(url, "/") && filepath.Clean(url) != url:
		v.addf("%s: url %q must be a clean path (no '..', '.' or repeated '/')", where, url)
	}
}

// checkZones checks the zones; the site needs one.
func (v *siteValidator) checkZones() {
	if len(v.site.Zones) == 0 {
		v.addf("zones: the site needs at least one zone")
	}
	for i := range v.site.Zones {
		z := &v.site.Zones[i]
		where := fmt.Sprintf("zones[%d]", i)
		v.uuid(where, z.UUID)
		v.name(where, z.Name)
		if !oneOf(z.State, StateEnabled, StateDisabled) {
			v.addf("%s: state %q must be Enabled or Disabled", where, z.State)
		}
		v.zones[z.UUID] = z
	}
}

// checkL2Networks checks the L2 networks: zone, type, interface, VLAN.
func (v *siteValidator) checkL2Networks() {
	for i := range v.site.L2Networks {
		l2 := &v.site.L2Networks[i]
		where := fmt.Sprintf("l2Networks[%d]", i)
		v.uuid(where, l2.UUID)
		v.name(where, l2.Name)
		if v.zones[l2.ZoneUUID] == nil {
			v.addf("%s: zoneUuid %q is not a zone of this site", where, l2.ZoneUUID)
		}
		if !oneOf(l2.Type, "L2NoVlanNetwork", "L2VlanNetwork", "VxlanNetwork") {
			v.addf("%s: type %q must be L2NoVlanNetwork, L2VlanNetwork or VxlanNetwork", where, l2.Type)
		}
		if l2.PhysicalInterface != "" && !validInterfaceName(l2.PhysicalInterface) {
			v.addf("%s: physicalInterface %q is not a network interface name (1 to 15 characters, no '/', ':' or blanks)", where, l2.PhysicalInterface)
		}
		switch {
		case l2.Type == "L2VlanNetwork" && (l2.Vlan < 1 || l2.Vlan > 4094):
			v.addf("%s: an L2VlanNetwork needs a vlan between 1 and 4094, got %d", where, l2.Vlan)
		case l2.Type != "L2VlanNetwork" && l2.Vlan != 0:
			v.addf("%s: vlan %d is only for type L2VlanNetwork", where, l2.Vlan)
		}
		v.l2s[l2.UUID] = l2
	}
}

// checkPrimaryStorages checks the primary storages: zone, type, states, directory, capacities.
func (v *siteValidator) checkPrimaryStorages() {
	for i := range v.site.PrimaryStorages {
		ps := &v.site.PrimaryStorages[i]
		where := fmt.Sprintf("primaryStorages[%d]", i)
		v.uuid(where, ps.UUID)
		v.name(where, ps.Name)
		v.dir(where, ps.URL)
		if v.zones[ps.ZoneUUID] == nil {
			v.addf("%s: zoneUuid %q is not a zone of this site", where, ps.ZoneUUID)
		}
		if !oneOf(ps.Type, PSLocalStorage, PSNFS, PSSharedBlock, PSCeph) {
			v.addf("%s: type %q must be LocalStorage, NFS, SharedBlock or Ceph", where, ps.Type)
		}
		if !oneOf(ps.State, StateEnabled, StateDisabled) {
			v.addf("%s: state %q must be Enabled or Disabled", where, ps.State)
		}
		if !oneOf(ps.Status, StatusConnected, StatusDisconnected, StatusConnecting) {
			v.addf("%s: status %q must be Connected, Disconnected or Connecting", where, ps.Status)
		}
		if ps.Type != PSLocalStorage && ps.TotalCapacity <= 0 {
			v.addf("%s: totalCapacity must be positive for a %s storage", where, ps.Type)
		}
		if ps.TotalCapacity < 0 || ps.CapacityPerHost < 0 || ps.ReservedCapacity < 0 {
			v.addf("%s: capacities cannot be negative", where)
		}
		if ps.OverProvisioningRatio < 0 {
			v.addf("%s: overProvisioningRatio cannot be negative", where)
		}
		v.pss[ps.UUID] = ps
	}
}

// checkClusters checks the clusters and what they attach: L2 networks and primary storages of their zone.
func (v *siteValidator) checkClusters() {
	for i := range v.site.Clusters {
		c := &v.site.Clusters[i]
		where := fmt.Sprintf("clusters[%d]", i)
		v.uuid(where, c.UUID)
		v.name(where, c.Name)
		if v.zones[c.ZoneUUID] == nil {
			v.addf("%s: zoneUuid %q is not a zone of this site", where, c.ZoneUUID)
		}
		if !oneOf(c.State, StateEnabled, StateDisabled) {
			v.addf("%s: state %q must be Enabled or Disabled", where, c.State)
		}
		if c.CPUOverProvisioningRatio < 0 || c.MemoryOverProvisioningRatio < 0 || c.ReservedHostMemory < 0 {
			v.addf("%s: over-provisioning ratios and reserved memory cannot be negative", where)
		}
		for _, u := range c.L2NetworkUUIDs {
			if l2 := v.l2s[u]; l2 == nil {
				v.addf("%s: l2NetworkUuids: %q is not an L2 network of this site", where, u)
			} else if l2.ZoneUUID != c.ZoneUUID {
				v.addf("%s: l2 network %s is in another zone", where, u)
			}
		}
		for _, u := range c.PrimaryStorageUUIDs {
			if ps := v.pss[u]; ps == nil {
				v.addf("%s: primaryStorageUuids: %q is not a primary storage of this site", where, u)
			} else if ps.ZoneUUID != c.ZoneUUID {
				v.addf("%s: primary storage %s is in another zone", where, u)
			}
		}
		v.clusters[c.UUID] = c
	}
}

// checkHosts checks the hosts: cluster, states, size, a management address of their own, and
// the capacity of a cluster's local storage on each.
func (v *siteValidator) checkHosts() {
	hostsWithLocal := map[string]bool{}
	hostByIP := map[string]string{}
	for i := range v.site.Hosts {
		h := &v.site.Hosts[i]
		where := fmt.Sprintf("hosts[%d]", i)
		v.uuid(where, h.UUID)
		v.name(where, h.Name)
		c := v.clusters[h.ClusterUUID]
		if c == nil {
			v.addf("%s: clusterUuid %q is not a cluster of this site", where, h.ClusterUUID)
		}
		if !oneOf(h.State, StateEnabled, StateDisabled, HostStatePreMaintenance, HostStateMaintenance) {
			v.addf("%s: state %q must be Enabled, Disabled, PreMaintenance or Maintenance", where, h.State)
		}
		if !oneOf(h.Status, StatusConnected, StatusDisconnected, StatusConnecting) {
			v.addf("%s: status %q must be Connected, Disconnected or Connecting", where, h.Status)
		}
		if h.CPUNum <= 0 || h.CPUNum > 1<<16 {
			v.addf("%s: cpuNum must be between 1 and 65536", where)
		}
		if h.MemorySize <= 0 {
			v.addf("%s: memorySize must be positive", where)
		}
		if h.ManagementIP != "" {
			if a, err := netip.ParseAddr(h.ManagementIP); err != nil || !a.Is4() {
				v.addf("%s: managementIp %q is not an IPv4 address", where, h.ManagementIP)
			} else if other, dup := hostByIP[h.ManagementIP]; dup {
				v.addf("%s: managementIp %s is already the address of %s; workers and libvirt connections find hosts by it", where, h.ManagementIP, other)
			} else {
				hostByIP[h.ManagementIP] = where
			}
		}
		if h.CPUOverProvisioningRatio < 0 || h.MemoryOverProvisioningRatio < 0 || h.ReservedMemory < 0 || h.LocalStorageCapacity < 0 {
			v.addf("%s: ratios, reserved memory and capacities cannot be negative", where)
		}
		if c != nil {
			for _, psu := range c.PrimaryStorageUUIDs {
				if ps := v.pss[psu]; ps != nil && ps.Type == PSLocalStorage {
					hostsWithLocal[h.UUID] = true
					if h.LocalStorageCapacity == 0 && ps.CapacityPerHost == 0 {
						v.addf("%s: local storage %s needs capacityPerHost or the host's localStorageCapacity", where, ps.UUID)
					}
				}
			}
		}
	}
}

// checkBackupStorages checks the backup storages: directory, states, clone limits, zones.
func (v *siteValidator) checkBackupStorages() {
	for i := range v.site.BackupStorages {
		b := &v.site.BackupStorages[i]
		where := fmt.Sprintf("backupStorages[%d]", i)
		v.uuid(where, b.UUID)
		v.name(where, b.Name)
		v.dir(where, b.URL)
		if !oneOf(b.State, StateEnabled, StateDisabled) {
			v.addf("%s: state %q must be Enabled or Disabled", where, b.State)
		}
		if !oneOf(b.Status, StatusConnected, StatusDisconnected, StatusConnecting) {
			v.addf("%s: status %q must be Connected, Disconnected or Connecting", where, b.Status)
		}
		if b.MaxConcurrentClones < 0 || b.MaxConcurrentClones > 1024 {
			v.addf("%s: maxConcurrentClones must be between 1 and 1024", where)
		}
		if b.BandwidthBytesPerSecond < 0 {
			v.addf("%s: bandwidthBytesPerSecond cannot be negative", where)
		}
		for _, z := range b.ZoneUUIDs {
			if v.zones[z] == nil {
				v.addf("%s: zoneUuids: %q is not a zone of this site", where, z)
			}
		}
	}
}

// checkL3Networks checks the L3 networks: L2, IPv4, strategy, DNS, and ranges that do not overlap.
func (v *siteValidator) checkL3Networks() {
	for i := range v.site.L3Networks {
		l3 := &v.site.L3Networks[i]
		where := fmt.Sprintf("l3Networks[%d]", i)
		v.uuid(where, l3.UUID)
		v.name(where, l3.Name)
		if v.l2s[l3.L2NetworkUUID] == nil {
			v.addf("%s: l2NetworkUuid %q is not an L2 network of this site", where, l3.L2NetworkUUID)
		}
		if l3.IPVersion != 4 {
			v.addf("%s: ipVersion %d is not supported (IPv4 only)", where, l3.IPVersion)
		}
		if !oneOf(l3.State, StateEnabled, StateDisabled) {
			v.addf("%s: state %q must be Enabled or Disabled", where, l3.State)
		}
		if !oneOf(l3.IPAllocatorStrategy, IPRandom, IPFirstAvailable) {
			v.addf("%s: ipAllocatorStrategy %q must be %s or %s", where, l3.IPAllocatorStrategy, IPRandom, IPFirstAvailable)
		}
		for _, d := range l3.DNS {
			if _, err := netip.ParseAddr(d); err != nil {
				v.addf("%s: dns %q is not an IP address", where, d)
			}
		}
		var parsed []Range
		for j := range l3.IPRanges {
			r := &l3.IPRanges[j]
			rw := fmt.Sprintf("%s.ipRanges[%d]", where, j)
			v.uuid(rw, r.UUID)
			pr, err := ParseRange(*r)
			if err != nil {
				v.addf("%s: %v", rw, err)
				continue
			}
			for _, other := range parsed {
				if pr.Start <= other.End && other.Start <= pr.End {
					v.addf("%s: range %s-%s overlaps range %s of the same L3 network", rw, r.StartIP, r.EndIP, other.UUID)
				}
			}
			parsed = append(parsed, pr)
		}
	}
}

// checkInstanceOfferings checks the instance offerings: size and allocator strategies.
func (v *siteValidator) checkInstanceOfferings() {
	for i := range v.site.InstanceOfferings {
		o := &v.site.InstanceOfferings[i]
		where := fmt.Sprintf("instanceOfferings[%d]", i)
		v.uuid(where, o.UUID)
		v.name(where, o.Name)
		if o.CPUNum <= 0 || o.CPUNum > 1024 {
			v.addf("%s: cpuNum must be between 1 and 1024", where)
		}
		if o.MemorySize <= 0 {
			v.addf("%s: memorySize must be positive", where)
		}
		if o.ReservedMemorySize < 0 || o.ReservedMemorySize > o.MemorySize {
			v.addf("%s: reservedMemorySize must be between 0 and memorySize", where)
		}
		if !oneOf(o.AllocatorStrategy, HostDefault, HostLeastVmPreferred, HostLastHostPreferred, HostDesignated) {
			v.addf("%s: allocatorStrategy %q is not one of %s, %s, %s, %s", where, o.AllocatorStrategy,
				HostDefault, HostLeastVmPreferred, HostLastHostPreferred, HostDesignated)
		}
		if !oneOf(o.PrimaryStorageAllocatorStrategy, PSDefault, PSLeastVolume, PSMaximumAvailable) {
			v.addf("%s: primaryStorageAllocatorStrategy %q is not one of %s, %s, %s", where,
				o.PrimaryStorageAllocatorStrategy, PSDefault, PSLeastVolume, PSMaximumAvailable)
		}
		if !oneOf(o.Type, "UserVm", "ApplianceVm") {
			v.addf("%s: type %q must be UserVm or ApplianceVm", where, o.Type)
		}
		if !oneOf(o.State, StateEnabled, StateDisabled) {
			v.addf("%s: state %q must be Enabled or Disabled", where, o.State)
		}
	}
}

// checkAccounts checks the site file's accounts: unique names, types, argon2id hashes, not admin.
func (v *siteValidator) checkAccounts() {
	names := map[string]bool{}
	for i := range v.site.Accounts {
		a := &v.site.Accounts[i]
		where := fmt.Sprintf("accounts[%d]", i)
		v.uuid(where, a.UUID)
		v.name(where, a.Name)
		if names[a.Name] {
			v.addf("%s: account name %q is used twice", where, a.Name)
		}
		names[a.Name] = true
		if !oneOf(a.Type, AccountNormal, AccountSystemAdmin) {
			v.addf("%s: type %q must be Normal or SystemAdmin", where, a.Type)
		}
		if a.Name == "admin" {
			v.addf("%s: the admin account is managed by VMRESTORE_ADMIN_PASSWORD, not by the site file", where)
		}
		if !strings.HasPrefix(a.PasswordHash, "$argon2id$") {
			v.addf("%s: passwordHash must be an argon2id hash made by `vmrestore-api hash-password` (see docs/security.md)", where)
		}
	}
}

// validInterfaceName reports whether s can name a Linux network interface: the bridge a NIC
// joins is named after it (br_<physicalInterface>).
func validInterfaceName(s string) bool {
	if s == "" || len(s) > 15 || s == "." || s == ".." {
		return false
	}
	for _, c := range s {
		if c <= ' ' || c == '/' || c == ':' || c > '~' {
			return false
		}
	}
	return true
}
