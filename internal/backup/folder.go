package backup

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/vmrestore/vmrestore/internal/clone"
	"github.com/vmrestore/vmrestore/internal/zstack"
)

// How a group folder is written, so that a group is restorable only when it is whole:
//
//  1. the folder is created (it must not exist) with a ".creating" file in it, locked
//     (flock) by the writer for as long as it writes;
//  2. the volume files are written (each through a ".part" name, renamed when complete);
//  3. group.json is written to "group.json.part", fsynced, and renamed to group.json; the
//     folder is fsynced; ".creating" is removed.
//
// Readers (Read, the worker's index, restores) need group.json, so a folder whose writer was
// killed at any point before step 3 is never restorable. Survey tells such a folder apart:
// Writing while its writer holds the lock, Incomplete once the writer is gone.
const (
	// GroupFile is the metadata file of a group, written last.
	GroupFile = "group.json"
	// CreatingFile marks a folder being written; its writer holds an flock on it.
	CreatingFile = ".creating"
)

// State is what a group folder holds.
type State string

// Folder states.
const (
	// Complete: group.json is valid and every volume file is present: restorable.
	Complete State = "complete"
	// Writing: no group.json yet and a writer is working on the folder.
	Writing State = "writing"
	// Incomplete: no group.json and no writer: a create that was interrupted.
	Incomplete State = "incomplete"
	// Broken: group.json is invalid, names another group, or lists a missing file.
	Broken State = "broken"
)

// Entry describes one group folder of a backup storage.
type Entry struct {
	UUID    string    `json:"groupUuid"`
	State   State     `json:"state"`
	Problem string    `json:"problem,omitempty"`
	Group   *Group    `json:"group,omitempty"`
	ModTime time.Time `json:"modTime"` // of the folder: when a file was last added or removed
	// Bytes is the space the folder's files take (allocated blocks).
	Bytes int64 `json:"bytes"`
}

// Survey describes every group folder on a backup storage, sorted by uuid. A missing
// vm-backups folder means no groups; a missing storage folder is an error.
func Survey(storageURL string) ([]Entry, error) {
	if _, err := os.Stat(storageURL); err != nil {
		return nil, fmt.Errorf("backup storage folder: %w", err)
	}
	uuids, err := List(storageURL)
	if err != nil {
		return nil, err
	}
	out := make([]Entry, 0, len(uuids))
	for _, u := range uuids {
		e, err := Inspect(storageURL, u)
		if err != nil {
			return nil, err
		}
		out = append(out, e)
	}
	return out, nil
}

// ErrNoFolder is returned by Inspect and Delete when the storage has no folder for the group.
var ErrNoFolder = errors.New("no folder for this group on the backup storage")

// Inspect describes one group folder.
func Inspect(storageURL, groupUUID string) (Entry, error) {
	e := Entry{UUID: groupUUID}
	if !zstack.IsUUID(groupUUID) {
		return e, fmt.Errorf("%q is not a group uuid (32 hex characters)", groupUUID)
	}
	dir := GroupDir(storageURL, groupUUID)
	st, err := os.Lstat(dir)
	if errors.Is(err, fs.ErrNotExist) {
		return e, ErrNoFolder
	}
	if err != nil {
		return e, err
	}
	if !st.IsDir() {
		e.State, e.Problem = Broken, "it is not a folder"
		return e, nil
	}
	e.ModTime = st.ModTime()
	e.Bytes = folderBytes(dir)
	g, err := Read(storageURL, groupUUID)
	switch {
	case errors.Is(err, ErrNoGroup):
		e.State = Incomplete
		e.Problem = "no group.json: a backup create was interrupted before it finished (delete the folder, then take the backup again)"
		if writerActive(dir) {
			e.State = Writing
			e.Problem = "no group.json yet: a backup create is writing it"
		}
		return e, nil
	case err != nil:
		e.State, e.Problem = Broken, problemText(err)
		return e, nil
	}
	e.Group = g
	if ok, missing := HasFiles(storageURL, g); !ok {
		e.State, e.Problem = Broken, "the file of volume backup "+missing+" is missing"
		return e, nil
	}
	e.State = Complete
	return e, nil
}

func problemText(err error) string {
	if ec, ok := zstack.AsErrorCode(err); ok && ec.Details != "" {
		return ec.Details
	}
	return err.Error()
}

// folderBytes sums the allocated size of the regular files in dir.
func folderBytes(dir string) int64 {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return 0
	}
	var n int64
	for _, de := range entries {
		var st unix.Stat_t
		if de.Type().IsRegular() && unix.Lstat(filepath.Join(dir, de.Name()), &st) == nil {
			n += st.Blocks * 512
		}
	}
	return n
}

// writerActive reports whether a writer holds the lock of dir's .creating file.
func writerActive(dir string) bool {
	f, err := os.Open(filepath.Join(dir, CreatingFile))
	if err != nil {
		return false
	}
	defer f.Close()
	err = unix.Flock(int(f.Fd()), unix.LOCK_SH|unix.LOCK_NB)
	if err == nil {
		unix.Flock(int(f.Fd()), unix.LOCK_UN)
		return false
	}
	return errors.Is(err, syscall.EWOULDBLOCK)
}

// NewFolder is a group folder being written: created by Create, made restorable by Commit,
// removed by Abandon.
type NewFolder struct {
	StorageURL string
	GroupUUID  string
	Path       string
	lock       *os.File
}

// Create makes the folder of a new group on a backup storage (creating vm-backups when
// needed) and locks it for writing. The folder must not exist yet.
func Create(storageURL, groupUUID string) (*NewFolder, error) {
	if !zstack.IsUUID(groupUUID) {
		return nil, fmt.Errorf("%q is not a group uuid (32 hex characters)", groupUUID)
	}
	st, err := os.Stat(storageURL)
	if err != nil {
		return nil, fmt.Errorf("backup storage folder: %w", err)
	}
	if !st.IsDir() {
		return nil, fmt.Errorf("backup storage %s is not a folder", storageURL)
	}
	if err := os.MkdirAll(GroupsDir(storageURL), 0o750); err != nil {
		return nil, err
	}
	dir := GroupDir(storageURL, groupUUID)
	if err := os.Mkdir(dir, 0o750); err != nil {
		if errors.Is(err, fs.ErrExist) {
			return nil, fmt.Errorf("group %s already has a folder on this backup storage (%s)", groupUUID, dir)
		}
		return nil, err
	}
	lock, err := os.OpenFile(filepath.Join(dir, CreatingFile), os.O_RDWR|os.O_CREATE|os.O_EXCL, 0o640)
	if err == nil {
		err = unix.Flock(int(lock.Fd()), unix.LOCK_EX|unix.LOCK_NB)
	}
	if err == nil {
		err = syncDir(GroupsDir(storageURL))
	}
	if err != nil {
		if lock != nil {
			lock.Close()
		}
		os.RemoveAll(dir)
		return nil, fmt.Errorf("lock the new group folder %s: %w", dir, err)
	}
	return &NewFolder{StorageURL: storageURL, GroupUUID: groupUUID, Path: dir, lock: lock}, nil
}

// Commit validates g, checks that every volume file is in the folder, and writes group.json
// atomically (a temporary name, fsync, rename, fsync of the folder): from then on the group
// is restorable. The folder's lock is released.
func (n *NewFolder) Commit(g *Group) error {
	if g.GroupUUID != n.GroupUUID {
		return fmt.Errorf("group.json names group %s, the folder is %s", g.GroupUUID, n.GroupUUID)
	}
	if err := g.Validate(); err != nil {
		return fmt.Errorf("the group would be invalid: %w", err)
	}
	if ok, missing := HasFiles(n.StorageURL, g); !ok {
		return fmt.Errorf("the file of volume backup %s is not in %s", missing, n.Path)
	}
	data, err := json.MarshalIndent(g, "", "  ")
	if err != nil {
		return err
	}
	data = append(data, '\n')
	if _, err := Parse(data); err != nil { // what is written must read back
		return fmt.Errorf("group.json would not read back: %w", err)
	}
	part := filepath.Join(n.Path, GroupFile+clone.PartSuffix)
	if err := writeSynced(part, data); err != nil {
		os.Remove(part)
		return fmt.Errorf("write %s: %w", part, err)
	}
	if err := os.Rename(part, filepath.Join(n.Path, GroupFile)); err != nil {
		os.Remove(part)
		return err
	}
	if err := syncDir(n.Path); err != nil {
		return err
	}
	os.Remove(filepath.Join(n.Path, CreatingFile))
	syncDir(n.Path)
	return n.Close()
}

// Abandon removes the folder and everything in it (a create that failed).
func (n *NewFolder) Abandon() error {
	err := os.RemoveAll(n.Path)
	n.Close()
	if err == nil {
		err = syncDir(GroupsDir(n.StorageURL))
	}
	return err
}

// Close releases the folder's lock (it is also released when the process dies).
func (n *NewFolder) Close() error {
	if n.lock == nil {
		return nil
	}
	err := n.lock.Close()
	n.lock = nil
	return err
}

func writeSynced(path string, data []byte) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o640)
	if err != nil {
		return err
	}
	if _, err := f.Write(data); err != nil {
		f.Close()
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}

// Delete removes a group's folder from a backup storage: group.json first (from that moment
// the group is no longer restorable), then its volume files and the folder. A folder a
// backup create is still writing is refused, and so is a group whose files a running
// instant restore's VM runs from (see MarkBacking). Nothing outside vm-backups/<groupUuid> can be
// reached (the folder is opened through an os.Root; a group folder that is a symlink is
// refused).
func Delete(storageURL, groupUUID string) error {
	if !zstack.IsUUID(groupUUID) {
		return fmt.Errorf("%q is not a group uuid (32 hex characters)", groupUUID)
	}
	groups, err := os.OpenRoot(GroupsDir(storageURL))
	if errors.Is(err, fs.ErrNotExist) {
		return ErrNoFolder
	}
	if err != nil {
		return err
	}
	defer groups.Close()
	st, err := groups.Lstat(groupUUID)
	if errors.Is(err, fs.ErrNotExist) {
		return ErrNoFolder
	}
	if err != nil {
		return err
	}
	if !st.IsDir() {
		return fmt.Errorf("%s is not a folder; remove it by hand", GroupDir(storageURL, groupUUID))
	}
	dir := GroupDir(storageURL, groupUUID)
	if writerActive(dir) {
		return fmt.Errorf("group %s is being written by a running backup create; stop it first", groupUUID)
	}
	if jobs := BackingJobs(storageURL, groupUUID); len(jobs) > 0 {
		return fmt.Errorf("group %s backs the VM of running instant restore job(s) %s: its files are that VM's disks until the job hydrates them; wait for the job to end (restorectl job show <uuid>), or cancel it",
			groupUUID, strings.Join(jobs, ", "))
	}
	if err := groups.Remove(filepath.Join(groupUUID, GroupFile)); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("remove group.json: %w", err)
	}
	if err := syncDir(dir); err != nil {
		return err
	}
	if err := groups.RemoveAll(groupUUID); err != nil {
		return err
	}
	return syncDir(GroupsDir(storageURL))
}

// VolumeResult is the verification of one volume file.
type VolumeResult struct {
	Volume    *Volume       `json:"-"`
	UUID      string        `json:"volumeBackupUuid"`
	File      string        `json:"file"`
	OK        bool          `json:"ok"`
	Error     string        `json:"error,omitempty"`
	DataBytes int64         `json:"dataBytes"`
	Duration  time.Duration `json:"-"`
}

// VerifyVolume re-reads one volume file of a group and checks its format, virtual size and
// checksum (clone.Verify), reporting progress. The error says what failed; ctx ends it.
func VerifyVolume(ctx context.Context, storageURL string, g *Group, v *Volume, progress func(clone.Progress)) VolumeResult {
	start := time.Now()
	r := VolumeResult{Volume: v, UUID: v.UUID, File: v.File}
	f, err := OpenVolume(storageURL, g.GroupUUID, v)
	if err != nil {
		r.Error = problemText(err)
		return r
	}
	defer f.Close()
	d := v.Digest()
	res, err := clone.Verify(ctx, f, clone.Options{Digest: clone.Digest{Algorithm: d.Algorithm, Value: d.Value},
		Format: v.Format, VirtualSize: v.Size, Progress: progress})
	r.DataBytes, r.Duration = res.DataBytes, time.Since(start)
	switch {
	case errors.Is(err, clone.ErrChecksum):
		r.Error = fmt.Sprintf("the file's bytes changed since the backup was taken (%v)", err)
	case err != nil:
		r.Error = err.Error()
	default:
		r.OK = true
	}
	return r
}

// SortEntries orders entries newest group first (folders without group.json by folder time).
func SortEntries(es []Entry) {
	at := func(e Entry) time.Time {
		if e.Group != nil {
			return e.Group.CreateDate
		}
		return e.ModTime
	}
	sort.SliceStable(es, func(a, b int) bool {
		ta, tb := at(es[a]), at(es[b])
		if !ta.Equal(tb) {
			return ta.After(tb)
		}
		return es[a].UUID < es[b].UUID
	})
}
