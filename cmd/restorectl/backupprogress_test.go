package main

import (
	"bytes"
	"strings"
	"testing"
	"time"

	"github.com/vbauerster/mpb/v8"
)

// Without a terminal, each file gets a line at most every interval, and one when it ends
// (with its data note, or why it failed).
func TestFileLinesAreThrottled(t *testing.T) {
	var buf bytes.Buffer
	now := time.Date(2026, 1, 1, 10, 0, 0, 0, time.UTC)
	l := &fileLines{w: &buf, interval: 5 * time.Second, now: func() time.Time { return now }}
	l.add("disk 0 (Root) root.qcow2", 100<<20)
	for i := int64(1); i <= 12; i++ {
		now = now.Add(time.Second)
		l.update(0, i<<20)
	}
	l.finish(0, true, "10.0 MiB of data")
	l.add("disk 1 (Data) data.raw", 1<<30)
	now = now.Add(time.Second)
	l.finish(1, false, "disk data.raw: the disk changed while it was being copied")
	lines := strings.Split(strings.TrimSpace(buf.String()), "\n")
	want := []string{
		"10:00:05 disk 0 (Root) root.qcow2: 5.0 MiB / 100.0 MiB (5%) 1.0 MiB/s",
		"10:00:10 disk 0 (Root) root.qcow2: 10.0 MiB / 100.0 MiB (10%) 1.0 MiB/s",
		"10:00:12 disk 0 (Root) root.qcow2: done, 100.0 MiB (10.0 MiB of data) in 12s",
		"10:00:13 disk 1 (Data) data.raw: FAILED: disk data.raw: the disk changed while it was being copied",
	}
	if strings.Join(lines, "\n") != strings.Join(want, "\n") {
		t.Fatalf("lines:\n%s\nwant:\n%s", buf.String(), strings.Join(want, "\n"))
	}
}

func TestFileBarsDrawAndStop(t *testing.T) {
	var buf bytes.Buffer
	b := newFileBars(&buf, mpb.WithAutoRefresh(), mpb.WithRefreshRate(time.Millisecond))
	b.add("disk 0 (Root) root.qcow2", 10<<20)
	b.add("disk 1 (Data) data.raw", 20<<20)
	b.update(0, 5<<20)
	b.note("a note")
	b.finish(0, true, "")
	b.update(1, 1<<20)
	b.finish(1, false, "it broke")
	time.Sleep(20 * time.Millisecond)
	done := make(chan struct{})
	go func() { b.stop(); close(done) }()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("stopping the bars hangs")
	}
	out := buf.String()
	for _, want := range []string{"disk 0 (Root) root.qcow2: done, 10.0 MiB in 0s", "disk 1 (Data) data.raw  [", "1.0 MiB / 20.0 MiB", "a note",
		"disk 1 (Data) data.raw: FAILED: it broke"} {
		if !strings.Contains(out, want) {
			t.Fatalf("bars output lacks %q:\n%s", want, out)
		}
	}
}
