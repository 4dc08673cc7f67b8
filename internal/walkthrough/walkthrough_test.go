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

	"github.com/vmrestore/vmrestore/internal/testenv"
)

// page is the walkthrough, relative to this package.
const page = "../../docs/real-site.md"

// shellBlocks returns the ```sh blocks of a Markdown page, in order.
func shellBlocks(t *testing.T, path string) []string {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var blocks []string
	var cur *strings.Builder
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := sc.Text()
		switch {
		case cur == nil && strings.TrimSpace(line) == "```sh":
			cur = &strings.Builder{}
		case cur != nil && strings.TrimSpace(line) == "```":
			blocks = append(blocks, cur.String())
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
	if !strings.Contains(blocks[0], "export DRILL=") {
		t.Fatalf("the first block of %s must be the settings (export DRILL=...): %q", page, blocks[0])
	}
	drill := filepath.Join(t.TempDir(), "drill")
	overrides := fmt.Sprintf("export DRILL=%s REDIS_PORT=%d API_PORT=%d WORKER1_PORT=%d WORKER2_PORT=%d\n",
		drill, freePort(t), freePort(t), freePort(t), freePort(t))
	var script strings.Builder
	script.WriteString(blocks[0] + overrides)
	for i, b := range blocks[1:] {
		fmt.Fprintf(&script, "echo '### block %d'\n%s", i+2, b)
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
	for _, want := range []*regexp.Regexp{
		regexp.MustCompile(`level=WARN msg="BACKUP STORAGE EMPTY.*path=` + regexp.QuoteMeta(filepath.Join(drill, "backup"))),
		regexp.MustCompile(`Logged in to http://127\.0\.0\.1:\d+ as admin`),
		regexp.MustCompile(`disk 0 \(Root\) web01-root\.qcow2: done`),
		regexp.MustCompile(`The workers have indexed the group: it can be restored now\.`),
		regexp.MustCompile(`(?m)^[0-9a-f]{32}\s+web01-\S+\s+web01\s+2\s+3\.0 GiB\s.*complete$`),
		regexp.MustCompile(`(?m)^State:\s+complete \(restorable\)$`),
		regexp.MustCompile(`(?m)^[0-9a-f]{32}\s+web01-\S+\s+[0-9a-f]{32}\s+64\.\d MiB\s+ok$`),
		regexp.MustCompile(`\(restore-web01\) succeeded: 1/1 VM\(s\) succeeded`),
		regexp.MustCompile(`(?m)^[0-9a-f]{32}\s+web01-dr\s+Running\s+2\s+4\.0 GiB\s+[0-9a-f]{32}\s+10\.10\.0\.50\s`),
	} {
		if !want.MatchString(text) {
			t.Errorf("the walkthrough's output lacks %s", want)
		}
	}
	if t.Failed() || testing.Verbose() {
		t.Logf("output:\n%s", text)
	}
}
