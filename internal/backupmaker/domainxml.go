package backupmaker

import (
	"fmt"
	"net/netip"
	"path/filepath"
	"sort"
	"strings"

	"libvirt.org/go/libvirtxml"

	"github.com/vmrestore/vmrestore/internal/backup"
	"github.com/vmrestore/vmrestore/internal/zstack"
)

// NicTarget is the source site's L3 network (and optionally the IP) a domain's NIC is
// recorded on.
type NicTarget struct {
	L3NetworkUUID string
	IP            string
}

// ParseNicMapping parses one --nic-l3 value, <mac|bridge|network>=<l3uuid>[,<ip>]: the key
// is a NIC's MAC, or the bridge or libvirt network it is plugged into.
func ParseNicMapping(v string) (key string, t NicTarget, err error) {
	key, rest, ok := strings.Cut(v, "=")
	key = strings.TrimSpace(key)
	if !ok || key == "" {
		return "", t, fmt.Errorf("%q: expected <mac|bridge|network>=<l3NetworkUuid>[,<ip>]", v)
	}
	l3, ip, _ := strings.Cut(rest, ",")
	t.L3NetworkUUID = strings.TrimSpace(l3)
	if !zstack.IsUUID(t.L3NetworkUUID) {
		return "", t, fmt.Errorf("%q: %q is not an L3 network uuid (32 hex characters)", v, t.L3NetworkUUID)
	}
	if ip = strings.TrimSpace(ip); ip != "" {
		a, err := netip.ParseAddr(ip)
		if err != nil || !a.Is4() {
			return "", t, fmt.Errorf("%q: %q is not an IPv4 address", v, ip)
		}
		t.IP = a.String()
	}
	if mac, err := zstack.NormalizeMac(key); err == nil {
		key = mac
	}
	return key, t, nil
}

// domainDisk is a disk of a domain's XML, before its bytes are reached.
type domainDisk struct {
	Target string // vda, sdb
	Source string // the file (or block device) the domain reads
	Block  bool   // Source is a block device
	Format string // qcow2 or raw
	Type   string // backup.VolumeRoot or backup.VolumeData
}

// describeDomain reads a domain's XML: the VM as a group records it (named after the
// domain), and its disks, root first (the disk booted first: boot order 1, else the first
// disk). Every NIC must be mapped to an L3 network through nics, by MAC or by the bridge or
// network it is plugged into; the error names every NIC that is not.
func describeDomain(xml string, nics map[string]NicTarget, platform string) (vm backup.SourceVM, disks []domainDisk, skipped []string, err error) {
	var d libvirtxml.Domain
	if err := d.Unmarshal(xml); err != nil {
		return vm, nil, nil, fmt.Errorf("the domain's XML does not parse: %v", err)
	}
	vm = backup.SourceVM{Name: d.Name, UUID: strings.ReplaceAll(d.UUID, "-", ""), Description: d.Description, Platform: platform,
		Architecture: "x86_64", Nics: []backup.SourceNic{}}
	if !zstack.IsUUID(vm.UUID) {
		vm.UUID = ""
	}
	if d.OS != nil && d.OS.Type != nil && d.OS.Type.Arch != "" {
		vm.Architecture = d.OS.Type.Arch
	}
	if d.VCPU != nil {
		vm.CPUNum = int64(d.VCPU.Value)
		if d.VCPU.Current > 0 {
			vm.CPUNum = int64(d.VCPU.Current)
		}
	}
	if d.Memory != nil {
		vm.MemorySize = memoryBytes(d.Memory.Value, d.Memory.Unit)
	}
	if vm.CPUNum <= 0 || vm.MemorySize <= 0 {
		return vm, nil, nil, fmt.Errorf("domain %s: its XML gives no vCPU count or memory size", d.Name)
	}
	if d.Devices == nil {
		return vm, nil, nil, fmt.Errorf("domain %s has no devices, so no disk to back up", d.Name)
	}
	disks, skipped, err = domainDisks(d.Name, d.Devices.Disks)
	if err != nil {
		return vm, nil, nil, err
	}
	vm.Nics, err = domainNics(d.Name, d.Devices.Interfaces, nics)
	return vm, disks, skipped, err
}

// memoryBytes converts a libvirt memory amount (default unit KiB) to bytes.
func memoryBytes(v uint, unit string) int64 {
	mult := map[string]int64{"": 1 << 10, "b": 1, "bytes": 1, "k": 1 << 10, "kib": 1 << 10, "kb": 1000, "m": 1 << 20, "mib": 1 << 20,
		"mb": 1000 * 1000, "g": 1 << 30, "gib": 1 << 30, "gb": 1000 * 1000 * 1000, "t": 1 << 40, "tib": 1 << 40}
	return int64(v) * mult[strings.ToLower(unit)]
}

// domainDisks picks the disks (device="disk"; CD-ROMs and floppies are not backed up) and
// refuses those whose bytes are not a file or block device of this machine.
func domainDisks(domain string, all []libvirtxml.DomainDisk) (disks []domainDisk, skipped []string, err error) {
	root := -1
	for _, x := range all {
		if x.Device != "" && x.Device != "disk" {
			if x.Target != nil {
				skipped = append(skipped, x.Target.Dev)
			}
			continue
		}
		dd := domainDisk{Type: backup.VolumeData}
		if x.Target != nil {
			dd.Target = x.Target.Dev
		}
		if x.Driver != nil {
			dd.Format = x.Driver.Type
		}
		switch {
		case x.Source == nil:
			return nil, nil, fmt.Errorf("domain %s: disk %s has no source", domain, dd.Target)
		case x.Source.File != nil:
			dd.Source = x.Source.File.File
		case x.Source.Block != nil:
			dd.Source, dd.Block = x.Source.Block.Dev, true
		case x.Source.Network != nil:
			return nil, nil, fmt.Errorf("domain %s: disk %s is on the network (%s %s); only disks that are files or block devices of this machine can be backed up",
				domain, dd.Target, x.Source.Network.Protocol, x.Source.Network.Name)
		case x.Source.Volume != nil:
			return nil, nil, fmt.Errorf("domain %s: disk %s is the volume %s of the storage pool %s; give the domain the volume's path (virsh vol-path) as a file or block disk to back it up",
				domain, dd.Target, x.Source.Volume.Volume, x.Source.Volume.Pool)
		default:
			return nil, nil, fmt.Errorf("domain %s: disk %s is neither a file nor a block device", domain, dd.Target)
		}
		if dd.Source == "" {
			return nil, nil, fmt.Errorf("domain %s: disk %s has no source file", domain, dd.Target)
		}
		if dd.Format != "qcow2" && dd.Format != "raw" {
			return nil, nil, fmt.Errorf("domain %s: disk %s (%s) has the format %q; only qcow2 and raw disks can be backed up", domain, dd.Target, dd.Source, dd.Format)
		}
		if root < 0 && x.Boot != nil && x.Boot.Order == 1 {
			root = len(disks)
		}
		disks = append(disks, dd)
	}
	if len(disks) == 0 {
		return nil, nil, fmt.Errorf("domain %s has no disk to back up (only CD-ROMs or floppies)", domain)
	}
	if root < 0 {
		root = 0
	}
	disks[root].Type = backup.VolumeRoot
	sort.SliceStable(disks, func(i, j int) bool { return disks[i].Type == backup.VolumeRoot && disks[j].Type != backup.VolumeRoot })
	return disks, skipped, nil
}

// domainNics maps each interface to an L3 network, by MAC first, then by its bridge or
// network; the error lists every NIC left unmapped and the flag that maps it.
func domainNics(domain string, ifaces []libvirtxml.DomainInterface, nics map[string]NicTarget) ([]backup.SourceNic, error) {
	out := []backup.SourceNic{}
	var unmapped []string
	for i, x := range ifaces {
		var mac, plugged, model string
		if x.MAC != nil {
			mac, _ = zstack.NormalizeMac(x.MAC.Address)
		}
		if x.Model != nil {
			model = x.Model.Type
		}
		switch {
		case x.Source == nil:
		case x.Source.Bridge != nil:
			plugged = x.Source.Bridge.Bridge
		case x.Source.Network != nil:
			plugged = x.Source.Network.Network
		case x.Source.Direct != nil:
			plugged = x.Source.Direct.Dev
		}
		t, ok := nics[mac]
		if !ok {
			t, ok = nics[plugged]
		}
		if !ok {
			unmapped = append(unmapped, fmt.Sprintf("NIC %d (mac %s on %s): --nic-l3 %s=<l3NetworkUuid> or --nic-l3 %s=<l3NetworkUuid>",
				i, orNone(mac), orNone(plugged), orNone(mac), orNone(plugged)))
			continue
		}
		if model == "" {
			model = "virtio"
		}
		out = append(out, backup.SourceNic{L3NetworkUUID: t.L3NetworkUUID, Mac: mac, IP: t.IP, DeviceID: i, DriverType: model})
	}
	if len(unmapped) > 0 {
		return nil, fmt.Errorf("domain %s: %d NIC(s) are not mapped to an L3 network of the source site, which a plan's networkMapping needs: %s",
			domain, len(unmapped), strings.Join(unmapped, "; "))
	}
	return out, nil
}

func orNone(s string) string {
	if s == "" {
		return "(none)"
	}
	return s
}

// scratchPath is where the backup job writes a running domain's disk: next to the disk
// (the domain's QEMU can write there), or in scratchDir. The name is fixed per domain and
// disk, so a run after a killed one finds and removes what it left.
func scratchPath(scratchDir, domainUUID string, d domainDisk) string {
	if scratchDir == "" {
		return d.Source + ".vmrestore-backup." + d.Format
	}
	return filepath.Join(scratchDir, fmt.Sprintf("%s-%s.vmrestore-backup.%s", domainUUID, d.Target, d.Format))
}
