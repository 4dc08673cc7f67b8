// Package dashboards is the source of vmrestore's Grafana dashboards. Each dashboard is Go
// code written with Grafana's typed builder (grafana-foundation-sdk), so panels, units,
// thresholds and query options are checked by the compiler; the metric names and label
// matchers the queries use live in one place (promql.go), and so do the data source and the
// look shared by every panel (this file).
//
// The JSON that Grafana provisions (dashboards/*.json) is generated from this code by
// `make dashboards` (go run ./cmd/vmrestore-dashboards) and committed; a test fails when the
// committed files differ from what the code builds. internal/opsharness runs every query of
// those files against a real Prometheus scraping real processes.
package dashboards

import (
	"bytes"
	"encoding/json"
	"fmt"

	"github.com/grafana/grafana-foundation-sdk/go/bargauge"
	"github.com/grafana/grafana-foundation-sdk/go/cog"
	"github.com/grafana/grafana-foundation-sdk/go/cog/variants"
	"github.com/grafana/grafana-foundation-sdk/go/common"
	"github.com/grafana/grafana-foundation-sdk/go/dashboard"
	"github.com/grafana/grafana-foundation-sdk/go/prometheus"
	"github.com/grafana/grafana-foundation-sdk/go/stat"
	"github.com/grafana/grafana-foundation-sdk/go/timeseries"
	"github.com/grafana/grafana-foundation-sdk/go/units"
)

// A File is one dashboard as Grafana's file provisioning reads it.
type File struct {
	Name string // file name, the dashboard's uid + ".json"
	JSON []byte
}

// all lists the dashboards, in the order of the dashboard links' drop-down.
var all = []func() *dashboard.DashboardBuilder{overview, stages, storage, api}

// Files builds every dashboard and renders it as indented JSON.
func Files() ([]File, error) {
	var out []File
	for _, build := range all {
		d, err := build().Build()
		if err != nil {
			return nil, err
		}
		finish(&d)
		var buf bytes.Buffer
		enc := json.NewEncoder(&buf)
		enc.SetEscapeHTML(false) // keep PromQL's <, > and & readable
		enc.SetIndent("", "  ")
		if err := enc.Encode(d); err != nil {
			return nil, fmt.Errorf("dashboard %s: %w", *d.Uid, err)
		}
		out = append(out, File{Name: *d.Uid + ".json", JSON: buf.Bytes()})
	}
	return out, nil
}

// finish numbers the panels in layout order (Grafana wants ids unique within a dashboard) and
// leaves the links and annotation toggles where Grafana shows them by default (the builder
// would put them in the controls menu of Grafana 12).
func finish(d *dashboard.Dashboard) {
	for i := range d.Panels {
		id := uint32(i + 1)
		if p := d.Panels[i].Panel; p != nil {
			p.Id = &id
		}
		if r := d.Panels[i].RowPanel; r != nil {
			r.Id = id
		}
	}
	for i := range d.Links {
		d.Links[i].Placement = nil
	}
	for i := range d.Annotations.List {
		d.Annotations.List[i].Placement = nil
	}
}

// tag marks every vmrestore dashboard; the dashboards link to each other through it.
const tag = "vmrestore"

// datasource is where every panel and query reads: the dashboard's "datasource" variable,
// which offers the Prometheus data sources of the Grafana instance (the provisioned one
// first), so the dashboards also work against another Prometheus.
var datasource = common.DataSourceRef{Type: cog.ToPtr("prometheus"), Uid: cog.ToPtr("${datasource}")}

// newDashboard starts a dashboard with what every vmrestore dashboard shares: tag, time
// range, refresh, shared crosshair, the links to the others and the data source variable.
func newDashboard(uid, title, description string) *dashboard.DashboardBuilder {
	return dashboard.NewDashboardBuilder(title).
		Uid(uid).
		Description(description).
		Tags([]string{tag}).
		Timezone(common.TimeZoneBrowser).
		Editable().
		Tooltip(dashboard.DashboardCursorSyncCrosshair).
		Refresh("30s").
		Time("now-3h", "now").
		Annotation(dashboard.NewAnnotationQueryBuilder().
			Name("Annotations & Alerts").
			BuiltIn(1).
			Type("dashboard").
			Datasource(common.DataSourceRef{Type: cog.ToPtr("grafana"), Uid: cog.ToPtr("-- Grafana --")}).
			Enable(true).
			Hide(true).
			IconColor("rgba(0, 211, 255, 1)")).
		Link(dashboard.NewDashboardLinkBuilder("vmrestore dashboards").
			Type(dashboard.DashboardLinkTypeDashboards).
			Tags([]string{tag}).
			AsDropdown(true).
			KeepTime(true)).
		WithVariable(dashboard.NewDatasourceVariableBuilder("datasource").
			Label("Data source").
			Type("prometheus"))
}

// row starts a row of panels; the panels added after it belong to it.
func row(title string) *dashboard.RowBuilder { return dashboard.NewRowBuilder(title) }

// A target is one query of a panel: a PromQL expression and how Grafana names its series.
type target struct {
	expr      string
	legend    string
	exemplars bool
}

// query is a target; legend is Grafana's legend format ("{{stage}}", or "__auto").
func query(e fmt.Stringer, legend string) target { return target{expr: e.String(), legend: legend} }

// withExemplars also fetches the exemplars (a stage histogram's exemplars carry the job uuid).
func (t target) withExemplars() target {
	t.exemplars = true
	return t
}

// targets builds a panel's queries, named A, B, C... in order. An instant query asks for the
// value now only (bar gauges); the others ask for the dashboard's time range.
func targets(instant bool, ts []target) []cog.Builder[variants.Dataquery] {
	out := make([]cog.Builder[variants.Dataquery], 0, len(ts))
	for i, t := range ts {
		q := prometheus.NewDataqueryBuilder().
			RefId(string(rune('A' + i))).
			Datasource(datasource).
			Expr(t.expr).
			LegendFormat(t.legend)
		if instant {
			q.Instant()
		} else {
			q.Range()
		}
		if t.exemplars {
			q.Exemplar(true)
		}
		out = append(out, q)
	}
	return out
}

// Threshold colours.
const (
	red    = "red"
	orange = "orange"
	green  = "green"
)

// A step is where a threshold colour starts.
type step struct {
	from  float64
	color string
}

// thresholds colours a value base below the first step, then each step's colour from its
// value up.
func thresholds(base string, steps ...step) *dashboard.ThresholdsConfigBuilder {
	list := []dashboard.Threshold{{Color: base}} // Value nil: from minus infinity
	for _, s := range steps {
		list = append(list, dashboard.Threshold{Value: cog.ToPtr(s.from), Color: s.color})
	}
	return dashboard.NewThresholdsConfigBuilder().Mode(dashboard.ThresholdsModeAbsolute).Steps(list)
}

func colorByThresholds() *dashboard.FieldColorBuilder {
	return dashboard.NewFieldColorBuilder().Mode(dashboard.FieldColorModeIdThresholds)
}

// lastValue reduces a series to its last non-null value (stat and bar gauge panels).
func lastValue() *common.ReduceDataOptionsBuilder {
	return common.NewReduceDataOptionsBuilder().Calcs([]string{"lastNotNull"}).Fields("").Values(false)
}

// single is a 4×4 stat panel: one figure, its last value large, the range as a sparkline.
func single(title, description, unit string, t target) *stat.PanelBuilder {
	return stat.NewPanelBuilder().
		Title(title).
		Description(description).
		Datasource(datasource).
		Height(4).
		Span(4).
		Unit(unit).
		Targets(targets(false, []target{t})).
		ReduceOptions(lastValue()).
		ColorMode(common.BigValueColorModeValue).
		GraphMode(common.BigValueGraphModeArea).
		JustifyMode(common.BigValueJustifyModeAuto).
		TextMode(common.BigValueTextModeAuto).
		Orientation(common.VizOrientationAuto)
}

// graph is a time series panel, 8 high, starting at 0, with a table legend (mean, max, last)
// and a tooltip listing every series, largest first.
func graph(title, description, unit string, ts ...target) *timeseries.PanelBuilder {
	return timeseries.NewPanelBuilder().
		Title(title).
		Description(description).
		Datasource(datasource).
		Height(8).
		Unit(unit).
		Min(0).
		Targets(targets(false, ts)).
		DrawStyle(common.GraphDrawStyleLine).
		LineWidth(1).
		FillOpacity(10).
		ShowPoints(common.VisibilityModeNever).
		SpanNulls(common.BoolOrFloat64{Bool: cog.ToPtr(false)}).
		Legend(common.NewVizLegendOptionsBuilder().
			DisplayMode(common.LegendDisplayModeTable).
			Placement(common.LegendPlacementBottom).
			ShowLegend(true).
			Calcs([]string{"mean", "max", "lastNotNull"})).
		Tooltip(common.NewVizTooltipOptionsBuilder().
			Mode(common.TooltipDisplayModeMulti).
			Sort(common.SortOrderDescending))
}

// shareLeft is an 8×8 horizontal bar gauge of a 0–1 share read now: red under 10 %, orange
// under 25 %, green above.
func shareLeft(title, description string, t target) *bargauge.PanelBuilder {
	return bargauge.NewPanelBuilder().
		Title(title).
		Description(description).
		Datasource(datasource).
		Height(8).
		Span(8).
		Unit(units.PercentUnit).
		Min(0).
		Max(1).
		Thresholds(thresholds(red, step{0.1, orange}, step{0.25, green})).
		ColorScheme(colorByThresholds()).
		Targets(targets(true, []target{t})).
		ReduceOptions(lastValue()).
		DisplayMode(common.BarGaugeDisplayModeGradient).
		Orientation(common.VizOrientationHorizontal).
		ShowUnfilled(true)
}
