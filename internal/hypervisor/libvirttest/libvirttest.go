// Package libvirttest gives tests what they need of the machine's libvirt: a check that the
// daemon answers (a loud skip without it, a failure under CI=true), a lock between test
// packages (a fault test that kills libvirtd must not run beside one that uses it), virsh
// read-backs, a host bridge, and a bootable guest image built from Debian packages.
package libvirttest

import (
	"bytes"
	"fmt"
	"net"
	"os"
	"os/exec"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/vmrestore/vmrestore/internal/testenv"
)

// Socket is libvirtd's read-write socket.
const Socket = "/run/libvirt/libvirt-sock"

const install = "install qemu-system-x86 qemu-utils libvirt-daemon-system libvirt-clients and start `virtlogd -d` then `libvirtd -d` (.ci/run does)"

// lockPath serialises tests of different packages that use the machine's libvirtd.
const lockPath = "/tmp/vmrestore-libvirt-tests.lock"

// exclusive holds the tests of this process that hold the exclusive lock, which covers the
// shared one they would ask for too (a second flock descriptor of the same test would wait
// for itself). Other tests of the process wait for the shared lock as other processes do.
var exclusive sync.Map // testing.TB → struct{}

// Need holds a shared lock on the machine's libvirtd for the test, then skips (fails under
// CI) unless libvirtd answers on its socket (see Answers).
func Need(t testing.TB) {
	t.Helper()
	testenv.LookPath(t, "virsh", install)
	if err := Answers(t); err != nil {
		testenv.Missing(t, "%v; %s", err, install)
	}
}

// Answers holds a shared lock on the machine's libvirtd for the test, then reports whether
// libvirtd answers on its socket, for a test that goes on without it. The lock comes first:
// a test of another package that stops libvirtd holds it exclusively until libvirtd answers
// again.
func Answers(t testing.TB) error {
	t.Helper()
	if _, held := exclusive.Load(t); !held {
		lock(t, unix.LOCK_SH)
	}
	c, err := net.DialTimeout("unix", Socket, 2*time.Second)
	if err != nil {
		return fmt.Errorf("libvirtd does not answer on %s (%w)", Socket, err)
	}
	return c.Close()
}

// NeedExclusive is Need for a test that stops or kills libvirtd: no other test, of this
// package or another, uses the daemon meanwhile (they wait in Need), so such a test may be
// parallel.
func NeedExclusive(t testing.TB) {
	t.Helper()
	testenv.LookPath(t, "virsh", install)
	testenv.LookPath(t, "libvirtd", install)
	lock(t, unix.LOCK_EX)
	exclusive.Store(t, struct{}{})
	t.Cleanup(func() { exclusive.Delete(t) })
	if _, err := os.Stat(Socket); err != nil {
		testenv.Missing(t, "libvirtd is not running (%v); %s", err, install)
	}
}

// NeedQEMU is Need for tests that start real guests: qemu-system-x86_64 and qemu-img too.
// The test then holds one of the machine's guest slots (guestSlots) until it ends.
func NeedQEMU(t testing.TB) {
	t.Helper()
	testenv.LookPath(t, "qemu-system-x86_64", install)
	testenv.LookPath(t, "qemu-img", install)
	Need(t)
	holdGuestSlot(t)
}

// guestSlots is how many tests may run emulated guests at once on this machine, across
// test packages (go test runs packages side by side): VMRESTORE_TEST_GUESTS, else one per
// CPU. An emulated (TCG) boot computes: a 2-core machine booting five guests at once, as the
// parallel tests of three packages would, takes longer than their boot checks allow.
func guestSlots() int {
	if n, err := strconv.Atoi(os.Getenv("VMRESTORE_TEST_GUESTS")); err == nil && n > 0 {
		return n
	}
	return max(1, runtime.NumCPU())
}

// holdGuestSlot waits for a free guest slot (a lock file of its own for each: the slots are
// shared by every test process) and holds it until the test ends. It is taken after the
// libvirt lock, so a test waiting for a slot holds no slot a test with the exclusive lock
// could wait for.
func holdGuestSlot(t testing.TB) {
	t.Helper()
	n := guestSlots()
	start := time.Now()
	for {
		for i := range n {
			f, err := os.OpenFile(fmt.Sprintf("/tmp/vmrestore-guest-slot-%d.lock", i), os.O_CREATE|os.O_RDWR, 0o666)
			if err != nil {
				t.Fatalf("guest slot: %v", err)
			}
			if err := unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB); err != nil {
				f.Close()
				continue
			}
			if waited := time.Since(start); waited > time.Second {
				t.Logf("waited %v for one of the machine's %d guest slots", waited.Round(time.Second), n)
			}
			t.Cleanup(func() {
				_ = unix.Flock(int(f.Fd()), unix.LOCK_UN)
				f.Close()
			})
			return
		}
		time.Sleep(200 * time.Millisecond)
	}
}

func lock(t testing.TB, how int) {
	t.Helper()
	f, err := os.OpenFile(lockPath, os.O_CREATE|os.O_RDWR, 0o666)
	if err != nil {
		t.Fatalf("libvirt test lock: %v", err)
	}
	if err := unix.Flock(int(f.Fd()), how); err != nil {
		f.Close()
		t.Fatalf("libvirt test lock: %v", err)
	}
	t.Cleanup(func() {
		_ = unix.Flock(int(f.Fd()), unix.LOCK_UN)
		f.Close()
	})
}

// virshURI makes virsh ask the daemon: test:///default in virsh would open a private test
// driver inside virsh itself.
func virshURI(uri string) string {
	if rest, ok := strings.CutPrefix(uri, "test:///"); ok {
		return "test+unix:///" + rest
	}
	return uri
}

// Virsh runs virsh against uri and returns its output.
func Virsh(t testing.TB, uri string, args ...string) (string, error) {
	t.Helper()
	cmd := exec.Command("virsh", append([]string{"-q", "-c", virshURI(uri)}, args...)...)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	if err != nil {
		return out.String(), fmt.Errorf("virsh %s: %v: %s", strings.Join(args, " "), err, strings.TrimSpace(errb.String()))
	}
	return out.String(), nil
}

// Dashed is a VM uuid as libvirt writes it.
func Dashed(u string) string {
	return u[:8] + "-" + u[8:12] + "-" + u[12:16] + "-" + u[16:20] + "-" + u[20:]
}

// DomainState is virsh's word for the domain's state ("running", "shut off"), or "" when
// there is no domain with the VM's uuid.
func DomainState(t testing.TB, uri, vmUUID string) string {
	t.Helper()
	out, err := Virsh(t, uri, "domstate", Dashed(vmUUID))
	if err != nil {
		if strings.Contains(err.Error(), "ailed to get domain") || strings.Contains(err.Error(), "no domain with matching") {
			return ""
		}
		t.Fatalf("%v", err)
	}
	return strings.TrimSpace(out)
}

// CountDomains counts the domains (running or not) named after the VM's uuid.
func CountDomains(t testing.TB, uri, vmUUID string) int {
	t.Helper()
	out, err := Virsh(t, uri, "list", "--all", "--name")
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, l := range strings.Fields(out) {
		if l == vmUUID {
			n++
		}
	}
	return n
}

// DomainsOf lists the names of every domain (running or not) whose name is one of vms.
func DomainsOf(t testing.TB, uri string) []string {
	t.Helper()
	out, err := Virsh(t, uri, "list", "--all", "--name")
	if err != nil {
		t.Fatal(err)
	}
	return strings.Fields(out)
}

// RemoveDomain destroys and undefines a domain, ignoring one that does not exist.
func RemoveDomain(t testing.TB, uri, vmUUID string) {
	t.Helper()
	_, _ = Virsh(t, uri, "destroy", Dashed(vmUUID))
	_, _ = Virsh(t, uri, "undefine", "--managed-save", "--nvram", Dashed(vmUUID))
}

// bridges counts, per bridge this process created, the tests that use it: tests that start
// guests run in parallel, and the bridge goes only when the last of them ends.
var bridges = struct {
	sync.Mutex
	users map[string]int
}{users: map[string]int{}}

// Bridge makes sure a Linux bridge exists and is up for the test, and removes it after the
// last test of this process that uses it if this process created it. It skips (fails under
// CI) where bridges cannot be created.
func Bridge(t testing.TB, name string) {
	t.Helper()
	ip := testenv.LookPath(t, "ip", "install iproute2")
	bridges.Lock()
	defer bridges.Unlock()
	if n, ours := bridges.users[name]; ours {
		bridges.users[name] = n + 1
		t.Cleanup(func() { releaseBridge(ip, name) })
		return
	}
	if exec.Command(ip, "link", "show", name).Run() == nil {
		return
	}
	if out, err := exec.Command(ip, "link", "add", name, "type", "bridge").CombinedOutput(); err != nil {
		testenv.Missing(t, "cannot create bridge %s (tests that start guests with NICs need CAP_NET_ADMIN): %v: %s", name, err, out)
	}
	bridges.users[name] = 1
	t.Cleanup(func() { releaseBridge(ip, name) })
	if out, err := exec.Command(ip, "link", "set", name, "up").CombinedOutput(); err != nil {
		t.Fatalf("bring bridge %s up: %v: %s", name, err, out)
	}
}

// releaseBridge ends one test's use of a bridge this process created; the last one removes it.
func releaseBridge(ip, name string) {
	bridges.Lock()
	defer bridges.Unlock()
	if bridges.users[name]--; bridges.users[name] == 0 {
		delete(bridges.users, name)
		_ = exec.Command(ip, "link", "del", name).Run()
	}
}

// GuestDir is a temporary directory that the qemu user libvirt starts guests as can reach
// (t.TempDir's are private to root), removed after the test.
func GuestDir(t testing.TB) string {
	t.Helper()
	dir, err := os.MkdirTemp("", "vmrestore-guests-")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	return dir
}

// CopyFile copies src to dst (mode 0644), keeping src's holes: cp --sparse=always streams
// it (a 2 GiB disk of the backup tests, read whole into memory and written dense, took 28 s
// under -race).
func CopyFile(t testing.TB, src, dst string) {
	t.Helper()
	if out, err := exec.Command("cp", "--sparse=always", src, dst).CombinedOutput(); err != nil {
		t.Fatalf("copy %s to %s: %v: %s", src, dst, err, out)
	}
	if err := os.Chmod(dst, 0o644); err != nil {
		t.Fatal(err)
	}
}
