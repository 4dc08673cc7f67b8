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
	"strings"
	"sync/atomic"
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

// exclusive is set while a test of this process holds the exclusive lock (which covers the
// shared one: flock locks of one process on two descriptors would deadlock).
var exclusive atomic.Bool

// Need skips (fails under CI) unless libvirtd answers on its socket, and holds a shared
// lock on it for the test.
func Need(t testing.TB) {
	t.Helper()
	testenv.LookPath(t, "virsh", install)
	c, err := net.DialTimeout("unix", Socket, 2*time.Second)
	if err != nil {
		testenv.Missing(t, "libvirtd does not answer on %s (%v); %s", Socket, err, install)
	}
	c.Close()
	if !exclusive.Load() {
		lock(t, unix.LOCK_SH)
	}
}

// NeedExclusive is Need for a test that stops or kills libvirtd: no other test package
// uses the daemon meanwhile.
func NeedExclusive(t testing.TB) {
	t.Helper()
	testenv.LookPath(t, "virsh", install)
	testenv.LookPath(t, "libvirtd", install)
	lock(t, unix.LOCK_EX)
	exclusive.Store(true)
	t.Cleanup(func() { exclusive.Store(false) })
	if _, err := os.Stat(Socket); err != nil {
		testenv.Missing(t, "libvirtd is not running (%v); %s", err, install)
	}
}

// NeedQEMU is Need for tests that start real guests: qemu-system-x86_64 and qemu-img too.
func NeedQEMU(t testing.TB) {
	t.Helper()
	testenv.LookPath(t, "qemu-system-x86_64", install)
	testenv.LookPath(t, "qemu-img", install)
	Need(t)
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

// Bridge makes sure a Linux bridge exists and is up for the test, and removes it afterwards
// if the test created it. It skips (fails under CI) where bridges cannot be created.
func Bridge(t testing.TB, name string) {
	t.Helper()
	ip := testenv.LookPath(t, "ip", "install iproute2")
	if exec.Command(ip, "link", "show", name).Run() == nil {
		return
	}
	if out, err := exec.Command(ip, "link", "add", name, "type", "bridge").CombinedOutput(); err != nil {
		testenv.Missing(t, "cannot create bridge %s (tests that start guests with NICs need CAP_NET_ADMIN): %v: %s", name, err, out)
	}
	t.Cleanup(func() { _ = exec.Command(ip, "link", "del", name).Run() })
	if out, err := exec.Command(ip, "link", "set", name, "up").CombinedOutput(); err != nil {
		t.Fatalf("bring bridge %s up: %v: %s", name, err, out)
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

// CopyFile copies src to dst (mode 0644).
func CopyFile(t testing.TB, src, dst string) {
	t.Helper()
	b, err := os.ReadFile(src)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(dst, b, 0o644); err != nil {
		t.Fatal(err)
	}
}
