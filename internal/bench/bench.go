// Package bench measures the figures vmrestore competes on, each beside a reference measured
// in the same run on the same machine (absolute times on a shared machine are noise):
// orchestration throughput beside asynq's own ceiling and the CPU a restore costs,
// synchronous-wait overhead, clone throughput against cp, a plan's recovery time against
// parallel cp of the same files (with its start, the clone slots kept busy and the bytes
// read), a multi-volume VM through fewer clone slots than volumes, the cost of a worker
// killed mid-copy, placement latency on a 10,000-host site, plan submission and progress at
// 10,000 groups, memory with 10,000 jobs queued, and the libvirt driver's instantiate rate
// against virsh define+start. cmd/vmrestore-bench runs it (make bench, make bench-quick).
package bench

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"os"
	"slices"
	"sort"
	"strings"
	"sync/atomic"
	"text/tabwriter"
	"time"
	"unicode/utf8"

	"golang.org/x/sync/errgroup"
)

// Figure is one measured value, with the side-by-side reference when there is one.
type Figure struct {
	Name      string   `json:"name"`
	Value     *float64 `json:"value"`
	Unit      string   `json:"unit"`
	Reference *float64 `json:"reference"`
	Ratio     *float64 `json:"ratio"`
	Target    string   `json:"target"`
	Met       *bool    `json:"met"`
	// Note says what was measured, or why the figure is n/a.
	Note string `json:"note,omitempty"`
}

func num(v float64) *float64 { return &v }

// figure builds a Figure; ref may be nil. met, when not nil, decides against the target.
func figure(name string, value float64, unit string, ref *float64, target string, met func(v, ratio float64) bool, note string) Figure {
	f := Figure{Name: name, Value: num(round(value)), Unit: unit, Reference: ref, Target: target, Note: note}
	ratio := math.NaN()
	if ref != nil && *ref != 0 {
		ratio = value / *ref
		f.Ratio = num(round(ratio))
	}
	if met != nil {
		m := met(value, ratio)
		f.Met = &m
	}
	return f
}

// unavailable is a figure that could not be measured, with the reason.
func unavailable(name, unit, target, why string) Figure {
	return Figure{Name: name, Unit: unit, Target: target, Note: "n/a: " + why}
}

func round(v float64) float64 {
	if math.IsNaN(v) || math.IsInf(v, 0) {
		return v
	}
	p := math.Pow(10, 3-math.Ceil(math.Log10(math.Abs(v)+1e-12)))
	if p < 1 {
		p = 1
	}
	return math.Round(v*p) / p
}

// Config sizes a run.
type Config struct {
	Quick bool
	// Dir is where files are written (a real disk, not tmpfs, for the clone figures).
	Dir string
	// Log receives progress lines.
	Log io.Writer
	// Only, when not empty, names the steps to run (see Steps); the others are skipped.
	Only []string
}

// steps are the measurements, in the order Run takes them.
var steps = []struct {
	name string
	fn   func(context.Context, Config) ([]Figure, error)
}{
	{"orchestration", orchestration},
	{"synchronous overhead", syncOverhead},
	{"clone", cloneThroughput},
	{"rto", planRTO},
	{"slots", slots},
	{"crash", crashCost},
	{"placement", placementLatency},
	{"plans", plans},
	{"memory", memory},
	{"instantiate", instantiateFigure},
	{"instant", instantFigures},
}

// Steps names the measurement steps in the order Run takes them.
func Steps() []string {
	out := make([]string, len(steps))
	for i, s := range steps {
		out[i] = s.name
	}
	return out
}

func (c Config) runs(step string) bool {
	return len(c.Only) == 0 || slices.Contains(c.Only, step)
}

func (c Config) pick(full, quick int) int {
	if c.Quick {
		return quick
	}
	return full
}

func (c Config) logf(format string, args ...any) {
	if c.Log != nil {
		fmt.Fprintf(c.Log, "%s  "+format+"\n", append([]any{time.Now().Format("15:04:05")}, args...)...)
	}
}

// Run measures every figure. A figure that fails is reported n/a with the error, the others
// still run.
func Run(ctx context.Context, c Config) []Figure {
	var out []Figure
	for _, s := range steps {
		if !c.runs(s.name) {
			continue
		}
		c.logf("measuring %s", s.name)
		figs, err := s.fn(ctx, c)
		if err != nil {
			c.logf("%s failed: %v", s.name, err)
			out = append(out, unavailable(s.name, "", "", err.Error()))
			continue
		}
		out = append(out, figs...)
	}
	return out
}

// tableWidth is the most columns the table takes; its notes follow it, wrapped to the same.
const tableWidth = 120

// maxTargetWidth is the widest target the table shows; a longer one goes into the figure's
// note (the cell says so), which keeps the table within tableWidth.
const maxTargetWidth = 12

// PrintTable writes the figures as an aligned table, each figure's note referred to by number
// and written below it.
func PrintTable(w io.Writer, figs []Figure) {
	tw := tabwriter.NewWriter(w, 2, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "FIGURE\tVALUE\tUNIT\tREFERENCE\tRATIO\tTARGET\tMET\tNOTE")
	var notes []string
	for _, f := range figs {
		target, note := f.Target, f.Note
		if utf8.RuneCountInString(target) > maxTargetWidth {
			note = strings.TrimSpace("target: " + target + ". " + note)
			target = "in the note"
		}
		ref := ""
		if note != "" {
			notes = append(notes, note)
			ref = fmt.Sprintf("[%d]", len(notes))
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", f.Name, fmtNum(f.Value), f.Unit, fmtNum(f.Reference),
			fmtNum(f.Ratio), target, fmtMet(f.Met), ref)
	}
	tw.Flush()
	if len(notes) > 0 {
		fmt.Fprintln(w)
	}
	for i, n := range notes {
		wrap(w, fmt.Sprintf("[%d] ", i+1), n, tableWidth)
	}
}

// wrap writes prefix and text in lines of at most width columns, the later lines indented
// as far as the prefix.
func wrap(w io.Writer, prefix, text string, width int) {
	indent := strings.Repeat(" ", utf8.RuneCountInString(prefix))
	line := prefix
	for _, word := range strings.Fields(text) {
		if n := utf8.RuneCountInString(line); n > len(indent) && n+1+utf8.RuneCountInString(word) > width {
			fmt.Fprintln(w, line)
			line = indent
		}
		if line != prefix && line != indent {
			line += " "
		}
		line += word
	}
	fmt.Fprintln(w, line)
}

func fmtNum(v *float64) string {
	if v == nil {
		return "-"
	}
	return fmt.Sprint(*v)
}

func fmtMet(m *bool) string {
	switch {
	case m == nil:
		return "n/a"
	case *m:
		return "yes"
	}
	return "NO"
}

// WriteJSON writes the figures as a JSON list to path.
func WriteJSON(path string, figs []Figure) error {
	b, err := json.MarshalIndent(figs, "", "  ")
	if err != nil {
		return err
	}
	return os.WriteFile(path, append(b, '\n'), 0o644)
}

// percentile of sorted durations, in milliseconds.
func percentile(sorted []time.Duration, p float64) float64 {
	if len(sorted) == 0 {
		return math.NaN()
	}
	return float64(sorted[int(p*float64(len(sorted)-1))].Microseconds()) / 1000
}

func sortDurations(d []time.Duration) []time.Duration {
	sort.Slice(d, func(i, j int) bool { return d[i] < d[j] })
	return d
}

func median(v []float64) float64 {
	s := append([]float64(nil), v...)
	sort.Float64s(s)
	if len(s) == 0 {
		return math.NaN()
	}
	return s[len(s)/2]
}

// fanOut runs op(i) for i in [0, n) on workers goroutines and returns the first error; the
// other goroutines stop taking work after it.
func fanOut(ctx context.Context, workers, n int, op func(ctx context.Context, i int) error) error {
	var next atomic.Int64
	g, gctx := errgroup.WithContext(ctx)
	for w := 0; w < workers; w++ {
		g.Go(func() error {
			for {
				i := int(next.Add(1) - 1)
				if i >= n || gctx.Err() != nil {
					return nil
				}
				if err := op(gctx, i); err != nil {
					return err
				}
			}
		})
	}
	return g.Wait()
}
