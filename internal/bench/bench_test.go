package bench

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"unicode/utf8"
)

func TestFigureComputesRatioAndVerdict(t *testing.T) {
	atLeast := func(_, ratio float64) bool { return ratio >= 0.9 }
	met := figure("clone", 950, "MiB/s", num(1000), "ratio ≥ 0.9", atLeast, "")
	if met.Ratio == nil || *met.Ratio != 0.95 || met.Met == nil || !*met.Met {
		t.Fatalf("950 vs 1000 against ≥ 0.9: ratio %v met %v", met.Ratio, met.Met)
	}
	missed := figure("clone", 800, "MiB/s", num(1000), "ratio ≥ 0.9", atLeast, "")
	if missed.Met == nil || *missed.Met {
		t.Fatalf("800 vs 1000 against ≥ 0.9 is met: %v", missed.Met)
	}
	// No reference: no ratio; no target: no verdict.
	alone := figure("rss", 80, "MiB", nil, "", nil, "")
	if alone.Ratio != nil || alone.Met != nil || alone.Reference != nil {
		t.Fatalf("figure without reference or target: %+v", alone)
	}
	// A figure against a zero reference has no ratio, and a ratio target is then not met.
	zero := figure("x", 1, "/s", num(0), "ratio ≥ 0.2", func(_, r float64) bool { return r >= 0.2 }, "")
	if zero.Ratio != nil || zero.Met == nil || *zero.Met {
		t.Fatalf("figure against a zero reference: ratio %v met %v", zero.Ratio, zero.Met)
	}
}

func TestRoundKeepsThreeSignificantDigits(t *testing.T) {
	for _, c := range []struct{ in, want float64 }{{0.123456, 0.123}, {12345.6, 12346}, {8.376, 8.38}, {0, 0}} {
		if got := round(c.in); got != c.want {
			t.Errorf("round(%v) = %v, want %v", c.in, got, c.want)
		}
	}
	if !math.IsNaN(round(math.NaN())) {
		t.Error("round(NaN) is not NaN")
	}
}

// The JSON is what runs are tracked by: a list of objects with exactly the keys the
// benchmark promises (note aside), null where a figure has no value, reference or verdict.
func TestJSONHasTheKeysOfEveryFigure(t *testing.T) {
	figs := []Figure{
		figure("orchestration throughput", 500, "restores/s", num(5000), "ratio ≥ 0.20", func(_, r float64) bool { return r >= 0.2 }, "n"),
		figure("api peak RSS", 80, "MiB", nil, "", nil, ""),
		unavailable("memory", "MiB", "", "the api did not start"),
	}
	path := filepath.Join(t.TempDir(), "bench.json")
	if err := WriteJSON(path, figs); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var got []map[string]any
	if err := json.Unmarshal(b, &got); err != nil {
		t.Fatalf("%v\n%s", err, b)
	}
	want := []string{"met", "name", "ratio", "reference", "target", "unit", "value"}
	for i, o := range got {
		var keys []string
		for k := range o {
			if k != "note" {
				keys = append(keys, k)
			}
		}
		slices.Sort(keys)
		if !slices.Equal(keys, want) {
			t.Errorf("figure %d has keys %v, want %v", i, keys, want)
		}
	}
	if got[0]["met"] != false || got[0]["ratio"] != 0.1 || got[0]["reference"] != 5000.0 {
		t.Errorf("missed figure: %v", got[0])
	}
	if got[1]["met"] != nil || got[1]["ratio"] != nil || got[1]["reference"] != nil {
		t.Errorf("figure without reference or target: %v", got[1])
	}
	if got[2]["value"] != nil || got[2]["met"] != nil || !strings.HasPrefix(got[2]["note"].(string), "n/a: ") {
		t.Errorf("unavailable figure: %v", got[2])
	}
}

func TestTableSaysNAForAFigureWithoutVerdict(t *testing.T) {
	var out bytes.Buffer
	PrintTable(&out, []Figure{unavailable("memory", "MiB", "", "no go toolchain"),
		figure("placement p99", 7.2, "ms", nil, "≤ 5", func(v, _ float64) bool { return v <= 5 }, "")})
	lines := strings.Split(strings.TrimSpace(out.String()), "\n")
	if len(lines) != 5 || !strings.Contains(lines[1], "n/a") || !strings.HasSuffix(lines[1], "[1]") || !strings.Contains(lines[2], "NO") ||
		lines[4] != "[1] n/a: no go toolchain" {
		t.Fatalf("table:\n%s", out.String())
	}
}

// The table of a full run fits 120 columns: the notes, however long, go below it, wrapped.
func TestTableFitsItsWidth(t *testing.T) {
	long := strings.Repeat("a note that goes on and on about what was measured and why, ", 6)
	figs := []Figure{
		figure("plan RTO rate, 64 groups", 676.25, "MiB/s", num(603), "ratio ≥ 0.95", func(_, r float64) bool { return r >= 0.95 }, long),
		figure("plan: bytes read / backup data", 1.0001, "ratio", nil, "≤ 1.02", func(v, _ float64) bool { return v <= 1.02 }, long),
		figure("slots: 2 volumes through 1 slot", 8.03, "s", num(8.01), "ratio ≤ 1.2", func(_, r float64) bool { return r <= 1.2 }, long),
		figure("plan progress read, 10000 items", 22.7, "ms", nil, "≤ 50", func(v, _ float64) bool { return v <= 50 }, long),
		figure("worker peak RSS, 10000 jobs queued", 32.6, "MiB", nil, "", nil, long),
		figure("orchestration throughput", 854, "restores/s", num(11104), "", nil, long),
		figure("idle worker Redis commands", 290, "commands/s", nil, "", nil, long),
		figure("crash: copied twice", 3.16, "% volume", nil, "≤ 5", func(v, _ float64) bool { return v <= 5 }, long),
		// The longest name of a full run, and a target too long for its column: it goes into
		// the note.
		figure("instantiate rate, libvirt driver vs virsh define+start", 1.53, "VMs/s", num(1.52), "ratio ≥ 0.9", func(_, r float64) bool { return r >= 0.9 }, long),
		figure("Instant restore: time to running, 2 GiB volume", 1.4, "s", num(6.34), "≤ 2 s, independent of size", func(v, _ float64) bool { return v <= 2 }, ""),
	}
	var out bytes.Buffer
	PrintTable(&out, figs)
	for _, l := range strings.Split(out.String(), "\n") {
		if n := utf8.RuneCountInString(l); n > tableWidth {
			t.Fatalf("a line of %d columns:\n%s\n\n%s", n, l, out.String())
		}
	}
	if !strings.Contains(out.String(), "[8] a note") {
		t.Fatalf("the notes are not below the table:\n%s", out.String())
	}
	if !strings.Contains(out.String(), "[10] target: ≤ 2 s, independent of size.\n") {
		t.Fatalf("the long target is not in its note:\n%s", out.String())
	}
}

func TestFanOutRunsEachIndexOnceAndStopsAtAnError(t *testing.T) {
	var seen [1000]atomic.Int32
	if err := fanOut(context.Background(), 7, len(seen), func(_ context.Context, i int) error {
		seen[i].Add(1)
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	for i := range seen {
		if n := seen[i].Load(); n != 1 {
			t.Fatalf("index %d ran %d times", i, n)
		}
	}
	boom := errors.New("boom")
	var ran atomic.Int32
	err := fanOut(context.Background(), 4, 100000, func(_ context.Context, i int) error {
		ran.Add(1)
		if i == 10 {
			return boom
		}
		return nil
	})
	if !errors.Is(err, boom) {
		t.Fatalf("error %v, want boom", err)
	}
	if n := ran.Load(); n > 1000 {
		t.Fatalf("%d operations ran after the error", n)
	}
}

// The orchestration step for real, at its quick size: restores through the api and the
// worker on a private redis-server, the no-op reference, and the parts measured alone.
func TestOrchestrationStepMeasuresRestoresAndTheirParts(t *testing.T) {
	if testing.Short() {
		t.Skip("runs 300 restores")
	}
	var log bytes.Buffer
	figs, err := orchestration(context.Background(), Config{Quick: true, Dir: t.TempDir(), Log: &log})
	if err != nil {
		t.Fatalf("%v\n%s", err, log.String())
	}
	if len(figs) != 2 {
		t.Fatalf("%d figures", len(figs))
	}
	f, cpu := figs[0], figs[1]
	if f.Value == nil || *f.Value <= 0 || f.Reference == nil || *f.Reference <= 0 || f.Ratio == nil || f.Met != nil {
		t.Fatalf("orchestration figure: %+v", f)
	}
	if cpu.Value == nil || *cpu.Value <= 0 || cpu.Met == nil || cpu.Target != "≤ 2" {
		t.Fatalf("CPU per restore figure: %+v", cpu)
	}
	for _, want := range []string{"asynq task", "vmrestore's own work", "Redis round trips"} {
		if !strings.Contains(cpu.Note, want) {
			t.Errorf("note lacks %q: %s", want, cpu.Note)
		}
	}
	for _, want := range []string{"300 restores in", "the volume copies alone", "HTTP requests alone", "Redis round trips alone"} {
		if !strings.Contains(log.String(), want) {
			t.Errorf("log lacks %q:\n%s", want, log.String())
		}
	}
}
