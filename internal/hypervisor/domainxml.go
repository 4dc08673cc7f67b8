package hypervisor

import (
	"encoding/xml"
	"fmt"
	"sort"
	"strings"

	"libvirt.org/go/libvirtxml"
)

// Domain types: kvm in production, qemu (TCG emulation) where there is no /dev/kvm.
const (
	DomainKVM  = "kvm"
	DomainQEMU = "qemu"
)

// ZStack's image platforms, which decide the devices a guest gets.
const (
	PlatformLinux              = "Linux"
	PlatformWindows            = "Windows"
	PlatformWindowsVirtio      = "WindowsVirtio"
	PlatformParavirtualization = "Paravirtualization"
	PlatformOther              = "Other"
)

// Namespaces of the domain's metadata: ZStack's own (so that a ZStack KVM agent recognises
// the domain) and vmrestore's (which restore made it).
const (
	zstackNamespace    = "http://zstack.org"
	vmrestoreNamespace = "https://github.com/vmrestore/vmrestore/xmlns/restore/1"
)

// GuestAgentChannel is the virtio-serial channel the QEMU guest agent listens on.
const GuestAgentChannel = "org.qemu.guest_agent.0"

// deviceLetters name disks by deviceId, as ZStack does: 'c' is kept for the CD-ROM, so
// deviceId 0 is vda, 1 vdb, 2 vdd.
const deviceLetters = "abdefghijklmnopqrstuvwxyz"

// Paravirtual reports whether a platform's guest has virtio drivers (ZStack's
// ImagePlatform.isParaVirtualization).
func Paravirtual(platform string) bool {
	switch platform {
	case PlatformLinux, PlatformWindowsVirtio, PlatformParavirtualization:
		return true
	}
	return false
}

func windows(platform string) bool {
	return platform == PlatformWindows || platform == PlatformWindowsVirtio
}

// BridgeName is the host bridge of an L2 network, as ZStack's KVM agent names it:
// br_<physicalInterface> ('.' becomes '_'), or br_<first 7 characters>_<vlan> for a VLAN
// network (a Linux interface name has at most 15 characters).
func BridgeName(physicalInterface string, vlan int) string {
	if vlan > 0 {
		return fmt.Sprintf("br_%s_%d", physicalInterface[:min(len(physicalInterface), 7)], vlan)
	}
	return "br_" + strings.ReplaceAll(physicalInterface, ".", "_")
}

// DomainXML builds the libvirt domain of vm the way ZStack's KVM agent does for a started
// VM: name and uuid from the VM uuid, title and description from its name, vCPUs and memory,
// the platform's bus and clock, disks in deviceId order with the recorded format and
// discard=unmap, bridged NICs with their MAC, model and tap name, a serial console, the
// guest agent channel, a memory balloon and a VNC display.
func DomainXML(vm *VM, domainType string) (string, error) {
	if domainType != DomainKVM && domainType != DomainQEMU {
		return "", fmt.Errorf("domain type %q must be kvm or qemu", domainType)
	}
	uuid, err := dashedUUID(vm.UUID)
	if err != nil {
		return "", err
	}
	if vm.CPUNum <= 0 || vm.MemorySize <= 0 {
		return "", fmt.Errorf("vm %s has %d vCPUs and %d bytes of memory; both must be positive", vm.UUID, vm.CPUNum, vm.MemorySize)
	}
	virtio := Paravirtual(vm.Platform)
	title := strings.Join(strings.Fields(vm.Name), " ")
	memKiB := uint((vm.MemorySize + 1023) / 1024)
	sockets, cores := topology(vm.Platform, int(vm.CPUNum))
	port0 := uint(0)

	d := &libvirtxml.Domain{
		Type: domainType, Name: vm.UUID, UUID: uuid, Title: title, Description: vm.Name,
		Metadata:      &libvirtxml.DomainMetadata{XML: metadataXML(vm)},
		Memory:        &libvirtxml.DomainMemory{Value: memKiB, Unit: "KiB"},
		CurrentMemory: &libvirtxml.DomainCurrentMemory{Value: memKiB, Unit: "KiB"},
		VCPU:          &libvirtxml.DomainVCPU{Placement: "static", Value: uint(vm.CPUNum)},
		CPU:           &libvirtxml.DomainCPU{Topology: &libvirtxml.DomainCPUTopology{Sockets: sockets, Cores: cores, Threads: 1}},
		OS: &libvirtxml.DomainOS{
			Type:        &libvirtxml.DomainOSType{Type: "hvm", Machine: "pc"},
			BootDevices: []libvirtxml.DomainBootDevice{{Dev: "hd"}},
			BootMenu:    &libvirtxml.DomainBootMenu{Enable: "yes"},
		},
		Features: &libvirtxml.DomainFeatureList{
			ACPI: &libvirtxml.DomainFeature{}, APIC: &libvirtxml.DomainFeatureAPIC{}, PAE: &libvirtxml.DomainFeature{},
		},
		Clock:      clock(vm.Platform),
		OnPoweroff: "destroy", OnReboot: "restart", OnCrash: "restart",
		Devices: &libvirtxml.DomainDeviceList{
			Inputs: []libvirtxml.DomainInput{{Type: "tablet", Bus: "usb"}},
			Serials: []libvirtxml.DomainSerial{{
				Source: &libvirtxml.DomainChardevSource{Pty: &libvirtxml.DomainChardevSourcePty{}},
				Target: &libvirtxml.DomainSerialTarget{Port: &port0},
			}},
			Consoles: []libvirtxml.DomainConsole{{
				Source: &libvirtxml.DomainChardevSource{Pty: &libvirtxml.DomainChardevSourcePty{}},
				Target: &libvirtxml.DomainConsoleTarget{Type: "serial", Port: &port0},
			}},
			Channels: []libvirtxml.DomainChannel{{
				Source: &libvirtxml.DomainChardevSource{UNIX: &libvirtxml.DomainChardevSourceUNIX{Mode: "bind"}},
				Target: &libvirtxml.DomainChannelTarget{VirtIO: &libvirtxml.DomainChannelTargetVirtIO{Name: GuestAgentChannel}},
			}},
			Graphics: []libvirtxml.DomainGraphic{{VNC: &libvirtxml.DomainGraphicVNC{
				Port: -1, AutoPort: "yes",
				Listeners: []libvirtxml.DomainGraphicListener{{Address: &libvirtxml.DomainGraphicListenerAddress{Address: "0.0.0.0"}}},
			}}},
			MemBalloon: &libvirtxml.DomainMemBalloon{Model: "virtio", Stats: &libvirtxml.DomainMemBalloonStats{Period: 10}},
		},
	}

	disks := append([]Disk(nil), vm.Disks...)
	sort.SliceStable(disks, func(a, b int) bool { return disks[a].DeviceID < disks[b].DeviceID })
	seen := map[int]bool{}
	for _, disk := range disks {
		if disk.DeviceID < 0 || disk.DeviceID >= len(deviceLetters) {
			return "", fmt.Errorf("volume %s has deviceId %d; a VM takes at most %d disks (deviceId 0 to %d)", disk.VolumeUUID, disk.DeviceID, len(deviceLetters), len(deviceLetters)-1)
		}
		if seen[disk.DeviceID] {
			return "", fmt.Errorf("two volumes have deviceId %d", disk.DeviceID)
		}
		seen[disk.DeviceID] = true
		if disk.Format != "qcow2" && disk.Format != "raw" {
			return "", fmt.Errorf("volume %s has format %q; the hypervisor takes qcow2 or raw", disk.VolumeUUID, disk.Format)
		}
		if disk.Instant() && (disk.Format != "qcow2" || disk.BackingFormat != "qcow2" && disk.BackingFormat != "raw") {
			return "", fmt.Errorf("volume %s runs from a %s overlay over a %q backup; an overlay is qcow2 over a qcow2 or raw backup", disk.VolumeUUID, disk.Format, disk.BackingFormat)
		}
		dev, bus := DiskTarget(disk, vm.Platform)
		d.Devices.Disks = append(d.Devices.Disks, libvirtxml.DomainDisk{
			Device: "disk", Snapshot: "external",
			Driver:       &libvirtxml.DomainDiskDriver{Name: "qemu", Type: disk.Format, Cache: "none", Discard: "unmap"},
			Source:       &libvirtxml.DomainDiskSource{File: &libvirtxml.DomainDiskSourceFile{File: disk.Path}},
			BackingStore: backingStore(disk),
			Target:       &libvirtxml.DomainDiskTarget{Dev: dev, Bus: bus},
		})
	}
	for _, n := range vm.NICs {
		if n.Bridge == "" || n.MAC == "" || n.InternalName == "" {
			return "", fmt.Errorf("NIC %d needs a bridge, a MAC and an internal name", n.DeviceID)
		}
		model := n.Model
		if model == "" {
			model = "e1000"
			if virtio {
				model = "virtio"
			}
		}
		d.Devices.Interfaces = append(d.Devices.Interfaces, libvirtxml.DomainInterface{
			MAC:    &libvirtxml.DomainInterfaceMAC{Address: n.MAC},
			Source: &libvirtxml.DomainInterfaceSource{Bridge: &libvirtxml.DomainInterfaceSourceBridge{Bridge: n.Bridge}},
			Target: &libvirtxml.DomainInterfaceTarget{Dev: n.InternalName},
			Model:  &libvirtxml.DomainInterfaceModel{Type: model},
		})
	}
	return d.Marshal()
}

// DiskTarget is a disk's device name and bus: vd<letter> on virtio, except the root volume
// of a platform without virtio drivers, hd<letter> on IDE (as ZStack does: every data volume
// is on virtio). The letter comes from the deviceId (see deviceLetters).
func DiskTarget(disk Disk, platform string) (dev, bus string) {
	letter := deviceLetters[disk.DeviceID : disk.DeviceID+1]
	if disk.Root && !Paravirtual(platform) {
		return "hd" + letter, "ide"
	}
	return "vd" + letter, "virtio"
}

// backingStore is the backing chain of an instant restore's overlay, written out rather than
// left for libvirt to probe: the backup file, which libvirt must never relabel (without
// relabel='no' it chowns the backup to the qemu user and never gives it back), then the end
// of the chain. Always generated: a definition libvirt saved after a pull has an empty
// <backingStore/>, and a guest started from it while the overlay still had a backing file
// would see zeros where its data is.
func backingStore(disk Disk) *libvirtxml.DomainDiskBackingStore {
	if !disk.Instant() {
		return nil
	}
	return &libvirtxml.DomainDiskBackingStore{
		Format: &libvirtxml.DomainDiskFormat{Type: disk.BackingFormat},
		Source: &libvirtxml.DomainDiskSource{File: &libvirtxml.DomainDiskSourceFile{
			File:     disk.BackingPath,
			SecLabel: []libvirtxml.DomainDeviceSecLabel{{Model: "dac", Relabel: "no"}},
		}},
		BackingStore: &libvirtxml.DomainDiskBackingStore{},
	}
}

// topology is ZStack's: Windows guests get 1, 2 or cpuNum sockets (client editions count
// sockets), every other guest one socket of cpuNum cores.
func topology(platform string, cpus int) (sockets, cores int) {
	if !windows(platform) {
		return 1, cpus
	}
	switch {
	case cpus == 1:
		return 1, 1
	case cpus%2 == 0:
		return 2, cpus / 2
	}
	return cpus, 1
}

// clock is UTC, or local time with Windows' timers for Windows guests.
func clock(platform string) *libvirtxml.DomainClock {
	if !windows(platform) {
		return &libvirtxml.DomainClock{Offset: "utc"}
	}
	return &libvirtxml.DomainClock{Offset: "localtime", Timer: []libvirtxml.DomainTimer{
		{Name: "rtc", TickPolicy: "catchup"},
		{Name: "pit", TickPolicy: "delay"},
		{Name: "hpet", Present: "no"},
		{Name: "hypervclock", Present: "yes"},
	}}
}

func metadataXML(vm *VM) string {
	esc := func(s string) string {
		var b strings.Builder
		_ = xml.EscapeText(&b, []byte(s))
		return b.String()
	}
	var b strings.Builder
	fmt.Fprintf(&b, `<zs:zstack xmlns:zs="%s"><internalId>%d</internalId><hostManagementIp>%s</hostManagementIp></zs:zstack>`,
		zstackNamespace, vm.InternalID, esc(vm.Host.ManagementIP))
	fmt.Fprintf(&b, `<vmrestore:restore xmlns:vmrestore="%s"><job>%s</job><group>%s</group><host>%s</host></vmrestore:restore>`,
		vmrestoreNamespace, esc(vm.JobUUID), esc(vm.GroupUUID), esc(vm.Host.UUID))
	return b.String()
}

// dashedUUID turns ZStack's 32 hex characters into the 8-4-4-4-12 form libvirt uses.
func dashedUUID(u string) (string, error) {
	if len(u) != 32 {
		return "", fmt.Errorf("vm uuid %q is not 32 hex characters", u)
	}
	for _, c := range u {
		if !(c >= '0' && c <= '9' || c >= 'a' && c <= 'f') {
			return "", fmt.Errorf("vm uuid %q is not 32 lowercase hex characters", u)
		}
	}
	return u[:8] + "-" + u[8:12] + "-" + u[12:16] + "-" + u[16:20] + "-" + u[20:], nil
}
