package demosite

import (
	"crypto/sha256"
	"encoding/binary"
	"fmt"
	"math/rand/v2"
	"os"

	"golang.org/x/sys/unix"
)

// qcow2 geometry used here: 64 KiB clusters, 16-bit refcounts.
const (
	clusterBits = 16
	clusterSize = 1 << clusterBits
	l2Entries   = clusterSize / 8
	qcowCopied  = uint64(1) << 63
)

// pattern fills b with bytes derived from seed and block, so every volume has its own
// incompressible, non-zero content.
func pattern(b []byte, seed string, block int) {
	sum := sha256.Sum256([]byte(fmt.Sprintf("%s/%d", seed, block)))
	r := rand.New(rand.NewPCG(binary.LittleEndian.Uint64(sum[:8]), binary.LittleEndian.Uint64(sum[8:16])))
	for i := 0; i+8 <= len(b); i += 8 {
		binary.LittleEndian.PutUint64(b[i:], r.Uint64()|1)
	}
}

// WriteQcow2 writes a qcow2 (version 3) image of the given virtual size whose first guest
// clusters hold dataBlocks clusters of pattern data, spread over the first 512 MiB of the
// disk. The file has a real header, refcount table and block, L1 and L2 tables, so it is a
// valid image, a few MiB long whatever its virtual size.
func WriteQcow2(path string, virtualSize int64, dataBlocks int, seed string) error {
	if dataBlocks > l2Entries/2 {
		return fmt.Errorf("at most %d data clusters", l2Entries/2)
	}
	l1Size := (virtualSize + int64(clusterSize)*l2Entries - 1) / (int64(clusterSize) * l2Entries)
	if l1Size*8 > clusterSize {
		return fmt.Errorf("virtual size %d needs more than one L1 cluster", virtualSize)
	}
	const (
		refTable = 1 * clusterSize
		refBlock = 2 * clusterSize
		l1Table  = 3 * clusterSize
		l2Table  = 4 * clusterSize
		firstDat = 5
	)
	clusters := firstDat + dataBlocks
	img := make([]byte, clusters*clusterSize)
	be := binary.BigEndian
	// Header (version 3, 104 bytes) followed by the end-of-extensions marker.
	copy(img[0:], []byte{'Q', 'F', 'I', 0xfb})
	be.PutUint32(img[4:], 3)
	be.PutUint32(img[20:], clusterBits)
	be.PutUint64(img[24:], uint64(virtualSize))
	be.PutUint32(img[36:], uint32(l1Size))
	be.PutUint64(img[40:], l1Table)
	be.PutUint64(img[48:], refTable)
	be.PutUint32(img[56:], 1)
	be.PutUint32(img[96:], 4) // refcount_order: 16-bit refcounts
	be.PutUint32(img[100:], 104)
	// Refcount table → block; every used cluster has refcount 1.
	be.PutUint64(img[refTable:], refBlock)
	for c := 0; c < clusters; c++ {
		be.PutUint16(img[refBlock+2*c:], 1)
	}
	// L1 → L2 → data clusters spread over the first L2's 512 MiB of guest space.
	be.PutUint64(img[l1Table:], l2Table|qcowCopied)
	stride := l2Entries / max(dataBlocks, 1)
	for i := 0; i < dataBlocks; i++ {
		off := uint64((firstDat + i) * clusterSize)
		guest := i * stride
		if int64(guest)*clusterSize >= virtualSize {
			guest = i
		}
		be.PutUint64(img[l2Table+8*guest:], off|qcowCopied)
		pattern(img[off:off+clusterSize], seed, i)
	}
	return os.WriteFile(path, img, 0o640)
}

// WriteRaw writes a sparse raw image of the given size with dataBlocks 64 KiB blocks of
// pattern data spread evenly; the rest are holes.
func WriteRaw(path string, size int64, dataBlocks int, seed string) error {
	f, err := os.OpenFile(path, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o640)
	if err != nil {
		return err
	}
	defer f.Close()
	if err := f.Truncate(size); err != nil {
		return err
	}
	buf := make([]byte, clusterSize)
	step := size / int64(max(dataBlocks, 1))
	step -= step % clusterSize
	for i := 0; i < dataBlocks; i++ {
		pattern(buf, seed, i)
		if _, err := f.WriteAt(buf, int64(i)*step); err != nil {
			return err
		}
	}
	return f.Sync()
}

// allocated returns the bytes a file occupies on disk.
func allocated(f *os.File) int64 {
	var st unix.Stat_t
	if err := unix.Fstat(int(f.Fd()), &st); err != nil {
		return 0
	}
	return st.Blocks * 512
}
