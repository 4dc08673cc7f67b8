package clone

import (
	"bufio"
	"bytes"
	"encoding"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"

	"golang.org/x/sys/unix"
)

// Resumable copies. With Options.CheckpointEvery and Options.Checkpoint set, a copy makes its
// progress durable every CheckpointEvery bytes of the source: it waits until every block up
// to the position is hashed and written, fsyncs the ".part" file (and, for the chunked
// digests, the per-chunk digest file beside it, SumsSuffix), and hands a Checkpoint to the
// caller, who stores it. A copy given that Checkpoint as Options.Resume (after a crash, or a
// stop) verifies what is on disk and continues from its position; the digest of the whole
// file is still computed and compared at the end:
//   - SHA-256 saves its state (encoding.BinaryMarshaler); on resume the last MiB before the
//     position is read from both files and compared.
//   - The chunked digests keep the digest of every data chunk in the per-chunk digest file
//     (le64(index) || H(chunk), the records their outer hash reads), fsynced with the .part;
//     on resume the outer hash reads them again (memory speed), and the last MiB before the
//     position is read back from the .part: each data chunk must have its recorded digest,
//     every other chunk must be zeros.
//   - BLAKE3 (whole file) cannot save its state: on resume it hashes the part already written,
//     read back from the .part, which verifies all of it.
//
// A copy that stops part-way (cancelled, the backup or the bandwidth limiter unreachable)
// keeps its partial files once it has recorded a checkpoint; a copy that fails its checksum or
// format check removes them. A checkpoint that does not match (another source file, or the
// same one changed since, another digest, a .part of another length or whose content differs)
// is refused with its reason in Result.ResumeRefused, and the copy starts over.

// SumsSuffix marks the per-chunk digest file of a resumable copy with a chunked digest.
const SumsSuffix = ".part-sums"

// checkpointVersion is the version of the Checkpoint layout.
const checkpointVersion = 1

// Checkpoint is a durable position of a copy: everything before Offset is on disk (fsynced)
// and hashed into State.
type Checkpoint struct {
	Version   int      `json:"v"`
	Algorithm string   `json:"algorithm"`
	Digest    string   `json:"digest"` // the expected checksum of the copy
	Source    SourceID `json:"source"`
	// Offset is where the copy goes on: a multiple of DigestChunk.
	Offset int64 `json:"offset"`
	// Data and Written are the bytes read and written before Offset.
	Data    int64 `json:"data"`
	Written int64 `json:"written"`
	// State is the digest's saved state (SHA-256); Sums the length of the per-chunk digest
	// file (chunked digests).
	State []byte `json:"state,omitempty"`
	Sums  int64  `json:"sums,omitempty"`
}

// SourceID identifies the content of a backup file: a checkpoint applies only to the same
// file, unchanged.
type SourceID struct {
	Size    int64  `json:"size"`
	ModTime int64  `json:"mtime"` // nanoseconds
	Inode   uint64 `json:"inode"`
}

func sourceID(f *os.File) (SourceID, error) {
	var st unix.Stat_t
	if err := unix.Fstat(int(f.Fd()), &st); err != nil {
		return SourceID{}, err
	}
	return SourceID{Size: st.Size, ModTime: st.Mtim.Nano(), Inode: st.Ino}, nil
}

// verifyWindow is how much before a checkpoint's position a resume reads back to compare.
const verifyWindow = 1 << 20

// checkpointer makes a copy's progress durable every `every` bytes.
type checkpointer struct {
	every int64
	next  int64
	fn    func(Checkpoint) error
	base  Checkpoint // algorithm, digest and source
	out   *os.File
	// The chunked digests' per-chunk digest file at sumsPath: records wait in pending until
	// the first checkpoint creates it, then go through buf.
	chunked  *chunkedVerifier
	sumsPath string
	pending  bytes.Buffer
	sums     *os.File
	buf      *bufio.Writer
	// saved reports that a checkpoint exists for the partial files (recorded by this copy
	// or resumed from).
	saved bool
}

// save makes everything before off durable and records it.
func (c *checkpointer) save(off, data, written int64, v verifier) error {
	cp := c.base
	cp.Offset, cp.Data, cp.Written = off, data, written
	if err := unix.Fdatasync(int(c.out.Fd())); err != nil {
		return &DestError{fmt.Errorf("fsync the partial file: %w", err)}
	}
	if c.chunked != nil && c.sums == nil {
		f, err := os.OpenFile(c.sumsPath, os.O_RDWR|os.O_CREATE|os.O_TRUNC, 0o640)
		if err != nil {
			return &DestError{fmt.Errorf("create the per-chunk digests: %w", err)}
		}
		c.sums, c.buf = f, bufio.NewWriterSize(f, 64<<10)
		c.buf.Write(c.pending.Bytes())
		c.pending = bytes.Buffer{}
		c.chunked.sink = c.buf
	}
	if c.sums != nil {
		if err := c.buf.Flush(); err != nil {
			return &DestError{fmt.Errorf("write the per-chunk digests: %w", err)}
		}
		if err := unix.Fdatasync(int(c.sums.Fd())); err != nil {
			return &DestError{fmt.Errorf("fsync the per-chunk digests: %w", err)}
		}
		cv := v.(*chunkedVerifier)
		cp.Sums = cv.records * int64(len(cv.rec))
	} else if sv, ok := v.(*streamVerifier); ok {
		if m, ok := sv.h.(encoding.BinaryMarshaler); ok {
			state, err := m.MarshalBinary()
			if err != nil {
				return err
			}
			cp.State = state
		}
	}
	c.next = off + c.every
	if err := c.fn(cp); err != nil {
		return err
	}
	c.saved = true
	return nil
}

// resume reopens the partial files of an earlier copy at cp and brings v to cp's position
// after checking that they are what cp says; refused is why it could not (nothing is then
// open, and the copy starts over).
func resume(src *os.File, part, sums string, size int64, v verifier, cp *Checkpoint, opt Options) (out, sumsFile *os.File, refused string) {
	id, err := sourceID(src)
	switch {
	case err != nil:
		return nil, nil, "cannot stat the backup file: " + err.Error()
	case cp.Version != checkpointVersion:
		return nil, nil, fmt.Sprintf("checkpoint version %d", cp.Version)
	case cp.Algorithm != opt.Digest.Algorithm || cp.Digest != opt.Digest.Value:
		return nil, nil, "the checkpoint belongs to a copy with another checksum"
	case cp.Source != id:
		return nil, nil, "the backup file changed since the checkpoint"
	case cp.Offset <= 0 || cp.Offset > size || cp.Offset%DigestChunk != 0:
		return nil, nil, fmt.Sprintf("checkpoint offset %d out of range", cp.Offset)
	}
	out, err = os.OpenFile(part, os.O_RDWR, 0)
	if err != nil {
		return nil, nil, "the partial file is gone: " + err.Error()
	}
	fail := func(why string) (*os.File, *os.File, string) {
		out.Close()
		if sumsFile != nil {
			sumsFile.Close()
		}
		return nil, nil, why
	}
	if st, err := out.Stat(); err != nil || st.Size() != size {
		return fail("the partial file does not have the backup's length")
	}
	switch vv := v.(type) {
	case *chunkedVerifier:
		if sumsFile, err = os.OpenFile(sums, os.O_RDWR, 0); err != nil {
			return fail("the per-chunk digests are gone: " + err.Error())
		}
		if why := vv.restore(sumsFile, cp, out, size); why != "" {
			return fail(why)
		}
	case *streamVerifier:
		if u, ok := vv.h.(encoding.BinaryUnmarshaler); ok && cp.State != nil {
			if err := u.UnmarshalBinary(cp.State); err != nil {
				return fail("the saved digest state does not load: " + err.Error())
			}
			if why := sameWindow(src, out, cp.Offset); why != "" {
				return fail(why)
			}
		} else if err := rehash(out, cp.Offset, vv); err != nil {
			return fail("cannot read the partial file back: " + err.Error())
		}
	}
	return out, sumsFile, ""
}

// sameWindow compares the last verifyWindow bytes before off in the source and the copy.
func sameWindow(src, out *os.File, off int64) string {
	from := max(off-verifyWindow, 0)
	a, b := make([]byte, off-from), make([]byte, off-from)
	if _, err := src.ReadAt(a, from); err != nil && !errors.Is(err, io.EOF) {
		return "cannot read the backup file: " + err.Error()
	}
	if _, err := out.ReadAt(b, from); err != nil && !errors.Is(err, io.EOF) {
		return "cannot read the partial file back: " + err.Error()
	}
	if !bytes.Equal(a, b) {
		return fmt.Sprintf("the partial file differs from the backup before offset %d", off)
	}
	return ""
}

// rehash feeds the first n bytes of f (holes as zeros) to a stream digest.
func rehash(f *os.File, n int64, v *streamVerifier) error {
	buf := make([]byte, blockSize)
	var pos int64
	err := walkData(f, 0, n, len(buf), func(off int64, k int, _ int64) error {
		if off > pos {
			v.zeros(off - pos)
		}
		m, err := readFull(f, buf[:k], off)
		if err != nil {
			return err
		}
		v.data(buf[:m])
		pos = off + int64(m)
		return nil
	})
	if err != nil {
		return err
	}
	v.zeros(n - pos)
	return nil
}

// restore brings a chunked digest to cp's position from the per-chunk digest file, after
// checking the last records against the chunks in the copy.
func (c *chunkedVerifier) restore(sums *os.File, cp *Checkpoint, out *os.File, size int64) string {
	recLen := int64(len(c.rec))
	if cp.Sums%recLen != 0 {
		return "the per-chunk digest file length does not match the digest"
	}
	if st, err := sums.Stat(); err != nil || st.Size() < cp.Sums {
		return "the per-chunk digest file is shorter than the checkpoint"
	}
	recs := make([]byte, cp.Sums)
	if _, err := sums.ReadAt(recs, 0); err != nil && !errors.Is(err, io.EOF) {
		return "cannot read the per-chunk digests: " + err.Error()
	}
	n := cp.Sums / recLen
	last := int64(-1)
	for i := int64(0); i < n; i++ {
		idx := int64(binary.LittleEndian.Uint64(recs[i*recLen:]))
		if idx <= last || idx*DigestChunk >= cp.Offset {
			return "the per-chunk digests are out of order"
		}
		last = idx
	}
	// The last verifyWindow before the offset, chunk by chunk: a data chunk must have its
	// recorded digest, any other must be zeros.
	byIndex := map[int64][]byte{}
	for i := max(n-verifyWindow/DigestChunk, 0); i < n; i++ {
		r := recs[i*recLen : (i+1)*recLen]
		byIndex[int64(binary.LittleEndian.Uint64(r))] = r[8:]
	}
	chunk := make([]byte, DigestChunk)
	sum := make([]byte, recLen-8)
	for idx := max(cp.Offset-verifyWindow, 0) / DigestChunk; idx*DigestChunk < cp.Offset; idx++ {
		if _, err := out.ReadAt(chunk, idx*DigestChunk); err != nil && !errors.Is(err, io.EOF) {
			return "cannot read the partial file back: " + err.Error()
		}
		want, data := byIndex[idx]
		if !data {
			if !allZero(chunk) {
				return fmt.Sprintf("chunk %d of the partial file holds bytes where the backup has none", idx)
			}
			continue
		}
		c.leaf(chunk, sum)
		if !bytes.Equal(sum, want) {
			return fmt.Sprintf("chunk %d of the partial file differs from what was copied", idx)
		}
	}
	c.outer.Write(recs)
	c.records = n
	c.pos = cp.Offset
	if err := sums.Truncate(cp.Sums); err != nil {
		return "cannot trim the per-chunk digests: " + err.Error()
	}
	if _, err := sums.Seek(cp.Sums, io.SeekStart); err != nil {
		return "cannot seek the per-chunk digests: " + err.Error()
	}
	return ""
}

// removeSums deletes the per-chunk digest file of dst, if any.
func removeSums(dst string) error {
	if err := os.Remove(dst + SumsSuffix); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	return nil
}
