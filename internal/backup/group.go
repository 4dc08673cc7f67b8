// Package backup reads VM backup groups from backup storage directories.
//
// Layout (one folder per group):
//
//	<backup storage url>/vm-backups/<groupUuid>/group.json
//	<backup storage url>/vm-backups/<groupUuid>/<volumeBackupUuid>.<format>
//
// group.json describes the source VM and every volume backup. A volume's file is opened
// through an os.Root on its group folder, so a `file` that leaves the folder (absolute path,
// "..", a symlink pointing out, a NUL byte) can never be read. Errors are ZStack ErrorCodes.
package backup

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/vmrestore/vmrestore/internal/zstack"
)

// Volume types.
const (
	VolumeRoot = "Root"
	VolumeData = "Data"
)

// MaxGroupFileSize bounds group.json; a real one is a few KiB.
const MaxGroupFileSize = 1 << 20

// MaxVolumes bounds the volumes of one group (ZStack attaches at most a few dozen).
const MaxVolumes = 64

// Group is a parsed and validated group.json.
type Group struct {
	GroupUUID   string    `json:"groupUuid"`
	Name        string    `json:"name"`
	CreateDate  time.Time `json:"createDate"`
	AccountUUID string    `json:"accountUuid,omitempty"`
	VM          SourceVM  `json:"vm"`
	Volumes     []Volume  `json:"volumes"`
}

// SourceVM is the VM the group was taken from.
type SourceVM struct {
	UUID         string      `json:"uuid"`
	Name         string      `json:"name"`
	Description  string      `json:"description,omitempty"`
	Platform     string      `json:"platform"`
	GuestOsType  string      `json:"guestOsType"`
	Architecture string      `json:"architecture"`
	CPUNum       int64       `json:"cpuNum"`
	MemorySize   int64       `json:"memorySize"`
	HostUUID     string      `json:"hostUuid,omitempty"`
	ImageUUID    string      `json:"imageUuid,omitempty"`
	Nics         []SourceNic `json:"nics"`
}

// SourceNic is a NIC of the source VM.
type SourceNic struct {
	L3NetworkUUID string `json:"l3NetworkUuid"`
	IP            string `json:"ip,omitempty"`
	Mac           string `json:"mac,omitempty"`
	DeviceID      int    `json:"deviceId"`
	DriverType    string `json:"driverType,omitempty"`
}

// Volume is one volume backup of the group.
type Volume struct {
	UUID       string    `json:"uuid"`
	VolumeUUID string    `json:"volumeUuid"`
	Name       string    `json:"name,omitempty"`
	Type       string    `json:"type"`
	DeviceID   int       `json:"deviceId"`
	Format     string    `json:"format"`
	Size       int64     `json:"size"`
	ActualSize int64     `json:"actualSize"`
	File       string    `json:"file"`
	SHA256     string    `json:"sha256,omitempty"`
	Checksum   *Checksum `json:"checksum,omitempty"`
}

// Checksum names a digest algorithm and the expected hex value.
type Checksum struct {
	Algorithm string `json:"algorithm"`
	Value     string `json:"value"`
}

// Digest returns the checksum the volume's bytes must match: the explicit checksum object,
// or else the sha256 field.
func (v *Volume) Digest() Checksum {
	if v.Checksum != nil {
		return *v.Checksum
	}
	return Checksum{Algorithm: "sha256", Value: v.SHA256}
}

// Root returns the group's root volume backup.
func (g *Group) Root() *Volume {
	for i := range g.Volumes {
		if g.Volumes[i].Type == VolumeRoot {
			return &g.Volumes[i]
		}
	}
	return nil
}

// DataVolumes returns the data volume backups in their original deviceId order, the order in
// which ZStack creates them.
func (g *Group) DataVolumes() []*Volume {
	var out []*Volume
	for i := range g.Volumes {
		if g.Volumes[i].Type == VolumeData {
			out = append(out, &g.Volumes[i])
		}
	}
	sort.SliceStable(out, func(a, b int) bool { return out[a].DeviceID < out[b].DeviceID })
	return out
}

// GroupsDir is the folder holding every group of a backup storage.
func GroupsDir(storageURL string) string { return filepath.Join(storageURL, "vm-backups") }

// GroupDir is the folder of one group on a backup storage.
func GroupDir(storageURL, groupUUID string) string {
	return filepath.Join(GroupsDir(storageURL), groupUUID)
}

// ErrNoGroup is returned by Read when the storage does not hold the group.
var ErrNoGroup = errors.New("group not on this backup storage")

// Read loads and validates a group from one backup storage. It returns ErrNoGroup when the
// storage has no folder for it, and a VOL_BACKUP.1000 ErrorCode when group.json is broken.
func Read(storageURL, groupUUID string) (*Group, error) {
	return (*GroupCache)(nil).Read(storageURL, groupUUID)
}

// GroupCache keeps the groups it read, so that restoring the same group again costs a stat
// of group.json instead of its parse. An entry holds while group.json is the same file
// (device and inode: a group written again by rename is a new file) with the same size,
// modification and change times. A file changed within groupSettle of being read is not
// kept, as two writes in one tick of the file system's clock can leave its times alone. The
// zero value is ready; a nil *GroupCache reads without keeping anything.
type GroupCache struct {
	mu     sync.Mutex
	groups map[string]cachedGroup // storage URL + NUL + group uuid
}

type cachedGroup struct {
	file fileID
	g    *Group
}

// fileID is what tells one content of a file from another without reading it.
type fileID struct {
	dev, ino     uint64
	size         int64
	mtime, ctime int64 // Unix ns
}

// groupSettle is how long group.json must have been left alone before its parse is kept (a
// variable for the tests).
var groupSettle = 2 * time.Second

// maxCachedGroups bounds the cache; when it is full it starts again empty.
const maxCachedGroups = 4096

// Read is Read through the cache. The group returned may be shared with other callers: it
// must not be modified.
func (c *GroupCache) Read(storageURL, groupUUID string) (*Group, error) {
	if !zstack.IsUUID(groupUUID) {
		return nil, ErrNoGroup
	}
	root, err := openGroupRoot(storageURL, groupUUID)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, ErrNoGroup
	}
	if err != nil {
		return nil, zstack.Errorf(zstack.CodeBackupStorage, "cannot open the folder of group[uuid:%s] on backup storage: %v", groupUUID, err)
	}
	defer root.Close()
	f, err := root.Open("group.json")
	if errors.Is(err, fs.ErrNotExist) {
		return nil, ErrNoGroup
	}
	if err != nil {
		return nil, zstack.Errorf(zstack.CodeBackupStorage, "cannot read group[uuid:%s] on backup storage: %v", groupUUID, err)
	}
	defer f.Close()
	key := storageURL + "\x00" + groupUUID
	id, known := c.identify(f)
	if known {
		if g := c.get(key, id); g != nil {
			return g, nil
		}
	}
	data, err := io.ReadAll(io.LimitReader(f, MaxGroupFileSize+1))
	if err != nil {
		return nil, zstack.Errorf(zstack.CodeBackupStorage, "cannot read group.json of group[uuid:%s]: %v", groupUUID, err)
	}
	if len(data) > MaxGroupFileSize {
		return nil, zstack.Errorf(zstack.CodeVolumeBackup, "group.json of group[uuid:%s] is larger than %d bytes", groupUUID, MaxGroupFileSize)
	}
	g, err := Parse(data)
	if err != nil {
		return nil, zstack.Errorf(zstack.CodeVolumeBackup, "group.json of group[uuid:%s] is invalid: %v", groupUUID, err)
	}
	if g.GroupUUID != groupUUID {
		return nil, zstack.Errorf(zstack.CodeVolumeBackup, "group.json in folder %s names another group[uuid:%s]", groupUUID, g.GroupUUID)
	}
	if known && int64(len(data)) == id.size && settled(id.mtime) && settled(id.ctime) {
		c.put(key, id, g)
	}
	return g, nil
}

// identify reads the identity of an open group.json; a nil cache needs none.
func (c *GroupCache) identify(f *os.File) (fileID, bool) {
	if c == nil {
		return fileID{}, false
	}
	st, err := f.Stat()
	if err != nil {
		return fileID{}, false
	}
	sys, ok := st.Sys().(*syscall.Stat_t)
	if !ok {
		return fileID{}, false
	}
	return fileID{dev: uint64(sys.Dev), ino: sys.Ino, size: st.Size(),
		mtime: sys.Mtim.Nano(), ctime: sys.Ctim.Nano()}, true
}

// settled reports whether a file time (Unix ns) is more than groupSettle in the past.
func settled(ns int64) bool { return time.Since(time.Unix(0, ns)) > groupSettle }

func (c *GroupCache) get(key string, id fileID) *Group {
	c.mu.Lock()
	defer c.mu.Unlock()
	if e, ok := c.groups[key]; ok && e.file == id {
		return e.g
	}
	return nil
}

func (c *GroupCache) put(key string, id fileID, g *Group) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.groups == nil || len(c.groups) >= maxCachedGroups {
		c.groups = map[string]cachedGroup{}
	}
	c.groups[key] = cachedGroup{file: id, g: g}
}

// Parse decodes and validates group.json. Errors are plain and name the offending field.
func Parse(data []byte) (*Group, error) {
	dec := json.NewDecoder(bytes.NewReader(data))
	var g Group
	if err := dec.Decode(&g); err != nil {
		return nil, fmt.Errorf("not valid JSON: %v", err)
	}
	if _, err := dec.Token(); err != io.EOF {
		return nil, errors.New("trailing data after the JSON object")
	}
	if err := g.Validate(); err != nil {
		return nil, err
	}
	return &g, nil
}

var formats = map[string]bool{"qcow2": true, "raw": true}

// Validate checks the group: uuids, exactly one Root volume, unique device ids, sizes,
// formats, checksums, and that every file is a plain relative name inside the group folder.
func (g *Group) Validate() error {
	if !zstack.IsUUID(g.GroupUUID) {
		return fmt.Errorf("groupUuid %q is not a UUID", g.GroupUUID)
	}
	if g.AccountUUID != "" && !zstack.IsUUID(g.AccountUUID) {
		return fmt.Errorf("accountUuid %q is not a UUID", g.AccountUUID)
	}
	if g.VM.CPUNum < 0 || g.VM.MemorySize < 0 {
		return errors.New("vm.cpuNum and vm.memorySize cannot be negative")
	}
	for i, n := range g.VM.Nics {
		if n.L3NetworkUUID != "" && !zstack.IsUUID(n.L3NetworkUUID) {
			return fmt.Errorf("vm.nics[%d].l3NetworkUuid %q is not a UUID", i, n.L3NetworkUUID)
		}
	}
	if len(g.Volumes) == 0 {
		return errors.New("it lists no volume backups")
	}
	if len(g.Volumes) > MaxVolumes {
		return fmt.Errorf("it lists %d volume backups, more than %d", len(g.Volumes), MaxVolumes)
	}
	roots := 0
	devices := map[int]string{}
	uuids := map[string]bool{}
	for i := range g.Volumes {
		v := &g.Volumes[i]
		where := fmt.Sprintf("volumes[%d]", i)
		if !zstack.IsUUID(v.UUID) {
			return fmt.Errorf("%s.uuid %q is not a UUID", where, v.UUID)
		}
		if v.VolumeUUID != "" && !zstack.IsUUID(v.VolumeUUID) {
			return fmt.Errorf("%s.volumeUuid %q is not a UUID", where, v.VolumeUUID)
		}
		if uuids[v.UUID] {
			return fmt.Errorf("%s: volume backup uuid %s appears twice", where, v.UUID)
		}
		uuids[v.UUID] = true
		switch v.Type {
		case VolumeRoot:
			roots++
		case VolumeData:
		default:
			return fmt.Errorf("%s.type %q must be Root or Data", where, v.Type)
		}
		if v.DeviceID < 0 || v.DeviceID > 1024 {
			return fmt.Errorf("%s.deviceId %d is out of range", where, v.DeviceID)
		}
		if prev, dup := devices[v.DeviceID]; dup {
			return fmt.Errorf("%s: deviceId %d is also used by volume backup %s", where, v.DeviceID, prev)
		}
		devices[v.DeviceID] = v.UUID
		if !formats[v.Format] {
			return fmt.Errorf("%s.format %q must be qcow2 or raw", where, v.Format)
		}
		if v.Size <= 0 {
			return fmt.Errorf("%s.size must be the positive virtual size in bytes", where)
		}
		if v.ActualSize < 0 {
			return fmt.Errorf("%s.actualSize cannot be negative", where)
		}
		if err := CheckFileName(v.File); err != nil {
			return fmt.Errorf("%s.file: %v", where, err)
		}
		d := v.Digest()
		if err := checkDigest(d); err != nil {
			return fmt.Errorf("%s: %v", where, err)
		}
	}
	switch {
	case roots == 0:
		return errors.New("it has no Root volume backup")
	case roots > 1:
		return fmt.Errorf("it has %d Root volume backups; exactly one is required", roots)
	}
	return nil
}

// CheckFileName refuses names that could leave the group folder: empty, absolute, with a NUL
// byte, with "." or ".." elements, or with backslashes. Symlinks are stopped when opening.
func CheckFileName(name string) error {
	switch {
	case name == "":
		return errors.New("is empty")
	case strings.ContainsRune(name, 0):
		return errors.New("contains a NUL byte")
	case strings.Contains(name, `\`):
		return fmt.Errorf("%q contains a backslash", name)
	case filepath.IsAbs(name) || strings.HasPrefix(name, "/"):
		return fmt.Errorf("%q is an absolute path; it must name a file inside the group folder", name)
	case !fs.ValidPath(name) || name == ".":
		return fmt.Errorf("%q leaves the group folder or is not a clean relative path", name)
	}
	return nil
}

func checkDigest(d Checksum) error {
	want, ok := digestHexLen[d.Algorithm]
	if !ok {
		return fmt.Errorf("checksum algorithm %q is not supported (use %s)", d.Algorithm, strings.Join(SupportedDigests(), ", "))
	}
	if len(d.Value) != want {
		return fmt.Errorf("%s checksum must be %d hex characters, got %d", d.Algorithm, want, len(d.Value))
	}
	for _, c := range d.Value {
		if (c < '0' || c > '9') && (c < 'a' || c > 'f') {
			return fmt.Errorf("%s checksum %q is not lowercase hex", d.Algorithm, d.Value)
		}
	}
	return nil
}

// digestHexLen lists the checksum algorithms group.json may name, with their hex lengths:
// the whole-file "sha256" and "blake3", and the chunked "xxh3-chunked-64k" and
// "blake3-chunked-64k", which verify a sparse file in time proportional to its data (defined
// in package clone and in docs/architecture.md).
var digestHexLen = map[string]int{"sha256": 64, "blake3": 64, "xxh3-chunked-64k": 32, "blake3-chunked-64k": 64}

// SupportedDigests lists the checksum algorithms group.json may name.
func SupportedDigests() []string {
	out := make([]string, 0, len(digestHexLen))
	for k := range digestHexLen {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

// openGroupRoot opens a group's folder as an os.Root reached through the storage's
// vm-backups folder, itself a Root: neither the group folder nor anything in it can lead
// outside vm-backups (a group folder that is a symlink elsewhere is refused), and nothing
// opened through the returned Root can leave the group folder.
func openGroupRoot(storageURL, groupUUID string) (*os.Root, error) {
	if !zstack.IsUUID(groupUUID) {
		return nil, fs.ErrNotExist
	}
	groups, err := os.OpenRoot(GroupsDir(storageURL))
	if err != nil {
		return nil, err
	}
	defer groups.Close()
	return groups.OpenRoot(groupUUID)
}

// OpenVolume opens a volume's file through an os.Root on the group folder, so neither ".."
// nor a symlink can lead outside it.
func OpenVolume(storageURL, groupUUID string, v *Volume) (*os.File, error) {
	if err := CheckFileName(v.File); err != nil {
		return nil, zstack.Errorf(zstack.CodeVolumeBackup, "volume backup[uuid:%s] file %v", v.UUID, err)
	}
	root, err := openGroupRoot(storageURL, groupUUID)
	if err != nil {
		return nil, zstack.Errorf(zstack.CodeBackupStorage, "cannot open the folder of group[uuid:%s]: %v", groupUUID, err)
	}
	defer root.Close()
	f, err := root.Open(v.File)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return nil, zstack.Errorf(zstack.CodeVolumeBackup, "file %s of volume backup[uuid:%s] is missing from group[uuid:%s]", v.File, v.UUID, groupUUID)
		}
		return nil, zstack.Errorf(zstack.CodeVolumeBackup, "cannot open file %s of volume backup[uuid:%s]: %v", v.File, v.UUID, err)
	}
	st, err := f.Stat()
	if err != nil || !st.Mode().IsRegular() {
		f.Close()
		return nil, zstack.Errorf(zstack.CodeVolumeBackup, "file %s of volume backup[uuid:%s] is not a regular file", v.File, v.UUID)
	}
	return f, nil
}

// HasFiles reports whether every volume file of the group is present (and inside its folder)
// on the storage; missing names the first absent volume backup.
func HasFiles(storageURL string, g *Group) (ok bool, missing string) {
	root, err := openGroupRoot(storageURL, g.GroupUUID)
	if err != nil {
		return false, g.Volumes[0].UUID
	}
	defer root.Close()
	for i := range g.Volumes {
		st, err := root.Stat(g.Volumes[i].File)
		if err != nil || !st.Mode().IsRegular() {
			return false, g.Volumes[i].UUID
		}
	}
	return true, ""
}

// List returns the uuids of the groups on a backup storage, sorted. A missing vm-backups
// folder means no groups.
func List(storageURL string) ([]string, error) {
	entries, err := os.ReadDir(GroupsDir(storageURL))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var out []string
	for _, e := range entries {
		if e.IsDir() && zstack.IsUUID(e.Name()) {
			out = append(out, e.Name())
		}
	}
	return out, nil
}
