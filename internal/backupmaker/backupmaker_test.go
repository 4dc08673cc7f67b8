package backupmaker_test

import (
	"context"
	crand "crypto/rand"
	"errors"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/vmrestore/vmrestore/internal/backup"
	"github.com/vmrestore/vmrestore/internal/backupmaker"
	"github.com/vmrestore/vmrestore/internal/clone"
	"github.com/vmrestore/vmrestore/internal/testenv"
)

// images writes a qcow2 root image (converted by qemu-img from data at scattered offsets)
// and a sparse raw data image, and returns their paths.
func images(t *testing.T, dir string) (root, data string) {
	t.Helper()
	testenv.LookPath(t, "qemu-img", "install qemu-utils (Debian/Ubuntu) or qemu-img (RHEL)")
	raw := filepath.Join(dir, "root-src.raw")
	writeScattered(t, raw, 1<<30, 3<<20)
	root = filepath.Join(dir, "root.qcow2")
	if out, err := exec.Command("qemu-img", "convert", "-f", "raw", "-O", "qcow2", raw, root).CombinedOutput(); err != nil {
		t.Fatalf("qemu-img convert: %v\n%s", err, out)
	}
	data = filepath.Join(dir, "data.raw")
	writeScattered(t, data, 32<<20, 2<<20) // eight 4 MiB copy chunks, holes between the data: what 256 MiB proved
	return root, data
}

// writeScattered makes a sparse file of size bytes with n random bytes in three places.
func writeScattered(t *testing.T, path string, size, n int64) {
	t.Helper()
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	f.Truncate(size)
	buf := make([]byte, n/3)
	// ChaCha8 (math/rand/v2), not crypto/rand: writing 1.5 GiB from crypto/rand took 13 s under
	// -race; the data need be random, not secret.
	var seed [32]byte
	crand.Read(seed[:])
	random := rand.NewChaCha8(seed)
	for _, off := range []int64{0, size / 3, size - int64(len(buf))} {
		random.Read(buf)
		if _, err := f.WriteAt(buf, off); err != nil {
			t.Fatal(err)
		}
	}
}

func sameFile(t *testing.T, a, b string) {
	t.Helper()
	// cmp streams both files: read whole into memory, two 2 GiB disks took most of a
	// minute under -race.
	if out, err := exec.Command("cmp", a, b).CombinedOutput(); err != nil {
		t.Fatalf("%s and %s differ: %v: %s", a, b, err, out)
	}
}

var web01 = backup.SourceVM{Name: "web01", Platform: "Linux", Architecture: "x86_64", CPUNum: 2, MemorySize: 4 << 30,
	Nics: []backup.SourceNic{{L3NetworkUUID: "d50554f493153be78f6740e18e598046", Mac: "fa:16:3e:01:02:03", IP: "10.10.0.77"}}}

// A backup of disk images is a complete, valid group whose files equal the images byte for
// byte and whose checksums are those of the files, for the default and a whole-file digest.
func TestMakeFromImages(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	root, data := images(t, dir)
	for _, alg := range []string{"", clone.SHA256} {
		storage := filepath.Join(dir, "bs-"+alg)
		os.Mkdir(storage, 0o750)
		var started, copied int
		var lastDone int64
		fixed := time.Date(2026, 11, 20, 2, 0, 0, 0, time.UTC)
		g, err := backupmaker.Make(context.Background(), &backupmaker.Images{VM: web01, Root: root, Data: []string{data}}, storage,
			backupmaker.Options{Checksum: alg, Now: func() time.Time { return fixed },
				Started:  func(s *backupmaker.Snapshot, _ string) { started = len(s.Disks) },
				Progress: func(i int, p clone.Progress) { lastDone = p.Done },
				Copied:   func(int, *backup.Volume, clone.Result) { copied++ }})
		if err != nil {
			t.Fatal(err)
		}
		if started != 2 || copied != 2 || lastDone == 0 {
			t.Fatalf("callbacks: started %d, copied %d, last progress %d", started, copied, lastDone)
		}
		if g.Name != "web01-2026-11-20-020000" || g.VM.Name != "web01" || len(g.Volumes) != 2 || g.Volumes[0].Format != "qcow2" ||
			g.Volumes[1].Format != "raw" || g.Volumes[1].Size != 32<<20 || g.Volumes[1].DeviceID != 1 || g.Root() == nil {
			t.Fatalf("group %+v", g)
		}
		read, err := backup.Read(storage, g.GroupUUID)
		if err != nil {
			t.Fatalf("the group does not read back: %v", err)
		}
		if e, _ := backup.Inspect(storage, g.GroupUUID); e.State != backup.Complete {
			t.Fatalf("state %s: %s", e.State, e.Problem)
		}
		for i, src := range []string{root, data} {
			v := &read.Volumes[i]
			path := filepath.Join(backup.GroupDir(storage, g.GroupUUID), v.File)
			sameFile(t, src, path)
			d := v.Digest()
			if want, _ := clone.SumFile(src, d.Algorithm); d.Value != want {
				t.Fatalf("volume %d: group.json says %s %s, the image's is %s", i, d.Algorithm, d.Value, want)
			}
			if alg == clone.SHA256 && v.SHA256 == "" {
				t.Fatal("a sha256 backup does not fill the sha256 field")
			}
			if r := backup.VerifyVolume(context.Background(), storage, read, v, nil); !r.OK {
				t.Fatalf("verify: %s", r.Error)
			}
		}
	}
}

// changingSource is a Source whose only disk is modified while it is copied: a running VM.
type changingSource struct{ path string }

func (c *changingSource) Open(context.Context) (*backupmaker.Snapshot, error) {
	st, err := os.Stat(c.path)
	if err != nil {
		return nil, err
	}
	return &backupmaker.Snapshot{VM: web01, Disks: []backupmaker.Disk{{Type: backup.VolumeRoot, Format: "raw", VirtualSize: st.Size(),
		Path: c.path, Open: func() (*os.File, error) { return os.Open(c.path) }}}}, nil
}

// A disk written during its copy fails the backup, and nothing of the group is left; so does
// a cancelled backup, and one whose source cannot be opened.
func TestMakeFailuresLeaveNothing(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	storage := filepath.Join(dir, "bs")
	os.Mkdir(storage, 0o750)
	disk := filepath.Join(dir, "busy.raw")
	writeScattered(t, disk, 64<<20, 6<<20)

	writes := 0
	_, err := backupmaker.Make(context.Background(), &changingSource{disk}, storage, backupmaker.Options{
		Progress: func(int, clone.Progress) {
			if writes == 0 {
				time.Sleep(20 * time.Millisecond) // a coarse mtime still moves
				f, _ := os.OpenFile(disk, os.O_WRONLY, 0)
				f.WriteAt([]byte("guest write"), 4096)
				f.Close()
			}
			writes++
		}})
	if !errors.Is(err, backupmaker.ErrChanged) || !strings.Contains(err.Error(), disk) {
		t.Fatalf("a disk written during the copy: %v", err)
	}
	if es, _ := backup.Survey(storage); len(es) != 0 {
		t.Fatalf("a failed backup left %+v", es)
	}

	ctx, cancel := context.WithCancel(context.Background())
	_, err = backupmaker.Make(ctx, &changingSource{disk}, storage, backupmaker.Options{BandwidthBytesPerSecond: 8 << 20,
		Progress: func(int, clone.Progress) { cancel() }})
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("a cancelled backup: %v", err)
	}
	if es, _ := backup.Survey(storage); len(es) != 0 {
		t.Fatalf("a cancelled backup left %+v", es)
	}

	for _, c := range []struct {
		src  backupmaker.Source
		want string
	}{
		{&backupmaker.Images{VM: web01, Root: filepath.Join(dir, "missing.qcow2")}, "no such file"},
		{&backupmaker.Images{VM: web01}, "root disk image is required"},
		{&backupmaker.Images{VM: web01, Root: disk, Data: []string{disk}}, "the same file"},
	} {
		if _, err := backupmaker.Make(context.Background(), c.src, storage, backupmaker.Options{}); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%+v: %v, want %q", c.src, err, c.want)
		}
	}
	if _, err := backupmaker.Make(context.Background(), &changingSource{disk}, storage, backupmaker.Options{Checksum: "md5"}); err == nil {
		t.Error("an unknown checksum algorithm was accepted")
	}
	if _, err := backupmaker.Make(context.Background(), &changingSource{disk}, filepath.Join(dir, "no-storage"), backupmaker.Options{}); err == nil ||
		!strings.Contains(err.Error(), "backup storage folder") {
		t.Errorf("a missing storage folder: %v", err)
	}
	if es, _ := backup.Survey(storage); len(es) != 0 {
		t.Fatalf("refused backups left %+v", es)
	}
}
