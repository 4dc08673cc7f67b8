package backupmaker

import (
	"context"
	"fmt"
	"os"

	"github.com/vmrestore/vmrestore/internal/backup"
	"github.com/vmrestore/vmrestore/internal/diskimage"
)

// Images is a Source made of disk image files (qcow2 or raw, identified by qemu-img) and a
// VM described by hand. The images must not change while they are copied: a qcow2 image
// a running VM holds is refused by qemu-img's lock, and any image modified during its copy
// fails the backup (ErrChanged).
type Images struct {
	VM   backup.SourceVM
	Root string   // the root disk image
	Data []string // data disk images, in device order
}

// Open identifies every image and describes the disks: the root disk is device 0, data
// disks follow from 1 in the order given.
func (im *Images) Open(ctx context.Context) (*Snapshot, error) {
	if im.Root == "" {
		return nil, fmt.Errorf("a root disk image is required")
	}
	if im.VM.Name == "" {
		return nil, fmt.Errorf("the VM needs a name")
	}
	paths := append([]string{im.Root}, im.Data...)
	snap := &Snapshot{VM: im.VM}
	seen := make([]os.FileInfo, 0, len(paths))
	for i, p := range paths {
		info, err := diskimage.Probe(ctx, p)
		if err != nil {
			return nil, err
		}
		st, err := os.Stat(p)
		if err != nil {
			return nil, err
		}
		for j, s := range seen {
			if os.SameFile(s, st) {
				return nil, fmt.Errorf("%s and %s are the same file", paths[j], p)
			}
		}
		seen = append(seen, st)
		d := Disk{Type: backup.VolumeData, DeviceID: i, Format: info.Format, VirtualSize: info.VirtualSize, Path: p,
			Open: func() (*os.File, error) { return os.Open(p) }}
		if i == 0 {
			d.Type = backup.VolumeRoot
		}
		snap.Disks = append(snap.Disks, d)
	}
	return snap, nil
}
