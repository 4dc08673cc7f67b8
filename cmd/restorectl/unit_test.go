package main

import (
	"bytes"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/vbauerster/mpb/v8"

	"github.com/vmrestore/vmrestore/internal/apiv1"
)

func TestReadSpecYAMLAndJSON(t *testing.T) {
	dir := t.TempDir()
	write := func(name, text string) string {
		p := dir + "/" + name
		if err := writeFile(p, text); err != nil {
			t.Fatal(err)
		}
		return p
	}
	yml := write("p.yaml", "name: a\ngroups: [g1]\ndefaults: {keepSourceSize: true}\noverrides:\n  g1: {cpuNum: 4, memorySize: 1073741824}\nconcurrency: 5\n")
	spec, err := readSpec(yml, nil)
	if err != nil || spec.Name != "a" || !spec.Defaults.KeepSourceSize || spec.Overrides["g1"].MemorySize != 1<<30 || spec.Concurrency != 5 {
		t.Fatalf("yaml: %+v %v", spec, err)
	}
	js := write("p.json", `{"name":"b","groups":["g1"],"networkMapping":[{"sourceL3NetworkUuid":"s","targetL3NetworkUuid":"t","ip":"keep"}]}`)
	spec, err = readSpec(js, nil)
	if err != nil || spec.Name != "b" || spec.NetworkMapping[0].IP != "keep" {
		t.Fatalf("json: %+v %v", spec, err)
	}
	// stdin: JSON or YAML, told apart by the first character.
	spec, err = readSpec("-", strings.NewReader(`{"name":"c"}`))
	if err != nil || spec.Name != "c" {
		t.Fatalf("stdin json: %+v %v", spec, err)
	}
	spec, err = readSpec("-", strings.NewReader("name: d\n"))
	if err != nil || spec.Name != "d" {
		t.Fatalf("stdin yaml: %+v %v", spec, err)
	}

	for _, c := range []struct{ name, text, want string }{
		{"u.yaml", "name: a\nnetworkMapping:\n  - {sourceL3NetworkUuid: s, targetL3NetworkUuid: t, macc: keep}\n", `line 3: unknown field "macc" in a networkMapping entry (did you mean "mac"?)`},
		{"u2.yaml", "name: a\nselector: {sourceVMName: 'db*'}\n", `unknown field "sourceVMName" in selector (did you mean "sourceVmName"?)`},
		{"u3.yaml", "name: a\noverrides:\n  g1: {cpus: 4}\n", `unknown field "cpus" in an override`},
		{"t.yaml", "name: a\nconcurrency: lots\n", "cannot unmarshal"},
		{"s.json", `{"name": "a",}`, "line 1 column"},
		{"t.json", `{"name": "a", "concurrency": "5"}`, `field "concurrency": a integer cannot be a string`},
		{"two.yaml", "name: a\n---\nname: b\n", "more than one YAML document"},
		{"e.yaml", "  \n", "the plan file is empty"},
	} {
		_, err := readSpec(write(c.name, c.text), nil)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: want an error with %q, got %v", c.name, c.want, err)
		}
	}
	if _, err := readSpec(dir+"/missing.yaml", nil); err == nil || !strings.Contains(err.Error(), "no such file") {
		t.Errorf("missing file: %v", err)
	}
}

func TestNormalizeURL(t *testing.T) {
	for in, want := range map[string]string{
		"http://127.0.0.1:8080/":    "http://127.0.0.1:8080",
		"HTTP://Example.COM:8080":   "http://example.com:8080",
		"127.0.0.1:8080":            "http://127.0.0.1:8080",
		"https://dr.example/vmr///": "https://dr.example/vmr",
	} {
		if got, err := normalizeURL(in); err != nil || got != want {
			t.Errorf("normalizeURL(%q) = %q, %v; want %q", in, got, err, want)
		}
	}
	for _, bad := range []string{"ftp://x", "http://", "http://x?y=1"} {
		if _, err := normalizeURL(bad); err == nil {
			t.Errorf("normalizeURL(%q) accepted", bad)
		}
	}
}

func TestToYAMLKeepsJSONNamesAndOrder(t *testing.T) {
	b, err := toYAML(struct {
		Zeta  string  `json:"zeta"`
		Alpha []int   `json:"alpha"`
		Yes   string  `json:"yes"`
		Num   string  `json:"num"`
		Nil   *string `json:"nil"`
	}{"z", []int{1, 2}, "yes", "123", nil})
	if err != nil {
		t.Fatal(err)
	}
	want := "zeta: z\nalpha:\n    - 1\n    - 2\n\"yes\": \"yes\"\nnum: \"123\"\nnil: null\n"
	if string(b) != want {
		t.Fatalf("toYAML:\n%s\nwant:\n%s", b, want)
	}
}

func TestFormatting(t *testing.T) {
	for n, want := range map[int64]string{0: "0 B", 1023: "1023 B", 1024: "1.0 KiB", 1536: "1.5 KiB", 20 << 30: "20.0 GiB", 3 << 40: "3.0 TiB"} {
		if got := bytesText(n); got != want {
			t.Errorf("bytesText(%d) = %q, want %q", n, got, want)
		}
	}
	for d, want := range map[time.Duration]string{4 * time.Second: "4s", 200 * time.Second: "3m20s", 2*time.Hour + 5*time.Minute: "2h05m"} {
		if got := durationText(d); got != want {
			t.Errorf("durationText(%v) = %q, want %q", d, got, want)
		}
	}
	if got := countsText(map[string]int{"pending": 2, "failed": 1, "succeeded": 3, "running": 0}); got != "3 succeeded, 1 failed, 2 pending" {
		t.Errorf("countsText: %q", got)
	}
	if got := suggest("keepsourcesize", []string{"keepSourceSize", "strategy"}); !strings.Contains(got, `did you mean "keepSourceSize"?`) {
		t.Errorf("suggest: %q", got)
	}
}

func report(state string, done, total int64, counts map[string]int) *apiv1.PlanReport {
	items := 0
	for _, n := range counts {
		items += n
	}
	eta := 10.0
	return &apiv1.PlanReport{UUID: "u", Name: "n", State: state, ItemCount: items, Counts: counts, BytesDone: done, BytesTotal: total,
		VirtualBytesDone: 10 * done, VirtualBytesTotal: 10 * total, ThroughputBytesPerSecond: 1 << 20, EtaSeconds: &eta,
		Tiers: []apiv1.TierReport{{Tier: 1, Counts: counts, BytesDone: done, BytesTotal: total}}}
}

func TestPlainLinesAreThrottled(t *testing.T) {
	var buf bytes.Buffer
	l := newLines(&buf, 5*time.Second)
	now := time.Date(2026, 1, 1, 10, 0, 0, 0, time.UTC)
	l.now = func() time.Time { return now }
	l.update(report("running", 0, 100, map[string]int{"pending": 2}))
	for i := int64(1); i < 10; i++ {
		now = now.Add(time.Second)
		l.update(report("running", i, 100, map[string]int{"running": 2}))
	}
	l.item(apiv1.ItemReport{Index: 1, Name: "web", State: "failed", ErrorCode: "X.1", Error: "no\nway"})
	l.finish(report("failed", 50, 100, map[string]int{"succeeded": 1, "failed": 1}))
	out := buf.String()
	lines := strings.Split(strings.TrimSpace(out), "\n")
	// header, first line, one line 5 s later, the failure, the end.
	if len(lines) != 5 || !strings.HasPrefix(lines[1], "10:00:00 running  VMs 0/2") || !strings.HasPrefix(lines[2], "10:00:05 running") ||
		lines[3] != "10:00:09 item 1 web failed: X.1: no way" || !strings.Contains(lines[4], "failed  VMs 2/2 (1 succeeded, 1 failed)  data 50 B/100 B (50%; virtual 1000 B)") {
		t.Fatalf("lines:\n%s", out)
	}
}

func TestBarsDrawAndFinish(t *testing.T) {
	var buf bytes.Buffer
	b := newBars(&buf, report("running", 0, 100, map[string]int{"pending": 2}), mpb.WithAutoRefresh(), mpb.WithRefreshRate(time.Millisecond))
	b.update(report("running", 40, 100, map[string]int{"running": 1, "succeeded": 1}))
	b.item(apiv1.ItemReport{Index: 0, Name: "db", State: "failed", ErrorCode: "X.1", Error: "boom"})
	b.note("a note")
	time.Sleep(20 * time.Millisecond)
	done := make(chan struct{})
	go func() {
		b.finish(report("failed", 50, 100, map[string]int{"succeeded": 1, "failed": 1}))
		close(done)
	}()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("finishing the bars hangs")
	}
	out := buf.String()
	for _, want := range []string{"plan u (n)", "tier 1", "all", "2/2 VMs", "item 0 db failed: X.1: boom", "a note", "failed"} {
		if !strings.Contains(out, want) {
			t.Fatalf("bars output lacks %q:\n%s", want, out)
		}
	}
}

func writeFile(p, text string) error { return os.WriteFile(p, []byte(text), 0o600) }

// A succeeded instant restore says Hydrated beside its state, with when its VM ran and how
// long it ran from its backups.
func TestJobTableInstant(t *testing.T) {
	created := time.Date(2026, 12, 7, 14, 6, 0, 0, time.UTC)
	running, hydrated := created.Add(1500*time.Millisecond), created.Add(90*time.Second)
	var b bytes.Buffer
	err := jobTable(&b, &apiv1.Job{UUID: "j", State: "succeeded", Outcome: apiv1.OutcomeHydrated, CreatedAt: created,
		Instant: &apiv1.JobInstant{State: "Hydrated", RunningAt: &running, HydratedAt: &hydrated}})
	out := b.String()
	if err != nil || !strings.Contains(out, "State:\tsucceeded: Hydrated\n") || !strings.Contains(out, "Instant:\tHydrated; the VM ran 1.5s after the request") ||
		!strings.Contains(out, "from its backups for 1m29s until hydrated") {
		t.Fatalf("job table of an instant restore:\n%s", out)
	}
}
