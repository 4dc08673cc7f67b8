package backup

import (
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

const cacheGroupUUID = "6e0c3b6a1f2d4c5b8a9e7d6c5b4a3f21"

// writeCacheGroup writes a one-volume group whose VM is named name, directly or by rename.
func writeCacheGroup(tb testing.TB, url, name string, rename bool) {
	tb.Helper()
	dir := GroupDir(url, cacheGroupUUID)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		tb.Fatal(err)
	}
	g := Group{GroupUUID: cacheGroupUUID, VM: SourceVM{Name: name, CPUNum: 1, MemorySize: 1 << 30},
		Volumes: []Volume{{UUID: "00000000000000000000000000000a01", Type: VolumeRoot, Format: "raw", Size: 1 << 20, File: "root.raw",
			Checksum: &Checksum{Algorithm: "sha256", Value: strings.Repeat("ab", 32)}}}}
	b, err := json.Marshal(g)
	if err != nil {
		tb.Fatal(err)
	}
	path := filepath.Join(dir, "group.json")
	if rename {
		if err := os.WriteFile(path+".new", b, 0o644); err != nil {
			tb.Fatal(err)
		}
		if err := os.Rename(path+".new", path); err != nil {
			tb.Fatal(err)
		}
		return
	}
	if err := os.WriteFile(path, b, 0o644); err != nil {
		tb.Fatal(err)
	}
}

// The cache answers a second read of an unchanged group.json from memory and reads it again
// whenever it changed: rewritten in place with the same size, replaced by a rename, removed.
// A file changed less than groupSettle ago is not kept.
func TestGroupCacheKeepsAGroupUntilItsFileChanges(t *testing.T) {
	url := t.TempDir()
	var c GroupCache
	read := func(want string) *Group {
		t.Helper()
		g, err := c.Read(url, cacheGroupUUID)
		if err != nil || g.VM.Name != want {
			t.Fatalf("read: %+v %v, want the VM named %q", g, err, want)
		}
		return g
	}
	writeCacheGroup(t, url, "aaaa", false)
	// Just written: read, not kept.
	if a, b := read("aaaa"), read("aaaa"); a == b {
		t.Fatal("a group.json written just now was kept")
	}

	defer func(d time.Duration) { groupSettle = d }(groupSettle)
	groupSettle = 0
	first := read("aaaa")
	if again := read("aaaa"); again != first {
		t.Fatal("an unchanged group.json was parsed again")
	}
	// Rewritten in place, same size: its modification time moved.
	writeCacheGroup(t, url, "bbbb", false)
	path := filepath.Join(GroupDir(url, cacheGroupUUID), "group.json")
	earlier := time.Now().Add(-time.Minute)
	if err := os.Chtimes(path, earlier, earlier); err != nil {
		t.Fatal(err)
	}
	if b := read("bbbb"); read("bbbb") != b {
		t.Fatal("the rewritten group.json was not kept")
	}
	// Its times put back as they were: its change time still moved.
	st, _ := os.Stat(path)
	writeCacheGroup(t, url, "cccc", false)
	if err := os.Chtimes(path, st.ModTime(), st.ModTime()); err != nil {
		t.Fatal(err)
	}
	read("cccc")
	// Replaced by a rename: another inode.
	writeCacheGroup(t, url, "dddd", true)
	read("dddd")
	if err := os.Remove(path); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Read(url, cacheGroupUUID); !errors.Is(err, ErrNoGroup) {
		t.Fatalf("a removed group.json: %v, want ErrNoGroup", err)
	}
}
