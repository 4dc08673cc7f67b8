package pipeline

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/vmrestore/vmrestore/internal/backup"
	"github.com/vmrestore/vmrestore/internal/catalog"
	"github.com/vmrestore/vmrestore/internal/clone"
	"github.com/vmrestore/vmrestore/internal/demosite"
	"github.com/vmrestore/vmrestore/internal/job"
	"github.com/vmrestore/vmrestore/internal/metrics"
	"github.com/vmrestore/vmrestore/internal/queue"
	"github.com/vmrestore/vmrestore/internal/redistest"
	"github.com/vmrestore/vmrestore/internal/store"
	"github.com/vmrestore/vmrestore/internal/testenv"
	"github.com/vmrestore/vmrestore/internal/zstack"
)

const (
	testGroup   = "0123456789abcdef0123456789abcdef"
	testAccount = "fedcba9876543210fedcba9876543210"
)

// cloneEnv is a pipeline on a private Redis, a backup storage and a primary storage folder.
type cloneEnv struct {
	p  *Pipeline
	bs *catalog.BackupStorage
	ps *catalog.PrimaryStorage
}

func newCloneEnv(tb testing.TB) *cloneEnv {
	tb.Helper()
	srv := redistest.Start(tb)
	p := &Pipeline{Store: store.New(srv.Client()), Metrics: metrics.New(), CloneParallelism: 4,
		Log: slog.New(slog.NewTextHandler(io.Discard, nil))}
	return &cloneEnv{p: p,
		bs: &catalog.BackupStorage{UUID: "b5b5b5b5b5b5b5b5b5b5b5b5b5b5b5b5", URL: tb.TempDir(), MaxConcurrentClones: 4},
		ps: &catalog.PrimaryStorage{UUID: "c5c5c5c5c5c5c5c5c5c5c5c5c5c5c5c5", URL: tb.TempDir()}}
}

// volume writes a backup file into the group folder and returns its planned volume.
func (e *cloneEnv) volume(tb testing.TB, uuid, format string, virtual int64, blocks int) job.PlannedVolume {
	tb.Helper()
	dir := backup.GroupDir(e.bs.URL, testGroup)
	if err := os.MkdirAll(dir, 0o750); err != nil {
		tb.Fatal(err)
	}
	file := uuid + "." + format
	path := filepath.Join(dir, file)
	var err error
	if format == "qcow2" {
		err = demosite.WriteQcow2(path, virtual, blocks, uuid)
	} else {
		err = demosite.WriteRaw(path, virtual, blocks, uuid)
	}
	if err != nil {
		tb.Fatal(err)
	}
	sum, err := clone.SumFile(path, clone.XXH3Chunked)
	if err != nil {
		tb.Fatal(err)
	}
	typ := backup.VolumeData
	if format == "qcow2" {
		typ = backup.VolumeRoot
	}
	return job.PlannedVolume{UUID: "0" + uuid[1:], BackupUUID: uuid, Type: typ, Format: format, Size: virtual,
		File: file, ChecksumAlgo: clone.XXH3Chunked, Checksum: sum}
}

func (e *cloneEnv) record(vols ...job.PlannedVolume) *job.Record {
	vs := map[string]string{}
	for _, v := range vols {
		vs[v.UUID] = e.ps.UUID
	}
	return &job.Record{UUID: "a9a9a9a9a9a9a9a9a9a9a9a9a9a9a9a9", AccountUUID: testAccount, State: job.Running,
		Request: &job.Request{GroupUUID: testGroup}, CreatedAt: time.Now(), Timeout: time.Hour,
		Checkpoints: &job.Checkpoints{
			Resolved:  &job.Resolved{BackupStorageUUID: e.bs.UUID, Volumes: vols},
			Placement: &job.Placement{VolumeStorage: vs},
		}}
}

// cloneVolume opens v's backup file and copies it to path on a clone slot, as the clone
// stage does.
func (e *cloneEnv) cloneVolume(ctx context.Context, rec *job.Record, v job.PlannedVolume, path string, vp *volProgress) (job.ClonedFile, error) {
	src, err := e.p.openSource(e.bs, rec, v)
	if err != nil {
		return job.ClonedFile{}, err
	}
	defer src.Close()
	sched := &slotScheduler{p: e.p, bs: e.bs, job: rec.UUID, created: float64(rec.CreatedAt.UnixMilli()), max: 1,
		queue: &volumeQueue{todo: []volumeWork{{v: v, ps: e.ps, path: path, prog: vp, src: src}}}}
	var f job.ClonedFile
	err = sched.run(ctx, rec, func(_ volumeWork, got job.ClonedFile) error { f = got; return nil })
	return f, err
}

func (e *cloneEnv) index() *catalog.Index {
	return &catalog.Index{BackupStorages: map[string]*catalog.BackupStorage{e.bs.UUID: e.bs},
		PrimaryStorages: map[string]*catalog.PrimaryStorage{e.ps.UUID: e.ps}}
}

// files lists the regular files under dir.
func files(tb testing.TB, dir string) []string {
	tb.Helper()
	var out []string
	filepath.WalkDir(dir, func(p string, d os.DirEntry, err error) error {
		if err == nil && !d.IsDir() {
			out = append(out, p)
		}
		return nil
	})
	return out
}

// gathered returns a metric's value (a counter's, or a histogram's sample count), summed over
// its series.
func gathered(tb testing.TB, m *metrics.Metrics, name string) float64 {
	tb.Helper()
	fams, err := m.Registry.Gather()
	if err != nil {
		tb.Fatal(err)
	}
	var v float64
	for _, f := range fams {
		if f.GetName() != name {
			continue
		}
		for _, m := range f.GetMetric() {
			v += m.GetCounter().GetValue() + float64(m.GetHistogram().GetSampleCount())
		}
	}
	return v
}

func rootCode(tb testing.TB, err error) *zstack.ErrorCode {
	tb.Helper()
	ec, ok := zstack.AsErrorCode(err)
	if !ok {
		tb.Fatalf("want a ZStack error, got %T %v", err, err)
	}
	return ec.Root()
}

// Each way a volume copy can fail ends with the ZStack error a client can act on, naming the
// volume, and leaves no file on the primary storage.
func TestCloneVolumeFailures(t *testing.T) {
	cases := []struct {
		name    string
		setup   func(t *testing.T, e *cloneEnv, v *job.PlannedVolume) (during func())
		code    string
		details string
	}{
		{"checksum mismatch", func(t *testing.T, e *cloneEnv, v *job.PlannedVolume) func() {
			v.Checksum = strings.Repeat("0", 32)
			return nil
		}, zstack.CodeVolumeBackup, "checksum mismatch"},
		{"declared qcow2 but raw", func(t *testing.T, e *cloneEnv, v *job.PlannedVolume) func() {
			v.Format, v.Size = "qcow2", 1<<30
			return nil
		}, zstack.CodeVolumeBackup, "no qcow2 magic"},
		{"backup storage vanished", func(t *testing.T, e *cloneEnv, v *job.PlannedVolume) func() {
			os.RemoveAll(e.bs.URL)
			return nil
		}, zstack.CodeBackupStorage, "cannot open the folder"},
		{"source unreadable mid-copy", func(t *testing.T, e *cloneEnv, v *job.PlannedVolume) func() {
			e.bs.BandwidthBytesPerSecond = 16 << 20
			return func() { // the file loses its end while it is being read
				os.Truncate(filepath.Join(backup.GroupDir(e.bs.URL, testGroup), v.File), 1<<20)
			}
		}, zstack.CodeBackupStorage, "file shrank"},
		{"primary storage full", func(t *testing.T, e *cloneEnv, v *job.PlannedVolume) func() {
			if err := unix.Mount("tmpfs", e.ps.URL, "tmpfs", 0, "size=8m"); err != nil {
				testenv.Missing(t, "cannot mount an 8 MiB tmpfs to fill (needs root and CAP_SYS_ADMIN): %v", err)
			}
			t.Cleanup(func() { unix.Unmount(e.ps.URL, unix.MNT_DETACH) })
			return nil
		}, zstack.CodePrimaryStorage, "is full"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			e := newCloneEnv(t)
			v := e.volume(t, "1111111111111111111111111111111f", "raw", 2<<30, 512) // 32 MiB of data
			during := c.setup(t, e, &v)
			rec := e.record(v)
			path := InstallPath(e.ps.URL, testAccount, v)
			vp := &volProgress{}
			if during != nil {
				go func() {
					for vp.data.Load() < 4<<20 {
						time.Sleep(5 * time.Millisecond)
					}
					during()
				}()
			}
			_, err := e.cloneVolume(context.Background(), rec, v, path, vp)
			root := rootCode(t, err)
			if root.Code != c.code || !strings.Contains(root.Details, c.details) || !strings.Contains(root.Details, v.BackupUUID) && c.code != zstack.CodeBackupStorage {
				t.Fatalf("got %s %q; want %s naming the volume backup and %q", root.Code, root.Details, c.code, c.details)
			}
			if left := files(t, e.ps.URL); len(left) > 0 {
				t.Fatalf("left on the primary storage: %v", left)
			}
			if n, _ := e.p.Store.CloneSlotsInUse(context.Background(), e.bs.UUID); n != 0 {
				t.Fatalf("%d clone slots still held", n)
			}
		})
	}
}

// With every clone slot of its backup storage taken, a job that holds none gives up after
// slotWait with queue.ErrBusy (it yields its worker slot) and writes nothing.
func TestCloneVolumeYieldsWhenSlotsAreBusy(t *testing.T) {
	e := newCloneEnv(t)
	e.bs.MaxConcurrentClones = 1
	v := e.volume(t, "2222222222222222222222222222222f", "raw", 64<<20, 16)
	ctx := context.Background()
	if ok, err := e.p.Store.AcquireCloneSlot(ctx, e.bs.UUID, "another job", 1, time.Minute, 0); !ok || err != nil {
		t.Fatal(ok, err)
	}
	start := time.Now()
	_, err := e.cloneVolume(ctx, e.record(v), v, InstallPath(e.ps.URL, testAccount, v), &volProgress{})
	if !errors.Is(err, queue.ErrBusy) || !errors.Is(err, errNoSlot) {
		t.Fatalf("want errNoSlot and queue.ErrBusy, got %v", err)
	}
	if n, _ := e.p.Store.CloneSlotWaiters(ctx, e.bs.UUID); n != 0 {
		t.Fatalf("the job yielded but left %d places in the waiting list", n)
	}
	if waited := time.Since(start); waited < slotWait || waited > slotWait+time.Second {
		t.Fatalf("gave up after %v; slotWait is %v", waited, slotWait)
	}
	if left := files(t, e.ps.URL); len(left) > 0 {
		t.Fatalf("wrote %v without a slot", left)
	}
}

// A copy whose slot lease is taken over (its holder looked dead) stops at its next renewal:
// the limit is never exceeded. Its volume goes back to wait for a slot, and the job, now
// holding none, yields when none frees within slotWait.
func TestCloneVolumeStopsWhenItsSlotIsLost(t *testing.T) {
	if testing.Short() {
		t.Skip("waits for a lease renewal (5 s)")
	}
	e := newCloneEnv(t)
	e.bs.MaxConcurrentClones = 1
	e.bs.BandwidthBytesPerSecond = 4 << 20 // 64 MiB take 16 s
	v := e.volume(t, "3333333333333333333333333333333f", "raw", 1<<30, 1024)
	ctx := context.Background()
	rec := e.record(v)
	vp := &volProgress{}
	go func() {
		for vp.data.Load() == 0 {
			time.Sleep(10 * time.Millisecond)
		}
		holder := rec.UUID + "/0"
		e.p.Store.ReleaseCloneSlot(ctx, e.bs.UUID, holder)
		e.p.Store.AcquireCloneSlot(ctx, e.bs.UUID, "thief", 1, time.Minute, 0)
	}()
	start := time.Now()
	_, err := e.cloneVolume(ctx, rec, v, InstallPath(e.ps.URL, testAccount, v), vp)
	if !errors.Is(err, queue.ErrBusy) || !errors.Is(err, errNoSlot) {
		t.Fatalf("want errNoSlot and queue.ErrBusy, got %v", err)
	}
	if st := vp.state.Load(); st != volWaiting {
		t.Fatalf("the volume whose slot was lost is %q, want %q", st, volWaiting)
	}
	if d := time.Since(start); d > slotLease/3+slotWait+2*time.Second {
		t.Fatalf("stopped %v after the slot was lost; renewals come every %v", d, slotLease/3)
	}
	if left := files(t, e.ps.URL); len(left) > 0 {
		t.Fatalf("left on the primary storage: %v", left)
	}
}

// The clone stage copies every volume (a dense qcow2 and a sparse raw of several GiB),
// writes per-volume and job progress to the job record at least every second while it runs,
// and feeds the clone metrics with data bytes only.
func TestCloneStageProgressAndMetrics(t *testing.T) {
	e := newCloneEnv(t)
	e.bs.BandwidthBytesPerSecond = 12 << 20                                       // 48 MiB of data: about 4 s
	root := e.volume(t, "4444444444444444444444444444444f", "qcow2", 20<<30, 512) // a 32 MiB file
	data := e.volume(t, "5555555555555555555555555555555f", "raw", 4<<30, 256)    // 16 MiB in 4 GiB
	rec := e.record(root, data)
	ctx := context.Background()
	if err := e.p.Store.CreateJob(ctx, rec); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- e.p.clone(ctx, e.index(), rec) }()

	var seen []job.Progress
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
wait:
	for {
		select {
		case err := <-done:
			if err != nil {
				t.Fatal(err)
			}
			break wait
		case <-tick.C:
			r, err := e.p.Store.GetJob(ctx, rec.UUID)
			if err != nil {
				t.Fatal(err)
			}
			if r.Progress != nil && (len(seen) == 0 || !r.Progress.UpdatedAt.Equal(seen[len(seen)-1].UpdatedAt)) {
				seen = append(seen, *r.Progress)
			}
		}
	}
	if len(seen) < 3 {
		t.Fatalf("only %d progress updates during a multi-second clone", len(seen))
	}
	for i := 1; i < len(seen); i++ {
		if gap := seen[i].UpdatedAt.Sub(seen[i-1].UpdatedAt); gap > 1500*time.Millisecond {
			t.Errorf("progress not updated for %v", gap)
		}
		if seen[i].BytesDone < seen[i-1].BytesDone || seen[i].DataBytes < seen[i-1].DataBytes {
			t.Errorf("progress went back: %+v after %+v", seen[i], seen[i-1])
		}
	}
	mid := seen[len(seen)/2]
	if len(mid.Volumes) != 2 || mid.BytesTotal != mid.Volumes[0].BytesTotal+mid.Volumes[1].BytesTotal || mid.BytesPerSecond <= 0 {
		t.Errorf("progress mid-copy: %+v", mid)
	}
	final, _ := e.p.Store.GetJob(ctx, rec.UUID)
	p := final.Progress
	st, err := os.Stat(filepath.Join(backup.GroupDir(e.bs.URL, testGroup), root.File))
	if err != nil {
		t.Fatal(err)
	}
	if p.BytesDone != p.BytesTotal || p.BytesTotal != st.Size()+4<<30 {
		t.Errorf("final progress %+v; the backup files are %d bytes long", p, st.Size()+4<<30)
	}
	var dataBytes int64
	for _, vp := range p.Volumes {
		if vp.State != volDone || vp.BytesDone != vp.BytesTotal {
			t.Errorf("volume %+v not done", vp)
		}
		dataBytes += vp.DataBytes
	}
	if got := gathered(t, e.p.Metrics, "vmrestore_clone_bytes_total"); int64(got) != dataBytes || dataBytes > 64<<20 {
		t.Errorf("vmrestore_clone_bytes_total %v, data read %d (holes must not count)", got, dataBytes)
	}
	if n := gathered(t, e.p.Metrics, "vmrestore_clone_throughput_bytes_per_second"); n != 2 {
		t.Errorf("vmrestore_clone_throughput_bytes_per_second observed %v copies, want 2", n)
	}
	for _, v := range []job.PlannedVolume{root, data} {
		path := InstallPath(e.ps.URL, testAccount, v)
		if got, _ := clone.SumFile(path, clone.XXH3Chunked); got != v.Checksum {
			t.Errorf("%s: restored file differs from its backup", path)
		}
		if f, ok := final.Checkpoints.Volumes[v.UUID]; !ok || f.InstallPath != path {
			t.Errorf("volume %s not checkpointed: %+v", v.UUID, final.Checkpoints.Volumes)
		}
	}
}

// A clone stage stopped part-way (the worker stopping) records where each copy stood; the
// next run resumes the copies from there instead of starting them over, and the volumes end
// equal to their backups.
func TestCloneStageResumesCopiesAfterAStop(t *testing.T) {
	e := newCloneEnv(t)
	e.p.CloneCheckpointEvery = 1 << 20
	e.bs.BandwidthBytesPerSecond = 16 << 20
	root := e.volume(t, "6666666666666666666666666666666f", "raw", 64<<20, 512) // 32 MiB of data
	data := e.volume(t, "7777777777777777777777777777777f", "raw", 1<<30, 256)  // 16 MiB in 1 GiB
	rec := e.record(root, data)
	ctx := context.Background()
	if err := e.p.Store.CreateJob(ctx, rec); err != nil {
		t.Fatal(err)
	}
	run, stop := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- e.p.clone(run, e.index(), rec) }()
	for {
		got, err := e.p.Store.GetJob(ctx, rec.UUID)
		if err != nil {
			t.Fatal(err)
		}
		if len(got.Checkpoints.Copies) == 2 {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	time.Sleep(time.Second) // 16 MiB more
	stop()
	if err := <-done; !errors.Is(err, context.Canceled) {
		t.Fatalf("the stopped clone stage returned %v", err)
	}
	copied := gathered(t, e.p.Metrics, "vmrestore_clone_bytes_total")

	again, err := e.p.Store.GetJob(ctx, rec.UUID)
	if err != nil {
		t.Fatal(err)
	}
	again.Checkpoints.Resolved, again.Checkpoints.Placement = rec.Checkpoints.Resolved, rec.Checkpoints.Placement
	if err := e.p.clone(ctx, e.index(), again); err != nil {
		t.Fatal(err)
	}
	resumed := gathered(t, e.p.Metrics, "vmrestore_clone_resumed_bytes_total")
	total := gathered(t, e.p.Metrics, "vmrestore_clone_bytes_total")
	t.Logf("stopped after %.1f MiB; the next run resumed %.1f MiB in, %.1f MiB read in all for 48 MiB of data",
		copied/(1<<20), resumed/(1<<20), total/(1<<20))
	if resumed == 0 || total-48<<20 > 2*float64(e.p.CloneCheckpointEvery) {
		t.Fatalf("%.0f bytes read in all for 48 MiB of data, %.0f resumed: the copies started over", total, resumed)
	}
	for _, v := range []job.PlannedVolume{root, data} {
		path := InstallPath(e.ps.URL, testAccount, v)
		if got, want := sumOf(t, path), v.Checksum; got != want {
			t.Fatalf("volume %s: checksum %s, want %s", v.UUID, got, want)
		}
	}
	if left := files(t, e.ps.URL); len(left) != 2 {
		t.Fatalf("files on the primary storage: %v", left)
	}
}

func sumOf(tb testing.TB, path string) string {
	tb.Helper()
	s, err := clone.SumFile(path, clone.XXH3Chunked)
	if err != nil {
		tb.Fatal(err)
	}
	return s
}
