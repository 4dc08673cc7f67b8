package bench

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/vmrestore/vmrestore/internal/backup"
	"github.com/vmrestore/vmrestore/internal/catalog"
	"github.com/vmrestore/vmrestore/internal/clone"
	"github.com/vmrestore/vmrestore/internal/job"
)

// The slots figure: a VM with two volumes restored from a backup storage with one clone slot
// and 4 MiB/s (each copy holds the slot for seconds, longer than a volume waits for a slot)
// against the same VM from a storage with two slots and the same bandwidth. The job takes
// the slot it can and queues its other volume, so it ends in about the same time.
const (
	slotsOneBS   = "be0c5001be0c5001be0c5001be0c5001"
	slotsTwoBS   = "be0c5002be0c5002be0c5002be0c5002"
	slotsOneGrp  = "be0c5003be0c5003be0c5003be0c5003"
	slotsTwoGrp  = "be0c5004be0c5004be0c5004be0c5004"
	slotsBWBytes = 4 << 20
)

func slots(ctx context.Context, c Config) ([]Figure, error) {
	size := int64(c.pick(16<<20, 8<<20))
	r, err := newRigWith(ctx, c, rigOptions{concurrency: 20, workers: 1,
		site: func(dir string, s *catalog.Site) {
			for _, bs := range []struct {
				uuid  string
				slots int
			}{{slotsOneBS, 1}, {slotsTwoBS, 2}} {
				s.BackupStorages = append(s.BackupStorages, catalog.BackupStorage{UUID: bs.uuid, Name: "slots-" + bs.uuid[:8],
					URL: filepath.Join(dir, bs.uuid), MaxConcurrentClones: bs.slots, BandwidthBytesPerSecond: slotsBWBytes})
			}
		},
		groups: func(dir string) error {
			for bs, g := range map[string]string{slotsOneBS: slotsOneGrp, slotsTwoBS: slotsTwoGrp} {
				if err := writeTwoVolumeGroup(filepath.Join(dir, bs), g, size); err != nil {
					return err
				}
			}
			return nil
		}})
	if err != nil {
		return nil, err
	}
	defer r.close()
	time.Sleep(time.Second) // let the worker index the groups
	enough, err := r.restoreTime(ctx, slotsTwoGrp, "slots-two")
	if err != nil {
		return nil, err
	}
	one, err := r.restoreTime(ctx, slotsOneGrp, "slots-one")
	if err != nil {
		return nil, err
	}
	c.logf("two %d MiB volumes at %d MiB/s: %v with one clone slot, %v with two", size>>20, slotsBWBytes>>20,
		one.took.Round(time.Millisecond), enough.took.Round(time.Millisecond))
	return []Figure{figure("slots: 2 volumes through 1 slot", one.took.Seconds(), "s", num(round(enough.took.Seconds())), "ratio ≤ 1.2",
		func(_, ratio float64) bool { return ratio <= 1.2 },
		fmt.Sprintf("a VM of two %d MiB volumes from a backup storage with 1 clone slot at %d MiB/s (attempts %d, hand-backs %d), against the same VM from one with 2 slots at the same bandwidth",
			size>>20, slotsBWBytes>>20, one.attempts, one.handBacks))}, nil
}

// restoreResult is how one restore went.
type restoreResult struct {
	took                time.Duration
	attempts, handBacks int
}

// restoreTime restores a group (respond-async) and returns its job's time from creation to end.
func (r *rig) restoreTime(ctx context.Context, group, name string) (restoreResult, error) {
	status, body, err := r.restoreGroup(group, name, true)
	if err != nil || status != 202 {
		return restoreResult{}, fmt.Errorf("restore %s: %d %s %v", group, status, body, err)
	}
	id := jobOf(body)
	deadline := time.Now().Add(5 * time.Minute)
	for {
		rec, err := r.store().GetJob(ctx, id)
		if err == nil && rec.State.Terminal() {
			if rec.State != job.Succeeded {
				return restoreResult{}, fmt.Errorf("job %s ended %s: %v", id, rec.State, rec.Error)
			}
			return restoreResult{took: rec.FinishedAt.Sub(rec.CreatedAt), attempts: rec.Attempts, handBacks: rec.HandBacks}, nil
		}
		if time.Now().After(deadline) {
			return restoreResult{}, fmt.Errorf("job %s did not end within 5 minutes", id)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// writeTwoVolumeGroup writes a group of two dense raw volumes of random data.
func writeTwoVolumeGroup(storage, group string, size int64) error {
	dir := backup.GroupDir(storage, group)
	if err := os.MkdirAll(dir, 0o750); err != nil {
		return err
	}
	g := backup.Group{GroupUUID: group, Name: "slots", VM: backup.SourceVM{Name: "slots", CPUNum: 1, MemorySize: 1 << 30}}
	for i := range 2 {
		uuid := fmt.Sprintf("%s%02x", group[:30], i)
		path := filepath.Join(dir, uuid+".raw")
		if err := writeRandom(path, size, 0, uint64(i)+7); err != nil {
			return err
		}
		sum, err := clone.SumFile(path, clone.XXH3Chunked)
		if err != nil {
			return err
		}
		typ := "Root"
		if i > 0 {
			typ = "Data"
		}
		g.Volumes = append(g.Volumes, backup.Volume{UUID: uuid, Type: typ, DeviceID: i, Format: "raw", Size: size, ActualSize: size,
			File: uuid + ".raw", Checksum: &backup.Checksum{Algorithm: clone.XXH3Chunked, Value: sum}})
	}
	b, _ := json.Marshal(g)
	return os.WriteFile(filepath.Join(dir, "group.json"), b, 0o640)
}
