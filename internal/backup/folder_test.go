package backup_test

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/vmrestore/vmrestore/internal/backup"
	"github.com/vmrestore/vmrestore/internal/clone"
)

// writtenGroup writes a one-volume group through Create and Commit and returns it.
func writtenGroup(t *testing.T, storage, uuid string, content []byte) *backup.Group {
	t.Helper()
	nf, err := backup.Create(storage, uuid)
	if err != nil {
		t.Fatal(err)
	}
	file := rootUUID + ".raw"
	path := filepath.Join(nf.Path, file)
	if err := os.WriteFile(path, content, 0o640); err != nil {
		t.Fatal(err)
	}
	s, err := clone.SumFile(path, clone.XXH3Chunked)
	if err != nil {
		t.Fatal(err)
	}
	g := &backup.Group{GroupUUID: uuid, Name: "web01-test", CreateDate: time.Now().UTC().Truncate(time.Second),
		VM: backup.SourceVM{UUID: vmUUID, Name: "web01", Platform: "Linux", CPUNum: 1, MemorySize: 1 << 30},
		Volumes: []backup.Volume{{UUID: rootUUID, Type: backup.VolumeRoot, Format: "raw", Size: int64(len(content)), File: file,
			Checksum: &backup.Checksum{Algorithm: clone.XXH3Chunked, Value: s}}}}
	if err := nf.Commit(g); err != nil {
		t.Fatal(err)
	}
	return g
}

// The folder protocol: a folder is Writing while its writer holds it, Incomplete once the
// writer is gone without group.json, Complete (and readable by Read) only after Commit, and
// Broken when a file goes missing.
func TestFolderStates(t *testing.T) {
	storage := t.TempDir()
	const done, killed, writing = "0000000000000000000000000000d0e1", "0000000000000000000000000000d0e2", "0000000000000000000000000000d0e3"
	g := writtenGroup(t, storage, done, []byte(strings.Repeat("x", 70000)))
	if _, err := os.Stat(filepath.Join(backup.GroupDir(storage, done), backup.CreatingFile)); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("a committed folder keeps its %s file: %v", backup.CreatingFile, err)
	}
	if got, err := backup.Read(storage, done); err != nil || got.Name != g.Name {
		t.Fatalf("the committed group does not read back: %v", err)
	}

	// A writer that died (its lock released, no group.json): Incomplete, never restorable.
	nf, err := backup.Create(storage, killed)
	if err != nil {
		t.Fatal(err)
	}
	os.WriteFile(filepath.Join(nf.Path, rootUUID+".raw.part"), []byte("half"), 0o640)
	nf.Close()
	// A writer still working.
	live, err := backup.Create(storage, writing)
	if err != nil {
		t.Fatal(err)
	}
	defer live.Close()
	if _, err := backup.Create(storage, writing); err == nil || !strings.Contains(err.Error(), "already has a folder") {
		t.Fatalf("a second create of the same group: %v", err)
	}

	entries, err := backup.Survey(storage)
	if err != nil {
		t.Fatal(err)
	}
	states := map[string]backup.State{}
	for _, e := range entries {
		states[e.UUID] = e.State
	}
	want := map[string]backup.State{done: backup.Complete, killed: backup.Incomplete, writing: backup.Writing}
	if len(states) != 3 || states[done] != want[done] || states[killed] != want[killed] || states[writing] != want[writing] {
		t.Fatalf("states %v, want %v", states, want)
	}
	for _, u := range []string{killed, writing} {
		if _, err := backup.Read(storage, u); !errors.Is(err, backup.ErrNoGroup) {
			t.Fatalf("group %s without group.json reads as %v", u, err)
		}
	}
	if err := backup.Delete(storage, writing); err == nil || !strings.Contains(err.Error(), "being written") {
		t.Fatalf("deleting a folder being written: %v", err)
	}

	os.Remove(filepath.Join(backup.GroupDir(storage, done), rootUUID+".raw"))
	e, err := backup.Inspect(storage, done)
	if err != nil || e.State != backup.Broken || !strings.Contains(e.Problem, "missing") {
		t.Fatalf("a group missing its file: %+v %v", e, err)
	}
	if _, err := backup.Inspect(storage, "0000000000000000000000000000ffff"); !errors.Is(err, backup.ErrNoFolder) {
		t.Fatalf("an unknown group: %v", err)
	}
	if _, err := backup.Survey(filepath.Join(storage, "nope")); err == nil {
		t.Fatal("a missing storage folder surveys without error")
	}
}

// Commit refuses a group that would not be restorable, and Abandon leaves nothing.
func TestCommitRefusesAndAbandonCleans(t *testing.T) {
	storage := t.TempDir()
	const u = "0000000000000000000000000000c0c1"
	nf, err := backup.Create(storage, u)
	if err != nil {
		t.Fatal(err)
	}
	g := &backup.Group{GroupUUID: u, VM: backup.SourceVM{Name: "x"}, Volumes: []backup.Volume{{UUID: rootUUID, Type: backup.VolumeRoot,
		Format: "raw", Size: 10, File: rootUUID + ".raw", Checksum: &backup.Checksum{Algorithm: clone.XXH3Chunked, Value: strings.Repeat("0", 32)}}}}
	if err := nf.Commit(g); err == nil || !strings.Contains(err.Error(), "is not in") {
		t.Fatalf("a commit whose volume file is missing: %v", err)
	}
	g.Volumes[0].Type = "Cdrom"
	if err := nf.Commit(g); err == nil || !strings.Contains(err.Error(), "invalid") {
		t.Fatalf("a commit of an invalid group: %v", err)
	}
	if _, err := os.Stat(filepath.Join(nf.Path, backup.GroupFile)); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("a refused commit wrote group.json: %v", err)
	}
	if err := nf.Abandon(); err != nil {
		t.Fatal(err)
	}
	if es, _ := backup.Survey(storage); len(es) != 0 {
		t.Fatalf("an abandoned folder is still there: %+v", es)
	}
}

// Delete removes the whole folder, group.json first, and reaches nothing outside it.
func TestDelete(t *testing.T) {
	storage := t.TempDir()
	const u = "0000000000000000000000000000de1e"
	writtenGroup(t, storage, u, []byte("some bytes"))
	if err := backup.Delete(storage, u); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(backup.GroupDir(storage, u)); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("the folder is still there: %v", err)
	}
	if err := backup.Delete(storage, u); !errors.Is(err, backup.ErrNoFolder) {
		t.Fatalf("deleting it again: %v", err)
	}
	// A group folder that is a symlink to a folder elsewhere is refused, and the target kept.
	outside := t.TempDir()
	os.WriteFile(filepath.Join(outside, "precious"), []byte("keep"), 0o640)
	os.Symlink(outside, backup.GroupDir(storage, u))
	if err := backup.Delete(storage, u); err == nil {
		t.Fatal("a symlinked group folder was deleted")
	}
	if _, err := os.Stat(filepath.Join(outside, "precious")); err != nil {
		t.Fatalf("the symlink's target lost its file: %v", err)
	}
	if err := backup.Delete(storage, "../etc"); err == nil {
		t.Fatal("a path as group uuid was accepted")
	}
}

// VerifyVolume passes an intact file and names a changed byte, a missing file and a
// cancelled read.
func TestVerifyVolume(t *testing.T) {
	storage := t.TempDir()
	const u = "0000000000000000000000000000fe01"
	g := writtenGroup(t, storage, u, []byte(strings.Repeat("abc", 50000)))
	v := &g.Volumes[0]
	var progressed bool
	if r := backup.VerifyVolume(context.Background(), storage, g, v, func(clone.Progress) { progressed = true }); !r.OK || r.DataBytes != 150000 || !progressed {
		t.Fatalf("an intact volume: %+v (progress %v)", r, progressed)
	}
	path := filepath.Join(backup.GroupDir(storage, u), v.File)
	f, _ := os.OpenFile(path, os.O_RDWR, 0)
	f.WriteAt([]byte("X"), 1234)
	f.Close()
	if r := backup.VerifyVolume(context.Background(), storage, g, v, nil); r.OK || !strings.Contains(r.Error, "changed since the backup") {
		t.Fatalf("a changed byte: %+v", r)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if r := backup.VerifyVolume(ctx, storage, g, v, nil); r.OK || !strings.Contains(r.Error, "canceled") {
		t.Fatalf("a cancelled verify: %+v", r)
	}
	os.Remove(path)
	if r := backup.VerifyVolume(context.Background(), storage, g, v, nil); r.OK || !strings.Contains(r.Error, "missing") {
		t.Fatalf("a missing file: %+v", r)
	}
}

// TestDeleteRefusesAGroupBackingAVM: a group whose files a running instant restore's VM
// runs from is not deleted (its folder says so, without Redis) until the mark is gone.
func TestDeleteRefusesAGroupBackingAVM(t *testing.T) {
	storage := t.TempDir()
	const u, jobUUID = "0000000000000000000000000000ba5e", "1111111111111111111111111111b0b0"
	writtenGroup(t, storage, u, []byte("some bytes"))
	if err := backup.MarkBacking(storage, u, jobUUID); err != nil {
		t.Fatal(err)
	}
	if got := backup.BackingJobs(storage, u); len(got) != 1 || got[0] != jobUUID {
		t.Fatalf("backing jobs %v", got)
	}
	err := backup.Delete(storage, u)
	if err == nil || !strings.Contains(err.Error(), jobUUID) || !strings.Contains(err.Error(), "instant restore") {
		t.Fatalf("a group backing a running VM: %v", err)
	}
	if _, err := os.Stat(filepath.Join(backup.GroupDir(storage, u), backup.GroupFile)); err != nil {
		t.Fatalf("the refused delete removed group.json: %v", err)
	}
	if err := backup.UnmarkBacking(storage, u, jobUUID); err != nil {
		t.Fatal(err)
	}
	if err := backup.Delete(storage, u); err != nil {
		t.Fatalf("after the VM is hydrated: %v", err)
	}
}
