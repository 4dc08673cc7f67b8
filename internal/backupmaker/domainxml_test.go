package backupmaker

import (
	"strings"
	"testing"

	"github.com/vmrestore/vmrestore/internal/backup"
)

const l3a, l3b = "d50554f493153be78f6740e18e598046", "0c9b2b6f1e8a4d1c9e0f5a6b7c8d9e0f"

// webXML is a domain with a CD-ROM, a data disk listed first and a root disk that boots
// first, and two NICs: one on a bridge, one on a libvirt network.
const webXML = `<domain type='qemu'>
  <name>web01</name><uuid>6f0c6d2e-4b1a-4a55-9a43-3f1d2c3b4a59</uuid>
  <description>the web server</description>
  <memory unit='KiB'>2097152</memory><vcpu placement='static' current='2'>4</vcpu>
  <os><type arch='x86_64' machine='pc'>hvm</type></os>
  <devices>
    <disk type='file' device='cdrom'><driver name='qemu' type='raw'/><source file='/iso/debian.iso'/><target dev='hdc' bus='ide'/></disk>
    <disk type='file' device='disk'><driver name='qemu' type='raw'/><source file='/vm/web01-data.raw'/><target dev='vdb' bus='virtio'/></disk>
    <disk type='file' device='disk'><driver name='qemu' type='qcow2'/><source file='/vm/web01.qcow2'/><target dev='vda' bus='virtio'/><boot order='1'/></disk>
    <interface type='bridge'><mac address='52:54:00:AA:BB:01'/><source bridge='br0'/><model type='e1000'/></interface>
    <interface type='network'><mac address='52:54:00:aa:bb:02'/><source network='default'/></interface>
  </devices>
</domain>`

// A domain's XML gives the VM and its disks: the boot disk is the root, CD-ROMs are left
// out, NICs are mapped by MAC or by what they are plugged into.
func TestDescribeDomain(t *testing.T) {
	nics := map[string]NicTarget{"52:54:00:aa:bb:01": {L3NetworkUUID: l3a, IP: "10.0.0.5"}, "default": {L3NetworkUUID: l3b}, "br0": {L3NetworkUUID: l3b}}
	vm, disks, skipped, err := describeDomain(webXML, nics, "Linux")
	if err != nil {
		t.Fatal(err)
	}
	if vm.Name != "web01" || vm.UUID != "6f0c6d2e4b1a4a559a433f1d2c3b4a59" || vm.CPUNum != 2 || vm.MemorySize != 2<<30 ||
		vm.Architecture != "x86_64" || vm.Description != "the web server" || vm.Platform != "Linux" {
		t.Fatalf("vm %+v", vm)
	}
	if len(disks) != 2 || disks[0].Target != "vda" || disks[0].Type != backup.VolumeRoot || disks[0].Format != "qcow2" ||
		disks[1].Target != "vdb" || disks[1].Type != backup.VolumeData || disks[1].Source != "/vm/web01-data.raw" {
		t.Fatalf("disks %+v", disks)
	}
	if len(skipped) != 1 || skipped[0] != "hdc" {
		t.Fatalf("skipped %v", skipped)
	}
	want := []backup.SourceNic{{L3NetworkUUID: l3a, Mac: "52:54:00:aa:bb:01", IP: "10.0.0.5", DeviceID: 0, DriverType: "e1000"},
		{L3NetworkUUID: l3b, Mac: "52:54:00:aa:bb:02", DeviceID: 1, DriverType: "virtio"}}
	if len(vm.Nics) != 2 || vm.Nics[0] != want[0] || vm.Nics[1] != want[1] {
		t.Fatalf("nics %+v", vm.Nics)
	}
}

// What cannot be backed up, or not recorded, is refused with what to do.
func TestDescribeDomainRefuses(t *testing.T) {
	all := map[string]NicTarget{"br0": {L3NetworkUUID: l3a}, "default": {L3NetworkUUID: l3a}}
	for _, c := range []struct {
		name, xml string
		nics      map[string]NicTarget
		want      []string
	}{
		{"unmapped NIC", webXML, map[string]NicTarget{"br0": {L3NetworkUUID: l3a}}, []string{"1 NIC(s) are not mapped", "mac 52:54:00:aa:bb:02 on default", "--nic-l3 default=<l3NetworkUuid>"}},
		{"no mapping", webXML, nil, []string{"2 NIC(s)", "--nic-l3 52:54:00:aa:bb:01=<l3NetworkUuid>"}},
		{"network disk", strings.Replace(webXML, `<disk type='file' device='disk'><driver name='qemu' type='raw'/><source file='/vm/web01-data.raw'/>`,
			`<disk type='network' device='disk'><driver name='qemu' type='raw'/><source protocol='rbd' name='pool/web01-data'><host name='10.0.0.9'/></source>`, 1),
			all, []string{"disk vdb is on the network (rbd pool/web01-data)", "only disks that are files or block devices"}},
		{"pool volume", strings.Replace(webXML, `<disk type='file' device='disk'><driver name='qemu' type='raw'/><source file='/vm/web01-data.raw'/>`,
			`<disk type='volume' device='disk'><driver name='qemu' type='raw'/><source pool='default' volume='data.raw'/>`, 1),
			all, []string{"disk vdb is the volume data.raw of the storage pool default", "virsh vol-path"}},
		{"vmdk", strings.Replace(webXML, `type='qcow2'`, `type='vmdk'`, 1), all, []string{`disk vda (/vm/web01.qcow2) has the format "vmdk"`}},
		{"cdrom only", `<domain><name>x</name><memory>1024</memory><vcpu>1</vcpu><devices><disk type='file' device='cdrom'><source file='/a.iso'/><target dev='hdc'/></disk></devices></domain>`,
			nil, []string{"domain x has no disk to back up"}},
		{"no vcpu", `<domain><name>x</name><memory>1024</memory></domain>`, nil, []string{"no vCPU count or memory size"}},
		{"not xml", `<domain`, nil, []string{"does not parse"}},
	} {
		_, _, _, err := describeDomain(c.xml, c.nics, "Linux")
		for _, w := range c.want {
			if err == nil || !strings.Contains(err.Error(), w) {
				t.Errorf("%s: %v, want %q", c.name, err, w)
			}
		}
	}
}

func TestParseNicMapping(t *testing.T) {
	key, nt, err := ParseNicMapping("52:54:00:AA:BB:01=" + l3a + ",10.0.0.5")
	if err != nil || key != "52:54:00:aa:bb:01" || nt.L3NetworkUUID != l3a || nt.IP != "10.0.0.5" {
		t.Fatalf("%q %+v %v", key, nt, err)
	}
	if key, nt, err := ParseNicMapping("br0=" + l3a); err != nil || key != "br0" || nt.IP != "" {
		t.Fatalf("%q %+v %v", key, nt, err)
	}
	for _, bad := range []string{"br0", "=" + l3a, "br0=nope", "br0=" + l3a + ",10.0.0", "br0=" + l3a + ",::1"} {
		if _, _, err := ParseNicMapping(bad); err == nil {
			t.Errorf("%q was accepted", bad)
		}
	}
}

// The domain's XML comes from libvirt, where anyone allowed to define domains writes it:
// no XML crashes the backup.
func FuzzDescribeDomain(f *testing.F) {
	f.Add(webXML)
	f.Add(`<domain><name>x</name><memory unit='zz'>1</memory><vcpu>1</vcpu><devices><disk><source/></disk><interface/></devices></domain>`)
	f.Fuzz(func(t *testing.T, xml string) {
		_, disks, _, err := describeDomain(xml, map[string]NicTarget{"br0": {L3NetworkUUID: l3a}}, "Linux")
		if err == nil && (len(disks) == 0 || disks[0].Type != backup.VolumeRoot) {
			t.Fatalf("accepted without a root disk first: %+v", disks)
		}
	})
}
