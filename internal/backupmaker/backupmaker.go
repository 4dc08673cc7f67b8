// Package backupmaker takes VM backup groups. From a Source (the description of a VM and
// its disks at one point in time) it copies every disk into a new group folder on a backup
// storage with the clone engine (sparse, the checksum computed in the same pass, fsynced,
// renamed into place) and writes group.json last and atomically (package backup's folder
// protocol): a group is restorable only once it is whole, and a maker killed at any point
// leaves a folder that is never listed as restorable.
//
// Sources: Images (disk image files and a VM description given by hand) and Domain (a
// libvirt domain of this machine: its XML gives the VM; a running domain's disks are read
// through libvirt's backup job, so that they are consistent without stopping it).
package backupmaker

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"time"

	"golang.org/x/time/rate"

	"github.com/vmrestore/vmrestore/internal/backup"
	"github.com/vmrestore/vmrestore/internal/clone"
	"github.com/vmrestore/vmrestore/internal/zstack"
)

// Source is what a backup is taken from.
type Source interface {
	// Open prepares the source and describes it. Its disks stay readable, and unchanged,
	// until the Snapshot's Release.
	Open(ctx context.Context) (*Snapshot, error)
}

// Snapshot is a source ready to be copied.
type Snapshot struct {
	VM    backup.SourceVM
	Disks []Disk
	// Release ends what Open started (a backup job, a snapshot to merge back); nil when
	// there is nothing to end. Make calls it once, after the copies, whatever their outcome.
	Release func(ctx context.Context) error
}

// Disk is one disk of a Snapshot.
type Disk struct {
	Type        string // backup.VolumeRoot or backup.VolumeData
	DeviceID    int
	VolumeUUID  string // the source volume's uuid, when known
	Name        string // the source volume's name, when known
	Format      string // "qcow2" or "raw"
	VirtualSize int64
	// Path is the file the copy reads (the disk, or a copy of it the source made).
	Path string
	// Label names the disk in progress (like "vda web01.qcow2"); empty is Path's base name.
	Label string
	// Open returns the bytes to copy: a regular file, which the copy reads with
	// SEEK_DATA/SEEK_HOLE so that its holes cost nothing.
	Open func() (*os.File, error)
}

// Options of one backup.
type Options struct {
	// GroupUUID is the new group's uuid; empty makes one.
	GroupUUID string
	// GroupName defaults to "<vm name>-<UTC date and time>".
	GroupName string
	// AccountUUID owns the group (restorable by that account and admins); empty is admin.
	AccountUUID string
	// Checksum is the digest algorithm written to group.json (clone.Algorithms); empty is
	// clone.XXH3Chunked, the fastest to verify.
	Checksum string
	// BandwidthBytesPerSecond caps the read rate from the source (0: no cap), so that a
	// backup taken from a production storage does not starve it.
	BandwidthBytesPerSecond int64
	// Started is called once the disks to copy are known.
	Started func(s *Snapshot, groupUUID string)
	// Progress is called as disk i is copied (never concurrently).
	Progress func(i int, p clone.Progress)
	// Copied is called when disk i is complete on the backup storage.
	Copied func(i int, v *backup.Volume, res clone.Result)
	// Now gives the group's createDate (tests fix it); nil is time.Now.
	Now func() time.Time
}

// ErrChanged is returned when a disk changed while it was copied.
var ErrChanged = errors.New("the disk changed while it was being copied")

// Make takes a backup of src into the backup storage folder storageURL and returns the new
// group. On failure or cancellation the new group folder is removed; a process killed
// mid-way leaves a folder without group.json, which package backup reports Incomplete and
// which no restore reads.
func Make(ctx context.Context, src Source, storageURL string, opt Options) (group *backup.Group, err error) {
	alg := opt.Checksum
	if alg == "" {
		alg = clone.XXH3Chunked
	}
	if !slices.Contains(clone.Algorithms(), alg) {
		return nil, fmt.Errorf("checksum algorithm %q is not one of %v", alg, clone.Algorithms())
	}
	now := time.Now
	if opt.Now != nil {
		now = opt.Now
	}
	uuid := opt.GroupUUID
	if uuid == "" {
		uuid = zstack.NewUUID()
	}
	if opt.AccountUUID != "" && !zstack.IsUUID(opt.AccountUUID) {
		return nil, fmt.Errorf("account uuid %q is not a uuid", opt.AccountUUID)
	}

	snap, err := src.Open(ctx)
	if err != nil {
		return nil, err
	}
	if snap.Release != nil {
		defer func() {
			rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Minute)
			defer cancel()
			if rerr := snap.Release(rctx); rerr != nil {
				if err == nil {
					err = fmt.Errorf("group %s is complete, but releasing its source failed: %w", uuid, rerr)
				} else {
					err = fmt.Errorf("%w (and releasing the source failed: %v)", err, rerr)
				}
			}
		}()
	}
	if err := checkDisks(snap.Disks); err != nil {
		return nil, err
	}
	created := now().UTC().Truncate(time.Second)
	g := &backup.Group{GroupUUID: uuid, Name: opt.GroupName, CreateDate: created, AccountUUID: opt.AccountUUID, VM: snap.VM}
	if g.Name == "" {
		g.Name = fmt.Sprintf("%s-%s", snap.VM.Name, created.Format("2006-01-02-150405"))
	}
	if g.VM.Nics == nil {
		g.VM.Nics = []backup.SourceNic{}
	}

	folder, err := backup.Create(storageURL, uuid)
	if err != nil {
		return nil, err
	}
	if opt.Started != nil {
		opt.Started(snap, uuid)
	}
	throttle, chunk := limiter(opt.BandwidthBytesPerSecond)
	for i := range snap.Disks {
		v, err := copyDisk(ctx, folder, &snap.Disks[i], alg, func(p clone.Progress) {
			if opt.Progress != nil {
				opt.Progress(i, p)
			}
		}, throttle, chunk, opt.Copied, i)
		if err != nil {
			folder.Abandon()
			return nil, err
		}
		g.Volumes = append(g.Volumes, *v)
	}
	if err := ctx.Err(); err != nil {
		folder.Abandon()
		return nil, err
	}
	if err := folder.Commit(g); err != nil {
		folder.Abandon()
		return nil, fmt.Errorf("write group.json: %w", err)
	}
	return g, nil
}

// checkDisks refuses a snapshot that would not make a valid group, before anything is copied.
func checkDisks(disks []Disk) error {
	roots := 0
	devices := map[int]bool{}
	if len(disks) == 0 {
		return errors.New("the source has no disk")
	}
	if len(disks) > backup.MaxVolumes {
		return fmt.Errorf("the source has %d disks, more than a group holds (%d)", len(disks), backup.MaxVolumes)
	}
	for _, d := range disks {
		switch d.Type {
		case backup.VolumeRoot:
			roots++
		case backup.VolumeData:
		default:
			return fmt.Errorf("disk %s: type %q is neither Root nor Data", d.Path, d.Type)
		}
		if devices[d.DeviceID] {
			return fmt.Errorf("disk %s: device id %d is used twice", d.Path, d.DeviceID)
		}
		devices[d.DeviceID] = true
		if d.Format != "qcow2" && d.Format != "raw" {
			return fmt.Errorf("disk %s: format %q is neither qcow2 nor raw", d.Path, d.Format)
		}
		if d.VirtualSize <= 0 {
			return fmt.Errorf("disk %s: virtual size %d", d.Path, d.VirtualSize)
		}
		if d.VolumeUUID != "" && !zstack.IsUUID(d.VolumeUUID) {
			return fmt.Errorf("disk %s: volume uuid %q is not a uuid", d.Path, d.VolumeUUID)
		}
	}
	if roots != 1 {
		return fmt.Errorf("the source has %d root disks; a group needs exactly one", roots)
	}
	return nil
}

// copyDisk copies one disk into the group folder and describes the volume backup it made.
func copyDisk(ctx context.Context, folder *backup.NewFolder, d *Disk, alg string, progress func(clone.Progress),
	throttle func(context.Context, int) error, chunk int, copied func(int, *backup.Volume, clone.Result), i int) (*backup.Volume, error) {
	f, err := d.Open()
	if err != nil {
		return nil, fmt.Errorf("open disk %s: %w", d.Path, err)
	}
	defer f.Close()
	before, err := f.Stat()
	if err != nil {
		return nil, fmt.Errorf("disk %s: %w", d.Path, err)
	}
	if !before.Mode().IsRegular() {
		return nil, fmt.Errorf("disk %s is not a regular file", d.Path)
	}
	v := &backup.Volume{UUID: zstack.NewUUID(), VolumeUUID: d.VolumeUUID, Name: d.Name, Type: d.Type, DeviceID: d.DeviceID,
		Format: d.Format, Size: d.VirtualSize}
	v.File = v.UUID + "." + d.Format
	res, err := clone.Copy(ctx, f, filepath.Join(folder.Path, v.File), clone.Options{
		Digest: clone.Digest{Algorithm: alg}, Compute: true, Format: d.Format, VirtualSize: d.VirtualSize,
		Progress: progress, Throttle: throttle, ChunkSize: chunk,
	})
	if err != nil {
		var se *clone.SourceError
		var de *clone.DestError
		switch {
		case errors.As(err, &se):
			return nil, fmt.Errorf("disk %s: %w", d.Path, err)
		case errors.As(err, &de) && clone.NoSpace(err):
			return nil, fmt.Errorf("disk %s: the backup storage is full: %w", d.Path, err)
		case errors.As(err, &de):
			return nil, fmt.Errorf("disk %s: writing the backup storage: %w", d.Path, de.Err)
		}
		return nil, fmt.Errorf("disk %s: %w", d.Path, err)
	}
	after, err := f.Stat()
	if err != nil {
		return nil, fmt.Errorf("disk %s: %w", d.Path, err)
	}
	if !after.ModTime().Equal(before.ModTime()) || after.Size() != before.Size() {
		return nil, fmt.Errorf("disk %s: %w (modified at %s): the VM may be running; shut it down, or back up its libvirt domain", d.Path, ErrChanged, after.ModTime().Format(time.RFC3339Nano))
	}
	v.ActualSize = res.ActualSize
	if alg == clone.SHA256 {
		v.SHA256 = res.Checksum
	} else {
		v.Checksum = &backup.Checksum{Algorithm: alg, Value: res.Checksum}
	}
	if copied != nil {
		copied(i, v, res)
	}
	return v, nil
}

// limiter turns a bandwidth cap into the clone engine's Throttle and chunk size: chunks of
// at most a tenth of a second's worth (so progress moves several times a second), at least
// one digest chunk.
func limiter(bytesPerSecond int64) (func(context.Context, int) error, int) {
	if bytesPerSecond <= 0 {
		return nil, 0
	}
	chunk := int(min(max(bytesPerSecond/10, clone.DigestChunk), 4<<20))
	chunk = chunk / clone.DigestChunk * clone.DigestChunk
	l := rate.NewLimiter(rate.Limit(bytesPerSecond), chunk)
	return func(ctx context.Context, n int) error {
		for n > 0 {
			k := min(n, chunk)
			if err := l.WaitN(ctx, k); err != nil {
				if ctx.Err() != nil {
					return ctx.Err()
				}
				return err
			}
			n -= k
		}
		return nil
	}, chunk
}
