// Package clone copies a volume backup file to its install path on primary storage: sparse
// aware (holes found with SEEK_DATA/SEEK_HOLE stay holes), verified on the way through
// (the checksum is computed from the bytes as they are copied, never by a second read),
// and crash safe (written to "<path>.part", fsynced, renamed into place, directory fsynced).
// A copy that fails for any reason removes its partial file.
package clone

import (
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"io"
	"os"
	"path/filepath"
	"syscall"

	"golang.org/x/sys/unix"
)

// PartSuffix marks a volume file still being written.
const PartSuffix = ".part"

// bufSize is the copy buffer: large enough that syscalls and hashing calls are amortised.
const bufSize = 4 << 20

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
	// Progress, if set, is called with the number of source bytes (data and holes) processed.
	Progress func(done int64)
	// Throttle, if set, is called before n bytes of data are read; it returns when they may be.
	Throttle func(ctx context.Context, n int) error
}

// Result describes a finished copy.
type Result struct {
	// ActualSize is the space the copy takes on disk (allocated blocks), as ZStack reports it.
	ActualSize int64
	// DataBytes is how many bytes were read and written (holes excluded).
	DataBytes int64
	// Size is the file's apparent size.
	Size int64
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

func newHash(algo string) (hash.Hash, error) {
	switch algo {
	case "sha256":
		return sha256.New(), nil
	}
	return nil, fmt.Errorf("checksum algorithm %q is not supported", algo)
}

// Copy copies src to dst. On success dst holds exactly the source bytes and the checksum
// matched; on failure nothing is left at dst or dst.part.
func Copy(ctx context.Context, src *os.File, dst string, opt Options) (res Result, err error) {
	h, err := newHash(opt.Digest.Algorithm)
	if err != nil {
		return res, err
	}
	st, err := src.Stat()
	if err != nil {
		return res, &SourceError{err}
	}
	size := st.Size()
	res.Size = size
	if err := checkFormat(src, size, opt); err != nil {
		return res, err
	}

	if err := os.MkdirAll(filepath.Dir(dst), 0o750); err != nil {
		return res, &DestError{err}
	}
	part := dst + PartSuffix
	_ = os.Remove(part)
	out, err := os.OpenFile(part, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o640)
	if err != nil {
		return res, &DestError{err}
	}
	defer func() {
		if out != nil {
			out.Close()
		}
		if err != nil {
			os.Remove(part)
		}
	}()
	if err := out.Truncate(size); err != nil {
		return res, &DestError{err}
	}

	buf := make([]byte, bufSize)
	zeros := make([]byte, bufSize)
	var done int64
	report := func() {
		if opt.Progress != nil {
			opt.Progress(done)
		}
	}
	hashZeros := func(n int64) {
		for n > 0 {
			k := min(n, int64(len(zeros)))
			h.Write(zeros[:k])
			n -= k
		}
	}
	for off := int64(0); off < size; {
		if err := ctx.Err(); err != nil {
			return res, err
		}
		dataStart, dataEnd, err := nextData(src, off, size)
		if err != nil {
			return res, &SourceError{err}
		}
		if dataStart > off {
			hashZeros(dataStart - off)
			done += dataStart - off
			report()
		}
		for pos := dataStart; pos < dataEnd; {
			if err := ctx.Err(); err != nil {
				return res, err
			}
			n := int(min(int64(len(buf)), dataEnd-pos))
			if opt.Throttle != nil {
				if err := opt.Throttle(ctx, n); err != nil {
					return res, err
				}
			}
			m, rerr := src.ReadAt(buf[:n], pos)
			if m > 0 {
				chunk := buf[:m]
				h.Write(chunk)
				if !allZero(chunk) {
					if _, werr := out.WriteAt(chunk, pos); werr != nil {
						return res, &DestError{werr}
					}
					res.DataBytes += int64(m)
				}
				pos += int64(m)
				done += int64(m)
				report()
			}
			if rerr != nil && !(errors.Is(rerr, io.EOF) && pos >= dataEnd) {
				if errors.Is(rerr, io.EOF) {
					return res, &SourceError{fmt.Errorf("file shrank while being copied (at byte %d of %d)", pos, size)}
				}
				return res, &SourceError{rerr}
			}
		}
		off = dataEnd
	}
	if got := hex.EncodeToString(h.Sum(nil)); got != opt.Digest.Value {
		return res, fmt.Errorf("%w: %s expected %s, computed %s", ErrChecksum, opt.Digest.Algorithm, opt.Digest.Value, got)
	}
	if err := out.Sync(); err != nil {
		return res, &DestError{err}
	}
	var ost unix.Stat_t
	if err := unix.Fstat(int(out.Fd()), &ost); err == nil {
		res.ActualSize = ost.Blocks * 512
	}
	if err := out.Close(); err != nil {
		out = nil
		return res, &DestError{err}
	}
	out = nil
	if err := os.Rename(part, dst); err != nil {
		return res, &DestError{err}
	}
	if err := syncDir(filepath.Dir(dst)); err != nil {
		return res, &DestError{err}
	}
	return res, nil
}

// nextData returns the next data segment at or after off, using SEEK_DATA/SEEK_HOLE; on
// filesystems without them the whole rest of the file is data.
func nextData(f *os.File, off, size int64) (int64, int64, error) {
	fd := int(f.Fd())
	start, err := unix.Seek(fd, off, unix.SEEK_DATA)
	if err != nil {
		if errors.Is(err, syscall.ENXIO) { // no data after off: the rest is a hole
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
	return start, min(end, size), nil
}

func allZero(b []byte) bool {
	for len(b) >= 8 {
		if binary.LittleEndian.Uint64(b) != 0 {
			return false
		}
		b = b[8:]
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
			return fmt.Errorf("%w: cannot read a qcow2 header: %v", ErrFormat, err)
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

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}

// Remove deletes a volume file and its partial file, and the volume's folder when it is
// left empty. Missing files are not an error.
func Remove(path string) error {
	var errs []error
	for _, p := range []string{path, path + PartSuffix} {
		if err := os.Remove(p); err != nil && !errors.Is(err, os.ErrNotExist) {
			errs = append(errs, err)
		}
	}
	_ = os.Remove(filepath.Dir(path)) // only succeeds when empty
	return errors.Join(errs...)
}
