package main

import (
	"fmt"
	"io"
	"os"
	"sync"
	"time"

	"golang.org/x/term"

	"github.com/vbauerster/mpb/v8"
	"github.com/vbauerster/mpb/v8/decor"
)

// fileProgress shows the progress of copying or reading volume files, one after the other:
// a bar per file on a terminal, a timestamped line at most every interval otherwise.
type fileProgress interface {
	// add announces a file of total bytes; its index is the order of the calls.
	add(label string, total int64)
	// update moves file i to done bytes.
	update(i int, done int64)
	// finish ends file i: ok (note, if any, says more, like the data read), or failed
	// (note is the reason).
	finish(i int, ok bool, note string)
	// note prints a line between the bars.
	note(format string, a ...any)
	// stop ends the display (files not finished are left where they stopped).
	stop()
}

func (a *cli) newFileProgress(w io.Writer, interval time.Duration) fileProgress {
	if isTerminal(w) && terminalWidth(w) > 0 { // a terminal of no width (a bare pty) shows no bar
		return newFileBars(w)
	}
	return &fileLines{w: w, interval: interval, now: time.Now}
}

// fileBars draws a bar per file while it is read; a finished file leaves one line in its
// place, so that verifying a whole storage does not fill the screen with bars.
type fileBars struct {
	p      *mpb.Progress
	bars   []*mpb.Bar
	labels []string
	totals []int64
	starts []time.Time
}

func newFileBars(w io.Writer, opts ...mpb.ContainerOption) *fileBars {
	opts = append([]mpb.ContainerOption{mpb.WithOutput(w), mpb.WithRefreshRate(150 * time.Millisecond)}, opts...)
	return &fileBars{p: mpb.New(opts...)}
}

func (b *fileBars) add(label string, total int64) {
	bar := b.p.AddBar(max(total, 1), mpb.BarWidth(30), mpb.BarRemoveOnComplete(),
		mpb.PrependDecorators(decor.Name(label, decor.WC{C: decor.DindentRight | decor.DextraSpace})),
		mpb.AppendDecorators(
			decor.CountersKibiByte("% .1f / % .1f", decor.WC{W: 24}),
			decor.AverageSpeed(decor.SizeB1024(0), "  % .1f", decor.WC{W: 14}),
			decor.AverageETA(decor.ET_STYLE_MMSS, decor.WC{W: 8}),
		))
	b.bars = append(b.bars, bar)
	b.labels = append(b.labels, label)
	b.totals = append(b.totals, max(total, 1))
	b.starts = append(b.starts, time.Now())
}

func (b *fileBars) update(i int, done int64) {
	if i < len(b.bars) {
		b.bars[i].SetCurrent(done)
	}
}

func (b *fileBars) finish(i int, ok bool, note string) {
	if i >= len(b.bars) {
		return
	}
	if !ok {
		b.bars[i].Abort(true)
		fmt.Fprintf(b.p, "%s: FAILED: %s\n", b.labels[i], note)
		return
	}
	b.bars[i].SetCurrent(b.totals[i])
	b.bars[i].SetTotal(b.totals[i], true)
	line := fmt.Sprintf("%s: done, %s", b.labels[i], bytesText(b.totals[i]))
	if note != "" {
		line += " (" + note + ")"
	}
	fmt.Fprintf(b.p, "%s in %s\n", line, durationText(time.Since(b.starts[i])))
}

func (b *fileBars) note(format string, a ...any) { fmt.Fprintf(b.p, format+"\n", a...) }

func (b *fileBars) stop() {
	for _, bar := range b.bars {
		if !bar.Completed() && !bar.Aborted() {
			bar.Abort(false)
		}
	}
	b.p.Wait()
}

// fileLines prints progress lines for logs and pipes.
type fileLines struct {
	mu       sync.Mutex
	w        io.Writer
	interval time.Duration
	now      func() time.Time
	labels   []string
	totals   []int64
	starts   []time.Time
	last     time.Time
}

func (l *fileLines) printf(format string, a ...any) {
	fmt.Fprintf(l.w, "%s %s\n", l.now().Format("15:04:05"), fmt.Sprintf(format, a...))
}

func (l *fileLines) add(label string, total int64) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.labels = append(l.labels, label)
	l.totals = append(l.totals, total)
	l.starts = append(l.starts, l.now())
	l.last = l.now() // the first line of a file comes an interval after it starts
}

func (l *fileLines) update(i int, done int64) {
	l.mu.Lock()
	defer l.mu.Unlock()
	now := l.now()
	if now.Sub(l.last) < l.interval {
		return
	}
	l.last = now
	pct := 0.0
	if l.totals[i] > 0 {
		pct = float64(done) * 100 / float64(l.totals[i])
	}
	rate := "-"
	if el := now.Sub(l.starts[i]).Seconds(); el > 0 {
		rate = rateText(float64(done) / el)
	}
	l.printf("%s: %s / %s (%.0f%%) %s", l.labels[i], bytesText(done), bytesText(l.totals[i]), pct, rate)
}

func (l *fileLines) finish(i int, ok bool, note string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if ok {
		took := l.now().Sub(l.starts[i])
		if note != "" {
			l.printf("%s: done, %s (%s) in %s", l.labels[i], bytesText(l.totals[i]), note, durationText(took))
		} else {
			l.printf("%s: done, %s in %s", l.labels[i], bytesText(l.totals[i]), durationText(took))
		}
		return
	}
	l.printf("%s: FAILED: %s", l.labels[i], note)
}

func (l *fileLines) note(format string, a ...any) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.printf(format, a...)
}

func (l *fileLines) stop() {}

// terminalWidth is the width of the terminal w writes to, 0 when unknown.
func terminalWidth(w io.Writer) int {
	f, ok := w.(*os.File)
	if !ok {
		return 0
	}
	width, _, err := term.GetSize(int(f.Fd()))
	if err != nil {
		return 0
	}
	return width
}
