package backupmaker

import (
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/digitalocean/go-libvirt"
	"github.com/digitalocean/go-libvirt/socket/dialers"
	"golang.org/x/sys/unix"

	"github.com/vmrestore/vmrestore/internal/diskimage"
)

// DefaultURI is the libvirt of this machine.
const DefaultURI = "qemu:///system"

// Domain is a Source made of a libvirt domain of this machine: its XML gives the VM (named
// after the domain) and its disks; the disks are read on this machine.
//
// A stopped domain's disk files are copied as they are (a disk written meanwhile fails the
// backup: ErrChanged). A running or paused domain is backed up by libvirt's backup job
// (virDomainBackupBegin, push mode): QEMU writes a point-in-time copy of each disk to a
// scratch file while the guest runs on, then the copy goes into the group and the scratch
// files are removed. The domain itself is never changed: no snapshot, overlay or checkpoint
// is made. A run killed mid-way leaves at most the backup job and its scratch files, which
// the next run of the same domain ends and removes.
type Domain struct {
	URI  string // a local libvirt URI; empty is DefaultURI
	Name string // the domain's name or uuid
	// Nics maps a NIC's MAC, or the bridge or network it is plugged into, to the L3 network
	// of the source site it is recorded on. Every NIC must be mapped.
	Nics        map[string]NicTarget
	Platform    string // ZStack's platform; empty is Linux
	GuestOsType string // like "Ubuntu 22.04"; optional
	// ScratchDir holds a running domain's backup job files; empty is next to each disk.
	// The domain's QEMU must be able to write there.
	ScratchDir string
	// JobProgress is called as the backup job of a running domain advances.
	JobProgress func(done, total int64)
	// PollInterval is how often the backup job is looked at; 0 is 250 ms.
	PollInterval time.Duration
}

// Open connects to libvirt, reads the domain and makes its disks readable (see Domain).
func (dm *Domain) Open(ctx context.Context) (snap *Snapshot, err error) {
	if dm.Name == "" {
		return nil, errors.New("the domain to back up (its name or uuid) is required")
	}
	lv, err := dialLocal(dm.URI)
	if err != nil {
		return nil, err
	}
	defer func() {
		if err != nil {
			_ = lv.Disconnect()
		}
	}()
	dom, err := lookupDomain(lv, dm.Name)
	if err != nil {
		return nil, err
	}
	// One backup of a domain at a time: a second run must not end the first one's job.
	lock, err := lockDomain(dom)
	if err != nil {
		return nil, err
	}
	defer func() {
		if err != nil {
			lock.Close()
		}
	}()
	platform := dm.Platform
	if platform == "" {
		platform = "Linux"
	}
	xml, err := lv.DomainGetXMLDesc(dom, 0)
	if err != nil {
		return nil, fmt.Errorf("read the XML of domain %s: %w", dom.Name, err)
	}
	vm, disks, skipped, err := describeDomain(xml, dm.Nics, platform)
	if err != nil {
		return nil, err
	}
	vm.GuestOsType = dm.GuestOsType
	state, _, err := lv.DomainGetState(dom, 0)
	if err != nil {
		return nil, fmt.Errorf("read the state of domain %s: %w", dom.Name, err)
	}
	j := &backupJob{lv: lv, dom: dom, skipped: skipped, scratchDir: dm.ScratchDir, poll: dm.PollInterval, progress: dm.JobProgress}
	if j.poll <= 0 {
		j.poll = 250 * time.Millisecond
	}
	for _, d := range disks {
		j.scratch = append(j.scratch, scratchPath(dm.ScratchDir, vm.UUID, d))
	}
	// What a killed run left (its job, its scratch files) is ended first, whatever the state.
	if err := j.endLeftover(ctx); err != nil {
		return nil, err
	}
	snap = &Snapshot{VM: vm}
	switch libvirt.DomainState(state) {
	case libvirt.DomainShutoff:
		snap.Disks, err = stoppedDisks(ctx, dom.Name, disks)
	case libvirt.DomainRunning, libvirt.DomainPaused, libvirt.DomainBlocked:
		snap.Disks, err = j.run(ctx, disks)
	default:
		err = fmt.Errorf("domain %s is %s; back it up when it is running, paused or shut off", dom.Name, stateWord(state))
	}
	if err != nil {
		return nil, errors.Join(err, j.release(context.WithoutCancel(ctx)))
	}
	snap.Release = func(ctx context.Context) error {
		defer lock.Close()
		defer lv.Disconnect()
		return j.release(ctx)
	}
	return snap, nil
}

// dialLocal connects to a libvirt URI of this machine: the domain's disks are read here.
func dialLocal(uri string) (*libvirt.Libvirt, error) {
	if uri == "" {
		uri = DefaultURI
	}
	u, err := url.Parse(uri)
	if err != nil {
		return nil, fmt.Errorf("libvirt URI %q does not parse: %v", uri, err)
	}
	if u.Scheme != "qemu" && u.Scheme != "qemu+unix" || u.Host != "" {
		return nil, fmt.Errorf("libvirt URI %s: give the libvirt of this machine (qemu:///system or qemu:///session); a domain is backed up on its own host, where its disks are", uri)
	}
	socket := u.Query().Get("socket")
	switch {
	case socket != "":
	case u.Path == "/system":
		socket = "/run/libvirt/libvirt-sock"
	case u.Path == "/session":
		run := os.Getenv("XDG_RUNTIME_DIR")
		if run == "" {
			run = filepath.Join(os.Getenv("HOME"), ".cache")
		}
		socket = filepath.Join(run, "libvirt", "libvirt-sock")
	default:
		return nil, fmt.Errorf("libvirt URI %s: the path must be /system or /session", uri)
	}
	lv := libvirt.NewWithDialer(dialers.NewLocal(dialers.WithSocket(socket), dialers.WithLocalTimeout(10*time.Second)))
	if err := lv.ConnectToURI(libvirt.ConnectURI("qemu://" + u.Path)); err != nil {
		return nil, fmt.Errorf("connect to libvirt at %s (socket %s): %w; is libvirtd running (libvirtd -d, or systemctl start libvirtd) and may this user use it?", uri, socket, err)
	}
	return lv, nil
}

// lookupDomain finds a domain by uuid (with or without dashes), then by name.
func lookupDomain(lv *libvirt.Libvirt, name string) (libvirt.Domain, error) {
	if b, err := hex.DecodeString(strings.ReplaceAll(name, "-", "")); err == nil && len(b) == libvirt.UUIDBuflen {
		var u libvirt.UUID
		copy(u[:], b)
		if d, err := lv.DomainLookupByUUID(u); err == nil {
			return d, nil
		}
	}
	d, err := lv.DomainLookupByName(name)
	if libvirt.IsNotFound(err) {
		return d, fmt.Errorf("libvirt has no domain named %q (nor with that uuid); virsh list --all lists them", name)
	}
	if err != nil {
		return d, fmt.Errorf("look up domain %s: %w", name, err)
	}
	return d, nil
}

// lockDomain takes this machine's lock on backing up the domain; it is released when the
// file is closed, or the process ends.
func lockDomain(dom libvirt.Domain) (*os.File, error) {
	path := filepath.Join(os.TempDir(), fmt.Sprintf("vmrestore-backup-%x.lock", dom.UUID[:]))
	f, err := os.OpenFile(path, os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		return nil, fmt.Errorf("lock the backup of domain %s: %w", dom.Name, err)
	}
	if err := unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB); err != nil {
		f.Close()
		return nil, fmt.Errorf("another backup of domain %s is running on this machine (it holds %s); wait for it to end", dom.Name, path)
	}
	return f, nil
}

func stateWord(s int32) string {
	switch libvirt.DomainState(s) {
	case libvirt.DomainShutdown:
		return "shutting down"
	case libvirt.DomainCrashed:
		return "crashed"
	case libvirt.DomainPmsuspended:
		return "suspended by guest power management"
	}
	return fmt.Sprintf("in state %d", s)
}

// stoppedDisks reads the disk files of a shut-off domain as they are.
func stoppedDisks(ctx context.Context, domain string, disks []domainDisk) ([]Disk, error) {
	out := make([]Disk, 0, len(disks))
	for i, d := range disks {
		if d.Block {
			return nil, fmt.Errorf("domain %s: disk %s is the block device %s; a stopped domain's disks are copied as files, so start the domain (its disks are then read through libvirt's backup job) or copy the device into an image",
				domain, d.Target, d.Source)
		}
		info, err := diskimage.Probe(ctx, d.Source)
		if err != nil && strings.Contains(err.Error(), "backing file") {
			return nil, fmt.Errorf("domain %s: disk %s: %w; or back the domain up while it runs: libvirt's backup job reads a disk whole, its backing chain included", domain, d.Target, err)
		}
		if err != nil {
			return nil, fmt.Errorf("domain %s: disk %s: %w", domain, d.Target, err)
		}
		if info.Format != d.Format {
			return nil, fmt.Errorf("domain %s: disk %s is %s in the domain's XML, and qemu-img finds %s in %s", domain, d.Target, d.Format, info.Format, d.Source)
		}
		out = append(out, diskOf(d, i, info.VirtualSize, d.Source))
	}
	return out, nil
}

// diskOf is the Disk that copies file (the disk itself, or its backup job's copy).
func diskOf(d domainDisk, device int, virtualSize int64, file string) Disk {
	return Disk{Type: d.Type, DeviceID: device, Name: filepath.Base(d.Source), Format: d.Format, VirtualSize: virtualSize,
		Path: file, Label: d.Target + " " + filepath.Base(d.Source), Open: func() (*os.File, error) { return os.Open(file) }}
}
