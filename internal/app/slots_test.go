package app_test

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/vmrestore/vmrestore/internal/backup"
	"github.com/vmrestore/vmrestore/internal/catalog"
	"github.com/vmrestore/vmrestore/internal/clone"
	"github.com/vmrestore/vmrestore/internal/demosite"
)

// slotsBS is a backup storage with one clone slot, limited to 4 MiB/s: a volume copy from it
// holds the slot for seconds, longer than a volume waits for a slot before yielding.
const slotsBS = "d4d4d4d4d4d4d4d4d4d4d4d4d4d4d4d4"

// writeVolumesGroup writes a group whose volumes are dense raw files of the given sizes (the
// first is the root), checksummed with the default digest.
func writeVolumesGroup(tb testing.TB, storage, group string, sizes ...int64) {
	tb.Helper()
	dir := backup.GroupDir(storage, group)
	if err := os.MkdirAll(dir, 0o750); err != nil {
		tb.Fatal(err)
	}
	g := backup.Group{GroupUUID: group, Name: "multi", VM: backup.SourceVM{Name: "multi", CPUNum: 1, MemorySize: 1 << 30}}
	for i, size := range sizes {
		uuid := fmt.Sprintf("%s%02x", group[:30], i)
		file := uuid + ".raw"
		if err := demosite.WriteRaw(filepath.Join(dir, file), size, int(size/(64<<10)), uuid); err != nil {
			tb.Fatal(err)
		}
		sum, err := clone.SumFile(filepath.Join(dir, file), clone.XXH3Chunked)
		if err != nil {
			tb.Fatal(err)
		}
		typ := "Data"
		if i == 0 {
			typ = "Root"
		}
		g.Volumes = append(g.Volumes, backup.Volume{UUID: uuid, Type: typ, DeviceID: i, Format: "raw", Size: size, File: file,
			Checksum: &backup.Checksum{Algorithm: clone.XXH3Chunked, Value: sum}})
	}
	b, _ := json.Marshal(g)
	if err := os.WriteFile(filepath.Join(dir, "group.json"), b, 0o640); err != nil {
		tb.Fatal(err)
	}
}

// metricSum adds up the samples of a metric in a Prometheus text exposition.
func metricSum(text, name string) float64 {
	var sum float64
	re := regexp.MustCompile(`(?m)^` + regexp.QuoteMeta(name) + `(\{[^}]*\})? (\S+)$`)
	for _, m := range re.FindAllStringSubmatch(text, -1) {
		v, _ := strconv.ParseFloat(m[2], 64)
		sum += v
	}
	return sum
}

// TestMoreVolumesThanCloneSlotsFinishes restores a VM with two 16 MiB volumes from a backup
// storage with one clone slot at 4 MiB/s (each copy holds the slot about 4 s, longer than a
// volume waits for one): the job takes the slot it can and queues the other volume; it never
// cancels a copy under way, so it ends in about 8 s, in one attempt, having read each byte
// once.
func TestMoreVolumesThanCloneSlotsFinishes(t *testing.T) {
	if testing.Short() {
		t.Skip("copies 32 MiB at 4 MiB/s")
	}
	t.Parallel()
	dir := t.TempDir()
	const group = "d5d5d5d5d5d5d5d5d5d5d5d5d5d5d5d5"
	writeVolumesGroup(t, dir, group, 16<<20, 16<<20)
	e := newEnv(t, envOptions{site: func(s *catalog.Site) {
		s.BackupStorages = append(s.BackupStorages, catalog.BackupStorage{UUID: slotsBS, Name: "bs-one-slot", URL: dir,
			State: catalog.StateEnabled, Status: catalog.StatusConnected, ZoneUUIDs: []string{demosite.ZoneUUID},
			MaxConcurrentClones: 1, BandwidthBytesPerSecond: 4 << 20})
	}})
	start := time.Now()
	r := e.restore(group, map[string]any{"name": "two-volumes", "cpuNum": 1, "memorySize": 1 << 30,
		"l3NetworkUuids": []string{demosite.L3ProdUUID}}, map[string]string{"Prefer": "respond-async"})
	mustf(t, r.status == 202, "submit: %d %s", r.status, r.body)
	loc := str(r.json(), "location")
	jobUUID := loc[strings.LastIndex(loc, "/")+1:]
	done := e.poll(loc, 40*time.Second)
	took := time.Since(start)
	rec, err := e.store.GetJob(context.Background(), jobUUID)
	mustf(t, err == nil, "job record: %v", err)
	metrics := scrape(t, "http://"+e.worker.MetricsAddr+"/metrics")
	read := metricSum(metrics, "vmrestore_clone_bytes_total")
	t.Logf("two 16 MiB volumes through one slot at 4 MiB/s: %d after %v, attempts %d, hand-backs %d, %.1f MiB read",
		done.status, took.Round(100*time.Millisecond), rec.Attempts, rec.HandBacks, read/(1<<20))
	mustf(t, done.status == 200, "the job did not succeed within 40 s (attempts %d, progress %+v): %d %s", rec.Attempts, rec.Progress, done.status, done.body)
	mustf(t, rec.Attempts == 1, "attempts %d: no crash or failure happened, the job ran once", rec.Attempts)
	mustf(t, read <= 1.02*(32<<20), "%.1f MiB read to restore 32 MiB: copies under way were thrown away", read/(1<<20))
	mustf(t, took < 20*time.Second, "the restore took %v, about 8 s is the storage's pace", took)
	for _, v := range rec.Progress.Volumes {
		mustf(t, v.State == "done", "volume %s ended %q in a succeeded job", v.UUID, v.State)
	}
}
