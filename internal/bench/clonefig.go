package bench

import (
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"time"

	"github.com/vmrestore/vmrestore/internal/clone"
)

// cloneThroughput: the clone engine against `cp --sparse=always` (followed by a sync of the
// copy, as the engine fsyncs) on the same file and disk, alternating; and the time to copy a
// file with 90 % holes against a dense one holding the same data.
func cloneThroughput(ctx context.Context, c Config) ([]Figure, error) {
	dir, err := os.MkdirTemp(c.Dir, "vmrestore-bench-clone-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(dir)
	size := int64(c.pick(2<<30, 256<<20))
	rounds := c.pick(3, 2)
	src := filepath.Join(dir, "dense.raw")
	if err := writeRandom(src, size, 0, 1); err != nil {
		return nil, err
	}
	sum, err := clone.SumFile(src, clone.XXH3Chunked)
	if err != nil {
		return nil, err
	}
	engine := func(path string, sz int64, digest string) (time.Duration, error) {
		f, err := os.Open(path)
		if err != nil {
			return 0, err
		}
		defer f.Close()
		dst := filepath.Join(dir, "out", filepath.Base(path))
		os.RemoveAll(filepath.Dir(dst))
		t0 := time.Now()
		_, err = clone.Copy(ctx, f, dst, clone.Options{Digest: clone.Digest{Algorithm: clone.XXH3Chunked, Value: digest}, Format: "raw", VirtualSize: sz})
		return time.Since(t0), err
	}
	cp := func() (time.Duration, error) {
		dst := filepath.Join(dir, "cp.raw")
		os.Remove(dst)
		t0 := time.Now()
		if out, err := exec.Command("cp", "--sparse=always", src, dst).CombinedOutput(); err != nil {
			return 0, fmt.Errorf("cp: %v %s", err, out)
		}
		if out, err := exec.Command("sync", dst).CombinedOutput(); err != nil {
			return 0, fmt.Errorf("sync: %v %s", err, out)
		}
		d := time.Since(t0)
		os.Remove(dst)
		return d, nil
	}
	var eng, ref []float64
	mb := float64(size) / (1 << 20)
	for i := 0; i < rounds; i++ {
		d, err := engine(src, size, sum)
		if err != nil {
			return nil, err
		}
		eng = append(eng, mb/d.Seconds())
		d, err = cp()
		if err != nil {
			return nil, err
		}
		ref = append(ref, mb/d.Seconds())
	}
	e, r := median(eng), median(ref)
	c.logf("clone %.0f MiB/s, cp %.0f MiB/s (medians of %d)", e, r, rounds)

	// Sparse efficiency: the same amount of data, alone or spread over ten times the space.
	data := size / 4
	dense, sparse := filepath.Join(dir, "data-dense.raw"), filepath.Join(dir, "data-sparse.raw")
	if err := writeRandom(dense, data, 0, 1); err != nil {
		return nil, err
	}
	if err := writeRandom(sparse, data, 9, 2); err != nil {
		return nil, err
	}
	var td, ts []float64
	dsum, _ := clone.SumFile(dense, clone.XXH3Chunked)
	ssum, _ := clone.SumFile(sparse, clone.XXH3Chunked)
	st, _ := os.Stat(sparse)
	for i := 0; i < rounds; i++ {
		d, err := engine(dense, data, dsum)
		if err != nil {
			return nil, err
		}
		td = append(td, d.Seconds())
		d, err = engine(sparse, st.Size(), ssum)
		if err != nil {
			return nil, err
		}
		ts = append(ts, d.Seconds())
	}
	note := fmt.Sprintf("%d MiB of random data on %s, medians of %d alternating runs; reference: cp --sparse=always + sync", size>>20, c.Dir, rounds)
	return []Figure{
		figure("clone throughput", e, "MiB/s", num(round(r)), "ratio ≥ 0.9",
			func(_, ratio float64) bool { return ratio >= 0.9 }, note),
		figure("sparse copy time, 90 % holes", median(ts), "s", num(round(median(td))), "ratio ≤ 1.5",
			func(_, ratio float64) bool { return ratio <= 1.5 },
			fmt.Sprintf("%d MiB of data spread over %d MiB; reference: the same data packed in a dense file", data>>20, st.Size()>>20)),
	}, nil
}

// writeRandom writes data bytes of random content; with holes > 0 every 1 MiB of data is
// followed by holes MiB of hole.
func writeRandom(path string, data int64, holes int64, seed uint64) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	defer f.Close()
	r := rand.NewChaCha8([32]byte{byte(seed)})
	buf := make([]byte, 1<<20)
	var off int64
	for written := int64(0); written < data; written += int64(len(buf)) {
		r.Read(buf)
		if _, err := f.WriteAt(buf, off); err != nil {
			return err
		}
		off += int64(len(buf)) * (1 + holes)
	}
	if holes > 0 {
		if err := f.Truncate(off); err != nil {
			return err
		}
	}
	return f.Sync()
}
