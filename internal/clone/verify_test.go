package clone_test

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"testing"

	"github.com/vmrestore/vmrestore/internal/clone"
)

// A copy made with Compute (taking a backup) returns the checksum SumFile computes, for
// every algorithm, and never fails on the expected value it was not given.
func TestCopyComputesTheChecksum(t *testing.T) {
	dir := t.TempDir()
	for _, alg := range clone.Algorithms() {
		for _, v := range []volume{{"c-raw-" + alg, "raw", 64 << 20, 40}, {"c-q-" + alg, "qcow2", 1 << 30, 30}} {
			src := v.write(t, dir)
			dst := filepath.Join(dir, "out", v.name+"."+v.format)
			res, err := clone.Copy(context.Background(), open(t, src), dst, clone.Options{
				Digest: clone.Digest{Algorithm: alg}, Compute: true, Format: v.format, VirtualSize: v.virtual, NoReflink: true})
			if err != nil {
				t.Fatalf("%s %s: %v", alg, v.name, err)
			}
			if want := sum(t, src, alg); res.Checksum != want {
				t.Fatalf("%s %s: computed %s, SumFile says %s", alg, v.name, res.Checksum, want)
			}
			sameBytes(t, src, dst)
		}
	}
}

// Verify accepts an intact file, reports progress up to its length, and fails with
// ErrChecksum once a byte changed or ErrFormat when the declared size is wrong.
func TestVerify(t *testing.T) {
	dir := t.TempDir()
	v := volume{"verify", "qcow2", 2 << 30, 50}
	path := v.write(t, dir)
	want := sum(t, path, clone.XXH3Chunked)
	var last clone.Progress
	opt := clone.Options{Digest: clone.Digest{Algorithm: clone.XXH3Chunked, Value: want}, Format: "qcow2", VirtualSize: v.virtual,
		Progress: func(p clone.Progress) { last = p }}
	res, err := clone.Verify(context.Background(), open(t, path), opt)
	if err != nil {
		t.Fatal(err)
	}
	st, _ := os.Stat(path)
	if res.Checksum != want || last.Done != st.Size() || last.Total != st.Size() || res.DataBytes == 0 || res.DataBytes > st.Size() {
		t.Fatalf("result %+v, last progress %+v, file %d bytes", res, last, st.Size())
	}

	wrongSize := opt
	wrongSize.VirtualSize = 1 << 30
	if _, err := clone.Verify(context.Background(), open(t, path), wrongSize); !errors.Is(err, clone.ErrFormat) {
		t.Fatalf("a wrong virtual size: %v", err)
	}

	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	b := make([]byte, 1)
	off := st.Size() - 100 // inside the last data cluster
	f.ReadAt(b, off)
	b[0] ^= 0x40
	f.WriteAt(b, off)
	f.Close()
	if _, err := clone.Verify(context.Background(), open(t, path), opt); !errors.Is(err, clone.ErrChecksum) {
		t.Fatalf("a flipped bit: %v", err)
	}

	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := clone.Verify(ctx, open(t, path), opt); !errors.Is(err, context.Canceled) {
		t.Fatalf("a cancelled verify: %v", err)
	}
}
