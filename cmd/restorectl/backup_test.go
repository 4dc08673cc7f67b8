package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/vmrestore/vmrestore/internal/backup"
	"github.com/vmrestore/vmrestore/internal/client"
	"github.com/vmrestore/vmrestore/internal/clone"
	"github.com/vmrestore/vmrestore/internal/demosite"
	"github.com/vmrestore/vmrestore/internal/testenv"
	"github.com/vmrestore/vmrestore/internal/zstack"
)

// TestMain lets a test run restorectl as a real process of its own (to kill it): the test
// binary re-executed with RESTORECTL_TEST_MAIN=1 is restorectl.
func TestMain(m *testing.M) {
	if os.Getenv("RESTORECTL_TEST_MAIN") == "1" {
		main()
		return
	}
	os.Exit(m.Run())
}

// diskImages writes a qcow2 root image (converted by qemu-img from a sparse raw file with
// data in three places) and a sparse raw data image, each with dataMiB MiB of random data.
func diskImages(t *testing.T, dataMiB int64) (root, data string) {
	t.Helper()
	testenv.LookPath(t, "qemu-img", "install qemu-utils (Debian/Ubuntu) or qemu-img (RHEL)")
	dir := t.TempDir()
	scattered := func(path string, size int64) {
		f, err := os.Create(path)
		if err != nil {
			t.Fatal(err)
		}
		defer f.Close()
		f.Truncate(size)
		buf := make([]byte, dataMiB<<20/3)
		for _, off := range []int64{0, size / 2, size - int64(len(buf))} {
			rand.Read(buf)
			f.WriteAt(buf, off)
		}
	}
	raw := filepath.Join(dir, "root.raw")
	scattered(raw, 2<<30)
	root = filepath.Join(dir, "web07-root.qcow2")
	if out, err := exec.Command("qemu-img", "convert", "-f", "raw", "-O", "qcow2", raw, root).CombinedOutput(); err != nil {
		t.Fatalf("qemu-img convert: %v\n%s", err, out)
	}
	data = filepath.Join(dir, "web07-data.raw")
	scattered(data, 512<<20)
	return root, data
}

func sameContent(t *testing.T, a, b string) {
	t.Helper()
	x, err := os.ReadFile(a)
	if err != nil {
		t.Fatal(err)
	}
	y, err := os.ReadFile(b)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(x, y) {
		t.Fatalf("%s (%d bytes) and %s (%d bytes) differ", a, len(x), b, len(y))
	}
}

const web07MAC, web07IP = "fa:16:3e:07:07:07", "10.10.0.77"

// restorePlan restores one group onto the demo site, keeping its source size, IP and MAC.
func restorePlan(group string) string {
	return fmt.Sprintf(`name: restore-%s
groups: [%s]
defaults: {keepSourceSize: true, nameTemplate: "{{.SourceName}}-dr"}
networkMapping:
  - {sourceL3NetworkUuid: %s, targetL3NetworkUuid: %s, ip: keep, mac: keep}
`, group[:8], group, demosite.L3ProdUUID, demosite.L3ProdUUID)
}

// A group taken from disk images by `backup create` (the storage named as in the catalog,
// resolved through the api) is listed, shown and verified, is indexed by the worker, and
// restores through a plan (the real restore path: api, queue, worker, clone) to volume
// files equal to the images byte for byte, with the VM's size, IP and MAC.
func TestBackupCreateThenRestoreIsByteIdentical(t *testing.T) {
	root, data := diskImages(t, 24)
	h := newHarness(t)
	h.must(0, adminPassword+"\n", "login", "--password-stdin")

	r := h.must(0, "", "backup", "create", "--storage", "bs-main", "--root", root, "--data", data, "--name", "web07",
		"--cpu", "2", "--memory", "3G", "--nic", demosite.L3ProdUUID+","+web07MAC+","+web07IP, "--platform", "Linux", "-o", "json")
	var g backup.Group
	if err := json.Unmarshal([]byte(r.stdout), &g); err != nil {
		t.Fatalf("backup create -o json: %v\n%s", err, r)
	}
	mustContain(t, r, "stderr", "The workers have indexed the group")
	if !strings.Contains(r.stderr, "disk 0 (Root) web07-root.qcow2") || !strings.Contains(r.stderr, "done") {
		t.Fatalf("no progress lines: %s", r)
	}
	if g.VM.CPUNum != 2 || g.VM.MemorySize != 3<<30 || len(g.Volumes) != 2 || g.Volumes[0].Format != "qcow2" || g.Volumes[1].Format != "raw" {
		t.Fatalf("group %+v", g)
	}

	r = h.must(0, "", "backup", "list", "--storage", demosite.BackupUUID)
	if !strings.Contains(r.stdout, g.GroupUUID+"  "+g.Name+"  web07  2") || !strings.Contains(r.stdout, "complete") {
		t.Fatalf("backup list: %s", r)
	}
	r = h.must(0, "", "backup", "show", g.GroupUUID, "--storage", "bs-main")
	mustContain(t, r, "stdout", "complete (restorable)", "CPU, memory:  2, 3.0 GiB", "mac "+web07MAC+"  ip "+web07IP, "xxh3-chunked-64k:")
	r = h.must(0, "", "backup", "verify", g.GroupUUID, "--storage", "bs-main")
	if strings.Count(r.stdout, " ok\n") != 2 {
		t.Fatalf("backup verify: %s", r)
	}

	spec := h.writeFile("restore.yaml", restorePlan(g.GroupUUID))
	r = h.must(0, "", "plan", "apply", "-f", spec, "--watch", "--interval", "1s")
	mustContain(t, r, "stdout", "succeeded: 1/1 VM(s) succeeded")
	var vms []zstack.VmInstanceInventory
	if err := json.Unmarshal([]byte(h.must(0, "", "vm", "list", "--q", "name=web07-dr", "-o", "json").stdout), &vms); err != nil || len(vms) != 1 {
		t.Fatalf("the restored VM: %v %d", err, len(vms))
	}
	vm := vms[0]
	if vm.CPUNum != 2 || vm.MemorySize != 3<<30 || len(vm.VMNics) != 1 || vm.VMNics[0].IP != web07IP || vm.VMNics[0].Mac != web07MAC {
		t.Fatalf("the restored VM's size or NIC: cpu %d memory %d nics %+v", vm.CPUNum, vm.MemorySize, vm.VMNics)
	}
	byType := map[string]string{}
	for _, v := range vm.AllVolumes {
		byType[v.Type] = v.InstallPath
	}
	if len(vm.AllVolumes) != 2 || byType["Root"] == "" || byType["Data"] == "" {
		t.Fatalf("restored volumes: %+v", vm.AllVolumes)
	}
	sameContent(t, root, byType["Root"])
	sameContent(t, data, byType["Data"])

	// A bit flipped in the backup afterwards is found by verify (exit 3), with the file named.
	path := filepath.Join(backup.GroupDir(h.backupDir(t), g.GroupUUID), g.Volumes[1].File)
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	b := make([]byte, 1)
	f.ReadAt(b, 10)
	b[0] ^= 1
	f.WriteAt(b, 10)
	f.Close()
	r = h.must(exitVerifyFailed, "", "backup", "verify", "--all", "--storage", "bs-main")
	mustContain(t, r, "stdout", g.Volumes[1].UUID, "FAILED: the file's bytes changed since the backup was taken")
	mustContain(t, r, "stderr", "1 of 4 groups failed verification")
}

// backupDir is the harness's backup storage folder, as the api names it.
func (h *harness) backupDir(t *testing.T) string {
	t.Helper()
	c := &client.Client{BaseURL: h.base, Session: h.session(t)}
	bs, err := c.FindBackupStorage(context.Background(), demosite.BackupUUID)
	if err != nil {
		t.Fatal(err)
	}
	return bs.URL
}

func (h *harness) session(t *testing.T) string {
	t.Helper()
	f, err := loadSessions(h.cfgFile)
	if err != nil {
		t.Fatal(err)
	}
	return f.Sessions[h.base].UUID
}

// A `backup create` killed (SIGKILL) in the middle of a copy leaves a folder that is never
// restorable: backup list says incomplete, the api never lists it (the worker's index skips
// it while indexing a group made after it), a plan naming it is refused, verify fails it,
// and backup delete removes it.
func TestBackupCreateKilledMidCopyIsNeverRestorable(t *testing.T) {
	root, data := diskImages(t, 48)
	h := newHarness(t)
	h.must(0, adminPassword+"\n", "login", "--password-stdin")
	storage := h.backupDir(t)

	// 1 MiB/s over 48 MiB of data: the copy runs for most of a minute; it is killed in it.
	cmd := exec.Command(os.Args[0], "backup", "create", "--storage", storage, "--root", root, "--data", data, "--name", "web08",
		"--cpu", "1", "--memory", "1G", "--bandwidth", "1MiB")
	cmd.Env = append(os.Environ(), "RESTORECTL_TEST_MAIN=1", "RESTORECTL_CONFIG="+h.cfgFile, "RESTORECTL_URL="+h.base)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	killed := ""
	deadline := time.Now().Add(30 * time.Second)
	for killed == "" && time.Now().Before(deadline) {
		time.Sleep(50 * time.Millisecond)
		parts, _ := filepath.Glob(filepath.Join(backup.GroupsDir(storage), "*", "*"+clone.PartSuffix))
		for _, p := range parts {
			if st, err := os.Stat(p); err == nil && st.Size() > 0 {
				killed = filepath.Base(filepath.Dir(p))
			}
		}
	}
	cmd.Process.Signal(syscall.SIGKILL)
	cmd.Wait()
	if killed == "" {
		t.Fatalf("the copy never started: %s", out.String())
	}
	if _, err := os.Stat(filepath.Join(backup.GroupDir(storage, killed), backup.GroupFile)); err == nil {
		t.Fatal("a create killed mid-copy wrote group.json")
	}

	r := h.must(0, "", "backup", "list", "--storage", "bs-main")
	if !strings.Contains(r.stdout, killed) || !strings.Contains(r.stdout, "incomplete") || !strings.Contains(r.stdout, "was interrupted") {
		t.Fatalf("backup list does not show the killed group as incomplete: %s", r)
	}
	// A complete group made after it and indexed proves a scan ran with the killed folder there.
	later, _ := diskImages(t, 1)
	h.must(0, "", "backup", "create", "--storage", "bs-main", "--root", later, "--name", "web09", "--cpu", "1", "--memory", "1G")
	c := &client.Client{BaseURL: h.base, Session: h.session(t)}
	if listed, err := c.GroupIndexed(context.Background(), killed); err != nil || listed {
		t.Fatalf("the api lists the killed group: %v %v", listed, err)
	}
	spec := h.writeFile("restore-killed.yaml", restorePlan(killed))
	r = h.must(1, "", "plan", "apply", "-f", spec)
	mustContain(t, r, "stderr", killed)

	r = h.must(exitVerifyFailed, "", "backup", "verify", killed, "--storage", "bs-main")
	mustContain(t, r, "stdout", "incomplete")
	r = h.must(0, "", "backup", "verify", "--all", "--storage", "bs-main")
	mustContain(t, r, "stdout", "not verified: incomplete")

	h.must(2, "", "backup", "delete", killed, "--storage", "bs-main") // no terminal to ask: --yes is needed
	h.must(0, "", "backup", "delete", killed, "--storage", "bs-main", "--yes")
	if _, err := os.Stat(backup.GroupDir(storage, killed)); !os.IsNotExist(err) {
		t.Fatalf("the killed group's folder is still there: %v", err)
	}
}

// Usage errors and unreachable storages say what to do.
func TestBackupCommandErrors(t *testing.T) {
	h := &harness{t: t, base: "http://127.0.0.1:1", cfgFile: filepath.Join(t.TempDir(), "s.json")}
	dir := t.TempDir()
	for _, c := range []struct {
		code int
		args []string
		want string
	}{
		{2, []string{"backup", "create", "--storage", dir + "/", "--name", "x", "--cpu", "1", "--memory", "1G"}, "--root"},
		{2, []string{"backup", "create", "--storage", dir + "/", "--root", "r", "--cpu", "1", "--memory", "1G"}, "--name"},
		{2, []string{"backup", "create", "--storage", dir + "/", "--root", "r", "--name", "x", "--memory", "1G"}, "--cpu"},
		{2, []string{"backup", "create", "--storage", dir + "/", "--root", "r", "--name", "x", "--cpu", "1", "--memory", "lots"}, "--memory"},
		{2, []string{"backup", "create", "--storage", dir + "/", "--root", "r", "--name", "x", "--cpu", "1", "--memory", "1G", "--nic", "nope"}, "not an L3 network uuid"},
		{2, []string{"backup", "create", "--storage", dir + "/", "--root", "r", "--name", "x", "--cpu", "1", "--memory", "1G",
			"--nic", demosite.L3ProdUUID + ",01:00:00:00:00:01"}, "multicast"},
		{2, []string{"backup", "create", "--storage", dir + "/", "--root", "r", "--name", "x", "--cpu", "1", "--memory", "1G",
			"--nic", demosite.L3ProdUUID + ",,10.0.0.300"}, "not an IPv4 address"},
		{2, []string{"backup", "create", "--storage", dir + "/", "--root", "r", "--name", "x", "--cpu", "1", "--memory", "1G", "--platform", "linux"}, "--platform"},
		{1, []string{"backup", "create", "--storage", dir + "/", "--root", filepath.Join(dir, "missing.qcow2"), "--name", "x", "--cpu", "1", "--memory", "1G"}, "nothing of it was kept"},
		{2, []string{"backup", "create", "--storage", dir + "/"}, "--root (the root disk image) or --domain (a libvirt domain) is required"},
		{2, []string{"backup", "create", "--storage", dir + "/", "--domain", "web01", "--cpu", "2"}, "--cpu does not go with --domain"},
		{2, []string{"backup", "create", "--storage", dir + "/", "--domain", "web01", "--root", "r"}, "--root does not go with --domain"},
		{2, []string{"backup", "create", "--storage", dir + "/", "--domain", "web01", "--nic-l3", "br0"}, "expected <mac|bridge|network>=<l3NetworkUuid>"},
		{2, []string{"backup", "create", "--storage", dir + "/", "--domain", "web01", "--nic-l3", "br0=" + demosite.L3ProdUUID + ",10.0.0.300"}, "not an IPv4 address"},
		{2, []string{"backup", "create", "--storage", dir + "/", "--root", "r", "--name", "x", "--cpu", "1", "--memory", "1G", "--nic-l3", "br0=" + demosite.L3ProdUUID}, "--nic-l3 goes with --domain"},
		{1, []string{"backup", "create", "--storage", dir + "/", "--domain", "web01", "--connect", "qemu+ssh://kvm1/system"}, "give the libvirt of this machine"},
		{2, []string{"backup", "list"}, "--storage is required"},
		{1, []string{"backup", "list", "--storage", filepath.Join(dir, "nope") + "/"}, "no such file"},
		{1, []string{"backup", "list", "--storage", "bs-main"}, "not logged in"},
		{2, []string{"backup", "verify", "--storage", dir + "/"}, "give group uuids or --all"},
		{1, []string{"backup", "show", "0000000000000000000000000000abcd", "--storage", dir + "/"}, "no group 0000000000000000000000000000abcd"},
	} {
		r := h.run("", c.args...)
		if r.code != c.code || !strings.Contains(r.stderr, c.want) {
			t.Errorf("restorectl %s: want exit %d and %q, got %s", strings.Join(c.args, " "), c.code, c.want, r)
		}
	}
	r := h.must(0, "", "backup", "list", "--storage", dir+"/")
	mustContain(t, r, "stdout", "No backup group on "+dir)
}
