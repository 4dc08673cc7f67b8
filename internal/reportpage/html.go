package reportpage

import (
	_ "embed"
	"fmt"
	"html/template"
	"io"
	"math"
	"strconv"
	"time"

	"github.com/vmrestore/vmrestore/internal/apiv1"
)

//go:embed report.html.tmpl
var pageText string

var pageTemplate = template.Must(template.New("report").Funcs(template.FuncMap{
	"stamp": func(v any) string {
		var t time.Time
		switch x := v.(type) {
		case time.Time:
			t = x
		case *time.Time:
			if x != nil {
				t = *x
			}
		}
		if t.IsZero() {
			return "—"
		}
		return t.UTC().Format("2006-01-02 15:04:05 UTC")
	},
	"rto": func(v *float64) string {
		if v == nil {
			return "—"
		}
		return duration(*v)
	},
	"duration": duration,
	"bytes":    bytesText,
}).Parse(pageText))

// HTML writes the report as one self-contained page.
func HTML(w io.Writer, r *apiv1.RunReport) error {
	return pageTemplate.Execute(w, newPage(r))
}

// Chart geometry, in SVG user units.
const (
	chartWidth  = 960
	labelWidth  = 200
	barsWidth   = chartWidth - labelWidth - 64 // room for the last tick's label and a "failed" mark
	rowHeight   = 18
	axisHeight  = 34
	maxVMRows   = 400
	legendWidth = 96
)

// stageColours are the pipeline stages' colours in the chart and its legend.
var stageColours = map[string]string{"queued": "#cbd5e1", "resolve": "#a78bfa", "place": "#60a5fa", "network": "#22d3ee",
	"clone": "#34d399", "instantiate": "#fbbf24", "hydrate": "#94a3b8", "commit": "#f472b6"}

var legendOrder = []string{"queued", "resolve", "place", "network", "clone", "instantiate", "hydrate", "commit"}

type page struct {
	R           *apiv1.RunReport
	GeneratedAt *time.Time
	SubmittedAt *time.Time
	Drill       bool
	Chart       chart
	Failures    []apiv1.RunReportVM
	Checks      int
}

type chart struct {
	Width, Height int
	AxisY         int
	LegendY       int
	Rows          []row
	Ticks         []tick
	RTO           *marker
	Legend        []legendItem
	Omitted       int // VM rows left out of a large plan's chart
}

type row struct {
	Y          int
	Label      string
	Tier       bool
	Title      string
	Segments   []segment
	Failed     bool
	TextY      int
	BarY, BarH int
	EndX       float64 // where the last segment ends
}

type segment struct {
	X, W   float64
	Y, H   int
	Colour string
	Title  string
}

type tick struct {
	X     float64
	Label string
}

type marker struct {
	X     float64
	Label string
}

type legendItem struct {
	X      int
	Colour string
	Label  string
}

func newPage(r *apiv1.RunReport) page {
	p := page{R: r, GeneratedAt: &r.GeneratedAt, SubmittedAt: &r.SubmittedAt, Drill: r.Mode == apiv1.ModeDrill, Chart: newChart(r)}
	for _, vm := range r.VMs {
		if vm.Error != "" {
			p.Failures = append(p.Failures, vm)
		}
		if vm.BootCheck != "" {
			p.Checks++
		}
	}
	return p
}

// newChart lays out the timeline: one row per tier (its first start to its last end), then
// a row per VM of the tier with its queue wait and stages, on a time axis from submission.
func newChart(r *apiv1.RunReport) chart {
	start := r.SubmittedAt
	end := r.GeneratedAt
	if r.FinishedAt != nil {
		end = *r.FinishedAt
	}
	for _, vm := range r.VMs {
		if vm.FinishedAt != nil && vm.FinishedAt.After(end) {
			end = *vm.FinishedAt
		}
	}
	span, step := axis(end.Sub(start).Seconds())
	x := func(t time.Time) float64 {
		return labelWidth + barsWidth*max(0, t.Sub(start).Seconds())/span
	}
	c := chart{Width: chartWidth}
	y := 8
	showVMs := len(r.VMs) <= maxVMRows
	if !showVMs {
		c.Omitted = len(r.VMs)
	}
	for _, t := range r.Tiers {
		tr := row{Label: "Tier " + strconv.Itoa(t.Tier), Tier: true, Failed: !t.Complete,
			Title: fmt.Sprintf("tier %d: %d VM(s), RTO %s", t.Tier, t.ItemCount, rtoText(t.RTOSeconds))}
		if t.StartedAt != nil && t.EndedAt != nil {
			tr.Segments = []segment{{X: x(*t.StartedAt), W: max(x(*t.EndedAt)-x(*t.StartedAt), 1), Colour: "#334155", Title: tr.Title}}
		}
		c.Rows = append(c.Rows, place(tr, &y))
		if !showVMs {
			continue
		}
		for _, vm := range r.VMs {
			if vm.Tier == t.Tier {
				c.Rows = append(c.Rows, place(vmRow(vm, x), &y))
			}
		}
	}
	axisY := y + 4
	for s := 0.0; s <= span*(1+1e-9); s += step {
		c.Ticks = append(c.Ticks, tick{X: labelWidth + barsWidth*s/span, Label: duration(s)})
	}
	if r.RTOSeconds != nil {
		c.RTO = &marker{X: labelWidth + barsWidth**r.RTOSeconds/span, Label: "RTO " + duration(*r.RTOSeconds)}
	}
	for i, s := range legendOrder {
		c.Legend = append(c.Legend, legendItem{X: labelWidth + i*legendWidth, Colour: stageColours[s], Label: s})
	}
	c.AxisY, c.LegendY = axisY, axisY+axisHeight
	c.Height = axisY + axisHeight + 24
	return c
}

// axisSteps are the steps between the time axis's ticks, in seconds: round numbers of
// seconds, then of minutes and hours.
var axisSteps = []float64{0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1, 2, 5, 10, 15, 30,
	60, 120, 300, 600, 900, 1800, 3600, 7200, 10800, 21600, 43200, 86400}

// axis is the time axis for a run of the given length in seconds: its end and the step
// between its ticks, the smallest round step that needs at most 5 of them, so that a run of
// 0.3 s is drawn over 0.3 s in steps of 0.1 s and one of 47 min over 50 min in steps of 10.
func axis(seconds float64) (span, step float64) {
	seconds = max(seconds, 0.01)
	step = axisSteps[len(axisSteps)-1]
	for _, s := range axisSteps {
		if s*5 >= seconds {
			step = s
			break
		}
	}
	return step * max(1, math.Ceil(seconds/step-1e-9)), step
}

func rtoText(v *float64) string {
	if v == nil {
		return "—"
	}
	return duration(*v)
}

func place(r row, y *int) row {
	r.Y, r.TextY, r.BarY, r.BarH = *y, *y+13, *y+3, rowHeight-6
	if r.Tier {
		r.BarY, r.BarH = *y+1, rowHeight-2
	}
	*y += rowHeight
	r.EndX = labelWidth
	for i := range r.Segments {
		r.Segments[i].Y, r.Segments[i].H = r.BarY, r.BarH
		r.EndX = max(r.EndX, r.Segments[i].X+r.Segments[i].W)
	}
	return r
}

// vmRow is a VM's bar: its wait in the queue, then each stage, or one bar when the stages
// are unknown (its job expired before the report was stored).
func vmRow(vm apiv1.RunReportVM, x func(time.Time) float64) row {
	r := row{Label: vm.Name, Failed: vm.Error != "" || vm.State == "failed" || vm.State == "cancelled",
		Title: fmt.Sprintf("%s: %s, RTO %s", vm.Name, vm.State, rtoText(vm.RTOSeconds))}
	if vm.QueuedAt != nil && vm.StartedAt != nil && vm.StartedAt.After(*vm.QueuedAt) {
		r.Segments = append(r.Segments, segment{X: x(*vm.QueuedAt), W: max(x(*vm.StartedAt)-x(*vm.QueuedAt), 0.5), Colour: stageColours["queued"],
			Title: fmt.Sprintf("%s queued %s", vm.Name, duration(vm.StartedAt.Sub(*vm.QueuedAt).Seconds()))})
	}
	for _, s := range vm.Stages {
		from := x(s.StartedAt)
		to := x(s.StartedAt.Add(time.Duration(s.Seconds * float64(time.Second))))
		r.Segments = append(r.Segments, segment{X: from, W: max(to-from, 0.5), Colour: stageColours[s.Stage],
			Title: fmt.Sprintf("%s %s %s", vm.Name, s.Stage, duration(s.Seconds))})
	}
	if len(vm.Stages) == 0 && vm.StartedAt != nil && vm.FinishedAt != nil {
		colour := "#94a3b8"
		r.Segments = append(r.Segments, segment{X: x(*vm.StartedAt), W: max(x(*vm.FinishedAt)-x(*vm.StartedAt), 0.5), Colour: colour, Title: r.Title})
	}
	return r
}
