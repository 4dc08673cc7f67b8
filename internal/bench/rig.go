package bench

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"net/http"
	"os"
	"path/filepath"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/vmrestore/vmrestore/internal/app"
	"github.com/vmrestore/vmrestore/internal/auth"
	"github.com/vmrestore/vmrestore/internal/backup"
	"github.com/vmrestore/vmrestore/internal/catalog"
	"github.com/vmrestore/vmrestore/internal/clone"
	"github.com/vmrestore/vmrestore/internal/demosite"
	"github.com/vmrestore/vmrestore/internal/job"
	"github.com/vmrestore/vmrestore/internal/redistest"
	"github.com/vmrestore/vmrestore/internal/store"
	"github.com/vmrestore/vmrestore/internal/testrig"
)

// Identities of the benchmark site.
const (
	benchGroup    = "be0c4000be0c4000be0c4000be0c4000"
	benchL3       = "be0c4003be0c4003be0c4003be0c4003"
	benchPassword = "bench-admin-password"
)

// The bench group's one volume: a tiny raw root disk, 1 MiB virtual holding one 64 KiB
// block of data, so that the orchestration figures measure orchestration, not copying.
const (
	benchVolumeFile   = "be0c4008be0c4008be0c4008be0c4008.raw"
	benchVolumeFormat = "raw"
	benchVolumeSize   = 1 << 20
)

// rig is a vmrestore on a private redis-server: api and worker in this process, restoring a
// tiny group onto a site large enough for thousands of VMs.
type rig struct {
	c       Config
	redis   *redistest.Server
	dir     string
	cfg     app.Config
	api     *app.API
	workers []*app.Worker
	base    string
	session string
	log     *slog.Logger
	testRig *testrig.Rig
}

func benchSite(dir string) *catalog.Site {
	zone, cl, l2, ps := "be0c4001be0c4001be0c4001be0c4001", "be0c4002be0c4002be0c4002be0c4002", "be0c4004be0c4004be0c4004be0c4004", "be0c4005be0c4005be0c4005be0c4005"
	s := &catalog.Site{
		Zones:    []catalog.Zone{{UUID: zone, Name: "bench"}},
		Clusters: []catalog.Cluster{{UUID: cl, Name: "bench", ZoneUUID: zone, L2NetworkUUIDs: []string{l2}, PrimaryStorageUUIDs: []string{ps}}},
		PrimaryStorages: []catalog.PrimaryStorage{{UUID: ps, Name: "bench-nfs", ZoneUUID: zone, Type: catalog.PSNFS,
			URL: filepath.Join(dir, "primary"), TotalCapacity: 1 << 50}},
		BackupStorages: []catalog.BackupStorage{{UUID: "be0c4006be0c4006be0c4006be0c4006", Name: "bench-bs", URL: filepath.Join(dir, "backup"), MaxConcurrentClones: 1000}},
		L2Networks:     []catalog.L2Network{{UUID: l2, Name: "bench", ZoneUUID: zone}},
		L3Networks: []catalog.L3Network{{UUID: benchL3, Name: "bench", L2NetworkUUID: l2, IPRanges: []catalog.IPRange{{
			UUID: "be0c4007be0c4007be0c4007be0c4007", StartIP: "10.200.0.10", EndIP: "10.200.255.250", Netmask: "255.255.0.0", Gateway: "10.200.0.1"}}}},
	}
	for i := 0; i < 20; i++ {
		s.Hosts = append(s.Hosts, catalog.Host{UUID: fmt.Sprintf("be0c40%026x", i), Name: fmt.Sprintf("bench-%d", i), ClusterUUID: cl, CPUNum: 64, MemorySize: 4 << 40})
	}
	return s
}

// writeBenchGroup writes a group of one tiny raw root volume.
func writeBenchGroup(storage string) error {
	dir := backup.GroupDir(storage, benchGroup)
	if err := os.MkdirAll(dir, 0o750); err != nil {
		return err
	}
	file := benchVolumeFile
	if err := demosite.WriteRaw(filepath.Join(dir, file), benchVolumeSize, 1, benchGroup); err != nil {
		return err
	}
	sum, err := clone.SumFile(filepath.Join(dir, file), clone.XXH3Chunked)
	if err != nil {
		return err
	}
	g := backup.Group{GroupUUID: benchGroup, Name: "bench", VM: backup.SourceVM{Name: "bench", CPUNum: 1, MemorySize: 1 << 30},
		Volumes: []backup.Volume{{UUID: "be0c4008be0c4008be0c4008be0c4008", Type: "Root", Format: benchVolumeFormat, Size: benchVolumeSize, File: file,
			Checksum: &backup.Checksum{Algorithm: clone.XXH3Chunked, Value: sum}}}}
	b, _ := json.Marshal(g)
	return os.WriteFile(filepath.Join(dir, "group.json"), b, 0o640)
}

// newRig starts redis, writes the site, and starts the api (and a worker of the given
// concurrency unless workers is false).
func newRig(ctx context.Context, c Config, concurrency int, workers bool) (*rig, error) {
	o := rigOptions{concurrency: concurrency}
	if workers {
		o.workers = 1
	}
	return newRigWith(ctx, c, o)
}

// rigOptions shape a rig beyond the orchestration one.
type rigOptions struct {
	concurrency int // of each worker
	workers     int // in-process workers
	// site edits the bench site; groups writes more backup groups (into the bench backup
	// storage's folder, or folders of its own) before the workers start and index them.
	site   func(dir string, s *catalog.Site)
	groups func(dir string) error
	env    map[string]string
}

// newRigWith starts redis, writes the site and its groups, and starts the api and the
// workers.
func newRigWith(ctx context.Context, c Config, o rigOptions) (*rig, error) {
	r := &rig{c: c}
	var err error
	if r.dir, err = os.MkdirTemp(c.Dir, "vmrestore-bench-"); err != nil {
		return nil, err
	}
	site := benchSite(r.dir)
	if o.site != nil {
		o.site(r.dir, site)
	}
	os.MkdirAll(filepath.Join(r.dir, "primary"), 0o750)
	if err := writeBenchGroup(filepath.Join(r.dir, "backup")); err != nil {
		r.close()
		return nil, err
	}
	if o.groups != nil {
		if err := o.groups(r.dir); err != nil {
			r.close()
			return nil, err
		}
	}
	b, _ := yaml.Marshal(site)
	siteFile := filepath.Join(r.dir, "site.yaml")
	if err := os.WriteFile(siteFile, b, 0o640); err != nil {
		r.close()
		return nil, err
	}
	// The default scan interval, not the rig's test one: restores read group.json directly.
	env := map[string]string{"VMRESTORE_ADMIN_PASSWORD": benchPassword, "VMRESTORE_BACKUP_SCAN_INTERVAL": "30s",
		"VMRESTORE_CONCURRENCY": fmt.Sprint(o.concurrency), "VMRESTORE_LOG_LEVEL": "error"}
	maps.Copy(env, o.env)
	// Quiet, go-redis's own messages included (they would split a benchmark's result line).
	log := app.NewLogger(app.Config{LogLevel: "error"}, io.Discard)
	tr, err := testrig.Start(testrig.Options{Dir: r.dir, SiteFile: siteFile, Env: env, Log: log,
		Workers: o.workers, NoWorker: o.workers == 0})
	if err != nil {
		os.RemoveAll(r.dir)
		return nil, err
	}
	r.testRig, r.redis, r.cfg, r.api, r.workers = tr, tr.Redis, tr.Config, tr.API, tr.Workers
	r.base, r.session, r.log = tr.Base, tr.Session, log
	return r, nil
}

func (r *rig) close() {
	if r.testRig != nil {
		r.testRig.Workers = r.workers
		r.testRig.Close()
	}
	if r.dir != "" {
		os.RemoveAll(r.dir)
	}
}

func (r *rig) store() *store.Store { return r.api.Store }

func (r *rig) login() (string, error) {
	body := fmt.Sprintf(`{"logInByAccount":{"accountName":"admin","password":%q}}`, auth.SHA512Hex(benchPassword))
	req, _ := http.NewRequest("PUT", r.base+"/zstack/v1/accounts/login", bytes.NewReader([]byte(body)))
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	var out struct{ Inventory struct{ UUID string } }
	if err := json.NewDecoder(resp.Body).Decode(&out); err != nil || out.Inventory.UUID == "" {
		return "", fmt.Errorf("login: %d %v", resp.StatusCode, err)
	}
	return out.Inventory.UUID, nil
}

// restore submits one restore of the bench group: synchronous (Prefer: wait) unless async,
// which takes the ZStack route's immediate 202.
func (r *rig) restore(name string, async bool) (int, []byte, error) {
	return r.restoreGroup(benchGroup, name, async)
}

// restoreGroup submits one restore of a group.
func (r *rig) restoreGroup(group, name string, async bool) (int, []byte, error) {
	body := fmt.Sprintf(`{"params":{"name":%q,"cpuNum":1,"memorySize":1073741824,"l3NetworkUuids":[%q]}}`, name, benchL3)
	req, _ := http.NewRequest("POST", r.base+"/zstack/v1/vm-instances/from/vm-backups/"+group, bytes.NewReader([]byte(body)))
	req.Header.Set("Authorization", "OAuth "+r.session)
	req.Header.Set("Content-Type", "application/json")
	if async {
		req.Header.Set("Prefer", "respond-async")
	} else {
		req.Header.Set("Prefer", "wait=600")
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return resp.StatusCode, b, err
}

// jobOf extracts the job uuid of a 202 answer.
func jobOf(body []byte) string {
	var a struct{ Location string }
	json.Unmarshal(body, &a)
	if len(a.Location) < 32 {
		return ""
	}
	return a.Location[len(a.Location)-32:]
}

// jobTimes is where the jobs' time went, on average: waiting in the queue (created to
// started) and running (started to finished).
type jobTimes struct{ queued, running time.Duration }

func (t jobTimes) String() string { return fmt.Sprintf("queued %v, running %v", t.queued, t.running) }

// waitJobs waits until every job has ended and returns the moment the last one ended (the
// latest FinishedAt of their records), the CPU used when they had, and the jobs' mean times.
// It watches one job at a time, the oldest still running, so that watching costs one Redis
// round trip per poll, not one per job.
func (r *rig) waitJobs(ctx context.Context, jobs []string, within time.Duration) (time.Time, cpuUse, jobTimes, error) {
	deadline := time.Now().Add(within)
	for i := 0; i < len(jobs); {
		if time.Now().After(deadline) {
			return time.Time{}, cpuUse{}, jobTimes{}, fmt.Errorf("%d of %d jobs did not end within %v", len(jobs)-i, len(jobs), within)
		}
		st, err := r.store().GetJobStatus(ctx, jobs[i])
		if err != nil || !st.State.Terminal() {
			time.Sleep(5 * time.Millisecond)
			continue
		}
		i++
	}
	used, err := r.cpu(ctx)
	if err != nil {
		return time.Time{}, used, jobTimes{}, err
	}
	var last time.Time
	var sum jobTimes
	for _, j := range jobs {
		rec, err := r.store().GetJob(ctx, j)
		if err != nil {
			return last, used, sum, fmt.Errorf("job %s: %w", j, err)
		}
		if rec.State != job.Succeeded {
			return last, used, sum, fmt.Errorf("job %s ended %s: %v", j, rec.State, rec.Error)
		}
		if rec.FinishedAt.After(last) {
			last = rec.FinishedAt
		}
		sum.queued += rec.StartedAt.Sub(rec.CreatedAt)
		sum.running += rec.FinishedAt.Sub(rec.StartedAt)
	}
	n := time.Duration(max(len(jobs), 1))
	return last, used, jobTimes{queued: (sum.queued / n).Round(time.Millisecond / 10), running: (sum.running / n).Round(time.Millisecond / 10)}, nil
}
