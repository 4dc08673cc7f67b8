package reportpage

import (
	"bytes"
	"strings"
	"testing"
	"time"

	"github.com/vmrestore/vmrestore/internal/apiv1"
)

// The timeline's axis fits the run: a drill of a third of a second is not drawn on a
// one-second axis, and a run of 47 minutes gets ticks every 10 minutes.
func TestAxisFitsTheRun(t *testing.T) {
	for _, c := range []struct {
		seconds, span, step float64
	}{
		{0, 0.01, 0.002},
		{0.3, 0.3, 0.1},
		{0.31, 0.4, 0.1},
		{1, 1, 0.2},
		{7.3, 8, 2},
		{47 * 60, 50 * 60, 600},
		{5 * 86400, 5 * 86400, 86400},
		{9 * 86400, 9 * 86400, 86400},
	} {
		span, step := axis(c.seconds)
		if !near(span, c.span) || !near(step, c.step) {
			t.Errorf("axis(%v) = %v in steps of %v; want %v in steps of %v", c.seconds, span, step, c.span, c.step)
		}
	}
}

func near(a, b float64) bool { return a-b < 1e-9 && b-a < 1e-9 }

// Durations under a second read in milliseconds (a demo drill's stages take a few): "0.0 s"
// would tell the reader nothing.
func TestDurationText(t *testing.T) {
	for v, want := range map[float64]string{0: "0 ms", 0.0123: "12 ms", 0.5: "500 ms", 1: "1.0 s", 42.13: "42.1 s", 185: "3 min 05 s", 3720: "1 h 02 min"} {
		if got := duration(v); got != want {
			t.Errorf("duration(%v) = %q; want %q", v, got, want)
		}
	}
}

// A short run's page: its ticks end where the run does, in milliseconds, and a boot check
// reads as its result once, the check asked beside it.
func TestShortRunPage(t *testing.T) {
	start := time.Date(2026, 12, 7, 10, 0, 0, 0, time.UTC)
	end := start.Add(280 * time.Millisecond)
	rto := 0.28
	r := &apiv1.RunReport{PlanName: "quick", Mode: apiv1.ModeDrill, State: "succeeded", SubmittedAt: start, GeneratedAt: end, FinishedAt: &end, RTOSeconds: &rto,
		Tiers: []apiv1.RunReportTier{{Tier: 1, ItemCount: 1, Complete: true, StartedAt: &start, EndedAt: &end, RTOSeconds: &rto}},
		VMs: []apiv1.RunReportVM{{Tier: 1, Name: "db01-drill", State: "succeeded", StartedAt: &start, FinishedAt: &end, RTOSeconds: &rto,
			Stages:    []apiv1.RunReportStage{{Stage: "clone", StartedAt: start, Seconds: 0.2}},
			BootCheck: "running", BootCheckResult: "passed: the VM is running"}}}
	var page bytes.Buffer
	if err := HTML(&page, r); err != nil {
		t.Fatal(err)
	}
	html := page.String()
	for _, want := range []string{">300 ms</text>", ">200 ms</text>", "clone 200 ms", "passed: the VM is running<br><small>check: running</small>", "RTO 280 ms"} {
		if !strings.Contains(html, want) {
			t.Errorf("the page lacks %q", want)
		}
	}
	for _, not := range []string{">1.0 s</text>", "running: passed"} {
		if strings.Contains(html, not) {
			t.Errorf("the page has %q", not)
		}
	}
}
