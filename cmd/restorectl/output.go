package main

import (
	"encoding/json"
	"fmt"
	"io"
	"math"
	"sort"
	"strings"
	"text/tabwriter"
	"time"

	"go.yaml.in/yaml/v3"
)

// print writes v as JSON or YAML (-o json|yaml), or calls table with a tab writer.
func (a *cli) print(v any, table func(w io.Writer) error) error {
	switch a.output {
	case "json":
		b, err := json.MarshalIndent(v, "", "  ")
		if err != nil {
			return err
		}
		_, err = fmt.Fprintf(a.stdout, "%s\n", b)
		return err
	case "yaml":
		b, err := toYAML(v)
		if err != nil {
			return err
		}
		_, err = a.stdout.Write(b)
		return err
	}
	if table == nil {
		b, err := toYAML(v)
		if err != nil {
			return err
		}
		_, err = a.stdout.Write(b)
		return err
	}
	tw := tabwriter.NewWriter(a.stdout, 0, 4, 2, ' ', 0)
	if err := table(tw); err != nil {
		return err
	}
	return tw.Flush()
}

// toYAML writes v as YAML with the field names and order of its JSON form.
func toYAML(v any) ([]byte, error) {
	b, err := json.Marshal(v)
	if err != nil {
		return nil, err
	}
	var n yaml.Node
	if err := yaml.Unmarshal(b, &n); err != nil {
		return nil, err
	}
	var plain func(*yaml.Node)
	plain = func(n *yaml.Node) {
		n.Style = 0
		if n.Kind == yaml.ScalarNode && n.Tag == "!!str" && yaml11Bool[strings.ToLower(n.Value)] {
			n.Style = yaml.DoubleQuotedStyle // "yes" stays a string for YAML 1.1 readers too
		}
		for _, c := range n.Content {
			plain(c)
		}
	}
	plain(&n)
	return yaml.Marshal(&n)
}

// yaml11Bool are the plain scalars YAML 1.1 reads as booleans.
var yaml11Bool = map[string]bool{"y": true, "yes": true, "n": true, "no": true, "on": true, "off": true}

// bytesText writes a byte count in binary units: 512 B, 1.5 KiB, 20.0 GiB.
func bytesText(n int64) string {
	const unit = 1024
	if n < unit && n > -unit {
		return fmt.Sprintf("%d B", n)
	}
	f := float64(n)
	exp := 0
	for math.Abs(f) >= unit && exp < 6 {
		f /= unit
		exp++
	}
	return fmt.Sprintf("%.1f %ciB", f, "KMGTPE"[exp-1])
}

// rateText is a throughput.
func rateText(bps float64) string {
	if bps <= 0 {
		return "-"
	}
	return bytesText(int64(bps)) + "/s"
}

// durationText is a rounded duration: 45s, 3m20s, 2h05m.
func durationText(d time.Duration) string {
	switch {
	case d < 0:
		return "-"
	case d < time.Minute:
		return fmt.Sprintf("%ds", int(d.Round(time.Second).Seconds()))
	case d < time.Hour:
		d = d.Round(time.Second)
		return fmt.Sprintf("%dm%02ds", int(d.Minutes()), int(d.Seconds())%60)
	default:
		d = d.Round(time.Minute)
		return fmt.Sprintf("%dh%02dm", int(d.Hours()), int(d.Minutes())%60)
	}
}

func etaText(sec *float64) string {
	if sec == nil || *sec < 0 || math.IsInf(*sec, 0) || math.IsNaN(*sec) {
		return "-"
	}
	return durationText(time.Duration(*sec * float64(time.Second)))
}

func timeText(t *time.Time) string {
	if t == nil || t.IsZero() {
		return "-"
	}
	return t.Local().Format(time.DateTime)
}

// countsText writes item counts in a fixed order, leaving out zeros: "2 succeeded, 1 failed".
func countsText(counts map[string]int) string {
	order := []string{"succeeded", "failed", "cancelled", "running", "pending"}
	var parts []string
	seen := map[string]bool{}
	for _, s := range order {
		seen[s] = true
		if counts[s] > 0 {
			parts = append(parts, fmt.Sprintf("%d %s", counts[s], s))
		}
	}
	var other []string
	for s, n := range counts {
		if !seen[s] && n > 0 {
			other = append(other, fmt.Sprintf("%d %s", n, s))
		}
	}
	sort.Strings(other)
	parts = append(parts, other...)
	if len(parts) == 0 {
		return "none"
	}
	return strings.Join(parts, ", ")
}

// ended is how many items have ended (succeeded, failed or cancelled).
func ended(counts map[string]int) int {
	return counts["succeeded"] + counts["failed"] + counts["cancelled"]
}

func dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

// oneLine keeps an error text on one line of a table.
func oneLine(s string) string {
	return strings.Join(strings.Fields(s), " ")
}
