package clone

import (
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"hash"
	"io"
	"os"
	"sort"

	"github.com/zeebo/blake3"
	"github.com/zeebo/xxh3"
)

// Checksum algorithms a group.json may name (backup.SupportedDigests lists the same names).
const (
	// SHA256 is the SHA-256 of the whole file, holes read as zeros: what sha256sum prints.
	// About 1.1 GB/s here, and proportional to the virtual size of a sparse file.
	SHA256 = "sha256"
	// BLAKE3 is the BLAKE3-256 of the whole file, holes read as zeros: what b3sum prints.
	// About 3 GB/s here, also proportional to the virtual size.
	BLAKE3 = "blake3"
	// XXH3Chunked is vmrestore's default: fast and sparse friendly. With H = XXH3-128 (its
	// 16-byte canonical, big-endian form) and C = 65536, S = file length, chunk i = bytes
	// [i*C, min((i+1)*C, S)):
	//
	//	digest = H( "vmrestore xxh3-chunked-64k v1\n" || le64(S)
	//	            || for each chunk holding a non-zero byte, in order: le64(i) || H(chunk i) )
	//
	// Chunks of zeros (holes, or zeros written out) add nothing, so a sparse file verifies in
	// time proportional to its data; the outer hash binds the length and the position of
	// every data chunk. XXH3 is not cryptographic: it detects corruption (bit rot, truncated or
	// swapped files) with 128-bit strength, not deliberate forgery — group.json lies beside
	// the volume files, so whoever could forge a file could rewrite its checksum anyway. It
	// hashes at memory speed (over 20 GB/s here), so verification costs almost nothing.
	XXH3Chunked = "xxh3-chunked-64k"
	// BLAKE3Chunked is the same construction with H = BLAKE3-256 and the header
	// "vmrestore blake3-chunked-64k v1\n": sparse friendly and cryptographic, at BLAKE3's
	// speed (about 2.7 GB/s on one core here, a cost that shows next to a 2 GB/s copy).
	BLAKE3Chunked = "blake3-chunked-64k"
)

// DigestChunk is the chunk size of the chunked digests. The copy reads along this grid.
const DigestChunk = 64 << 10

// Algorithms lists the supported checksum algorithms, sorted.
func Algorithms() []string {
	out := []string{SHA256, BLAKE3, XXH3Chunked, BLAKE3Chunked}
	sort.Strings(out)
	return out
}

// cheapDigest reports whether an algorithm hashes much faster than a disk copies (XXH3),
// so that the copy hashes inline rather than in a goroutine of its own.
func cheapDigest(algorithm string) bool { return algorithm == XXH3Chunked }

// verifier computes a digest over a file presented in order: data(p) for the next len(p)
// bytes, zeros(n) for the next n bytes when they are known to be zero (a hole).
type verifier interface {
	data(p []byte)
	zeros(n int64)
	sum() string
}

func newVerifier(algorithm string, size int64) (verifier, error) {
	switch algorithm {
	case SHA256:
		return &streamVerifier{h: sha256.New()}, nil
	case BLAKE3:
		return &streamVerifier{h: blake3.New()}, nil
	case XXH3Chunked:
		return newChunked(size, xxh3.New128(), func(p []byte, out []byte) {
			sum := xxh3.Hash128(p).Bytes()
			copy(out, sum[:])
		}, 16), nil
	case BLAKE3Chunked:
		return newChunked(size, blake3.New(), func(p []byte, out []byte) {
			sum := blake3.Sum256(p)
			copy(out, sum[:])
		}, 32), nil
	}
	return nil, fmt.Errorf("checksum algorithm %q is not supported (use one of %v)", algorithm, Algorithms())
}

// zeroPage is read-only: a source of zeros for hashing holes.
var zeroPage = make([]byte, 1<<20)

// streamVerifier is a whole-file hash; holes have to be hashed as zeros.
type streamVerifier struct{ h hash.Hash }

func (s *streamVerifier) data(p []byte) { s.h.Write(p) }
func (s *streamVerifier) zeros(n int64) {
	for n > 0 {
		k := min(n, int64(len(zeroPage)))
		s.h.Write(zeroPage[:k])
		n -= k
	}
}
func (s *streamVerifier) sum() string { return hex.EncodeToString(s.h.Sum(nil)) }

// chunkedVerifier computes a chunked digest (XXH3Chunked, BLAKE3Chunked). Whole chunks
// passed at chunk-aligned positions are hashed in place; anything else is assembled in a
// scratch chunk first, allocated when first needed (a copy that reads whole chunks, the
// usual case, never needs it).
type chunkedVerifier struct {
	outer   hash.Hash
	leaf    func(chunk, sum []byte)
	pos     int64 // bytes consumed
	scratch []byte
	rec     []byte // le64(index) || leaf sum
	records int64  // records written to outer
	// sink, when set, receives every record too: a resumable copy's per-chunk digest file.
	sink io.Writer
}

// partial returns the scratch chunk, allocating it on first use.
func (c *chunkedVerifier) partial() []byte {
	if c.scratch == nil {
		c.scratch = make([]byte, DigestChunk)
	}
	return c.scratch
}

func newChunked(size int64, outer hash.Hash, leaf func(chunk, sum []byte), sumLen int) *chunkedVerifier {
	c := &chunkedVerifier{outer: outer, leaf: leaf, rec: make([]byte, 8+sumLen)}
	// The header names the algorithm: "vmrestore <name> v1\n".
	name := XXH3Chunked
	if sumLen == 32 {
		name = BLAKE3Chunked
	}
	io.WriteString(outer, "vmrestore "+name+" v1\n")
	var b [8]byte
	binary.LittleEndian.PutUint64(b[:], uint64(size))
	outer.Write(b[:])
	return c
}

func (c *chunkedVerifier) emit(index int64, chunk []byte) {
	if allZero(chunk) {
		return
	}
	binary.LittleEndian.PutUint64(c.rec[:8], uint64(index))
	c.leaf(chunk, c.rec[8:])
	c.outer.Write(c.rec)
	c.records++
	if c.sink != nil {
		c.sink.Write(c.rec) // a bufio.Writer: its error is returned by the checkpoint's Flush
	}
}

func (c *chunkedVerifier) data(p []byte) {
	for len(p) > 0 {
		off := int(c.pos % DigestChunk)
		if off == 0 && len(p) >= DigestChunk {
			c.emit(c.pos/DigestChunk, p[:DigestChunk])
			c.pos += DigestChunk
			p = p[DigestChunk:]
			continue
		}
		n := copy(c.partial()[off:], p)
		c.pos += int64(n)
		p = p[n:]
		if c.pos%DigestChunk == 0 {
			c.emit(c.pos/DigestChunk-1, c.scratch)
		}
	}
}

func (c *chunkedVerifier) zeros(n int64) {
	for n > 0 {
		off := c.pos % DigestChunk
		if off == 0 && n >= DigestChunk {
			k := n / DigestChunk * DigestChunk // whole zero chunks add nothing
			c.pos += k
			n -= k
			continue
		}
		m := min(DigestChunk-off, n)
		clear(c.partial()[off : off+m])
		c.pos += m
		n -= m
		if c.pos%DigestChunk == 0 {
			c.emit(c.pos/DigestChunk-1, c.scratch)
		}
	}
}

func (c *chunkedVerifier) sum() string {
	if off := c.pos % DigestChunk; off != 0 {
		c.emit(c.pos/DigestChunk, c.scratch[:off]) // the short last chunk
	}
	return hex.EncodeToString(c.outer.Sum(nil))
}

// SumFile computes the checksum of a file with the named algorithm, reading only its data
// (holes found with SEEK_DATA/SEEK_HOLE are not read). Backup tools and the demo site use it
// to write group.json; Copy computes the same value on the way through.
func SumFile(path, algorithm string) (string, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", err
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return "", err
	}
	v, err := newVerifier(algorithm, st.Size())
	if err != nil {
		return "", err
	}
	buf := make([]byte, blockSize)
	var pos int64
	err = walkData(f, 0, st.Size(), len(buf), func(off int64, n int, _ int64) error {
		if off > pos {
			v.zeros(off - pos)
		}
		m, err := readFull(f, buf[:n], off)
		if err != nil {
			return err
		}
		v.data(buf[:m])
		pos = off + int64(m)
		return nil
	})
	if err != nil {
		return "", fmt.Errorf("checksum of %s: %w", path, err)
	}
	v.zeros(st.Size() - pos)
	return v.sum(), nil
}
