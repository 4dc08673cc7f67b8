package dashboards

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// committed is where the generated JSON is committed, from this package's directory.
const committed = "../../dashboards"

const regenerate = "run `make dashboards` (go run ./cmd/vmrestore-dashboards) from the repository root and commit the result"

// TestCommittedJSONMatchesCode fails when dashboards/*.json is not what this package builds:
// a dashboard edited by hand (in a file or through Grafana's UI export) or code changed
// without regenerating.
func TestCommittedJSONMatchesCode(t *testing.T) {
	files, err := Files()
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, f := range files {
		names = append(names, f.Name)
		path := filepath.Join(committed, f.Name)
		got, err := os.ReadFile(path)
		if err != nil {
			t.Errorf("dashboards/%s: %v; %s", f.Name, err, regenerate)
			continue
		}
		if !bytes.Equal(got, f.JSON) {
			t.Errorf("dashboards/%s differs from internal/dashboards (%s); %s", f.Name, firstDifference(got, f.JSON), regenerate)
		}
	}
	onDisk, err := filepath.Glob(filepath.Join(committed, "*.json"))
	if err != nil {
		t.Fatal(err)
	}
	for _, path := range onDisk {
		if !slices.Contains(names, filepath.Base(path)) {
			t.Errorf("dashboards/%s is built by no code in internal/dashboards: write it there, or delete the file", filepath.Base(path))
		}
	}
	if len(files) != 4 {
		t.Errorf("built %d dashboards, want the overview, stages, storage and api dashboards", len(files))
	}
}

// firstDifference names the first line where the committed file and the code differ.
func firstDifference(committed, built []byte) string {
	a, b := strings.Split(string(committed), "\n"), strings.Split(string(built), "\n")
	for i := 0; i < len(a) || i < len(b); i++ {
		var la, lb string
		if i < len(a) {
			la = a[i]
		}
		if i < len(b) {
			lb = b[i]
		}
		if la != lb {
			return fmt.Sprintf("line %d: committed %q, code builds %q", i+1, strings.TrimSpace(la), strings.TrimSpace(lb))
		}
	}
	return "same lines"
}

func TestPromQL(t *testing.T) {
	for _, c := range []struct {
		got  fmt.Stringer
		want string
	}{
		{jobs, `vmrestore_jobs_total`},
		{jobs.where(succeeded), `vmrestore_jobs_total{outcome="succeeded"}`},
		{queueTasks.where(restoreQueue).where(waiting), `asynq_tasks_enqueued_total{queue="restore",state=~"pending|scheduled|retry"}`},
		{sum(rate(jobs.where(succeeded))), `sum(rate(vmrestore_jobs_total{outcome="succeeded"}[$__rate_interval]))`},
		{sumBy("outcome, code", rate(jobs)), `sum by (outcome, code) (rate(vmrestore_jobs_total[$__rate_interval]))`},
		{ratio(sum(increase(jobs.where(succeeded), rangeWindow)), sum(increase(jobs, rangeWindow))),
			`sum(increase(vmrestore_jobs_total{outcome="succeeded"}[$__range])) / sum(increase(vmrestore_jobs_total[$__range]))`},
		{quantile(0.95, stageDuration, "stage"), `histogram_quantile(0.95, sum by (le, stage) (rate(vmrestore_stage_duration_seconds_bucket[$__rate_interval])))`},
		{quantile(0.5, stageDuration, "", cloneStage), `histogram_quantile(0.5, sum by (le) (rate(vmrestore_stage_duration_seconds_bucket{stage="clone"}[$__rate_interval])))`},
		{mean(stageDuration, "stage"), `sum by (stage) (rate(vmrestore_stage_duration_seconds_sum[$__rate_interval])) / sum by (stage) (rate(vmrestore_stage_duration_seconds_count[$__rate_interval]))`},
		{orZero(sum(rate(syncWait.count().where(degraded)))), `(sum(rate(vmrestore_sync_wait_seconds_count{outcome="degraded"}[$__rate_interval])) or vector(0))`},
		{minBy("job", maxOf(redisUp)), `min by (job) (max(vmrestore_redis_up))`},
	} {
		if c.got.String() != c.want {
			t.Errorf("got  %s\nwant %s", c.got, c.want)
		}
	}
	// where does not change the series it narrows.
	if jobs.String() != "vmrestore_jobs_total" {
		t.Errorf("where changed its receiver: %s", jobs)
	}
}
