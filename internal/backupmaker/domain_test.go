package backupmaker_test

import (
	"bufio"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/digitalocean/go-libvirt"
	"github.com/digitalocean/go-libvirt/socket/dialers"
	"github.com/vmrestore/vmrestore/internal/backup"
	"github.com/vmrestore/vmrestore/internal/backupmaker"
	"github.com/vmrestore/vmrestore/internal/clone"
	"github.com/vmrestore/vmrestore/internal/hypervisor/libvirttest"
)

const (
	system   = "qemu:///system"
	bridge   = "vmrbm0"
	domainL3 = "d50554f493153be78f6740e18e598046"
)

// testDomain is a libvirt domain defined for one test: the test guest's image as its root
// disk, a 16 MiB raw data disk holding random data in three places, a NIC on a bridge.
type testDomain struct {
	Name, UUID, Dir, Root, Data string
	Mac                         string
	// Original copies of the disks, taken before the domain ever ran.
	RootCopy, DataCopy string
}

func randomHex(n int) string {
	b := make([]byte, n)
	rand.Read(b)
	return hex.EncodeToString(b)
}

func virsh(t *testing.T, args ...string) string {
	t.Helper()
	out, err := libvirttest.Virsh(t, system, args...)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// defineDomain defines a stopped domain whose devices are extra (or the usual ones).
func defineDomain(t *testing.T, devices func(d *testDomain) string) *testDomain {
	t.Helper()
	libvirttest.NeedQEMU(t)
	img := libvirttest.BuildGuestImage(t)
	libvirttest.Bridge(t, bridge)
	d := &testDomain{Name: "vmrestore-bm-" + randomHex(4), UUID: randomHex(16), Dir: libvirttest.GuestDir(t),
		Mac: "52:54:00:" + randomHex(1) + ":" + randomHex(1) + ":" + randomHex(1)}
	d.Root, d.Data = filepath.Join(d.Dir, "root.qcow2"), filepath.Join(d.Dir, "data.raw")
	libvirttest.CopyFile(t, img.Good, d.Root)
	writeScattered(t, d.Data, 16<<20, 6<<20)
	d.RootCopy, d.DataCopy = filepath.Join(t.TempDir(), "root.qcow2"), filepath.Join(t.TempDir(), "data.raw")
	libvirttest.CopyFile(t, d.Root, d.RootCopy)
	libvirttest.CopyFile(t, d.Data, d.DataCopy)
	if devices == nil {
		devices = defaultDevices
	}
	dev := devices(d)
	xml := fmt.Sprintf(`<domain type='qemu'><name>%s</name><uuid>%s</uuid><memory unit='MiB'>96</memory><vcpu>1</vcpu>
  <os><type arch='x86_64' machine='pc'>hvm</type></os>
  <devices>%s<serial type='pty'/><console type='pty'/></devices></domain>`, d.Name, libvirttest.Dashed(d.UUID), dev)
	file := filepath.Join(d.Dir, "domain.xml")
	if err := os.WriteFile(file, []byte(xml), 0o644); err != nil {
		t.Fatal(err)
	}
	virsh(t, "define", file)
	os.Remove(file)
	t.Cleanup(func() { libvirttest.RemoveDomain(t, system, d.UUID) })
	return d
}

// defaultDevices are the root and data disks and the NIC.
func defaultDevices(d *testDomain) string {
	return fmt.Sprintf(`<disk type='file' device='disk'><driver name='qemu' type='qcow2'/><source file='%s'/><target dev='vda' bus='virtio'/><boot order='1'/></disk>
    <disk type='file' device='disk'><driver name='qemu' type='raw'/><source file='%s'/><target dev='vdb' bus='virtio'/></disk>
    <interface type='bridge'><mac address='%s'/><source bridge='%s'/><model type='virtio'/></interface>`, d.Root, d.Data, d.Mac, bridge)
}

func (d *testDomain) source() *backupmaker.Domain {
	return &backupmaker.Domain{Name: d.Name, Nics: map[string]backupmaker.NicTarget{bridge: {L3NetworkUUID: domainL3}}, PollInterval: 50 * time.Millisecond}
}

// clean fails the test unless the domain is as it was: its disks are its own files (no
// overlay), it has no job, snapshot or checkpoint, and nothing but its disks is in its folder.
func (d *testDomain) clean(t *testing.T, inactiveXML string) {
	t.Helper()
	if x := virsh(t, "dumpxml", "--inactive", d.Name); x != inactiveXML {
		t.Errorf("the domain's definition changed:\n%s\nwas:\n%s", x, inactiveXML)
	}
	if blk := virsh(t, "domblklist", d.Name); !strings.Contains(blk, d.Root) || !strings.Contains(blk, d.Data) || strings.Count(blk, "\n") != 2 {
		t.Errorf("the domain's disks are not its own files:\n%s", blk)
	}
	if s := strings.TrimSpace(virsh(t, "snapshot-list", "--name", d.Name)); s != "" {
		t.Errorf("snapshots left: %s", s)
	}
	if c := strings.TrimSpace(virsh(t, "checkpoint-list", "--name", d.Name)); c != "" {
		t.Errorf("checkpoints left: %s", c)
	}
	if libvirttest.DomainState(t, system, d.UUID) == "running" {
		if j := virsh(t, "domjobinfo", d.Name); !strings.Contains(j, "None") {
			t.Errorf("a job is left on the domain:\n%s", j)
		}
	}
	entries, _ := os.ReadDir(d.Dir)
	var names []string
	for _, e := range entries {
		names = append(names, e.Name())
	}
	if !slices.Equal(names, []string{"data.raw", "root.qcow2"}) {
		t.Errorf("the domain's folder holds %v", names)
	}
}

// checkGroup checks the group read back from the storage: the domain's VM, two volumes, and
// volume files equal to want (the disks as they were), byte for byte or, for a qcow2 copy
// made by libvirt's backup job, in what the guest sees.
func checkGroup(t *testing.T, d *testDomain, storage string, g *backup.Group, byteForByte bool) {
	t.Helper()
	read, err := backup.Read(storage, g.GroupUUID)
	if err != nil {
		t.Fatalf("the group does not read back: %v", err)
	}
	vm := read.VM
	if vm.Name != d.Name || vm.UUID != d.UUID || vm.CPUNum != 1 || vm.MemorySize != 96<<20 || len(vm.Nics) != 1 ||
		vm.Nics[0].Mac != d.Mac || vm.Nics[0].L3NetworkUUID != domainL3 || !strings.HasPrefix(read.Name, d.Name+"-") {
		t.Fatalf("group %+v", read)
	}
	if len(read.Volumes) != 2 || read.Volumes[0].Type != backup.VolumeRoot || read.Volumes[0].Format != "qcow2" || read.Volumes[1].Format != "raw" {
		t.Fatalf("volumes %+v", read.Volumes)
	}
	dir := backup.GroupDir(storage, g.GroupUUID)
	root, data := filepath.Join(dir, read.Volumes[0].File), filepath.Join(dir, read.Volumes[1].File)
	sameFile(t, d.DataCopy, data)
	if byteForByte {
		sameFile(t, d.RootCopy, root)
	} else if out, err := exec.Command("qemu-img", "compare", "-f", "qcow2", "-F", "qcow2", d.RootCopy, root).CombinedOutput(); err != nil {
		t.Fatalf("the root volume is not what the guest saw: %v\n%s", err, out)
	}
	for i := range read.Volumes {
		if r := backup.VerifyVolume(context.Background(), storage, read, &read.Volumes[i], nil); !r.OK {
			t.Fatalf("verify: %s", r.Error)
		}
	}
}

// A stopped domain is backed up as it is: its disk files, byte for byte, and its VM from its
// XML; the domain is untouched.
func TestBackupStoppedDomain(t *testing.T) {
	t.Parallel()
	d := defineDomain(t, nil)
	before := virsh(t, "dumpxml", "--inactive", d.Name)
	storage := t.TempDir()
	g, err := backupmaker.Make(context.Background(), d.source(), storage, backupmaker.Options{})
	if err != nil {
		t.Fatal(err)
	}
	checkGroup(t, d, storage, g, true)
	d.clean(t, before)
}

// A running domain is backed up by libvirt's backup job while the guest runs; the group
// holds the disks as the guest saw them, and the domain is left running, exactly as it was,
// also by a backup cancelled mid-copy.
func TestBackupRunningDomain(t *testing.T) {
	t.Parallel()
	d := defineDomain(t, nil)
	before := virsh(t, "dumpxml", "--inactive", d.Name)
	virsh(t, "start", d.Name)
	storage := t.TempDir()

	ctx, cancel := context.WithCancel(context.Background())
	_, err := backupmaker.Make(ctx, d.source(), storage, backupmaker.Options{BandwidthBytesPerSecond: 1 << 20,
		Progress: func(int, clone.Progress) { cancel() }})
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("a cancelled backup: %v", err)
	}
	if es, _ := backup.Survey(storage); len(es) != 0 {
		t.Fatalf("a cancelled backup left %+v", es)
	}
	d.clean(t, before)

	src := d.source()
	var job int
	src.JobProgress = func(done, total int64) { job++ }
	g, err := backupmaker.Make(context.Background(), src, storage, backupmaker.Options{})
	if err != nil {
		t.Fatal(err)
	}
	if job == 0 {
		t.Error("the backup job's progress was never reported")
	}
	if s := libvirttest.DomainState(t, system, d.UUID); s != "running" {
		t.Fatalf("the domain is %q after its backup", s)
	}
	d.clean(t, before)
	checkGroup(t, d, storage, g, false)
}

// TestBackupDomainChild is the backup TestBackupKilledMidCopy kills: it runs only as that
// test's child process.
func TestBackupDomainChild(t *testing.T) {
	name, storage := os.Getenv("VMRESTORE_BM_CHILD_DOMAIN"), os.Getenv("VMRESTORE_BM_CHILD_STORAGE")
	if name == "" {
		t.Skip("the child process of TestBackupKilledMidCopy")
	}
	src := &backupmaker.Domain{Name: name, Nics: map[string]backupmaker.NicTarget{bridge: {L3NetworkUUID: domainL3}}}
	once := false
	_, err := backupmaker.Make(context.Background(), src, storage, backupmaker.Options{BandwidthBytesPerSecond: 1 << 20,
		Progress: func(int, clone.Progress) {
			if !once {
				fmt.Println("COPYING")
				once = true
			}
		}})
	t.Fatalf("the backup was not killed: %v", err)
}

// A backup killed mid-copy (SIGKILL: nothing of it runs after) is never listed as
// restorable, leaves the domain running as it was, and the next backup of the domain ends
// what it left and succeeds.
func TestBackupKilledMidCopy(t *testing.T) {
	t.Parallel()
	d := defineDomain(t, nil)
	before := virsh(t, "dumpxml", "--inactive", d.Name)
	virsh(t, "start", d.Name)
	storage := t.TempDir()

	child := exec.Command(os.Args[0], "-test.run=^TestBackupDomainChild$", "-test.v")
	child.Env = append(os.Environ(), "VMRESTORE_BM_CHILD_DOMAIN="+d.Name, "VMRESTORE_BM_CHILD_STORAGE="+storage)
	out, err := child.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	child.Stderr = os.Stderr
	if err := child.Start(); err != nil {
		t.Fatal(err)
	}
	lines := bufio.NewScanner(out)
	var seen []string
	for lines.Scan() && lines.Text() != "COPYING" {
		seen = append(seen, lines.Text())
	}
	if lines.Err() != nil || lines.Text() != "COPYING" {
		child.Process.Kill()
		child.Wait()
		t.Fatalf("the child never copied:\n%s", strings.Join(seen, "\n"))
	}
	child.Process.Signal(syscall.SIGKILL)
	child.Wait()

	es, err := backup.Survey(storage)
	if err != nil || len(es) != 1 || es[0].State == backup.Complete {
		t.Fatalf("after a killed backup the storage lists %+v (%v); want one folder, not restorable", es, err)
	}
	if s := libvirttest.DomainState(t, system, d.UUID); s != "running" {
		t.Fatalf("the domain is %q after a killed backup", s)
	}
	if x := virsh(t, "dumpxml", "--inactive", d.Name); x != before {
		t.Errorf("a killed backup changed the domain's definition")
	}

	g, err := backupmaker.Make(context.Background(), d.source(), storage, backupmaker.Options{})
	if err != nil {
		t.Fatalf("the backup after a killed one: %v", err)
	}
	checkGroup(t, d, storage, g, false)
	d.clean(t, before)
}

// What cannot be backed up is refused before anything is written, saying why.
func TestBackupDomainRefused(t *testing.T) {
	t.Parallel()
	storage := t.TempDir()
	network := defineDomain(t, func(d *testDomain) string {
		return fmt.Sprintf(`<disk type='file' device='disk'><driver name='qemu' type='qcow2'/><source file='%s'/><target dev='vda' bus='virtio'/></disk>
    <disk type='network' device='disk'><driver name='qemu' type='raw'/><source protocol='nbd' name='data'><host name='192.0.2.9' port='10809'/></source><target dev='vdb' bus='virtio'/></disk>`, d.Root)
	})
	plain := defineDomain(t, nil)
	for _, c := range []struct {
		src  *backupmaker.Domain
		want string
	}{
		{&backupmaker.Domain{Name: "vmrestore-bm-no-such-domain"}, `libvirt has no domain named "vmrestore-bm-no-such-domain"`},
		{network.source(), "disk vdb is on the network (nbd data)"},
		{&backupmaker.Domain{Name: plain.Name}, "--nic-l3 " + plain.Mac + "=<l3NetworkUuid> or --nic-l3 " + bridge + "=<l3NetworkUuid>"},
		{&backupmaker.Domain{Name: plain.Name, URI: "qemu+ssh://elsewhere/system"}, "give the libvirt of this machine"},
		{&backupmaker.Domain{}, "the domain to back up"},
	} {
		if _, err := backupmaker.Make(context.Background(), c.src, storage, backupmaker.Options{}); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%+v: %v, want %q", c.src, err, c.want)
		}
	}
	if es, _ := backup.Survey(storage); len(es) != 0 {
		t.Fatalf("refused backups left %+v", es)
	}
}

// A job on the domain that is not this backup's (here a pull-mode backup, whose NBD export
// runs until it is aborted) is refused and left running; nothing is written.
func TestBackupDomainWithAnotherJob(t *testing.T) {
	t.Parallel()
	d := defineDomain(t, nil)
	virsh(t, "start", d.Name)
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := l.Addr().(*net.TCPAddr).Port
	l.Close()
	other := libvirttest.GuestDir(t)
	pull := filepath.Join(other, "pull.xml")
	os.WriteFile(pull, []byte(fmt.Sprintf(`<domainbackup mode='pull'><server transport='tcp' name='127.0.0.1' port='%d'/>
  <disks><disk name='vda' backup='yes' type='file'><scratch file='%s'/></disk><disk name='vdb' backup='no'/></disks></domainbackup>`,
		port, filepath.Join(other, "scratch.qcow2"))), 0o644)
	virsh(t, "backup-begin", d.Name, pull)
	t.Cleanup(func() { _, _ = libvirttest.Virsh(t, system, "domjobabort", d.Name) })

	storage := t.TempDir()
	_, err = backupmaker.Make(context.Background(), d.source(), storage, backupmaker.Options{})
	if err == nil || !strings.Contains(err.Error(), "has a job running that is not this backup's") {
		t.Fatalf("a backup beside another job: %v", err)
	}
	if j := virsh(t, "domjobinfo", d.Name); !strings.Contains(j, "Backup") {
		t.Fatalf("the other job was ended:\n%s", j)
	}
	if es, _ := backup.Survey(storage); len(es) != 0 {
		t.Fatalf("a refused backup left %+v", es)
	}
}

// beginAndPause begins a backup job on the domain and pauses its QEMU block jobs, over one
// libvirt connection: each is slowed to 64 KiB/s at once, then paused (a pause takes hold
// at the job's next yield). QEMU's emulator threads are not throttled to make room for the
// pause: at 2 % of a CPU, under a loaded machine's other guests, its monitor stopped
// answering for minutes, and libvirt with it.
func beginAndPause(t *testing.T, domain, jobXML string) {
	t.Helper()
	l := libvirt.NewWithDialer(dialers.NewLocal())
	if err := l.ConnectToURI(libvirt.QEMUSystem); err != nil {
		t.Fatal(err)
	}
	defer l.Disconnect()
	dom, err := l.DomainLookupByName(domain)
	if err != nil {
		t.Fatal(err)
	}
	if err := l.DomainBackupBegin(dom, jobXML, nil, 0); err != nil {
		t.Fatalf("begin the backup job: %v", err)
	}
	out, err := l.QEMUDomainMonitorCommand(dom, `{"execute":"query-block-jobs"}`, 0)
	if err != nil {
		t.Fatal(err)
	}
	var jobs struct {
		Return []struct {
			Device string `json:"device"`
			Status string `json:"status"`
		} `json:"return"`
	}
	if err := json.Unmarshal([]byte(out), &jobs); err != nil {
		t.Fatal(err)
	}
	for _, j := range jobs.Return {
		// Slowed to 64 KiB/s first: a pause takes hold at the job's next yield, and a job
		// copying at full speed could end before it (seen under load, five times in a row).
		if _, err := l.QEMUDomainMonitorCommand(dom, fmt.Sprintf(`{"execute":"block-job-set-speed","arguments":{"device":%q,"speed":65536}}`, j.Device), 0); err != nil {
			t.Logf("slow %s down: %v", j.Device, err)
		}
		if _, err := l.QEMUDomainMonitorCommand(dom, fmt.Sprintf(`{"execute":"block-job-pause","arguments":{"device":%q}}`, j.Device), 0); err != nil {
			t.Logf("pause %s: %v", j.Device, err)
		}
	}
	t.Logf("QEMU's block jobs when paused: %+v", jobs.Return)
}

// A backup killed while libvirt's backup job runs leaves that job (writing to the backup's
// scratch files) on the domain. Here it is left by hand, as the killed run would have begun
// it, and paused (QEMU's block-job-pause) so that it is still running: the next backup
// aborts it, removes its files, and succeeds; the domain is left as it was.
func TestBackupAfterKillDuringJob(t *testing.T) {
	// Serial: beside the package's other guests, its job ended before its pause five times
	// in a row.
	d := defineDomain(t, func(d *testDomain) string {
		// A job that lasts long enough to be paused: 192 MiB, and once under CI's load
		// 768 MiB, ended before the pause five times in a row.
		writeScattered(t, d.Data, 2<<30, 1536<<20)
		libvirttest.CopyFile(t, d.Data, d.DataCopy)
		return defaultDevices(d)
	})
	before := virsh(t, "dumpxml", "--inactive", d.Name)
	virsh(t, "start", d.Name)
	jobXML := fmt.Sprintf(`<domainbackup mode='push'><disks>
  <disk name='vda' backup='yes' type='file'><target file='%s.vmrestore-backup.qcow2'/><driver type='qcow2'/></disk>
  <disk name='vdb' backup='yes' type='file'><target file='%s.vmrestore-backup.raw'/><driver type='raw'/></disk>
</disks></domainbackup>`, d.Root, d.Data)
	// The job can still end before its pause takes hold (a fast or idle machine): then its
	// files go and it is begun again, a few times.
	for try := 1; ; try++ {
		beginAndPause(t, d.Name, jobXML)
		info := virsh(t, "domjobinfo", d.Name)
		if strings.Contains(info, "Backup") {
			break
		}
		completed, _ := libvirttest.Virsh(t, system, "domjobinfo", "--completed", d.Name)
		if try == 5 {
			t.Fatalf("the left job ended before it could be paused, %d times:\n%s\n%s", try, info, completed)
		}
		t.Logf("try %d: the left job ended before it could be paused; again", try)
		for _, f := range []string{d.Root + ".vmrestore-backup.qcow2", d.Data + ".vmrestore-backup.raw"} {
			if err := os.Remove(f); err != nil && !os.IsNotExist(err) {
				t.Fatal(err)
			}
		}
	}

	storage := t.TempDir()
	start := time.Now()
	g, err := backupmaker.Make(context.Background(), d.source(), storage, backupmaker.Options{})
	if err != nil {
		t.Fatalf("the backup after one killed during its job: %v", err)
	}
	t.Logf("the backup took %s", time.Since(start))
	checkGroup(t, d, storage, g, false)
	d.clean(t, before)
}
