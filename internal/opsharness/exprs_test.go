package opsharness

import (
	"path/filepath"
	"slices"
	"testing"
)

func TestMetricNames(t *testing.T) {
	for _, c := range []struct {
		q    string
		want []string
	}{
		{`sum by (le, stage) (rate(vmrestore_stage_duration_seconds_bucket{stage!="clone"}[5m]))`, []string{"vmrestore_stage_duration_seconds_bucket"}},
		{`max(vmrestore_workers_alive) == 0 or absent(up{job="vmrestore-worker"} == 1)`, []string{"up", "vmrestore_workers_alive"}},
		{`(sum(rate(a_total{code=~"4..|5.."}[1m])) or vector(0)) / on (x) group_left (y) b > 1e3 and c_bool unless d offset 5m`, []string{"a_total", "b", "c_bool", "d"}},
		{`histogram_quantile(0.95, sum without (instance) (rate(x_bucket{l="a{b}"}[$__rate_interval])))`, []string{"x_bucket"}},
	} {
		if got := MetricNames(c.q); !slices.Equal(got, c.want) {
			t.Errorf("MetricNames(%s) = %v, want %v", c.q, got, c.want)
		}
	}
}

func TestSubstitute(t *testing.T) {
	got, err := Substitute(`rate(x[$__rate_interval]) / increase(y[$__range])`)
	if err != nil || got != `rate(x[1m]) / increase(y[5m])` {
		t.Errorf("Substitute = %q, %v", got, err)
	}
	if _, err := Substitute(`x{instance=~"$instance"}`); err == nil {
		t.Error("an unknown variable must be refused")
	}
}

func TestEveryDashboardAndRuleHasExpressions(t *testing.T) {
	root := RepoRoot(t)
	dash, err := DashboardExprs(filepath.Join(root, "dashboards"))
	if err != nil {
		t.Fatal(err)
	}
	rules, err := RuleExprs(filepath.Join(root, "deploy/prometheus/rules/*.yml"))
	if err != nil {
		t.Fatal(err)
	}
	if len(dash) < 40 || len(rules) < 10 {
		t.Fatalf("found %d dashboard and %d rule expressions", len(dash), len(rules))
	}
	for _, e := range append(dash, rules...) {
		if len(MetricNames(e.Query)) == 0 {
			t.Errorf("%s: no metric in %s", e.Where, e.Query)
		}
		if _, err := Substitute(e.Query); err != nil {
			t.Errorf("%s: %v", e.Where, err)
		}
	}
}
