package clone_test

import (
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/vmrestore/vmrestore/internal/clone"
	"github.com/vmrestore/vmrestore/internal/demosite"
)

// BenchmarkDigest measures the checksum algorithms on data in memory (MB/s), and the chunked
// digest on a sparse 64 GiB file holding 64 MiB of data, which it verifies without reading
// holes (its MB/s counts virtual bytes).
func BenchmarkDigest(b *testing.B) {
	data := make([]byte, 64<<20)
	rand.NewChaCha8([32]byte{1}).Read(data)
	for _, algo := range []string{clone.SHA256, clone.BLAKE3, clone.BLAKE3Chunked, clone.XXH3Chunked} {
		b.Run(algo, func(b *testing.B) {
			b.SetBytes(int64(len(data)))
			for b.Loop() {
				v, _ := clone.NewVerifier(algo, int64(len(data)))
				for off := 0; off < len(data); off += 4 << 20 {
					v.Data(data[off : off+4<<20])
				}
				v.Sum()
			}
		})
	}
	b.Run("xxh3-chunked-64k/sparse-64GiB", func(b *testing.B) {
		path := filepath.Join(b.TempDir(), "sparse.raw")
		if err := demosite.WriteRaw(path, 64<<30, 1024, "bench"); err != nil {
			b.Fatal(err)
		}
		b.SetBytes(64 << 30)
		for b.Loop() {
			if _, err := clone.SumFile(path, clone.XXH3Chunked); err != nil {
				b.Fatal(err)
			}
		}
	})
}

// benchDir is a directory on a real disk (not tmpfs) for copy benchmarks.
func benchDir(tb testing.TB) string {
	tb.Helper()
	base := os.Getenv("VMRESTORE_BENCH_DIR")
	if base == "" {
		base = "/var/tmp"
	}
	dir, err := os.MkdirTemp(base, "vmrestore-clone-bench-")
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { os.RemoveAll(dir) })
	var st unix.Statfs_t
	if unix.Statfs(dir, &st) == nil && st.Type == unix.TMPFS_MAGIC {
		tb.Logf("warning: %s is on tmpfs; set VMRESTORE_BENCH_DIR to a directory on a disk", dir)
	}
	return dir
}

func writeDense(tb testing.TB, path string, size int64) {
	tb.Helper()
	f, err := os.Create(path)
	if err != nil {
		tb.Fatal(err)
	}
	defer f.Close()
	r := rand.NewChaCha8([32]byte{7})
	buf := make([]byte, 8<<20)
	for off := int64(0); off < size; off += int64(len(buf)) {
		r.Read(buf)
		if _, err := f.Write(buf[:min(int64(len(buf)), size-off)]); err != nil {
			tb.Fatal(err)
		}
	}
	if err := f.Sync(); err != nil {
		tb.Fatal(err)
	}
}

// strategy is one way of copying src to dst durably (fsynced), timed by the caller.
type strategy struct {
	name string
	run  func(tb testing.TB, src, dst string)
}

func engine(algorithm, digest string) func(testing.TB, string, string) {
	return func(tb testing.TB, src, dst string) {
		f := open(tb, src)
		if _, err := clone.Copy(context.Background(), f, dst, clone.Options{
			Digest: clone.Digest{Algorithm: algorithm, Value: digest}, NoReflink: true}); err != nil {
			tb.Fatal(err)
		}
	}
}

func command(name string, args ...string) func(testing.TB, string, string) {
	return func(tb testing.TB, src, dst string) {
		cmd := exec.Command(name, append(slices.Clone(args), src, dst)...)
		if out, err := cmd.CombinedOutput(); err != nil {
			tb.Fatalf("%s: %v: %s", name, err, out)
		}
	}
}

// sequential reads, hashes and then writes each 256 KiB block in one goroutine, with either
// pwrite or copy_file_range (which copies the range again inside the kernel, from the page
// cache the hashing read filled).
func sequential(useCopyFileRange bool) func(testing.TB, string, string) {
	return func(tb testing.TB, srcPath, dst string) {
		src := open(tb, srcPath)
		out, err := os.Create(dst)
		if err != nil {
			tb.Fatal(err)
		}
		defer out.Close()
		st, _ := src.Stat()
		buf := make([]byte, 256<<10)
		h, _ := clone.NewVerifier(clone.XXH3Chunked, st.Size())
		for off := int64(0); off < st.Size(); {
			n, _ := src.ReadAt(buf, off)
			h.Data(buf[:n])
			if useCopyFileRange {
				roff, woff := off, off
				for left := n; left > 0; {
					k, err := unix.CopyFileRange(int(src.Fd()), &roff, int(out.Fd()), &woff, left, 0)
					if err != nil || k == 0 {
						tb.Fatalf("copy_file_range: %v", err)
					}
					left -= k
				}
			} else if _, err := out.WriteAt(buf[:n], off); err != nil {
				tb.Fatal(err)
			}
			off += int64(n)
		}
		if err := out.Sync(); err != nil {
			tb.Fatal(err)
		}
	}
}

func median(d []time.Duration) time.Duration {
	s := slices.Clone(d)
	slices.Sort(s)
	return s[len(s)/2]
}

// timeRounds runs every strategy once per round, in a rotating order so that none always
// runs first (after the previous copy's deletion) or last, and returns each one's times.
func timeRounds(tb testing.TB, dir, src string, rounds int, strategies []strategy) map[string][]time.Duration {
	tb.Helper()
	times := map[string][]time.Duration{}
	for r := range rounds {
		for i := range strategies {
			s := strategies[(i+r)%len(strategies)]
			dst := filepath.Join(dir, "dst-"+s.name)
			os.Remove(dst)
			unix.Sync() // start each copy with no dirty pages of the previous one
			start := time.Now()
			s.run(tb, src, dst)
			times[s.name] = append(times[s.name], time.Since(start))
			os.Remove(dst)
		}
	}
	return times
}

// TestCloneThroughputVsCp compares the engine with cp --sparse=always on the same disk, and
// times a sparse file against a dense file holding the same data. It takes a few minutes
// and needs about 5 GiB free under VMRESTORE_BENCH_DIR (default /var/tmp):
//
//	VMRESTORE_BENCH_CLONE=1 go test ./internal/clone -run ThroughputVsCp -v -timeout 30m
//
// The engine fsyncs before it renames (a restored volume must survive a power cut), so the
// like-for-like baseline is cp followed by sync of the file; plain cp, which leaves its data
// in the page cache, is shown too.
func TestCloneThroughputVsCp(t *testing.T) {
	if os.Getenv("VMRESTORE_BENCH_CLONE") != "1" {
		t.Skip("set VMRESTORE_BENCH_CLONE=1 to run the copy benchmark (a few minutes, 5 GiB of disk)")
	}
	const size = 2 << 30
	rounds := 9
	dir := benchDir(t)
	src := filepath.Join(dir, "dense.raw")
	writeDense(t, src, size)
	digest := sum(t, src, clone.XXH3Chunked)
	cpSync := func(tb testing.TB, s, d string) {
		command("cp", "--sparse=always")(tb, s, d)
		command("sync")(tb, d, d)
	}
	times := timeRounds(t, dir, src, rounds, []strategy{
		{"engine", engine(clone.XXH3Chunked, digest)},
		{"cp+sync", cpSync},
		{"cp", command("cp", "--sparse=always")},
	})
	mbps := func(d time.Duration) float64 { return float64(size) / d.Seconds() / 1e6 }
	row := func(name string, d []time.Duration, note string) {
		m, b := median(d), slices.Min(d)
		fmt.Printf("  %-38s median %6v %5.0f MB/s  best %6v %5.0f MB/s  all: %v%s\n", name,
			m.Round(time.Millisecond), mbps(m), b.Round(time.Millisecond), mbps(b), roundAll(d), note)
	}
	fmt.Printf("\nCopy of a %d MiB dense file, %d alternating rounds, fsynced unless noted:\n", size>>20, rounds)
	row("engine (xxh3-chunked-64k)", times["engine"], "")
	row("cp --sparse=always; sync FILE", times["cp+sync"], "")
	row("cp --sparse=always", times["cp"], "  (not fsynced: data left in the page cache)")
	// This machine (a VM shared with other sessions) has a random slow mode in which the
	// kernel's page-cache copies run about 3× slower (perf: copy_folio_from_iter_atomic),
	// hitting cp and the engine alike; medians depend on how many runs it hit, the best of N
	// compares the programs. Both are printed; the requirement is checked on the best.
	best := slices.Min(times["cp+sync"]).Seconds() / slices.Min(times["engine"]).Seconds()
	med := median(times["cp+sync"]).Seconds() / median(times["engine"]).Seconds()
	fmt.Printf("  engine / cp+sync throughput: best %.2f, median %.2f;  engine / cp (no fsync): best %.2f\n", best, med,
		slices.Min(times["cp"]).Seconds()/slices.Min(times["engine"]).Seconds())
	if best < 0.9 {
		t.Errorf("the engine reaches %.2f of cp+sync's throughput (best of %d); at least 0.9 required", best, rounds)
	}

	// Alternatives the engine's design was chosen against, fewer rounds.
	b3 := sum(t, src, clone.BLAKE3Chunked)
	alt := timeRounds(t, dir, src, 3, []strategy{
		{"engine", engine(clone.XXH3Chunked, digest)},
		{"engine-blake3", engine(clone.BLAKE3Chunked, b3)},
		{"pwrite", sequential(false)},
		{"copy_file_range", sequential(true)},
		{"cp+sync", cpSync},
	})
	fmt.Printf("\nAlternatives, %d rounds:\n", 3)
	row("engine (xxh3-chunked-64k)", alt["engine"], "")
	row("engine (blake3-chunked-64k)", alt["engine-blake3"], "")
	row("1 thread: read, hash, pwrite", alt["pwrite"], "")
	row("1 thread: read, hash, copy_file_range", alt["copy_file_range"], "")
	row("cp --sparse=always; sync FILE", alt["cp+sync"], "")

	// Sparse: 64 GiB virtual holding 512 MiB, against a dense 512 MiB file.
	sparse := filepath.Join(dir, "sparse.raw")
	if err := demosite.WriteRaw(sparse, 64<<30, 8192, "bench"); err != nil {
		t.Fatal(err)
	}
	dense := filepath.Join(dir, "dense512.raw")
	writeDense(t, dense, 512<<20)
	sparseSum, denseSum := sum(t, sparse, clone.XXH3Chunked), sum(t, dense, clone.XXH3Chunked)
	sp := timeRounds(t, dir, sparse, 5, []strategy{{"engine", engine(clone.XXH3Chunked, sparseSum)}, {"cp+sync", cpSync}})
	dt := timeRounds(t, dir, dense, 5, []strategy{{"engine", engine(clone.XXH3Chunked, denseSum)}})["engine"]
	st := sp["engine"]
	fmt.Printf("\nSparse file, 64 GiB virtual holding 512 MiB in 8192 extents of 64 KiB, 5 rounds (median):\n")
	fmt.Printf("  engine, sparse 64 GiB / 512 MiB    %8v  all: %v\n", median(st).Round(time.Millisecond), roundAll(st))
	fmt.Printf("  cp+sync, sparse 64 GiB / 512 MiB   %8v  all: %v\n", median(sp["cp+sync"]).Round(time.Millisecond), roundAll(sp["cp+sync"]))
	fmt.Printf("  engine, dense 512 MiB              %8v  all: %v\n", median(dt).Round(time.Millisecond), roundAll(dt))
	fmt.Printf("  sparse / dense time: %.2f, while the virtual size is 128× the data\n", median(st).Seconds()/median(dt).Seconds())
	// Proportional to the virtual size would be 128× the dense time; the fragmented sparse
	// copy costs more per byte (one extent per 64 KiB on both sides) but stays far below.
	if median(st) > 8*median(dt) {
		t.Errorf("the sparse copy took %v, more than 8× the dense copy of the same data (%v)", median(st), median(dt))
	}
}

func roundAll(d []time.Duration) []time.Duration {
	out := make([]time.Duration, len(d))
	for i := range d {
		out[i] = d[i].Round(10 * time.Millisecond)
	}
	return out
}
