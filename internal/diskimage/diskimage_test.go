package diskimage_test

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/vmrestore/vmrestore/internal/diskimage"
	"github.com/vmrestore/vmrestore/internal/testenv"
)

const qemuHint = "install qemu-utils (Debian/Ubuntu) or qemu-img (RHEL)"

func qemuImg(t *testing.T, args ...string) {
	t.Helper()
	if out, err := exec.Command("qemu-img", args...).CombinedOutput(); err != nil {
		t.Fatalf("qemu-img %v: %v\n%s", args, err, out)
	}
}

func TestProbe(t *testing.T) {
	testenv.LookPath(t, "qemu-img", qemuHint)
	dir := t.TempDir()
	at := func(name string) string { return filepath.Join(dir, name) }
	qemuImg(t, "create", "-q", "-f", "qcow2", at("root.qcow2"), "3G")
	qemuImg(t, "create", "-q", "-f", "raw", at("data.img"), "100M")
	qemuImg(t, "create", "-q", "-f", "qcow2", "-b", at("root.qcow2"), "-F", "qcow2", at("overlay.qcow2"))
	qemuImg(t, "create", "-q", "-f", "vmdk", at("disk.vmdk"), "10M")
	os.WriteFile(at("-dash.raw"), make([]byte, 4096), 0o640)
	os.Mkdir(at("folder"), 0o750)

	ctx := context.Background()
	i, err := diskimage.Probe(ctx, at("root.qcow2"))
	if err != nil || i.Format != "qcow2" || i.VirtualSize != 3<<30 || i.FileSize <= 0 {
		t.Fatalf("qcow2: %+v %v", i, err)
	}
	i, err = diskimage.Probe(ctx, at("data.img"))
	if err != nil || i.Format != "raw" || i.VirtualSize != 100<<20 || i.FileSize != 100<<20 {
		t.Fatalf("raw: %+v %v", i, err)
	}
	if i, err := diskimage.Probe(ctx, at("-dash.raw")); err != nil || i.Format != "raw" {
		t.Fatalf("a name starting with a dash: %+v %v", i, err)
	}
	for name, want := range map[string]string{
		"overlay.qcow2": "backing file",
		"disk.vmdk":     "the image is vmdk",
		"missing.qcow2": "no such file",
		"folder":        "not a regular file",
	} {
		if _, err := diskimage.Probe(ctx, at(name)); err == nil || !strings.Contains(strings.ToLower(err.Error()), want) {
			t.Errorf("%s: %v, want an error saying %q", name, err, want)
		}
	}
}

// A qcow2 image another QEMU process has open for writing is refused as in use.
func TestProbeRefusesAnImageInUse(t *testing.T) {
	testenv.LookPath(t, "qemu-img", qemuHint)
	testenv.LookPath(t, "qemu-io", qemuHint)
	path := filepath.Join(t.TempDir(), "busy.qcow2")
	qemuImg(t, "create", "-q", "-f", "qcow2", path, "1G")
	holder := exec.Command("qemu-io", "-f", "qcow2", path)
	stdin, err := holder.StdinPipe() // qemu-io keeps the image open while it waits for commands
	if err != nil {
		t.Fatal(err)
	}
	stdout, err := holder.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := holder.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { stdin.Close(); holder.Process.Kill(); holder.Wait() })
	// qemu-io answers "info" once the image is open (and locked): probe only then, so that a
	// slow start on a busy machine is not taken for a missing lock.
	if _, err := io.WriteString(stdin, "info\n"); err != nil {
		t.Fatal(err)
	}
	opened := make(chan error, 1)
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			if strings.Contains(sc.Text(), "format name: qcow2") {
				opened <- nil
				io.Copy(io.Discard, stdout)
				return
			}
		}
		opened <- fmt.Errorf("qemu-io ended before it had the image open: %v", sc.Err())
	}()
	select {
	case err := <-opened:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(time.Minute):
		t.Fatal("qemu-io did not open the image within a minute")
	}
	_, err = diskimage.Probe(context.Background(), path)
	if err == nil || !strings.Contains(err.Error(), "in use by a running VM") {
		t.Fatalf("an image in use: %v", err)
	}
}

func TestProbeWithoutQemuImg(t *testing.T) {
	old := diskimage.QemuImg
	diskimage.QemuImg = "qemu-img-not-installed"
	defer func() { diskimage.QemuImg = old }()
	path := filepath.Join(t.TempDir(), "x.raw")
	os.WriteFile(path, make([]byte, 512), 0o640)
	if _, err := diskimage.Probe(context.Background(), path); !errors.Is(err, diskimage.ErrNoQemuImg) || !strings.Contains(err.Error(), "apt-get install qemu-utils") {
		t.Fatalf("without qemu-img: %v", err)
	}
}
