package hypervisor_test

import (
	"flag"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/vmrestore/vmrestore/internal/hypervisor"
	"github.com/vmrestore/vmrestore/internal/testenv"
)

var update = flag.Bool("update", false, "rewrite the golden domain XML files")

// goldenVM is a restored VM with a root and two data volumes (listed out of order) and two
// NICs, one on a VLAN bridge.
func goldenVM(platform string, cpus int64) *hypervisor.VM {
	return &hypervisor.VM{
		UUID: "5bd5b3b2e7c74b5e9b1d6c0a3f2e1d0c", Name: "web01 restored", InternalID: 42, CPUNum: cpus, MemorySize: 2 << 30,
		Platform: platform, JobUUID: "0f1e2d3c4b5a69788796a5b4c3d2e1f0", GroupUUID: "6e0c3b6a1f2d4c5b8a9e7d6c5b4a3f21",
		Host: hypervisor.Host{UUID: "e18cf66eedb3306686a1d4685bbb63af", Name: "host-a1", ManagementIP: "172.20.0.11"},
		Disks: []hypervisor.Disk{
			{VolumeUUID: "d2", DeviceID: 2, Path: "/nfs/dataVolumes/acct-a/vol-d2/d2.raw", Format: "raw"},
			{VolumeUUID: "r0", DeviceID: 0, Path: "/nfs/rootVolumes/acct-a/vol-r0/r0.qcow2", Format: "qcow2", Root: true},
			{VolumeUUID: "d1", DeviceID: 1, Path: "/nfs/dataVolumes/acct-a/vol-d1/d1.qcow2", Format: "qcow2"},
		},
		NICs: []hypervisor.NIC{
			{DeviceID: 0, MAC: "fa:16:3e:00:00:01", Bridge: hypervisor.BridgeName("eth0", 0), Model: "virtio", InternalName: "vnic42.0"},
			{DeviceID: 1, MAC: "fa:16:3e:00:00:02", Bridge: hypervisor.BridgeName("bond0.100", 0), Model: "e1000", InternalName: "vnic42.1"},
			{DeviceID: 2, MAC: "fa:16:3e:00:00:03", Bridge: hypervisor.BridgeName("enp129s0f1", 2001), Model: "", InternalName: "vnic42.2"},
		},
	}
}

// TestDomainXMLGolden pins the domain each platform gets. The strategies share it:
// CreateStopped defines this domain, InstantStart defines and starts it, and JustCreate
// builds none. Run with -update to rewrite the files after an intended change.
func TestDomainXMLGolden(t *testing.T) {
	cases := []struct {
		file, platform, domainType string
		cpus                       int64
		instant                    bool
	}{
		{"linux-kvm.xml", hypervisor.PlatformLinux, hypervisor.DomainKVM, 4, false},
		{"linux-qemu.xml", hypervisor.PlatformLinux, hypervisor.DomainQEMU, 1, false},
		{"paravirtualization.xml", hypervisor.PlatformParavirtualization, hypervisor.DomainKVM, 2, false},
		{"windows.xml", hypervisor.PlatformWindows, hypervisor.DomainKVM, 4, false},
		{"windows-odd-cpus.xml", hypervisor.PlatformWindows, hypervisor.DomainKVM, 3, false},
		{"windowsvirtio.xml", hypervisor.PlatformWindowsVirtio, hypervisor.DomainKVM, 2, false},
		{"other.xml", hypervisor.PlatformOther, hypervisor.DomainKVM, 1, false},
		// An instant restore: qcow2 overlays whose backups are their backing stores, which
		// libvirt must not relabel.
		{"linux-instant.xml", hypervisor.PlatformLinux, hypervisor.DomainKVM, 2, true},
	}
	for _, c := range cases {
		t.Run(c.file, func(t *testing.T) {
			vm := goldenVM(c.platform, c.cpus)
			if c.instant {
				for i, d := range vm.Disks {
					vm.Disks[i].BackingPath, vm.Disks[i].BackingFormat = "/backup/vm-backups/g/"+d.VolumeUUID+"."+d.Format, d.Format
					vm.Disks[i].Path, vm.Disks[i].Format = strings.TrimSuffix(d.Path, "."+d.Format)+".qcow2", "qcow2"
				}
			}
			got, err := hypervisor.DomainXML(vm, c.domainType)
			if err != nil {
				t.Fatal(err)
			}
			path := filepath.Join("testdata", c.file)
			if *update {
				if err := os.WriteFile(path, []byte(got+"\n"), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			want, err := os.ReadFile(path)
			if err != nil {
				t.Fatalf("%v (run go test ./internal/hypervisor -run Golden -update to create it)", err)
			}
			if got+"\n" != string(want) {
				t.Fatalf("domain XML of %s differs from %s:\n%s", c.platform, path, got)
			}
		})
	}
}

// TestDomainXMLValidatesAgainstLibvirtSchema checks every golden file with libvirt's own
// schema (virt-xml-validate, from libvirt-clients).
func TestDomainXMLValidatesAgainstLibvirtSchema(t *testing.T) {
	validate := testenv.LookPath(t, "virt-xml-validate", "install libvirt-clients (apt-get install libvirt-clients)")
	testenv.LookPath(t, "xmllint", "virt-xml-validate runs it; install libxml2-utils")
	files, _ := filepath.Glob(filepath.Join("testdata", "*.xml"))
	if len(files) == 0 {
		t.Fatal("no golden files")
	}
	for _, f := range files {
		out, err := exec.Command(validate, f, "domain").CombinedOutput()
		if err != nil {
			t.Fatalf("%s does not validate: %v\n%s", f, err, out)
		}
	}
}

func TestDomainXMLDetails(t *testing.T) {
	linux, err := hypervisor.DomainXML(goldenVM(hypervisor.PlatformLinux, 2), hypervisor.DomainKVM)
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{
		"<name>5bd5b3b2e7c74b5e9b1d6c0a3f2e1d0c</name>", "<uuid>5bd5b3b2-e7c7-4b5e-9b1d-6c0a3f2e1d0c</uuid>",
		"<title>web01 restored</title>", `<target dev="vda" bus="virtio">`, `<target dev="vdb" bus="virtio">`,
		`<target dev="vdd" bus="virtio">`, `type="qcow2" cache="none" discard="unmap"`, `<source bridge="br_eth0">`,
		`<source bridge="br_bond0_100">`, `<source bridge="br_enp129s_2001">`, `<target dev="vnic42.1">`,
		`<model type="e1000">`, `<clock offset="utc">`, `name="org.qemu.guest_agent.0"`,
	} {
		if !strings.Contains(linux, want) {
			t.Errorf("Linux domain lacks %s", want)
		}
	}
	// The root disk comes first: vda before vdb before vdd.
	if a, b := strings.Index(linux, `dev="vda"`), strings.Index(linux, `dev="vdd"`); a > b {
		t.Error("disks are not in deviceId order")
	}
	win, _ := hypervisor.DomainXML(goldenVM(hypervisor.PlatformWindows, 4), hypervisor.DomainKVM)
	for _, want := range []string{`<target dev="hda" bus="ide">`, `<clock offset="localtime">`, `<topology sockets="2" cores="2" threads="1">`} {
		if !strings.Contains(win, want) {
			t.Errorf("Windows domain lacks %s", want)
		}
	}

	bad := []func(vm *hypervisor.VM){
		func(vm *hypervisor.VM) { vm.UUID = "not-a-uuid" },
		func(vm *hypervisor.VM) { vm.CPUNum = 0 },
		func(vm *hypervisor.VM) { vm.Disks[0].Format = "vmdk" },
		func(vm *hypervisor.VM) { vm.Disks[0].DeviceID = 1 },
		func(vm *hypervisor.VM) { vm.Disks[0].DeviceID = 25 },
		func(vm *hypervisor.VM) { vm.NICs[0].Bridge = "" },
	}
	for i, mod := range bad {
		vm := goldenVM(hypervisor.PlatformLinux, 1)
		mod(vm)
		if _, err := hypervisor.DomainXML(vm, hypervisor.DomainKVM); err == nil {
			t.Errorf("case %d: a bad VM was accepted", i)
		}
	}
	if _, err := hypervisor.DomainXML(goldenVM(hypervisor.PlatformLinux, 1), "xen"); err == nil {
		t.Error("domain type xen accepted")
	}
}
