package bench

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"sync"
	"syscall"
	"time"

	"github.com/vmrestore/vmrestore/internal/backup"
	"github.com/vmrestore/vmrestore/internal/catalog"
	"github.com/vmrestore/vmrestore/internal/clone"
	"github.com/vmrestore/vmrestore/internal/job"
	"github.com/vmrestore/vmrestore/internal/store"
)

// The plan RTO figures: a plan of groups of real random data restored by two workers against
// the same files copied by as many parallel `cp --sparse=always` + `sync` as the backup
// storage has clone slots, the page cache dropped before each side (where the machine lets
// us). What a DR operator waits for is the plan's end, and on a real site that is bound by
// how fast bytes move.
const (
	rtoSlots = 8 // the backup storage's maxConcurrentClones, and the cp reference's parallelism
	// rtoConcurrency is the plan's concurrency: twice the clone slots, as an operator sets it
	// so that a job's successor has reached its copies when the job ends (with as many items
	// as slots, the slots idle while each next item places its VM: about 10 % of the time).
	rtoConcurrency = 16
	rtoChunk       = 1 << 20
)

// benchBS is the bench site's backup storage.
const benchBS = "be0c4006be0c4006be0c4006be0c4006"

// dataGroup is a backup group of the RTO figures: a dense root volume and a sparse data
// volume of random data.
type dataGroup struct {
	uuid  string
	files []string
	data  int64
}

// writeDataGroups writes n groups into storage: each a raw root volume of perVolume random
// bytes and a raw data volume of perVolume random bytes spread, 1 MiB at a time, over 64
// times that (the rest holes), checksummed with the default digest; two goroutines write.
func writeDataGroups(storage string, n int, perVolume int64, seed uint64) ([]dataGroup, error) {
	groups := make([]dataGroup, n)
	err := fanOut(context.Background(), 2, n, func(_ context.Context, i int) error {
		g := backup.Group{GroupUUID: fmt.Sprintf("da7a%04x%024x", seed&0xffff, i), Name: fmt.Sprintf("rto-%03d", i),
			VM: backup.SourceVM{UUID: fmt.Sprintf("da7b%04x%024x", seed&0xffff, i), Name: fmt.Sprintf("rto-%03d", i), CPUNum: 1,
				MemorySize: 1 << 30, Nics: []backup.SourceNic{{L3NetworkUUID: benchL3}}}}
		dir := backup.GroupDir(storage, g.GroupUUID)
		if err := os.MkdirAll(dir, 0o750); err != nil {
			return err
		}
		dg := dataGroup{uuid: g.GroupUUID}
		for v, holes := range []int64{0, 63} {
			uuid := fmt.Sprintf("da7c%04x%022x%02x", seed&0xffff, i, v)
			file := uuid + ".raw"
			path := filepath.Join(dir, file)
			if err := writeRandom(path, perVolume, holes, seed<<20|uint64(i)<<1|uint64(v)); err != nil {
				return err
			}
			sum, err := clone.SumFile(path, clone.XXH3Chunked)
			if err != nil {
				return err
			}
			typ := "Root"
			if v > 0 {
				typ = "Data"
			}
			g.Volumes = append(g.Volumes, backup.Volume{UUID: uuid, Type: typ, DeviceID: v, Format: "raw", Size: perVolume * (1 + holes),
				ActualSize: perVolume, File: file, Checksum: &backup.Checksum{Algorithm: clone.XXH3Chunked, Value: sum}})
			dg.files = append(dg.files, path)
			dg.data += perVolume
		}
		b, _ := json.Marshal(g)
		groups[i] = dg
		return os.WriteFile(filepath.Join(dir, "group.json"), b, 0o640)
	})
	return groups, err
}

// dropCaches writes dirty pages and drops the page cache, so that a side reads its sources
// from the disk; it reports why it could not.
func dropCaches() error {
	syscall.Sync()
	return os.WriteFile("/proc/sys/vm/drop_caches", []byte("3"), 0o200)
}

// rtoRound is one plan's measure.
type rtoRound struct {
	took     time.Duration // POST to the last VM restored
	first    time.Duration // POST to the first item's job running on a worker
	inFlight float64       // mean clone slots held from the first copy to the last, over rtoSlots
	read     float64       // bytes the workers read
}

func planRTO(ctx context.Context, c Config) ([]Figure, error) {
	n, perVolume, rounds := c.pick(64, 16), int64(c.pick(16<<20, 16<<20)), c.pick(3, 1)
	var groups []dataGroup
	r, err := newRigWith(ctx, c, rigOptions{concurrency: 20, workers: 2,
		site: func(_ string, s *catalog.Site) { s.BackupStorages[0].MaxConcurrentClones = rtoSlots },
		groups: func(dir string) (err error) {
			groups, err = writeDataGroups(filepath.Join(dir, "backup"), n, perVolume, 1)
			return err
		}})
	if err != nil {
		return nil, err
	}
	defer r.close()
	var files []string
	var data int64
	uuids := make([]string, len(groups))
	for i, g := range groups {
		files = append(files, g.files...)
		data += g.data
		uuids[i] = g.uuid
	}
	cacheNote := "page cache dropped before each side"
	if err := dropCaches(); err != nil {
		cacheNote = "page cache not dropped (" + err.Error() + "): both sides read cached sources"
		for _, f := range files { // both sides then read from the cache alike
			if b, err := os.ReadFile(f); err == nil {
				_ = b
			}
		}
	}
	time.Sleep(time.Second) // let the workers index the groups
	// A plan of two groups first, not measured: its first restores load the catalog caches
	// and Redis's scripts.
	if _, err := r.planRound(ctx, uuids[:2], "rto-warm-up"); err != nil {
		return nil, err
	}
	type pair struct {
		cp   time.Duration
		plan rtoRound
	}
	var done []pair
	for i := 0; i < rounds; i++ {
		// The two sides take turns going first.
		var cpTook time.Duration
		var pr rtoRound
		for side := range 2 {
			var err error
			if (i+side)%2 == 0 {
				cpTook, err = cpRound(ctx, files, filepath.Join(r.dir, "cp"), rtoSlots)
			} else {
				pr, err = r.planRound(ctx, uuids, fmt.Sprintf("rto-%d", i))
			}
			if err != nil {
				return nil, err
			}
		}
		c.logf("round %d: plan %v (first item running after %v, %.0f %% of the slots copying), %d×cp %v, ratio %.3f; read %.1f MiB for %.1f MiB",
			i+1, pr.took.Round(time.Millisecond), pr.first.Round(time.Millisecond), 100*pr.inFlight, rtoSlots, cpTook.Round(time.Millisecond),
			cpTook.Seconds()/pr.took.Seconds(), pr.read/(1<<20), float64(data)/(1<<20))
		done = append(done, pair{cpTook, pr})
		os.RemoveAll(filepath.Join(r.dir, "primary", "rootVolumes"))
		os.RemoveAll(filepath.Join(r.dir, "primary", "dataVolumes"))
	}
	slices.SortFunc(done, func(a, b pair) int {
		return cmpFloat(a.cp.Seconds()/a.plan.took.Seconds(), b.cp.Seconds()/b.plan.took.Seconds())
	})
	med := done[len(done)/2]
	mib := float64(data) / (1 << 20)
	what := fmt.Sprintf("%d groups of 2 volumes (a dense root, a sparse data volume), %.0f MiB of random data, plan concurrency %d, two workers, %d clone slots; %s; median of %d rounds",
		n, mib, rtoConcurrency, rtoSlots, cacheNote, rounds)
	return []Figure{
		figure(fmt.Sprintf("plan RTO rate, %d groups", n), mib/med.plan.took.Seconds(), "MiB/s", num(round(mib/med.cp.Seconds())), "ratio ≥ 0.95",
			func(_, ratio float64) bool { return ratio >= 0.95 },
			fmt.Sprintf("%s: plan %.2f s from POST to the last VM restored, reference %d parallel `cp --sparse=always` + `sync` of the same files %.2f s",
				what, med.plan.took.Seconds(), rtoSlots, med.cp.Seconds())),
		figure("plan: first item running", float64(med.plan.first.Microseconds())/1000, "ms", nil, "≤ 100", func(v, _ float64) bool { return v <= 100 },
			"from the plan's POST to its first job running on a worker (the plan's acceptance wakes the workers)"),
		figure("plan: copies in flight", 100*med.plan.inFlight, "% slots", nil, "≥ 90", func(v, _ float64) bool { return v >= 90 },
			fmt.Sprintf("mean clone slots held (of %d, sampled every 10 ms) from the first copy to the last", rtoSlots)),
		figure("plan: bytes read / backup data", med.plan.read/float64(data), "ratio", nil, "≤ 1.02", func(v, _ float64) bool { return v <= 1.02 },
			fmt.Sprintf("%.1f MiB read by the workers (vmrestore_clone_bytes_total) for %.1f MiB of backup data", med.plan.read/(1<<20), mib)),
	}, nil
}

func cmpFloat(a, b float64) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

// cpRound copies files into dir with parallel `cp --sparse=always` + `sync` of each copy,
// after dropping the page cache, and returns how long it took.
func cpRound(ctx context.Context, files []string, dir string, parallel int) (time.Duration, error) {
	if err := os.MkdirAll(dir, 0o750); err != nil {
		return 0, err
	}
	defer os.RemoveAll(dir)
	dropCaches()
	start := time.Now()
	err := fanOut(ctx, parallel, len(files), func(ctx context.Context, i int) error {
		dst := filepath.Join(dir, filepath.Base(files[i]))
		if out, err := exec.CommandContext(ctx, "cp", "--sparse=always", files[i], dst).CombinedOutput(); err != nil {
			return fmt.Errorf("cp: %v %s", err, out)
		}
		if out, err := exec.CommandContext(ctx, "sync", dst).CombinedOutput(); err != nil {
			return fmt.Errorf("sync: %v %s", err, out)
		}
		return nil
	})
	return time.Since(start), err
}

// planRound submits a plan of the groups and measures it to its end.
func (r *rig) planRound(ctx context.Context, groups []string, name string) (rtoRound, error) {
	var res rtoRound
	before, err := r.workerMetric("vmrestore_clone_bytes_total")
	if err != nil {
		return res, err
	}
	dropCaches()
	// Clone slots held, sampled every 10 ms until the plan ends.
	stop := make(chan struct{})
	var samples []int64
	var sampled sync.WaitGroup
	sampled.Go(func() {
		rdb := r.redis.Client()
		defer rdb.Close()
		st := store.New(rdb)
		t := time.NewTicker(10 * time.Millisecond)
		defer t.Stop()
		for {
			select {
			case <-stop:
				return
			case <-t.C:
				if n, err := st.CloneSlotsInUse(ctx, benchBS); err == nil {
					samples = append(samples, n)
				}
			}
		}
	})
	spec := map[string]any{"name": name, "groups": groups, "concurrency": rtoConcurrency,
		"defaults":       map[string]any{"keepSourceSize": true, "nameTemplate": "{{.SourceName}}-" + name},
		"networkMapping": []map[string]any{{"sourceL3NetworkUuid": benchL3, "targetL3NetworkUuid": benchL3}}}
	body, _ := json.Marshal(spec)
	start := time.Now()
	req, _ := http.NewRequestWithContext(ctx, "POST", r.base+"/api/v1/plans", bytes.NewReader(body))
	req.Header.Set("Authorization", "OAuth "+r.session)
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		close(stop)
		sampled.Wait()
		return res, err
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	var created struct{ UUID string }
	if resp.StatusCode != http.StatusCreated || json.Unmarshal(b, &created) != nil || created.UUID == "" {
		close(stop)
		sampled.Wait()
		return res, fmt.Errorf("POST /api/v1/plans: %d %s", resp.StatusCode, b)
	}
	deadline := time.Now().Add(10 * time.Minute)
	for {
		_, ps, err := r.store().GetPlan(ctx, created.UUID)
		if err == nil && store.PlanEnded(ps.State) {
			if ps.State != store.PlanSucceeded {
				err = fmt.Errorf("plan %s ended %s: %s", created.UUID, ps.State, ps.Reason)
			}
			close(stop)
			sampled.Wait()
			if err != nil {
				return res, err
			}
			break
		}
		if time.Now().After(deadline) {
			close(stop)
			sampled.Wait()
			return res, fmt.Errorf("plan %s did not end within 10 minutes", created.UUID)
		}
		time.Sleep(10 * time.Millisecond)
	}
	statuses, err := r.store().PlanStatuses(ctx, created.UUID)
	if err != nil {
		return res, err
	}
	first, last := time.Time{}, time.Time{}
	for _, s := range statuses {
		rec, err := r.store().GetJob(ctx, s.Job)
		if err != nil {
			return res, err
		}
		if rec.State != job.Succeeded {
			return res, fmt.Errorf("job %s ended %s", rec.UUID, rec.State)
		}
		if first.IsZero() || rec.StartedAt.Before(first) {
			first = rec.StartedAt
		}
		if rec.FinishedAt.After(last) {
			last = rec.FinishedAt
		}
	}
	res.took, res.first = last.Sub(start), first.Sub(start)
	// Mean slots held between the first sample with a copy and the last one.
	lo, hi := slices.IndexFunc(samples, func(n int64) bool { return n > 0 }), -1
	for i := len(samples) - 1; i >= 0; i-- {
		if samples[i] > 0 {
			hi = i
			break
		}
	}
	if lo >= 0 && hi >= lo {
		var sum int64
		for _, n := range samples[lo : hi+1] {
			sum += n
		}
		res.inFlight = float64(sum) / float64(hi-lo+1) / rtoSlots
	}
	after, err := r.workerMetric("vmrestore_clone_bytes_total")
	res.read = after - before
	return res, err
}

// workerMetric adds up a metric's samples over the rig's workers' /metrics.
func (r *rig) workerMetric(name string) (float64, error) {
	var sum float64
	for _, w := range r.workers {
		v, err := scrapeMetric("http://"+w.MetricsAddr+"/metrics", name)
		if err != nil {
			return 0, err
		}
		sum += v
	}
	return sum, nil
}

// scrapeMetric reads a metric's samples, added up, from a Prometheus endpoint.
func scrapeMetric(url, name string) (float64, error) {
	resp, err := http.Get(url)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return 0, err
	}
	return metricSum(string(b), name), nil
}

// metricSum adds up the samples of a metric in a Prometheus text exposition.
func metricSum(text, name string) float64 {
	var sum float64
	re := regexp.MustCompile(`(?m)^` + regexp.QuoteMeta(name) + `(\{[^}]*\})? (\S+)$`)
	for _, m := range re.FindAllStringSubmatch(text, -1) {
		v, _ := strconv.ParseFloat(m[2], 64)
		if !math.IsNaN(v) {
			sum += v
		}
	}
	return sum
}
