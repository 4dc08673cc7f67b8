package clone_test

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"hash"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/zeebo/blake3"
	"github.com/zeebo/xxh3"
	"golang.org/x/sys/unix"

	"github.com/vmrestore/vmrestore/internal/backup"
	"github.com/vmrestore/vmrestore/internal/clone"
	"github.com/vmrestore/vmrestore/internal/demosite"
	"github.com/vmrestore/vmrestore/internal/testenv"
)

// allocated returns the bytes a file occupies on disk (st_blocks).
func allocated(tb testing.TB, path string) int64 {
	tb.Helper()
	var st unix.Stat_t
	if err := unix.Stat(path, &st); err != nil {
		tb.Fatalf("stat %s: %v", path, err)
	}
	return st.Blocks * 512
}

// sameBytes compares two files byte for byte. Outside the data extents of both files
// (SEEK_DATA/SEEK_HOLE) both read as zeros, so only the union of their extents is read.
func sameBytes(tb testing.TB, a, b string) {
	tb.Helper()
	fa, fb := open(tb, a), open(tb, b)
	sa, _ := fa.Stat()
	sb, _ := fb.Stat()
	if sa.Size() != sb.Size() {
		tb.Fatalf("%s is %d bytes, %s is %d", a, sa.Size(), b, sb.Size())
	}
	size := sa.Size()
	nextData := func(f *os.File, off int64) (int64, int64) {
		start, err := unix.Seek(int(f.Fd()), off, unix.SEEK_DATA)
		if err != nil {
			return size, size
		}
		end, _ := unix.Seek(int(f.Fd()), start, unix.SEEK_HOLE)
		return start, min(end, size)
	}
	ba, bb := make([]byte, 8<<20), make([]byte, 8<<20)
	compared := int64(0)
	for off := int64(0); off < size; {
		s1, e1 := nextData(fa, off)
		s2, e2 := nextData(fb, off)
		start := min(s1, s2)
		if start >= size {
			break
		}
		end := e1 // the end of the extent that starts first, extended over overlapping ones
		if s2 < s1 || (s2 == s1 && e2 > e1) {
			end = e2
		}
		for pos := start; pos < end; {
			n := int(min(int64(len(ba)), end-pos))
			na, _ := fa.ReadAt(ba[:n], pos)
			nb, _ := fb.ReadAt(bb[:n], pos)
			if na != n || nb != n || !bytes.Equal(ba[:n], bb[:n]) {
				tb.Fatalf("%s and %s differ in the %d bytes at %d", a, b, n, pos)
			}
			pos += int64(n)
			compared += int64(n)
		}
		off = end
	}
	if compared == 0 && size > 0 {
		tb.Logf("%s and %s are all holes", a, b)
	}
}

func open(tb testing.TB, path string) *os.File {
	tb.Helper()
	f, err := os.Open(path)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { f.Close() })
	return f
}

func sum(tb testing.TB, path, algorithm string) string {
	tb.Helper()
	s, err := clone.SumFile(path, algorithm)
	if err != nil {
		tb.Fatal(err)
	}
	return s
}

// leftovers lists every file under dir (a copy that failed must leave none).
func leftovers(tb testing.TB, dir string) []string {
	tb.Helper()
	var out []string
	filepath.WalkDir(dir, func(p string, d os.DirEntry, err error) error {
		if err == nil && !d.IsDir() {
			out = append(out, p)
		}
		return nil
	})
	return out
}

// volume is a sparse test volume.
type volume struct {
	name    string
	format  string
	virtual int64
	blocks  int // 64 KiB data blocks
}

func (v volume) write(tb testing.TB, dir string) string {
	tb.Helper()
	path := filepath.Join(dir, v.name+"."+v.format)
	var err error
	if v.format == "qcow2" {
		err = demosite.WriteQcow2(path, v.virtual, v.blocks, v.name)
	} else {
		err = demosite.WriteRaw(path, v.virtual, v.blocks, v.name)
	}
	if err != nil {
		tb.Fatal(err)
	}
	return path
}

// Sparse raw and qcow2 volumes of several GiB copy byte for byte, keep their holes and verify
// with every algorithm; the chunked digest reads nothing but data.
func TestCopySparseVolumes(t *testing.T) {
	vols := []volume{
		{"raw8g", "raw", 8 << 30, 512},       // 32 MiB of data spread over 8 GiB
		{"raw256m", "raw", 256 << 20, 64},    // 4 MiB over 256 MiB: the whole-file digests hash its holes too
		{"qcow16g", "qcow2", 16 << 30, 2048}, // a dense 128 MiB qcow2 file, 16 GiB virtual
	}
	algos := []string{clone.XXH3Chunked, clone.BLAKE3Chunked, clone.SHA256, clone.BLAKE3}
	src := t.TempDir()
	for _, v := range vols {
		path := v.write(t, src)
		for _, algo := range algos {
			if (algo == clone.SHA256 || algo == clone.BLAKE3) && v.format == "raw" && v.virtual > 1<<30 {
				continue // whole-file digests hash every hole: keep the test fast
			}
			t.Run(v.name+"/"+algo, func(t *testing.T) {
				dst := filepath.Join(t.TempDir(), "vol", v.name+"."+v.format)
				var last clone.Progress
				calls := 0
				start := time.Now()
				res, err := clone.Copy(context.Background(), open(t, path), dst, clone.Options{
					Digest: clone.Digest{Algorithm: algo, Value: sum(t, path, algo)},
					Format: v.format, VirtualSize: v.virtual, NoReflink: true,
					Progress: func(p clone.Progress) {
						if p.Done < last.Done || p.Data < last.Data {
							t.Errorf("progress went back: %+v after %+v", p, last)
						}
						last = p
						calls++
					},
				})
				if err != nil {
					t.Fatal(err)
				}
				t.Logf("%s %s: %v, %d data bytes, %d written, %d allocated", v.name, algo, time.Since(start).Round(time.Millisecond), res.DataBytes, res.WrittenBytes, res.ActualSize)
				sameBytes(t, path, dst)
				srcAlloc, dstAlloc := allocated(t, path), allocated(t, dst)
				if dstAlloc > srcAlloc || res.ActualSize != dstAlloc {
					t.Errorf("holes not kept: source allocates %d bytes, copy %d (reported %d)", srcAlloc, dstAlloc, res.ActualSize)
				}
				if res.DataBytes > srcAlloc+2*clone.DigestChunk*int64(v.blocks) {
					t.Errorf("read %d bytes for %d allocated: holes were read", res.DataBytes, srcAlloc)
				}
				if last.Done != last.Total || last.Total != res.Size || calls < 2 {
					t.Errorf("last progress %+v after %d calls, size %d", last, calls, res.Size)
				}
				if _, err := os.Stat(dst + clone.PartSuffix); !errors.Is(err, os.ErrNotExist) {
					t.Errorf("partial file left: %v", err)
				}
			})
		}
	}
}

// Zeros written out in the source become holes in the copy, at 4 KiB granularity.
func TestCopyTurnsZeroBlocksIntoHoles(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "dense.raw")
	b := make([]byte, 8<<20) // 8 MiB written out, only 3 pages not zero
	b[5] = 1
	b[3<<20+4097] = 2
	b[len(b)-1] = 3
	if err := os.WriteFile(path, b, 0o640); err != nil {
		t.Fatal(err)
	}
	dst := filepath.Join(dir, "out", "copy.raw")
	res, err := clone.Copy(context.Background(), open(t, path), dst, clone.Options{
		Digest: clone.Digest{Algorithm: clone.XXH3Chunked, Value: sum(t, path, clone.XXH3Chunked)}, Format: "raw", NoReflink: true})
	if err != nil {
		t.Fatal(err)
	}
	sameBytes(t, path, dst)
	if got := allocated(t, dst); got > 3*4096 || res.WrittenBytes != 3*4096 {
		t.Errorf("copy allocates %d bytes and wrote %d; 3 pages of data expected", got, res.WrittenBytes)
	}
}

// The chunked digests are exactly what docs/architecture.md defines; this reference implementation
// reads the whole file naively.
func TestChunkedDigestDefinition(t *testing.T) {
	type def struct {
		name  string
		outer func() hash.Hash
		leaf  func([]byte) []byte
	}
	defs := []def{
		{clone.XXH3Chunked, func() hash.Hash { return xxh3.New128() }, func(b []byte) []byte { s := xxh3.Hash128(b).Bytes(); return s[:] }},
		{clone.BLAKE3Chunked, func() hash.Hash { return blake3.New() }, func(b []byte) []byte { s := blake3.Sum256(b); return s[:] }},
	}
	ref := func(d def, data []byte) string {
		h := d.outer()
		h.Write([]byte("vmrestore " + d.name + " v1\n"))
		h.Write(binary.LittleEndian.AppendUint64(nil, uint64(len(data))))
		for i := 0; i*65536 < len(data); i++ {
			chunk := data[i*65536 : min((i+1)*65536, len(data))]
			if bytes.Count(chunk, []byte{0}) == len(chunk) {
				continue
			}
			h.Write(binary.LittleEndian.AppendUint64(nil, uint64(i)))
			h.Write(d.leaf(chunk))
		}
		return fmt.Sprintf("%x", h.Sum(nil))
	}
	dir := t.TempDir()
	pattern := func(n int) []byte {
		b := make([]byte, n)
		for i := range b {
			b[i] = byte(i*131 + i>>11 + 1)
		}
		return b
	}
	cases := []struct {
		name string
		data []byte
	}{
		{"empty", nil},
		{"short", []byte("hello")},
		{"zeros", make([]byte, 3<<20+7)},
		{"dense odd tail", pattern(5<<20 + 12345)},
		{"data, zero chunks, data", func() []byte {
			b := pattern(2 << 20)
			clear(b[300000:1500000])
			return b
		}()},
	}
	sparse := filepath.Join(dir, "sparse.raw")
	if err := demosite.WriteRaw(sparse, 64<<20, 16, "seed"); err != nil {
		t.Fatal(err)
	}
	sparseData, _ := os.ReadFile(sparse)
	for _, d := range defs {
		for _, c := range cases {
			t.Run(d.name+"/"+c.name, func(t *testing.T) {
				path := filepath.Join(dir, strings.ReplaceAll(c.name, " ", "_"))
				os.WriteFile(path, c.data, 0o640)
				want := ref(d, c.data)
				if got := sum(t, path, d.name); got != want {
					t.Fatalf("SumFile %s, definition %s", got, want)
				}
				// Fed in odd pieces, as data and as zeros, the verifier agrees.
				v, err := clone.NewVerifier(d.name, int64(len(c.data)))
				if err != nil {
					t.Fatal(err)
				}
				for i := 0; i < len(c.data); {
					n := min(len(c.data)-i, 1+(i*7919)%200000)
					if bytes.Count(c.data[i:i+n], []byte{0}) == n {
						v.Zeros(int64(n))
					} else {
						v.Data(c.data[i : i+n])
					}
					i += n
				}
				if got := v.Sum(); got != want {
					t.Fatalf("piecewise %s, definition %s", got, want)
				}
			})
		}
		// A sparse file: SumFile skips holes and still matches the definition.
		if got, want := sum(t, sparse, d.name), ref(d, sparseData); got != want {
			t.Fatalf("%s of a sparse file: SumFile %s, definition %s", d.name, got, want)
		}
	}
	// The published example value (docs/architecture.md) of 1 MiB of bytes i%251 followed by 1 MiB of zeros.
	ex := make([]byte, 2<<20)
	for i := range 1 << 20 {
		ex[i] = byte(i % 251)
	}
	readme := map[string]string{
		clone.XXH3Chunked:   "74665d8403e07f89253d8dbece068781",
		clone.BLAKE3Chunked: "a01f0592249b97c51b8ddd283a6bbf076f87ed6de5ea8fe485770ac5106312f5",
	}
	for _, d := range defs {
		if got := ref(d, ex); got != readme[d.name] {
			t.Errorf("docs/architecture.md example of %s: definition gives %s, the doc says %s", d.name, got, readme[d.name])
		}
	}
}

// group.json accepts exactly the algorithms Copy verifies.
func TestAlgorithmsMatchGroupValidation(t *testing.T) {
	if got, want := clone.Algorithms(), backup.SupportedDigests(); !slices.Equal(got, want) {
		t.Fatalf("clone verifies %v, group.json accepts %v", got, want)
	}
}

// Every refused copy leaves nothing behind: no file, no partial file, no folder it created.
func TestCopyRefusals(t *testing.T) {
	src := t.TempDir()
	raw := volume{"r", "raw", 64 << 20, 16}.write(t, src)
	qcow := volume{"q", "qcow2", 1 << 30, 8}.write(t, src)
	qcowWith := func(edit func(b []byte)) string {
		b, _ := os.ReadFile(qcow)
		edit(b)
		p := filepath.Join(src, fmt.Sprintf("edited%d.qcow2", len(os.Args)+int(b[4])+int(b[27])+int(b[0])))
		os.WriteFile(p, b, 0o640)
		return p
	}
	badMagic := qcowWith(func(b []byte) { b[0] = 'X' })
	v4 := qcowWith(func(b []byte) { b[7] = 4 })
	short := filepath.Join(src, "short.qcow2")
	os.WriteFile(short, []byte("QFI\xfb\x00"), 0o640)
	cases := []struct {
		name    string
		path    string
		opt     clone.Options
		want    error
		wantMsg string
	}{
		{"checksum mismatch", raw, clone.Options{Format: "raw", VirtualSize: 64 << 20,
			Digest: clone.Digest{Algorithm: clone.XXH3Chunked, Value: strings.Repeat("0", 64)}}, clone.ErrChecksum, "computed"},
		{"sha256 mismatch", raw, clone.Options{Format: "raw", VirtualSize: 64 << 20,
			Digest: clone.Digest{Algorithm: clone.SHA256, Value: sum(t, qcow, clone.SHA256)}}, clone.ErrChecksum, "sha256 expected"},
		{"raw size", raw, clone.Options{Format: "raw", VirtualSize: 65 << 20,
			Digest: clone.Digest{Algorithm: clone.XXH3Chunked, Value: sum(t, raw, clone.XXH3Chunked)}}, clone.ErrFormat, "group declares a size"},
		{"qcow2 virtual size", qcow, clone.Options{Format: "qcow2", VirtualSize: 2 << 30,
			Digest: clone.Digest{Algorithm: clone.XXH3Chunked, Value: sum(t, qcow, clone.XXH3Chunked)}}, clone.ErrFormat, "qcow2 virtual size 1073741824"},
		{"qcow2 magic", badMagic, clone.Options{Format: "qcow2", VirtualSize: 1 << 30,
			Digest: clone.Digest{Algorithm: clone.XXH3Chunked, Value: sum(t, badMagic, clone.XXH3Chunked)}}, clone.ErrFormat, "no qcow2 magic"},
		{"qcow2 version", v4, clone.Options{Format: "qcow2", VirtualSize: 1 << 30,
			Digest: clone.Digest{Algorithm: clone.XXH3Chunked, Value: sum(t, v4, clone.XXH3Chunked)}}, clone.ErrFormat, "qcow2 version 4"},
		{"qcow2 too short", short, clone.Options{Format: "qcow2", VirtualSize: 1 << 30,
			Digest: clone.Digest{Algorithm: clone.XXH3Chunked, Value: sum(t, short, clone.XXH3Chunked)}}, clone.ErrFormat, "too short"},
		{"unknown algorithm", raw, clone.Options{Format: "raw", Digest: clone.Digest{Algorithm: "md5", Value: "x"}}, nil, "not supported"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			out := t.TempDir()
			dst := filepath.Join(out, "vol-x", "x.img")
			_, err := clone.Copy(context.Background(), open(t, c.path), dst, c.opt)
			if err == nil || (c.want != nil && !errors.Is(err, c.want)) || !strings.Contains(err.Error(), c.wantMsg) {
				t.Fatalf("got %v, want %v containing %q", err, c.want, c.wantMsg)
			}
			if left := leftovers(t, out); len(left) > 0 {
				t.Fatalf("left behind: %v", left)
			}
			if _, err := os.Stat(filepath.Dir(dst)); !errors.Is(err, os.ErrNotExist) {
				t.Fatalf("the volume folder the copy created is still there")
			}
		})
	}
	// The qcow2 header checks pass on the real file.
	dst := filepath.Join(t.TempDir(), "ok.qcow2")
	if _, err := clone.Copy(context.Background(), open(t, qcow), dst, clone.Options{Format: "qcow2", VirtualSize: 1 << 30,
		Digest: clone.Digest{Algorithm: clone.XXH3Chunked, Value: sum(t, qcow, clone.XXH3Chunked)}}); err != nil {
		t.Fatal(err)
	}
}

// A source that cannot be read is a *SourceError; a partial file of an earlier attempt is
// replaced; a cancelled copy removes what it wrote.
func TestCopyFailures(t *testing.T) {
	src := t.TempDir()
	raw := volume{"r", "raw", 256 << 20, 64}.write(t, src)
	digest := clone.Digest{Algorithm: clone.XXH3Chunked, Value: sum(t, raw, clone.XXH3Chunked)}

	t.Run("unreadable source", func(t *testing.T) {
		f, err := os.OpenFile(raw, os.O_WRONLY, 0)
		if err != nil {
			t.Fatal(err)
		}
		defer f.Close()
		out := t.TempDir()
		_, err = clone.Copy(context.Background(), f, filepath.Join(out, "v", "x.raw"), clone.Options{Digest: digest, Format: "raw"})
		var se *clone.SourceError
		if !errors.As(err, &se) {
			t.Fatalf("want a SourceError, got %T %v", err, err)
		}
		if left := leftovers(t, out); len(left) > 0 {
			t.Fatalf("left behind: %v", left)
		}
	})
	// A file cut short between two of its data extents is found out when the next extent is
	// looked for, not mistaken for a hole (which would end in a checksum mismatch).
	t.Run("source shrinks between extents", func(t *testing.T) {
		path := filepath.Join(t.TempDir(), "shrinks.raw")
		f, err := os.Create(path)
		if err != nil {
			t.Fatal(err)
		}
		block := bytes.Repeat([]byte{7}, 64<<10)
		for _, off := range []int64{0, 4 << 20} {
			if _, err := f.WriteAt(block, off); err != nil {
				t.Fatal(err)
			}
		}
		if err := f.Truncate(8 << 20); err != nil {
			t.Fatal(err)
		}
		f.Close()
		d := clone.Digest{Algorithm: clone.XXH3Chunked, Value: sum(t, path, clone.XXH3Chunked)}
		out := t.TempDir()
		cut := false
		_, err = clone.Copy(context.Background(), open(t, path), filepath.Join(out, "v", "x.raw"), clone.Options{Digest: d, Format: "raw", NoReflink: true,
			Progress: func(clone.Progress) {
				if !cut { // after the first extent is copied
					cut = true
					if err := os.Truncate(path, 1<<20); err != nil {
						t.Error(err)
					}
				}
			}})
		var se *clone.SourceError
		if !errors.As(err, &se) || !strings.Contains(err.Error(), "file shrank") {
			t.Fatalf("want a SourceError saying the file shrank, got %T %v", err, err)
		}
		if left := leftovers(t, out); len(left) > 0 {
			t.Fatalf("left behind: %v", left)
		}
	})
	t.Run("stale partial file", func(t *testing.T) {
		dst := filepath.Join(t.TempDir(), "x.raw")
		os.WriteFile(dst+clone.PartSuffix, []byte("garbage of a killed copy"), 0o640)
		if _, err := clone.Copy(context.Background(), open(t, raw), dst, clone.Options{Digest: digest, Format: "raw"}); err != nil {
			t.Fatal(err)
		}
		sameBytes(t, raw, dst)
		if _, err := os.Stat(dst + clone.PartSuffix); !errors.Is(err, os.ErrNotExist) {
			t.Fatal("partial file left")
		}
	})
	t.Run("cancelled", func(t *testing.T) {
		out := t.TempDir()
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		calls := 0
		_, err := clone.Copy(ctx, open(t, raw), filepath.Join(out, "v", "x.raw"), clone.Options{Digest: digest, Format: "raw", ChunkSize: 64 << 10,
			Throttle: func(ctx context.Context, n int) error {
				if calls++; calls == 10 {
					cancel()
				}
				return ctx.Err()
			}})
		if !errors.Is(err, context.Canceled) {
			t.Fatalf("want context.Canceled, got %v", err)
		}
		if left := leftovers(t, out); len(left) > 0 {
			t.Fatalf("left behind: %v", left)
		}
	})
	t.Run("throttled chunks", func(t *testing.T) {
		var sizes []int
		dst := filepath.Join(t.TempDir(), "x.raw")
		res, err := clone.Copy(context.Background(), open(t, raw), dst, clone.Options{Digest: digest, Format: "raw", ChunkSize: 200 << 10,
			Throttle: func(ctx context.Context, n int) error { sizes = append(sizes, n); return nil }})
		if err != nil {
			t.Fatal(err)
		}
		total := 0
		for _, n := range sizes {
			total += n
			if n > 192<<10 || n%(64<<10) != 0 {
				t.Fatalf("throttle asked for %d bytes; chunks are 64 KiB multiples up to ChunkSize", n)
			}
		}
		if int64(total) != res.DataBytes {
			t.Fatalf("throttle saw %d bytes, %d were read", total, res.DataBytes)
		}
	})
}

// A full destination fails with a *DestError that NoSpace recognises, and leaves nothing.
func TestCopyDiskFull(t *testing.T) {
	mnt := t.TempDir()
	if err := unix.Mount("tmpfs", mnt, "tmpfs", 0, "size=16m"); err != nil {
		testenv.Missing(t, "cannot mount a 16 MiB tmpfs to fill (needs root and CAP_SYS_ADMIN): %v", err)
	}
	t.Cleanup(func() { unix.Unmount(mnt, unix.MNT_DETACH) })
	src := t.TempDir()
	raw := volume{"big", "raw", 1 << 30, 512}.write(t, src) // 32 MiB of data
	_, err := clone.Copy(context.Background(), open(t, raw), filepath.Join(mnt, "vol", "big.raw"), clone.Options{
		Digest: clone.Digest{Algorithm: clone.XXH3Chunked, Value: sum(t, raw, clone.XXH3Chunked)}, Format: "raw"})
	var de *clone.DestError
	if !errors.As(err, &de) || !clone.NoSpace(err) {
		t.Fatalf("want a DestError with ENOSPC, got %T %v", err, err)
	}
	if left := leftovers(t, mnt); len(left) > 0 {
		t.Fatalf("left behind: %v", left)
	}
	var st unix.Statfs_t
	unix.Statfs(mnt, &st)
	if free := int64(st.Bfree) * st.Bsize; free < 15<<20 {
		t.Fatalf("only %d bytes free after the failed copy: space was not given back", free)
	}
}

// On a filesystem with reflinks (XFS here, on a loop device) the copy shares the source's
// extents and is still verified.
func TestCopyReflink(t *testing.T) {
	testenv.LookPath(t, "mkfs.xfs", "install Debian's xfsprogs; without it the reflink path is not tested")
	img := filepath.Join(t.TempDir(), "xfs.img")
	if err := os.WriteFile(img, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	os.Truncate(img, 512<<20)
	if out, err := exec.Command("mkfs.xfs", "-q", "-m", "reflink=1", img).CombinedOutput(); err != nil {
		testenv.Missing(t, "mkfs.xfs cannot make a reflink filesystem: %v: %s", err, out)
	}
	mnt := t.TempDir()
	if out, err := exec.Command("mount", "-o", "loop", img, mnt).CombinedOutput(); err != nil {
		testenv.Missing(t, "cannot loop-mount an XFS image (needs root and loop devices): %v: %s", err, out)
	}
	t.Cleanup(func() { exec.Command("umount", "-l", mnt).Run() })

	src := volume{"v", "raw", 4 << 30, 256}.write(t, mnt) // 16 MiB of data
	good := clone.Digest{Algorithm: clone.XXH3Chunked, Value: sum(t, src, clone.XXH3Chunked)}
	dst := filepath.Join(mnt, "primary", "v.raw")
	res, err := clone.Copy(context.Background(), open(t, src), dst, clone.Options{Digest: good, Format: "raw"})
	if err != nil {
		t.Fatal(err)
	}
	if !res.Reflinked || res.WrittenBytes != 0 || res.DataBytes == 0 {
		t.Fatalf("want a verified reflink, got %+v", res)
	}
	sameBytes(t, src, dst)

	// A mismatch is still caught, and the clone removed.
	bad := filepath.Join(mnt, "primary", "bad.raw")
	_, err = clone.Copy(context.Background(), open(t, src), bad, clone.Options{Format: "raw",
		Digest: clone.Digest{Algorithm: clone.XXH3Chunked, Value: strings.Repeat("a", 64)}})
	if !errors.Is(err, clone.ErrChecksum) {
		t.Fatalf("want ErrChecksum, got %v", err)
	}
	for _, p := range []string{bad, bad + clone.PartSuffix} {
		if _, err := os.Stat(p); !errors.Is(err, os.ErrNotExist) {
			t.Fatalf("%s left behind", p)
		}
	}
}

// The child side of TestCopyKilledMidway: copy slowly until killed.
func TestMain(m *testing.M) {
	if src := os.Getenv("CLONE_TEST_CHILD_SRC"); src != "" {
		f, err := os.Open(src)
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(2)
		}
		opt := clone.Options{
			Digest:    clone.Digest{Algorithm: clone.XXH3Chunked, Value: os.Getenv("CLONE_TEST_CHILD_SUM")},
			Format:    "raw",
			ChunkSize: 1 << 20,
			Throttle: func(ctx context.Context, n int) error {
				time.Sleep(20 * time.Millisecond) // ~50 MiB/s
				return nil
			},
		}
		if path := os.Getenv("CLONE_TEST_CHILD_CHECKPOINT"); path != "" {
			// Each checkpoint replaces the file, as the job record's field is replaced.
			opt.CheckpointEvery = 4 << 20
			opt.Checkpoint = func(cp clone.Checkpoint) error {
				b, _ := json.Marshal(cp)
				if err := os.WriteFile(path+".tmp", b, 0o640); err != nil {
					return err
				}
				return os.Rename(path+".tmp", path)
			}
		}
		_, err = clone.Copy(context.Background(), f, os.Getenv("CLONE_TEST_CHILD_DST"), opt)
		fmt.Fprintln(os.Stderr, "child copy ended:", err)
		os.Exit(3)
	}
	os.Exit(m.Run())
}

// A copy killed with SIGKILL leaves only its partial file; copying again replaces it and
// leaves exactly the source bytes, no partial or orphaned file.
func TestCopyKilledMidway(t *testing.T) {
	srcDir, outDir := t.TempDir(), t.TempDir()
	src := volume{"k", "raw", 2 << 30, 1024}.write(t, srcDir) // 64 MiB of data
	digest := sum(t, src, clone.XXH3Chunked)
	dst := filepath.Join(outDir, "vol-k", "k.raw")

	child := exec.Command(os.Args[0], "-test.run=^$")
	child.Env = append(os.Environ(), "CLONE_TEST_CHILD_SRC="+src, "CLONE_TEST_CHILD_DST="+dst, "CLONE_TEST_CHILD_SUM="+digest)
	var stderr bytes.Buffer
	child.Stderr = &stderr
	if err := child.Start(); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(20 * time.Second)
	for {
		if st, err := os.Stat(dst + clone.PartSuffix); err == nil && allocated(t, dst+clone.PartSuffix) >= 8<<20 {
			_ = st
			break
		}
		if time.Now().After(deadline) {
			child.Process.Kill()
			child.Wait()
			t.Fatalf("the child never wrote 8 MiB: %s", stderr.String())
		}
		time.Sleep(10 * time.Millisecond)
	}
	child.Process.Signal(unix.SIGKILL)
	child.Wait()
	if _, err := os.Stat(dst); !errors.Is(err, os.ErrNotExist) {
		t.Fatal("a killed copy must not have renamed its file into place")
	}
	if _, err := os.Stat(dst + clone.PartSuffix); err != nil {
		t.Fatalf("the killed copy should leave its partial file: %v", err)
	}

	res, err := clone.Copy(context.Background(), open(t, src), dst, clone.Options{
		Digest: clone.Digest{Algorithm: clone.XXH3Chunked, Value: digest}, Format: "raw"})
	if err != nil {
		t.Fatal(err)
	}
	sameBytes(t, src, dst)
	if left := leftovers(t, outDir); !slices.Equal(left, []string{dst}) {
		t.Fatalf("files after the re-run: %v, want only %s", left, dst)
	}
	if res.ActualSize > allocated(t, src) {
		t.Fatalf("the re-run copy allocates %d bytes, the source %d", res.ActualSize, allocated(t, src))
	}
}

var _ = io.EOF
