package main

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/vmrestore/vmrestore/internal/redistest"
	"github.com/vmrestore/vmrestore/internal/testenv"
)

// TestEmbeddedModeWalkthrough runs the api binary with no configuration but a port and a
// data directory, as a new user would, then pastes the curl sequence it prints into bash and
// checks that a VM was restored and its volume files written.
func TestEmbeddedModeWalkthrough(t *testing.T) {
	// The tools of the printed walkthrough, by the Debian package that has them.
	for tool, pkg := range map[string]string{"bash": "bash", "curl": "curl", "sha512sum": "coreutils", "sed": "sed"} {
		testenv.LookPath(t, tool, "install Debian's "+pkg)
	}
	dir := t.TempDir()
	bin := filepath.Join(dir, "api")
	if out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	data := filepath.Join(dir, "data")
	port := redistest.FreePort(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	cmd := exec.CommandContext(ctx, bin)
	cmd.Env = append(os.Environ(), fmt.Sprintf("VMRESTORE_HTTP_ADDR=127.0.0.1:%d", port), "VMRESTORE_DATA_DIR="+data,
		"REDIS_ADDR=", "VMRESTORE_SITE=", "VMRESTORE_ADMIN_PASSWORD=")
	stdout, _ := cmd.StdoutPipe()
	var stderr strings.Builder
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() {
		cmd.Process.Signal(os.Interrupt)
		cmd.Wait()
		if t.Failed() {
			t.Logf("api stderr:\n%s", stderr.String())
		}
	}()

	banner := readBanner(t, stdout)
	for _, want := range []string{"listening on http://127.0.0.1:", "EMBEDDED", "IN MEMORY", "simulator", "login:      admin / ", "new at every start"} {
		if !strings.Contains(banner, want) {
			t.Fatalf("banner lacks %q:\n%s", want, banner)
		}
	}
	script := banner[strings.Index(banner, "paste into a shell):")+len("paste into a shell):"):]
	script = script[:strings.Index(script, "\nThe answer")]
	out, err := exec.Command("bash", "-ec", script).CombinedOutput()
	if err != nil {
		t.Fatalf("the printed walkthrough failed: %v\n%s\nscript:\n%s", err, out, script)
	}
	var answer struct {
		Inventory struct {
			State      string `json:"state"`
			AllVolumes []struct {
				InstallPath string `json:"installPath"`
			} `json:"allVolumes"`
		} `json:"inventory"`
	}
	if !strings.HasSuffix(string(out), "}\n") {
		t.Fatalf("the printed answer does not end its line: %q", out[max(0, len(out)-40):])
	}
	if err := json.Unmarshal(out, &answer); err != nil {
		t.Fatalf("the walkthrough did not print an inventory: %v\n%s", err, out)
	}
	if answer.Inventory.State != "Running" || len(answer.Inventory.AllVolumes) != 2 {
		t.Fatalf("unexpected inventory: %s", out)
	}
	for _, v := range answer.Inventory.AllVolumes {
		if !strings.HasPrefix(v.InstallPath, data) {
			t.Fatalf("volume %s is not under the data dir %s", v.InstallPath, data)
		}
		if _, err := os.Stat(v.InstallPath); err != nil {
			t.Fatalf("restored volume missing: %v", err)
		}
	}

	// The banner's restorectl line logs in as printed, with restorectl on PATH.
	_, line, ok := strings.Cut(banner, "  restorectl: ")
	if !ok {
		t.Fatalf("the banner has no restorectl line:\n%s", banner)
	}
	line, _, _ = strings.Cut(line, "   (")
	if out, err := exec.Command("go", "build", "-o", filepath.Join(dir, "restorectl"), "../restorectl").CombinedOutput(); err != nil {
		t.Fatalf("go build restorectl: %v\n%s", err, out)
	}
	login := exec.Command("bash", "-ec", line)
	login.Env = append(os.Environ(), "PATH="+dir+":"+os.Getenv("PATH"), "RESTORECTL_CONFIG="+filepath.Join(dir, "restorectl.json"), "RESTORECTL_URL=")
	if out, err := login.CombinedOutput(); err != nil || !strings.Contains(string(out), "Logged in") {
		t.Fatalf("the banner's restorectl line %q failed: %v\n%s", line, err, out)
	}
}

func readBanner(t *testing.T, r io.Reader) string {
	t.Helper()
	lines := make(chan string)
	go func() {
		sc := bufio.NewScanner(r)
		for sc.Scan() {
			lines <- sc.Text()
		}
		close(lines)
	}()
	var b strings.Builder
	timeout := time.After(60 * time.Second)
	for {
		select {
		case l, ok := <-lines:
			if !ok {
				t.Fatalf("the api exited before printing its banner:\n%s", b.String())
			}
			b.WriteString(l + "\n")
			if strings.HasPrefix(l, "The answer is the VM inventory") {
				go func() {
					for range lines {
					}
				}()
				return b.String()
			}
		case <-timeout:
			t.Fatalf("no complete banner within 60 s:\n%s", b.String())
		}
	}
}
