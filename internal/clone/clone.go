// Package clone copies a volume backup file to its install path on primary storage.
//
// Contract of Copy:
//   - Sparse: only the source's data extents (SEEK_DATA/SEEK_HOLE) are read, and 4 KiB
//     blocks of zeros are not written, so holes stay holes and a 100 GiB file holding 2 GiB
//     of data costs about 2 GiB of I/O, in time proportional to the data.
//   - Verified on the way through: every byte read is hashed exactly once, from the buffer
//     it is written from (no second read pass); a mismatch fails with ErrChecksum. With the
//     chunked digests (XXH3Chunked, BLAKE3Chunked) holes cost no hashing either.
//   - Fast: one goroutine reads, hashes and writes 128 KiB blocks (cache-sized, like cp's
//     loop) with the default XXH3Chunked digest; with a slower digest (SHA-256, BLAKE3) it
//     hands each block to a second goroutine that hashes it, overlapping hashing and copy.
//     Where source and destination share a filesystem with reflinks (XFS, btrfs) the file
//     is cloned with FICLONE instead, and the clone verified by reading it once.
//   - Crash safe: the copy is written to "<dst>.part", fsynced, renamed into place and the
//     directory fsynced. A copy that fails removes its partial file (and the volume folder
//     it created).
//   - Resumable (resume.go): with checkpoints on, the copy makes its progress durable every
//     few MiB (the .part fsynced, the digest's state saved) and a later Copy given the last
//     checkpoint verifies what is on disk and goes on from there; otherwise a copy killed
//     mid-way leaves "<dst>.part", which the next Copy to the same dst (or Remove) deletes
//     before starting over.
//   - Errors are typed: *SourceError (reading the backup), *DestError (writing primary
//     storage; NoSpace tells a full one), ErrChecksum, ErrFormat.
//
// Decisions measured on the 2-vCPU, ext4 development machine (see bench_test.go and the
// docs/architecture.md, "Volume cloning"):
//   - copy_file_range is not used. Without reflinks it is an in-kernel page-cache copy of
//     the source range, made after (and apart from) the read that hashed it. Measured in a
//     single-thread read+hash loop it was 10-30% faster here than pwrite from the buffer,
//     and the engine as built is at parity with cp+fsync anyway; but the bytes it copies
//     are not the bytes that were hashed (a re-read from the page cache, or from the backup
//     storage if the pages were evicted meanwhile), which defeats verifying on the way
//     through, and it cannot leave blocks of zeros as holes. Where it would share extents,
//     FICLONE does, and the clone is verified. (NFS 4.2 server-side copy is not used.)
//   - sync_file_range to start write-back during the copy, from the copying goroutine or
//     from one of its own, did not help here and mostly made it slower (the filesystem's
//     block allocation then competes with the copy for the 2 CPUs), so the copy relies on
//     the final fsync.
//   - Handing every block to a hashing goroutine costs a thread wake-up per block, more
//     than hashing it with XXH3; the goroutine only pays off for slower digests.
//   - The default digest is XXH3Chunked: BLAKE3 (2.7-3 GB/s on one core when the machine
//     is quiet) made a 2 GiB copy take 3.8-4.0 s instead of 2.3-2.4 s; XXH3 runs at memory
//     speed.
package clone

import (
	"bufio"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"syscall"

	"golang.org/x/sys/unix"
)

// PartSuffix marks a volume file still being written.
const PartSuffix = ".part"

// FileMode is the mode of a restored volume's file: its owner writes, its group reads.
const FileMode os.FileMode = 0o640

const (
	// blockSize is the unit read, hashed and written, the size cp uses: small enough that a
	// block read into memory is still in the CPU cache when it is hashed and written
	// (measured here: 4 MiB blocks made the copy 2-4 times slower than 256 KiB ones, and
	// 128 KiB was as fast or faster than 256 KiB), large enough that syscalls are amortised.
	// A multiple of DigestChunk.
	blockSize = 128 << 10
	// depth is how many blocks one copy has in flight between the copier and the hasher.
	depth = 8
	// defaultChunk is how many bytes are reserved per Throttle call.
	defaultChunk = 4 << 20
	// sparseBlock is the granularity at which zeros become holes in the copy.
	sparseBlock = 4 << 10
)

// Digest names the expected checksum of the source bytes.
type Digest struct {
	Algorithm string
	Value     string
}

// Options of one copy.
type Options struct {
	Digest Digest
	// Format and VirtualSize are checked against the file: a qcow2 header must carry the
	// magic, version 2 or 3 and this virtual size; a raw file must be this long.
	Format      string
	VirtualSize int64
	// Progress, if set, is called (never concurrently, at most once per chunk) as the copy
	// advances; Done grows monotonically to Total.
	Progress func(Progress)
	// Throttle, if set, is called before n bytes of data are read; it returns when they may be.
	Throttle func(ctx context.Context, n int) error
	// ChunkSize is how many bytes are reserved per Throttle call (rounded to 64 KiB, at most
	// 4 MiB, the default). A bandwidth-limited copy uses smaller chunks so that progress
	// moves at least every second.
	ChunkSize int
	// NoReflink copies the bytes even where the filesystem could share extents with the source.
	NoReflink bool
	// Compute makes a copy whose checksum is not known yet (taking a backup): the digest of
	// Digest.Algorithm is computed on the way through and returned in Result.Checksum, and
	// Digest.Value is not checked.
	Compute bool
	// CheckpointEvery, with Checkpoint, makes the copy resumable: every CheckpointEvery bytes
	// of the source it makes its progress durable and calls Checkpoint with it (an error
	// fails the copy). Resume, when set, is the last checkpoint of an earlier copy to dst.
	CheckpointEvery int64
	Checkpoint      func(Checkpoint) error
	Resume          *Checkpoint
	// Verified, if set, is called once every byte has been read, written and verified, before
	// the copy is made durable (fsync, rename, folder fsyncs): the copy reads the source no
	// more, and a caller limiting concurrent reads can let the next copy start.
	Verified func()
}

// Progress of a copy: Done bytes of the source file's Total length were processed (holes
// count as processed), of which Data bytes are data; Read is the data this call read (a
// resumed copy's Data includes what its checkpoint covered).
type Progress struct {
	Done, Total, Data, Read int64
}

func (o *Options) chunkSize() int {
	if o.ChunkSize <= 0 || o.ChunkSize >= defaultChunk {
		return defaultChunk
	}
	return max(o.ChunkSize/DigestChunk, 1) * DigestChunk
}

// Result describes a finished copy.
type Result struct {
	// ActualSize is the space the copy takes on disk (allocated blocks), as ZStack reports it.
	ActualSize int64
	// DataBytes is how many bytes this call read and hashed (holes excluded, and what a
	// resumed copy's checkpoint covered).
	DataBytes int64
	// WrittenBytes is how many bytes this call wrote (zero blocks and reflinked data excluded).
	WrittenBytes int64
	// Size is the file's apparent size.
	Size int64
	// Reflinked reports that the copy shares its extents with the source (FICLONE).
	Reflinked bool
	// Checksum is the digest of the bytes copied (or verified), in Options.Digest.Algorithm.
	Checksum string
	// ResumedAt is the offset the copy went on from (0: it started at the beginning);
	// ResumeRefused says why Options.Resume could not be used.
	ResumedAt     int64
	ResumeRefused string
}

// Typed failures, so callers can map them to the right ZStack error.
var (
	ErrChecksum = errors.New("checksum mismatch")
	ErrFormat   = errors.New("volume file does not match its declared format")
)

// SourceError is a failure to read the backup; DestError a failure to write primary storage.
type SourceError struct{ Err error }
type DestError struct{ Err error }

func (e *SourceError) Error() string { return "reading the backup: " + e.Err.Error() }
func (e *SourceError) Unwrap() error { return e.Err }
func (e *DestError) Error() string   { return "writing primary storage: " + e.Err.Error() }
func (e *DestError) Unwrap() error   { return e.Err }

// NoSpace reports whether err is a full destination.
func NoSpace(err error) bool { return errors.Is(err, syscall.ENOSPC) || errors.Is(err, syscall.EDQUOT) }

// Copy copies src to dst. On success dst holds exactly the source bytes and the checksum
// matched; on failure nothing is left at dst or dst.part, except that a resumable copy that
// stopped part-way keeps its partial files for Options.Resume. A resumed copy that does not
// match its checksum is copied again from the start, once; one that an earlier attempt
// finished (dst in place, no partial file) is checked in place, and the backup not read.
func Copy(ctx context.Context, src *os.File, dst string, opt Options) (Result, error) {
	if res, ok := finishedEarlier(ctx, dst, opt); ok {
		return res, nil
	}
	res, err := copyOnce(ctx, src, dst, opt)
	if res.ResumedAt > 0 && errors.Is(err, ErrChecksum) {
		opt.Resume = nil
		res, err = copyOnce(ctx, src, dst, opt)
		res.ResumeRefused = "the resumed copy did not match its checksum; it was copied again from the start"
	}
	return res, err
}

// finishedEarlier recognises a resumed copy that an earlier attempt finished: its run ended
// before it could record the end (Redis unreachable, the worker killed between the rename
// and the record), so the copy is given its last checkpoint while dst is already in place
// with no partial file. A copy is renamed into place only once fsynced and matching its
// checksum; dst is read back and must still match it, so the backup is not read again. Its
// result is a copy resumed at its end.
func finishedEarlier(ctx context.Context, dst string, opt Options) (Result, bool) {
	if opt.Resume == nil || opt.Compute {
		return Result{}, false
	}
	if _, err := os.Lstat(dst + PartSuffix); !errors.Is(err, fs.ErrNotExist) {
		return Result{}, false
	}
	f, err := os.Open(dst)
	if err != nil {
		return Result{}, false
	}
	defer f.Close()
	check := opt
	check.Throttle, check.Progress = nil, nil // the primary storage is read, not the backup
	res, err := Verify(ctx, f, check)
	if err != nil {
		return Result{}, false
	}
	st, err := f.Stat()
	if err != nil {
		return Result{}, false
	}
	res.ActualSize, res.ResumedAt, res.DataBytes = st.Sys().(*syscall.Stat_t).Blocks*512, res.Size, 0
	if opt.Progress != nil {
		opt.Progress(Progress{Done: res.Size, Total: res.Size, Data: opt.Resume.Data})
	}
	return res, true
}

func copyOnce(ctx context.Context, src *os.File, dst string, opt Options) (res Result, err error) {
	st, err := src.Stat()
	if err != nil {
		return res, &SourceError{err}
	}
	size := st.Size()
	res.Size = size
	v, err := newVerifier(opt.Digest.Algorithm, size)
	if err != nil {
		return res, err
	}
	if err := checkFormat(src, size, opt); err != nil {
		return res, err
	}

	dir := filepath.Dir(dst)
	createdDir, err := makeDir(dir)
	if err != nil {
		return res, &DestError{err}
	}
	part := dst + PartSuffix
	var ck *checkpointer
	if opt.CheckpointEvery > 0 && opt.Checkpoint != nil {
		id, err := sourceID(src)
		if err != nil {
			return res, &SourceError{err}
		}
		ck = &checkpointer{every: opt.CheckpointEvery, next: opt.CheckpointEvery, fn: opt.Checkpoint,
			base: Checkpoint{Version: checkpointVersion, Algorithm: opt.Digest.Algorithm, Digest: opt.Digest.Value, Source: id}}
	}
	var out, sums *os.File
	var from *Checkpoint
	if opt.Resume != nil && !createdDir {
		out, sums, res.ResumeRefused = resume(src, part, dst+SumsSuffix, size, v, opt.Resume, opt)
		if out != nil {
			from = opt.Resume
			res.ResumedAt = from.Offset
		}
	}
	if out == nil {
		if opt.Resume != nil {
			v, _ = newVerifier(opt.Digest.Algorithm, size) // a refused resume may have fed it
		}
		if !createdDir {
			if err := os.Remove(part); err != nil && !errors.Is(err, fs.ErrNotExist) {
				return res, &DestError{fmt.Errorf("remove the partial file of an earlier attempt: %w", err)}
			}
			if err := removeSums(dst); err != nil {
				return res, &DestError{fmt.Errorf("remove the per-chunk digests of an earlier attempt: %w", err)}
			}
		}
		if out, err = os.OpenFile(part, os.O_RDWR|os.O_CREATE|os.O_EXCL, FileMode); err != nil {
			return res, &DestError{err}
		}
	}
	defer func() {
		if out != nil {
			out.Close()
		}
		if sums != nil {
			sums.Close()
		}
		if ck != nil && ck.sums != nil {
			ck.sums.Close()
		}
		if err != nil && !(ck != nil && ck.saved && resumable(err)) {
			os.Remove(part)
			removeSums(dst)
			if createdDir {
				os.Remove(dir) // only when empty
			}
		}
	}()

	prog := &progress{fn: opt.Progress, p: Progress{Total: size}}
	if from == nil && !opt.NoReflink && reflink(out, src) {
		res.Reflinked = true
		res.DataBytes, err = verifyFile(ctx, out, size, v, opt, prog)
	} else {
		offset := int64(0)
		if from != nil {
			offset = from.Offset
			prog.p.Done, prog.p.Data = from.Offset, from.Data
		}
		// Holes from offset on: a resumed copy drops whatever was written after its
		// checkpoint (zero blocks are not written, so stale bytes there would stay).
		if err := out.Truncate(offset); err != nil {
			return res, &DestError{err}
		}
		if err := out.Truncate(size); err != nil {
			return res, &DestError{err}
		}
		if ck != nil {
			ck.out, ck.saved = out, from != nil
			if cv, ok := v.(*chunkedVerifier); ok {
				// The per-chunk digest file is created at the first checkpoint (a copy shorter
				// than one interval never writes it); until then the records wait in memory.
				ck.sumsPath, ck.chunked = dst+SumsSuffix, cv
				cv.sink = &ck.pending
				if sums != nil {
					ck.sums, ck.buf = sums, bufio.NewWriterSize(sums, 64<<10)
					sums = nil // the checkpointer closes it
					cv.sink = ck.buf
				}
			}
			if from != nil {
				ck.next = from.Offset + ck.every
			}
		}
		res.DataBytes, res.WrittenBytes, err = copyData(ctx, src, out, size, v, opt, prog, from, ck)
	}
	if err != nil {
		return res, err
	}
	res.Checksum = v.sum()
	if !opt.Compute && res.Checksum != opt.Digest.Value {
		return res, fmt.Errorf("%w: %s expected %s, computed %s", ErrChecksum, opt.Digest.Algorithm, opt.Digest.Value, res.Checksum)
	}
	if opt.Verified != nil {
		opt.Verified()
	}
	if err := out.Sync(); err != nil {
		return res, &DestError{err}
	}
	var ost unix.Stat_t
	if err := unix.Fstat(int(out.Fd()), &ost); err == nil {
		res.ActualSize = ost.Blocks * 512
	}
	cerr := out.Close()
	out = nil
	if cerr != nil {
		return res, &DestError{cerr}
	}
	if err := os.Rename(part, dst); err != nil {
		return res, &DestError{err}
	}
	if err := syncDir(dir); err != nil {
		return res, &DestError{err}
	}
	if createdDir {
		if err := syncDir(filepath.Dir(dir)); err != nil {
			return res, &DestError{err}
		}
	}
	removeSums(dst) // the file is whole: its per-chunk digests are no longer needed
	prog.advance(size, 0)
	return res, nil
}

// resumable reports whether a copy that stopped with err can go on later from its partial
// files: not when their content is wrong (checksum or format).
func resumable(err error) bool {
	return !errors.Is(err, ErrChecksum) && !errors.Is(err, ErrFormat)
}

// progress serialises Options.Progress calls and keeps Done monotonic.
type progress struct {
	mu sync.Mutex
	fn func(Progress)
	p  Progress
}

func (p *progress) advance(done, data int64) {
	if p.fn == nil {
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	p.p.Data += data
	p.p.Read += data
	if done > p.p.Done {
		p.p.Done = done
	}
	p.fn(p.p)
}

// reflink makes out share src's extents. It fails (and the caller copies) when the
// filesystem has no reflinks or the two files are on different filesystems.
func reflink(out, src *os.File) bool {
	return unix.IoctlFileClone(int(out.Fd()), int(src.Fd())) == nil
}

// throttler reserves bandwidth through Options.Throttle a chunk at a time and hands it out
// to the block reads.
type throttler struct {
	fn        func(ctx context.Context, n int) error
	chunk     int
	allowance int // reserved and not read yet
}

// readSize is the largest read: a block, or a chunk if that is smaller.
func (t *throttler) readSize() int {
	if t.fn == nil {
		return blockSize
	}
	return min(blockSize, t.chunk)
}

// take waits until n bytes may be read; left is what remains of the extent being read, so
// that no more than it is reserved ahead.
func (t *throttler) take(ctx context.Context, n int, left int64) error {
	if t.fn == nil || t.allowance >= n {
		t.allowance -= n
		return nil
	}
	want := max(n-t.allowance, int(min(int64(t.chunk), left)))
	if err := t.fn(ctx, want); err != nil {
		return err
	}
	t.allowance += want - n
	return nil
}

// block is one chunk of data travelling from the reader to the hasher and the writer; its
// buffer goes back to the free list when both are done with it.
type block struct {
	off  int64
	p    []byte
	buf  *[]byte // the pooled buffer p lies in
	refs atomic.Int32
}

var bufPool = sync.Pool{New: func() any { b := make([]byte, blockSize); return &b }}

// copyData copies the data extents of src into out (already size bytes long, all holes from
// the checkpoint it resumes from, if any): the calling goroutine reads and writes, and hashes
// too with a cheap digest; another goroutine hashes, in file order, with a slower one. With
// ck it makes its progress durable every ck.every bytes.
func copyData(ctx context.Context, src, out *os.File, size int64, v verifier, opt Options, prog *progress, from *Checkpoint, ck *checkpointer) (read, written int64, err error) {
	chunk := opt.chunkSize()
	unix.Fadvise(int(src.Fd()), 0, 0, unix.FADV_SEQUENTIAL)

	free := make(chan *[]byte, depth)
	for range depth {
		bp := bufPool.Get().(*[]byte)
		free <- bp
	}
	defer func() {
		for range depth {
			bufPool.Put(<-free)
		}
	}()
	hashQ := make(chan *block, depth)
	release := func(b *block) {
		if b.refs.Add(-1) != 0 {
			return
		}
		prog.advance(b.off+int64(len(b.p)), int64(len(b.p)))
		free <- b.buf
	}

	// A cheap digest is computed inline, while the block is hot in the cache; handing each
	// block to another goroutine would cost more (a thread wake-up per block) than hashing
	// it. An expensive one runs in its own goroutine, overlapping the copy.
	var hashed, start int64
	var base Checkpoint // what the checkpoint resumed from covered
	if from != nil {
		hashed, start, base = from.Offset, from.Offset, *from
	}
	hash := func(b *block) {
		if b.off > hashed {
			v.zeros(b.off - hashed)
		}
		v.data(b.p)
		hashed = b.off + int64(len(b.p))
		release(b)
	}
	var wg sync.WaitGroup
	if !cheapDigest(opt.Digest.Algorithm) {
		wg.Go(func() {
			for b := range hashQ {
				hash(b)
			}
		})
	}
	w := &writer{f: out}

	th := throttler{fn: opt.Throttle, chunk: chunk}
	// barrier waits until every block read so far is hashed and written: all buffers are
	// back in the free list.
	barrier := func() {
		held := make([]*[]byte, 0, depth)
		for range depth {
			held = append(held, <-free)
		}
		for _, bp := range held {
			free <- bp
		}
	}
	rerr := walkData(src, start, size, th.readSize(), func(off int64, n int, end int64) error {
		if err := ctx.Err(); err != nil {
			return err
		}
		if err := th.take(ctx, n, end-off); err != nil {
			return err
		}
		bp := <-free // the hasher gives buffers back
		buf := (*bp)[:n]
		m, err := readFull(src, buf, off)
		if err != nil {
			free <- bp
			return &SourceError{err}
		}
		read += int64(m)
		b := &block{off: off, p: buf[:m], buf: bp}
		b.refs.Store(2)
		if cheapDigest(opt.Digest.Algorithm) {
			hash(b)
		} else {
			hashQ <- b // never blocks: there are only depth buffers
		}
		k, err := w.write(b.p, off)
		written += k
		release(b)
		if err != nil {
			return &DestError{err}
		}
		if pos := off + int64(m); ck != nil && pos >= ck.next && pos%DigestChunk == 0 && pos < size {
			barrier()
			return ck.save(pos, base.Data+read, base.Written+written, v)
		}
		return nil
	})
	close(hashQ)
	wg.Wait()
	if rerr != nil {
		return read, written, rerr
	}
	v.zeros(size - hashed)
	return read, written, nil
}

// writer writes the non-zero blocks of a chunk: blocks of zeros are left as holes.
type writer struct{ f *os.File }

func (w *writer) write(p []byte, off int64) (int64, error) {
	var n int64
	blockAt := func(i int) []byte { return p[i:min(i+sparseBlock, len(p))] }
	for i := 0; i < len(p); {
		for i < len(p) && allZero(blockAt(i)) {
			i += sparseBlock
		}
		j := i
		for j < len(p) && !allZero(blockAt(j)) {
			j += sparseBlock
		}
		j = min(j, len(p))
		if j > i {
			if _, err := w.f.WriteAt(p[i:j], off+int64(i)); err != nil {
				return n, err
			}
			n += int64(j - i)
		}
		i = j
	}
	return n, nil
}

// verifyFile hashes a file (a reflinked copy) reading its data once.
func verifyFile(ctx context.Context, f *os.File, size int64, v verifier, opt Options, prog *progress) (read int64, err error) {
	th := throttler{fn: opt.Throttle, chunk: opt.chunkSize()}
	bp := bufPool.Get().(*[]byte)
	defer bufPool.Put(bp)
	var pos int64
	err = walkData(f, 0, size, th.readSize(), func(off int64, n int, end int64) error {
		if err := ctx.Err(); err != nil {
			return err
		}
		if err := th.take(ctx, n, end-off); err != nil {
			return err
		}
		m, err := readFull(f, (*bp)[:n], off)
		if err != nil {
			return &DestError{err}
		}
		if off > pos {
			v.zeros(off - pos)
		}
		v.data((*bp)[:m])
		pos = off + int64(m)
		read += int64(m)
		prog.advance(pos, int64(m))
		return nil
	})
	if err != nil {
		return read, err
	}
	v.zeros(size - pos)
	return read, nil
}

// walkData calls fn for consecutive ranges covering every data extent of f from start (on
// the DigestChunk grid), each at most
// max bytes (a multiple of DigestChunk), aligned to the DigestChunk grid and clipped to size,
// with end, where the current (aligned) extent ends; whatever lies between the ranges is a
// hole. A range may include a little of a hole around its extent (reading a hole costs no
// I/O). Errors finding extents are *SourceError.
func walkData(f *os.File, start, size int64, max int, fn func(off int64, n int, end int64) error) error {
	for off := start; off < size; {
		start, end, err := nextData(f, off, size)
		if err != nil {
			return &SourceError{err}
		}
		start = start / DigestChunk * DigestChunk
		if start < off {
			start = off
		}
		end = min((end+DigestChunk-1)/DigestChunk*DigestChunk, size)
		for pos := start; pos < end; {
			n := int(min(int64(max), end-pos))
			if err := fn(pos, n, end); err != nil {
				return err
			}
			pos += int64(n)
		}
		off = end
	}
	return nil
}

// nextData returns the next data extent at or after off, using SEEK_DATA/SEEK_HOLE; on
// filesystems without them the whole rest of the file is data. A file found shorter than
// size when no data is left has shrunk under the copy (its end is not a hole).
func nextData(f *os.File, off, size int64) (int64, int64, error) {
	fd := int(f.Fd())
	start, err := unix.Seek(fd, off, unix.SEEK_DATA)
	if err != nil {
		if errors.Is(err, syscall.ENXIO) { // no data after off: the rest is a hole, or cut off
			var st unix.Stat_t
			if err := unix.Fstat(fd, &st); err != nil {
				return 0, 0, err
			}
			if st.Size < size {
				return 0, 0, fmt.Errorf("file shrank while being read (%d bytes left of %d)", st.Size, size)
			}
			return size, size, nil
		}
		if errors.Is(err, syscall.EINVAL) || errors.Is(err, syscall.EOPNOTSUPP) {
			return off, size, nil
		}
		return 0, 0, err
	}
	end, err := unix.Seek(fd, start, unix.SEEK_HOLE)
	if err != nil {
		return 0, 0, err
	}
	return min(start, size), min(end, size), nil
}

// readFull reads len(buf) bytes at off; a file that ends early has shrunk under the copy.
func readFull(f *os.File, buf []byte, off int64) (int, error) {
	m, err := f.ReadAt(buf, off)
	if err != nil && !(errors.Is(err, io.EOF) && m == len(buf)) {
		if errors.Is(err, io.EOF) {
			return m, fmt.Errorf("file shrank while being read (at byte %d)", off+int64(m))
		}
		return m, err
	}
	return m, nil
}

func allZero(b []byte) bool {
	for len(b) >= 32 {
		if binary.LittleEndian.Uint64(b)|binary.LittleEndian.Uint64(b[8:])|
			binary.LittleEndian.Uint64(b[16:])|binary.LittleEndian.Uint64(b[24:]) != 0 {
			return false
		}
		b = b[32:]
	}
	for _, c := range b {
		if c != 0 {
			return false
		}
	}
	return true
}

// qcow2 header fields (big endian): magic at 0, version at 4, virtual size at 24.
var qcow2Magic = []byte{'Q', 'F', 'I', 0xfb}

// checkFormat reads a qcow2 header (magic, version 2 or 3, virtual size) or checks a raw
// file's length against the declared virtual size.
func checkFormat(src *os.File, size int64, opt Options) error {
	switch opt.Format {
	case "qcow2":
		var hdr [32]byte
		if _, err := src.ReadAt(hdr[:], 0); err != nil {
			if errors.Is(err, io.EOF) {
				return fmt.Errorf("%w: the file is %d bytes, too short for a qcow2 header", ErrFormat, size)
			}
			return &SourceError{fmt.Errorf("read the qcow2 header: %w", err)}
		}
		if string(hdr[:4]) != string(qcow2Magic) {
			return fmt.Errorf("%w: no qcow2 magic (got %x)", ErrFormat, hdr[:4])
		}
		if v := binary.BigEndian.Uint32(hdr[4:8]); v != 2 && v != 3 {
			return fmt.Errorf("%w: qcow2 version %d (2 or 3 expected)", ErrFormat, v)
		}
		if vs := int64(binary.BigEndian.Uint64(hdr[24:32])); opt.VirtualSize > 0 && vs != opt.VirtualSize {
			return fmt.Errorf("%w: qcow2 virtual size %d, the group declares %d", ErrFormat, vs, opt.VirtualSize)
		}
	case "raw":
		if opt.VirtualSize > 0 && size != opt.VirtualSize {
			return fmt.Errorf("%w: raw file is %d bytes, the group declares a size of %d", ErrFormat, size, opt.VirtualSize)
		}
	}
	return nil
}

// dirMode lets the hypervisor reach the volume: libvirt runs guests as its own qemu user,
// which must traverse every directory on the way (it is given the volume file itself when
// the domain starts). ZStack's agents create these directories 0755 too.
const dirMode = 0o755

// makeDir makes dir and any missing parent, reporting whether dir itself was created. The
// common case, a new volume folder in an existing one, costs one system call.
func makeDir(dir string) (created bool, err error) {
	err = os.Mkdir(dir, dirMode)
	if errors.Is(err, fs.ErrNotExist) {
		if err = os.MkdirAll(filepath.Dir(dir), dirMode); err != nil {
			return false, err
		}
		err = os.Mkdir(dir, dirMode)
	}
	switch {
	case err == nil:
		return true, nil
	case errors.Is(err, fs.ErrExist):
		return false, nil
	}
	return false, err
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}

// Remove deletes a volume file, its partial file and per-chunk digests, and the volume's
// folder when it is left empty. Missing files are not an error.
func Remove(path string) error {
	var errs []error
	for _, p := range []string{path, path + PartSuffix, path + SumsSuffix} {
		if err := os.Remove(p); err != nil && !errors.Is(err, os.ErrNotExist) {
			errs = append(errs, err)
		}
	}
	_ = os.Remove(filepath.Dir(path)) // only succeeds when empty
	return errors.Join(errs...)
}
