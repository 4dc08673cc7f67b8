package walkthrough

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/vmrestore/vmrestore/internal/hypervisor/libvirttest"
	"github.com/vmrestore/vmrestore/internal/testenv"
)

// page is the walkthrough, relative to this package.
const page = "../../docs/real-site.md"

// block is a shell block of the page; Libvirt marks those (```sh libvirt) that need the
// machine's libvirt.
type block struct {
	Text    string
	Libvirt bool
}

// shellBlocks returns the ```sh blocks of a Markdown page, in order.
func shellBlocks(t *testing.T, path string) []block {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var blocks []block
	var cur *strings.Builder
	libvirt := false
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := sc.Text()
		fence := strings.TrimSpace(line)
		switch {
		case cur == nil && (fence == "```sh" || fence == "```sh libvirt"):
			cur, libvirt = &strings.Builder{}, fence == "```sh libvirt"
		case cur != nil && fence == "```":
			blocks = append(blocks, block{Text: cur.String(), Libvirt: libvirt})
			cur = nil
		case cur != nil:
			cur.WriteString(line + "\n")
		}
	}
	if cur != nil {
		t.Fatalf("%s: a ```sh block is not closed", path)
	}
	return blocks
}

// hypervisorURI is the libvirt the page's domain step uses.
const hypervisorURI = "qemu:///system"

// libvirtAnswers reports whether the domain step can run: virsh, qemu-img and a libvirtd
// that answers (then holding the libvirt tests' shared lock). Without them the step is
// skipped, loudly, and under CI=true the test fails.
func libvirtAnswers(t *testing.T) bool {
	t.Helper()
	why := ""
	if _, err := exec.LookPath("virsh"); err != nil {
		why = "virsh is not installed (apt-get install libvirt-clients libvirt-daemon-system qemu-system-x86)"
	} else if err := libvirttest.Answers(t); err != nil {
		// Asked under the libvirt tests' lock: a test of another package that kills
		// libvirtd holds it until libvirtd answers again (a dial before the lock met the
		// daemon down in CI).
		why = err.Error() + "; start it: libvirtd -d"
	}
	if why != "" {
		if testenv.InCI() {
			t.Fatalf("the walkthrough's libvirt domain step cannot run under CI=true: %s", why)
		}
		t.Logf("SKIPPING the walkthrough's libvirt domain step (section 10 of %s): %s", page, why)
		return false
	}
	return true
}

func freePort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// TestRealSiteWalkthrough runs every shell block of docs/real-site.md in one bash, from the
// repository's root. The first block (settings) runs as written, then the test points its
// variables at a temporary folder and free ports; nothing else is changed.
func TestRealSiteWalkthrough(t *testing.T) {
	if testing.Short() {
		t.Skip("builds three binaries and runs a whole site (about a minute)")
	}
	for tool, hint := range map[string]string{
		"redis-server": "apt-get install redis-server", "redis-cli": "apt-get install redis-tools",
		"qemu-img": "apt-get install qemu-utils", "curl": "apt-get install curl", "go": "install Go",
	} {
		testenv.LookPath(t, tool, hint)
	}
	blocks := shellBlocks(t, page)
	if len(blocks) < 10 {
		t.Fatalf("%s has %d shell blocks; the walkthrough has more", page, len(blocks))
	}
	if !strings.Contains(blocks[0].Text, "export DRILL=") || !strings.Contains(blocks[0].Text, "export DOMAIN=") {
		t.Fatalf("the first block of %s must be the settings (export DRILL=..., DOMAIN=...): %q", page, blocks[0].Text)
	}
	withLibvirt := libvirtAnswers(t)
	drill := filepath.Join(t.TempDir(), "drill")
	domain := fmt.Sprintf("vmrestore-walk-%d", time.Now().UnixNano())
	overrides := fmt.Sprintf("export DRILL=%s REDIS_PORT=%d API_PORT=%d WORKER1_PORT=%d WORKER2_PORT=%d DOMAIN=%s\n",
		drill, freePort(t), freePort(t), freePort(t), freePort(t), domain)
	if withLibvirt {
		t.Cleanup(func() {
			_, _ = libvirttest.Virsh(t, hypervisorURI, "destroy", domain)
			_, _ = libvirttest.Virsh(t, hypervisorURI, "undefine", domain)
		})
	}
	var script strings.Builder
	script.WriteString(blocks[0].Text + overrides)
	for i, b := range blocks[1:] {
		if b.Libvirt && !withLibvirt {
			fmt.Fprintf(&script, "echo '### block %d: skipped, it needs libvirt'\n", i+2)
			continue
		}
		fmt.Fprintf(&script, "echo '### block %d'\n%s", i+2, b.Text)
	}
	root, err := filepath.Abs("../..")
	if err != nil {
		t.Fatal(err)
	}

	ctx, cancel := context.WithTimeout(context.Background(), 8*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "bash", "-euo", "pipefail", "-c", script.String())
	cmd.Dir = root
	// restorectl keeps its session in a file of the test's own, not the user's.
	cmd.Env = append(os.Environ(), "RESTORECTL_CONFIG="+filepath.Join(t.TempDir(), "session.json"))
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	// Whatever happens, nothing the walkthrough started outlives the test.
	defer syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
	err = cmd.Wait()
	logs := func() string {
		var b strings.Builder
		for _, name := range []string{"api.log", "worker1.log", "worker2.log", "redis.log"} {
			data, _ := os.ReadFile(filepath.Join(drill, name))
			fmt.Fprintf(&b, "\n--- %s:\n%s", name, data)
		}
		return b.String()
	}
	if err != nil {
		t.Fatalf("the walkthrough failed (%v):\n%s%s", err, out.String(), logs())
	}
	text := out.String()
	expected := []*regexp.Regexp{
		regexp.MustCompile(`level=WARN msg="BACKUP STORAGE EMPTY.*path=` + regexp.QuoteMeta(filepath.Join(drill, "backup"))),
		regexp.MustCompile(`Logged in to http://127\.0\.0\.1:\d+ as admin`),
		regexp.MustCompile(`disk 0 \(Root\) web01-root\.qcow2: done`),
		regexp.MustCompile(`The workers have indexed the group: it can be restored now\.`),
		regexp.MustCompile(`(?m)^[0-9a-f]{32}\s+web01-\S+\s+web01\s+2\s+3\.0 GiB\s.*complete$`),
		regexp.MustCompile(`(?m)^State:\s+complete \(restorable\)$`),
		regexp.MustCompile(`(?m)^[0-9a-f]{32}\s+web01-\S+\s+[0-9a-f]{32}\s+64\.\d MiB\s+ok$`),
		regexp.MustCompile(`\(restore-web01\) succeeded: 1/1 VM\(s\) succeeded`),
		regexp.MustCompile(`(?m)^[0-9a-f]{32}\s+web01-dr\s+Running\s+2\s+4\.0 GiB\s+[0-9a-f]{32}\s+10\.10\.0\.50\s`),
	}
	if withLibvirt {
		d := regexp.QuoteMeta(domain)
		expected = append(expected,
			regexp.MustCompile(`disk 0 \(Root\) vda web02-root\.qcow2: done`),
			regexp.MustCompile(`disk 1 \(Data\) vdb web02-data\.raw: done`),
			regexp.MustCompile(`(?m)^[0-9a-f]{32}\s+`+d+`-\S+\s+`+d+`\s+2\s+1\.5 GiB\s.*complete$`),
			regexp.MustCompile(`(?m)^[0-9a-f]{32}\s+`+d+`-\S+\s+[0-9a-f]{32}\s+32\.\d MiB\s+ok$`),
			regexp.MustCompile(`\(restore-web02\) succeeded: 1/1 VM\(s\) succeeded`),
			regexp.MustCompile(`(?m)^[0-9a-f]{32}\s+`+d+`-dr\s+Running\s+1\s+512\.0 MiB\s+[0-9a-f]{32}\s+10\.10\.0\.51\s`))
	}
	for _, want := range expected {
		if !want.MatchString(text) {
			t.Errorf("the walkthrough's output lacks %s", want)
		}
	}
	if t.Failed() || testing.Verbose() {
		t.Logf("output:\n%s", text)
	}
}
