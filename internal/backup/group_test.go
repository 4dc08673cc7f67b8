package backup_test

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/vmrestore/vmrestore/internal/backup"
	"github.com/vmrestore/vmrestore/internal/clone"
	"github.com/vmrestore/vmrestore/internal/zstack"
)

const (
	groupUUID = "6e0c3b6a1f2d4c5b8a9e7d6c5b4a3f21"
	vmUUID    = "4834161c409a34b6a84e40d71d85f714"
	rootUUID  = "00000000000000000000000000000a01"
	data1UUID = "00000000000000000000000000000a02"
	data2UUID = "00000000000000000000000000000a03"
	l3UUID    = "d50554f493153be78f6740e18e598046"
)

var sum = strings.Repeat("ab", 32)

// baseGroup is a valid group: a root and two data volumes listed out of deviceId order.
func baseGroup() *backup.Group {
	return &backup.Group{
		GroupUUID: groupUUID, Name: "web-01-backup", CreateDate: time.Date(2024, 5, 1, 10, 0, 0, 0, time.UTC),
		VM: backup.SourceVM{UUID: vmUUID, Name: "web-01", Platform: "Linux", GuestOsType: "CentOS", Architecture: "x86_64",
			CPUNum: 2, MemorySize: 2 << 30, Nics: []backup.SourceNic{{L3NetworkUUID: l3UUID, IP: "10.0.0.5", DeviceID: 0}}},
		Volumes: []backup.Volume{
			{UUID: data2UUID, Type: "Data", DeviceID: 2, Format: "raw", Size: 1 << 30, File: data2UUID + ".raw", SHA256: sum},
			{UUID: rootUUID, Type: "Root", DeviceID: 0, Format: "qcow2", Size: 10 << 30, ActualSize: 1 << 30, File: rootUUID + ".qcow2", SHA256: sum},
			{UUID: data1UUID, Type: "Data", DeviceID: 1, Format: "qcow2", Size: 5 << 30, File: "disks/" + data1UUID + ".qcow2",
				Checksum: &backup.Checksum{Algorithm: "sha256", Value: strings.Repeat("0", 64)}},
		},
	}
}

func marshal(tb testing.TB, g any) []byte {
	tb.Helper()
	b, err := json.Marshal(g)
	if err != nil {
		tb.Fatal(err)
	}
	return b
}

func TestParseValidGroup(t *testing.T) {
	g, err := backup.Parse(marshal(t, baseGroup()))
	if err != nil {
		t.Fatalf("Parse: %v", err)
	}
	if !reflect.DeepEqual(g, baseGroup()) {
		t.Fatalf("parsed group differs:\n%+v\n%+v", g, baseGroup())
	}
	if r := g.Root(); r == nil || r.UUID != rootUUID {
		t.Fatalf("Root() = %+v", r)
	}
	data := g.DataVolumes()
	if len(data) != 2 || data[0].UUID != data1UUID || data[1].UUID != data2UUID {
		t.Fatalf("DataVolumes() not in deviceId order: %+v", data)
	}
	if data[0] != &g.Volumes[2] {
		t.Fatal("DataVolumes must point into the group")
	}
	if d := g.Volumes[0].Digest(); d != (backup.Checksum{Algorithm: "sha256", Value: sum}) {
		t.Fatalf("Digest from sha256 = %+v", d)
	}
	if d := g.Volumes[2].Digest(); d != (backup.Checksum{Algorithm: "sha256", Value: strings.Repeat("0", 64)}) {
		t.Fatalf("Digest from checksum = %+v", d)
	}
}

func TestParseAcceptsEdgeCases(t *testing.T) {
	tests := []struct {
		name string
		mod  func(g *backup.Group)
	}{
		{"root only", func(g *backup.Group) { g.Volumes = g.Volumes[1:2] }},
		{"root not at device 0", func(g *backup.Group) { g.Volumes[1].DeviceID = 5 }},
		{"device 1024", func(g *backup.Group) { g.Volumes[0].DeviceID = 1024 }},
		{"account uuid", func(g *backup.Group) { g.AccountUUID = vmUUID }},
		{"volume uuid", func(g *backup.Group) { g.Volumes[0].VolumeUUID = vmUUID }},
		{"nic without l3", func(g *backup.Group) { g.VM.Nics[0].L3NetworkUUID = "" }},
		{"checksum object wins over a bad sha256 field", func(g *backup.Group) { g.Volumes[2].SHA256 = "junk" }},
		{"file with dots inside a name", func(g *backup.Group) { g.Volumes[0].File = "a..b.raw" }},
		{"file in a subfolder", func(g *backup.Group) { g.Volumes[0].File = "a/b/c.raw" }},
		{"file named like a dotfile", func(g *backup.Group) { g.Volumes[0].File = ".hidden" }},
		{"64 volumes", func(g *backup.Group) {
			g.Volumes = g.Volumes[1:2]
			for i := 1; i < 64; i++ {
				g.Volumes = append(g.Volumes, backup.Volume{UUID: fmt.Sprintf("%032x", 0xb00+i), Type: "Data", DeviceID: i,
					Format: "raw", Size: 1, File: fmt.Sprintf("d%d.raw", i), SHA256: sum})
			}
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			g := baseGroup()
			tc.mod(g)
			if _, err := backup.Parse(marshal(t, g)); err != nil {
				t.Fatalf("Parse: %v", err)
			}
		})
	}
}

func TestParseRejects(t *testing.T) {
	tests := []struct {
		name string
		mod  func(g *backup.Group)
		want string
	}{
		{"group uuid", func(g *backup.Group) { g.GroupUUID = "g" }, `groupUuid "g" is not a UUID`},
		{"group uuid missing", func(g *backup.Group) { g.GroupUUID = "" }, `groupUuid "" is not a UUID`},
		{"account uuid", func(g *backup.Group) { g.AccountUUID = "ACCT" }, `accountUuid "ACCT" is not a UUID`},
		{"negative cpu", func(g *backup.Group) { g.VM.CPUNum = -1 }, "vm.cpuNum and vm.memorySize cannot be negative"},
		{"negative memory", func(g *backup.Group) { g.VM.MemorySize = -1 }, "vm.cpuNum and vm.memorySize cannot be negative"},
		{"nic l3", func(g *backup.Group) { g.VM.Nics = append(g.VM.Nics, backup.SourceNic{L3NetworkUUID: "x"}) }, `vm.nics[1].l3NetworkUuid "x" is not a UUID`},
		{"no volumes", func(g *backup.Group) { g.Volumes = nil }, "it lists no volume backups"},
		{"65 volumes", func(g *backup.Group) {
			for len(g.Volumes) < 65 {
				i := len(g.Volumes) + 10
				g.Volumes = append(g.Volumes, backup.Volume{UUID: fmt.Sprintf("%032x", 0xb00+i), Type: "Data", DeviceID: i,
					Format: "raw", Size: 1, File: "x", SHA256: sum})
			}
		}, "it lists 65 volume backups, more than 64"},
		{"no root", func(g *backup.Group) { g.Volumes[1].Type = "Data" }, "it has no Root volume backup"},
		{"two roots", func(g *backup.Group) { g.Volumes[0].Type = "Root" }, "it has 2 Root volume backups; exactly one is required"},
		{"type case", func(g *backup.Group) { g.Volumes[1].Type = "root" }, `volumes[1].type "root" must be Root or Data`},
		{"type missing", func(g *backup.Group) { g.Volumes[0].Type = "" }, `volumes[0].type "" must be Root or Data`},
		{"volume uuid", func(g *backup.Group) { g.Volumes[0].UUID = "v" }, `volumes[0].uuid "v" is not a UUID`},
		{"volume's source uuid", func(g *backup.Group) { g.Volumes[2].VolumeUUID = "v" }, `volumes[2].volumeUuid "v" is not a UUID`},
		{"volume uuid twice", func(g *backup.Group) { g.Volumes[2].UUID = data2UUID }, "volumes[2]: volume backup uuid " + data2UUID + " appears twice"},
		{"duplicate device id", func(g *backup.Group) { g.Volumes[2].DeviceID = 2 }, "volumes[2]: deviceId 2 is also used by volume backup " + data2UUID},
		{"duplicate device id with root", func(g *backup.Group) { g.Volumes[0].DeviceID = 0 }, "volumes[1]: deviceId 0 is also used by volume backup " + data2UUID},
		{"negative device id", func(g *backup.Group) { g.Volumes[0].DeviceID = -1 }, "volumes[0].deviceId -1 is out of range"},
		{"device id 1025", func(g *backup.Group) { g.Volumes[0].DeviceID = 1025 }, "volumes[0].deviceId 1025 is out of range"},
		{"format", func(g *backup.Group) { g.Volumes[0].Format = "vmdk" }, `volumes[0].format "vmdk" must be qcow2 or raw`},
		{"format case", func(g *backup.Group) { g.Volumes[0].Format = "QCOW2" }, `volumes[0].format "QCOW2" must be qcow2 or raw`},
		{"size zero", func(g *backup.Group) { g.Volumes[0].Size = 0 }, "volumes[0].size must be the positive virtual size in bytes"},
		{"size negative", func(g *backup.Group) { g.Volumes[0].Size = -5 }, "volumes[0].size must be the positive"},
		{"actual size negative", func(g *backup.Group) { g.Volumes[0].ActualSize = -1 }, "volumes[0].actualSize cannot be negative"},
		{"no checksum", func(g *backup.Group) { g.Volumes[0].SHA256 = "" }, "volumes[0]: sha256 checksum must be 64 hex characters, got 0"},
		{"short checksum", func(g *backup.Group) { g.Volumes[0].SHA256 = sum[:63] }, "volumes[0]: sha256 checksum must be 64 hex characters, got 63"},
		{"upper-case checksum", func(g *backup.Group) { g.Volumes[0].SHA256 = strings.ToUpper(sum) }, "volumes[0]: sha256 checksum \"" + strings.ToUpper(sum) + "\" is not lowercase hex"},
		{"non-hex checksum", func(g *backup.Group) { g.Volumes[0].SHA256 = strings.Repeat("g", 64) }, "is not lowercase hex"},
		{"unsupported algorithm", func(g *backup.Group) { g.Volumes[2].Checksum.Algorithm = "md5" },
			`volumes[2]: checksum algorithm "md5" is not supported (use blake3, blake3-chunked-64k, sha256, xxh3-chunked-64k)`},
		{"checksum object with bad value", func(g *backup.Group) { g.Volumes[2].Checksum.Value = sum + "00" },
			"volumes[2]: sha256 checksum must be 64 hex characters, got 66"},
		{"empty checksum object", func(g *backup.Group) { g.Volumes[2].Checksum = &backup.Checksum{} }, `checksum algorithm "" is not supported`},
		{"file empty", func(g *backup.Group) { g.Volumes[0].File = "" }, "volumes[0].file: is empty"},
		{"file absolute", func(g *backup.Group) { g.Volumes[0].File = "/etc/passwd" }, `volumes[0].file: "/etc/passwd" is an absolute path`},
		{"file parent", func(g *backup.Group) { g.Volumes[0].File = "../other/disk.raw" }, `volumes[0].file: "../other/disk.raw" leaves the group folder`},
		{"file only ..", func(g *backup.Group) { g.Volumes[0].File = ".." }, `".." leaves the group folder`},
		{"file with .. inside", func(g *backup.Group) { g.Volumes[0].File = "a/../../b" }, "leaves the group folder"},
		{"file with .. that stays inside", func(g *backup.Group) { g.Volumes[0].File = "a/../b" }, "is not a clean relative path"},
		{"file .", func(g *backup.Group) { g.Volumes[0].File = "." }, `"." leaves the group folder or is not a clean relative path`},
		{"file ./x", func(g *backup.Group) { g.Volumes[0].File = "./x.raw" }, "is not a clean relative path"},
		{"file with trailing slash", func(g *backup.Group) { g.Volumes[0].File = "x/" }, "is not a clean relative path"},
		{"file with double slash", func(g *backup.Group) { g.Volumes[0].File = "a//b" }, "is not a clean relative path"},
		{"file with backslash", func(g *backup.Group) { g.Volumes[0].File = `..\..\etc\passwd` }, `contains a backslash`},
		{"file with windows drive path", func(g *backup.Group) { g.Volumes[0].File = `C:\disk.raw` }, "contains a backslash"},
		{"file with NUL", func(g *backup.Group) { g.Volumes[0].File = "disk.raw\x00.txt" }, "volumes[0].file: contains a NUL byte"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			g := baseGroup()
			tc.mod(g)
			got, err := backup.Parse(marshal(t, g))
			if err == nil {
				t.Fatalf("Parse accepted the group: %+v", got)
			}
			if got != nil {
				t.Fatal("a group returned with an error")
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %q does not contain %q", err, tc.want)
			}
		})
	}
}

func TestParseRejectsBadJSON(t *testing.T) {
	valid := string(marshal(t, baseGroup()))
	tests := []struct {
		name, in, want string
	}{
		{"empty", "", "not valid JSON"},
		{"not JSON", "group", "not valid JSON"},
		{"a list", "[]", "not valid JSON"},
		{"truncated", valid[:len(valid)-1], "not valid JSON"},
		{"wrong type", `{"groupUuid":5}`, "not valid JSON"},
		{"date in ZStack form", `{"createDate":"Nov 14, 2017 10:20:57 PM"}`, "not valid JSON"},
		{"second object", valid + valid, "trailing data after the JSON object"},
		{"trailing word", valid + " x", "trailing data after the JSON object"},
		{"null", "null", `groupUuid "" is not a UUID`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := backup.Parse([]byte(tc.in))
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("Parse = %v, want %q", err, tc.want)
			}
		})
	}
}

func TestParseRejectsTrailingClosingBrace(t *testing.T) {
	valid := string(marshal(t, baseGroup()))
	for _, tail := range []string{"}", "]", "}}", "]{"} {
		if _, err := backup.Parse([]byte(valid + tail)); err == nil {
			t.Errorf("Parse accepted group.json followed by %q", tail)
		}
	}
}

func TestCheckFileName(t *testing.T) {
	tests := []struct {
		name string
		ok   bool
	}{
		{"disk.qcow2", true},
		{"a/b.raw", true},
		{"..disk", true},
		{"disk..", true},
		{".disk", true},
		{"-rf", true},
		{"", false},
		{".", false},
		{"..", false},
		{"../x", false},
		{"x/..", false},
		{"x/../y", false},
		{"./x", false},
		{"x/./y", false},
		{"/x", false},
		{"//x", false},
		{"x/", false},
		{"x//y", false},
		{`x\y`, false},
		{`\x`, false},
		{"x\x00", false},
		{"\x00", false},
		{"\xff.raw", false},
	}
	for _, tc := range tests {
		err := backup.CheckFileName(tc.name)
		if (err == nil) != tc.ok {
			t.Errorf("CheckFileName(%q) = %v, want ok=%v", tc.name, err, tc.ok)
		}
	}
}

// group.json may name exactly the algorithms the clone engine verifies.
func TestSupportedDigestsAreTheCloneEngines(t *testing.T) {
	if got, want := backup.SupportedDigests(), clone.Algorithms(); !reflect.DeepEqual(got, want) {
		t.Fatalf("SupportedDigests() = %v, clone.Algorithms() = %v", got, want)
	}
}

func TestGroupDirs(t *testing.T) {
	if got := backup.GroupsDir("/bs"); got != "/bs/vm-backups" {
		t.Fatalf("GroupsDir = %q", got)
	}
	if got := backup.GroupDir("/bs/", groupUUID); got != "/bs/vm-backups/"+groupUUID {
		t.Fatalf("GroupDir = %q", got)
	}
}

// storage lays out a backup storage with the base group and its files.
func storage(tb testing.TB) (string, *backup.Group) {
	tb.Helper()
	url := tb.TempDir()
	g := baseGroup()
	dir := backup.GroupDir(url, g.GroupUUID)
	writeFile(tb, filepath.Join(dir, "group.json"), string(marshal(tb, g)))
	for _, v := range g.Volumes {
		writeFile(tb, filepath.Join(dir, v.File), "bytes of "+v.UUID)
	}
	return url, g
}

func writeFile(tb testing.TB, path, content string) {
	tb.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		tb.Fatal(err)
	}
	if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
		tb.Fatal(err)
	}
}

func wantCode(tb testing.TB, err error, code, details string) {
	tb.Helper()
	e, ok := zstack.AsErrorCode(err)
	if !ok {
		tb.Fatalf("error %v (%T) is not an ErrorCode", err, err)
	}
	if e.Code != code || !strings.Contains(e.Details, details) {
		tb.Fatalf("got %s %q; want %s containing %q", e.Code, e.Details, code, details)
	}
}

func TestOpenVolume(t *testing.T) {
	url, g := storage(t)
	for i := range g.Volumes {
		v := &g.Volumes[i]
		f, err := backup.OpenVolume(url, groupUUID, v)
		if err != nil {
			t.Fatalf("OpenVolume(%s): %v", v.File, err)
		}
		b, err := io.ReadAll(f)
		f.Close()
		if err != nil || string(b) != "bytes of "+v.UUID {
			t.Fatalf("read %q, %v", b, err)
		}
	}
}

func TestOpenVolumeFollowsSymlinkInsideTheFolder(t *testing.T) {
	url, g := storage(t)
	dir := backup.GroupDir(url, groupUUID)
	if err := os.Symlink(g.Volumes[0].File, filepath.Join(dir, "alias.raw")); err != nil {
		t.Fatal(err)
	}
	f, err := backup.OpenVolume(url, groupUUID, &backup.Volume{UUID: rootUUID, File: "alias.raw"})
	if err != nil {
		t.Fatalf("a symlink inside the group folder: %v", err)
	}
	f.Close()
}

func TestOpenVolumeRefuses(t *testing.T) {
	url, g := storage(t)
	dir := backup.GroupDir(url, groupUUID)
	secret := filepath.Join(url, "secret.raw")
	writeFile(t, secret, "secret")
	// A neighbouring group's file, reachable only by leaving this group's folder.
	other := backup.GroupDir(url, "11111111111111111111111111111111")
	writeFile(t, filepath.Join(other, "x.raw"), "other group")
	mustLink := func(target, name string) {
		t.Helper()
		if err := os.Symlink(target, filepath.Join(dir, name)); err != nil {
			t.Fatal(err)
		}
	}
	mustLink(secret, "abs-link.raw")
	mustLink("../11111111111111111111111111111111/x.raw", "rel-link.raw")
	mustLink("/etc/passwd", "passwd.raw")
	mustLink("../../", "up")
	mustLink("missing-target.raw", "dangling.raw")
	if err := os.MkdirAll(filepath.Join(dir, "adir"), 0o755); err != nil {
		t.Fatal(err)
	}

	tests := []struct {
		name, file, code, details string
	}{
		{"absolute symlink out of the folder", "abs-link.raw", zstack.CodeVolumeBackup, "cannot open file abs-link.raw of volume backup[uuid:"},
		{"relative symlink into another group", "rel-link.raw", zstack.CodeVolumeBackup, "cannot open file rel-link.raw"},
		{"symlink to /etc/passwd", "passwd.raw", zstack.CodeVolumeBackup, "cannot open file passwd.raw"},
		{"path through a symlinked folder", "up/secret.raw", zstack.CodeVolumeBackup, "up/secret.raw"},
		{"missing file", "nope.raw", zstack.CodeVolumeBackup, "file nope.raw of volume backup[uuid:" + rootUUID + "] is missing from group[uuid:" + groupUUID + "]"},
		{"dangling symlink", "dangling.raw", zstack.CodeVolumeBackup, "is missing from group"},
		{"a directory", "adir", zstack.CodeVolumeBackup, "file adir of volume backup[uuid:" + rootUUID + "] is not a regular file"},
		{"dot-dot name", "../secret.raw", zstack.CodeVolumeBackup, `file "../secret.raw" leaves the group folder`},
		{"absolute name", secret, zstack.CodeVolumeBackup, "is an absolute path"},
		{"backslash name", `..\secret.raw`, zstack.CodeVolumeBackup, "contains a backslash"},
		{"NUL name", "x\x00", zstack.CodeVolumeBackup, "contains a NUL byte"},
		{"empty name", "", zstack.CodeVolumeBackup, "is empty"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			f, err := backup.OpenVolume(url, groupUUID, &backup.Volume{UUID: rootUUID, File: tc.file})
			if err == nil {
				b, _ := io.ReadAll(f)
				f.Close()
				t.Fatalf("OpenVolume(%q) opened a file holding %q", tc.file, b)
			}
			wantCode(t, err, tc.code, tc.details)
		})
	}
	t.Run("missing group folder", func(t *testing.T) {
		_, err := backup.OpenVolume(url, "22222222222222222222222222222222", &g.Volumes[0])
		wantCode(t, err, zstack.CodeBackupStorage, "cannot open the folder of group[uuid:22222222222222222222222222222222]")
	})
}

func TestHasFiles(t *testing.T) {
	t.Run("all present", func(t *testing.T) {
		url, g := storage(t)
		if ok, missing := backup.HasFiles(url, g); !ok || missing != "" {
			t.Fatalf("HasFiles = %v, %q", ok, missing)
		}
	})
	t.Run("one missing", func(t *testing.T) {
		url, g := storage(t)
		if err := os.Remove(filepath.Join(backup.GroupDir(url, groupUUID), g.Volumes[2].File)); err != nil {
			t.Fatal(err)
		}
		if ok, missing := backup.HasFiles(url, g); ok || missing != g.Volumes[2].UUID {
			t.Fatalf("HasFiles = %v, %q; want false, %s", ok, missing, g.Volumes[2].UUID)
		}
	})
	t.Run("a symlink out of the folder is not present", func(t *testing.T) {
		url, g := storage(t)
		p := filepath.Join(backup.GroupDir(url, groupUUID), g.Volumes[0].File)
		writeFile(t, filepath.Join(url, "outside.raw"), "x")
		if err := os.Remove(p); err != nil {
			t.Fatal(err)
		}
		if err := os.Symlink(filepath.Join(url, "outside.raw"), p); err != nil {
			t.Fatal(err)
		}
		if ok, missing := backup.HasFiles(url, g); ok || missing != g.Volumes[0].UUID {
			t.Fatalf("HasFiles = %v, %q", ok, missing)
		}
	})
	t.Run("a directory in place of a file", func(t *testing.T) {
		url, g := storage(t)
		p := filepath.Join(backup.GroupDir(url, groupUUID), g.Volumes[1].File)
		if err := os.Remove(p); err != nil {
			t.Fatal(err)
		}
		if err := os.Mkdir(p, 0o755); err != nil {
			t.Fatal(err)
		}
		if ok, missing := backup.HasFiles(url, g); ok || missing != g.Volumes[1].UUID {
			t.Fatalf("HasFiles = %v, %q", ok, missing)
		}
	})
	t.Run("no group folder", func(t *testing.T) {
		g := baseGroup()
		if ok, missing := backup.HasFiles(t.TempDir(), g); ok || missing != g.Volumes[0].UUID {
			t.Fatalf("HasFiles = %v, %q", ok, missing)
		}
	})
}

func TestList(t *testing.T) {
	t.Run("no vm-backups folder", func(t *testing.T) {
		got, err := backup.List(t.TempDir())
		if err != nil || got != nil {
			t.Fatalf("List = %v, %v", got, err)
		}
	})
	t.Run("groups only, sorted", func(t *testing.T) {
		url := t.TempDir()
		root := backup.GroupsDir(url)
		for _, d := range []string{"ffffffffffffffffffffffffffffffff", groupUUID, "00000000000000000000000000000001",
			"NOT-A-UUID", strings.ToUpper(groupUUID), "6e0c3b6a-1f2d-4c5b-8a9e-7d6c5b4a3f21"} {
			if err := os.MkdirAll(filepath.Join(root, d), 0o755); err != nil {
				t.Fatal(err)
			}
		}
		writeFile(t, filepath.Join(root, "22222222222222222222222222222222"), "a file, not a group")
		got, err := backup.List(url)
		want := []string{"00000000000000000000000000000001", groupUUID, "ffffffffffffffffffffffffffffffff"}
		if err != nil || !reflect.DeepEqual(got, want) {
			t.Fatalf("List = %v, %v; want %v", got, err, want)
		}
	})
	t.Run("vm-backups is a file", func(t *testing.T) {
		url := t.TempDir()
		writeFile(t, backup.GroupsDir(url), "x")
		if _, err := backup.List(url); err == nil {
			t.Fatal("List of a storage whose vm-backups is a file did not fail")
		}
	})
}

func TestRead(t *testing.T) {
	t.Run("valid", func(t *testing.T) {
		url, want := storage(t)
		g, err := backup.Read(url, groupUUID)
		if err != nil || !reflect.DeepEqual(g, want) {
			t.Fatalf("Read = %+v, %v", g, err)
		}
	})
	t.Run("not a uuid", func(t *testing.T) {
		url, _ := storage(t)
		for _, id := range []string{"", "..", "../" + groupUUID, strings.ToUpper(groupUUID)} {
			if _, err := backup.Read(url, id); !errors.Is(err, backup.ErrNoGroup) {
				t.Fatalf("Read(%q) = %v, want ErrNoGroup", id, err)
			}
		}
	})
	t.Run("absent", func(t *testing.T) {
		url, _ := storage(t)
		if _, err := backup.Read(url, "33333333333333333333333333333333"); !errors.Is(err, backup.ErrNoGroup) {
			t.Fatalf("Read = %v, want ErrNoGroup", err)
		}
	})
	t.Run("invalid group.json", func(t *testing.T) {
		url, _ := storage(t)
		writeFile(t, filepath.Join(backup.GroupDir(url, groupUUID), "group.json"), `{"groupUuid":"`+groupUUID+`"}`)
		_, err := backup.Read(url, groupUUID)
		wantCode(t, err, zstack.CodeVolumeBackup, "group.json of group[uuid:"+groupUUID+"] is invalid: it lists no volume backups")
	})
	t.Run("names another group", func(t *testing.T) {
		url, _ := storage(t)
		g := baseGroup()
		g.GroupUUID = "44444444444444444444444444444444"
		writeFile(t, filepath.Join(backup.GroupDir(url, groupUUID), "group.json"), string(marshal(t, g)))
		_, err := backup.Read(url, groupUUID)
		wantCode(t, err, zstack.CodeVolumeBackup, "group.json in folder "+groupUUID+" names another group[uuid:44444444444444444444444444444444]")
	})
	t.Run("too large", func(t *testing.T) {
		url, _ := storage(t)
		writeFile(t, filepath.Join(backup.GroupDir(url, groupUUID), "group.json"), strings.Repeat(" ", backup.MaxGroupFileSize+1))
		_, err := backup.Read(url, groupUUID)
		wantCode(t, err, zstack.CodeVolumeBackup, "is larger than 1048576 bytes")
	})
	t.Run("group.json is a folder", func(t *testing.T) {
		url := t.TempDir()
		if err := os.MkdirAll(filepath.Join(backup.GroupDir(url, groupUUID), "group.json"), 0o755); err != nil {
			t.Fatal(err)
		}
		_, err := backup.Read(url, groupUUID)
		wantCode(t, err, zstack.CodeBackupStorage, "cannot read group.json of group[uuid:"+groupUUID+"]")
	})
}
