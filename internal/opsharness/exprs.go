package opsharness

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"

	"go.yaml.in/yaml/v3"
)

// Expr is one PromQL expression and where it was found.
type Expr struct {
	Where string // file and panel title, or rule group and name
	Query string
	// Alert is the alert name when the expression is an alerting rule's.
	Alert string
}

// DashboardExprs returns the PromQL of every query target of every panel (rows included) of
// the Grafana dashboards in dir (*.json), in file and panel order.
func DashboardExprs(dir string) ([]Expr, error) {
	files, err := filepath.Glob(filepath.Join(dir, "*.json"))
	if err != nil {
		return nil, err
	}
	if len(files) == 0 {
		return nil, fmt.Errorf("no dashboard in %s", dir)
	}
	sort.Strings(files)
	var out []Expr
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			return nil, err
		}
		var d struct {
			Panels []panel `json:"panels"`
		}
		if err := json.Unmarshal(b, &d); err != nil {
			return nil, fmt.Errorf("%s: %w", f, err)
		}
		var walk func([]panel)
		walk = func(ps []panel) {
			for _, p := range ps {
				for _, t := range p.Targets {
					if t.Expr != "" {
						out = append(out, Expr{Where: fmt.Sprintf("%s: %q %s", filepath.Base(f), p.Title, t.RefID), Query: t.Expr})
					}
				}
				walk(p.Panels)
			}
		}
		walk(d.Panels)
	}
	return out, nil
}

// panel is the part of a Grafana panel the harness reads.
type panel struct {
	ID      int      `json:"id"`
	Type    string   `json:"type"`
	Title   string   `json:"title"`
	Panels  []panel  `json:"panels"`
	Targets []target `json:"targets"`
	GridPos *struct {
		H, W, X, Y int
	} `json:"gridPos"`
	Datasource *struct {
		Type string `json:"type"`
		UID  string `json:"uid"`
	} `json:"datasource"`
}

type target struct {
	RefID string `json:"refId"`
	Expr  string `json:"expr"`
}

// RuleFile is a Prometheus rule file.
type RuleFile struct {
	Groups []struct {
		Name  string `yaml:"name"`
		Rules []struct {
			Alert  string            `yaml:"alert"`
			Record string            `yaml:"record"`
			Expr   string            `yaml:"expr"`
			For    string            `yaml:"for"`
			Labels map[string]string `yaml:"labels"`
		} `yaml:"rules"`
	} `yaml:"groups"`
}

// RuleExprs returns the expression of every rule of the rule files matching pattern.
func RuleExprs(pattern string) ([]Expr, error) {
	files, err := filepath.Glob(pattern)
	if err != nil {
		return nil, err
	}
	if len(files) == 0 {
		return nil, fmt.Errorf("no rule file matches %s", pattern)
	}
	sort.Strings(files)
	var out []Expr
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			return nil, err
		}
		var rf RuleFile
		if err := yaml.Unmarshal(b, &rf); err != nil {
			return nil, fmt.Errorf("%s: %w", f, err)
		}
		for _, g := range rf.Groups {
			for _, r := range g.Rules {
				name := r.Alert + r.Record
				out = append(out, Expr{Where: fmt.Sprintf("%s: %s/%s", filepath.Base(f), g.Name, name), Query: strings.TrimSpace(r.Expr), Alert: r.Alert})
			}
		}
	}
	return out, nil
}

// Grafana's interval macros, and what they stand for when the harness runs an expression
// (Prometheus scrapes every second in the harness, so a minute holds plenty of samples).
var macros = map[string]string{
	"$__rate_interval": "1m",
	"$__interval":      "15s",
	"$__range":         "5m",
}

var variable = regexp.MustCompile(`\$\{?[A-Za-z_][A-Za-z0-9_]*\}?`)

// Substitute replaces Grafana's interval macros by durations and refuses any other variable:
// the dashboards' queries use none, so that each of them can be run as it is.
func Substitute(q string) (string, error) {
	for k, v := range macros {
		q = strings.ReplaceAll(q, k, v)
	}
	if v := variable.FindString(q); v != "" {
		return "", fmt.Errorf("unknown Grafana variable %s in %q", v, q)
	}
	return q, nil
}

var (
	quoted     = regexp.MustCompile("\"(?:[^\"\\\\]|\\\\.)*\"|'(?:[^'\\\\]|\\\\.)*'|`[^`]*`")
	matchers   = regexp.MustCompile(`\{[^{}]*\}`)
	ranges     = regexp.MustCompile(`\[[^\[\]]*\]`)
	grouping   = regexp.MustCompile(`\b(by|without|on|ignoring|group_left|group_right)\s*\([^()]*\)`)
	identifier = regexp.MustCompile(`[A-Za-z_:][A-Za-z0-9_:]*(\s*\()?`)
)

// keywords of PromQL that look like identifiers.
var keywords = map[string]bool{
	"and": true, "or": true, "unless": true, "by": true, "without": true, "on": true, "ignoring": true,
	"group_left": true, "group_right": true, "bool": true, "offset": true, "inf": true, "nan": true, "Inf": true, "NaN": true,
}

// MetricNames returns the metric names an expression selects, sorted and without repeats.
// It reads PromQL lexically: strings, label matchers, range selectors and grouping clauses
// are dropped, then every identifier that is neither a keyword nor called as a function is
// a metric name.
func MetricNames(q string) []string {
	q = quoted.ReplaceAllString(q, `""`)
	for {
		r := matchers.ReplaceAllString(q, " ")
		if r == q {
			break
		}
		q = r
	}
	q = ranges.ReplaceAllString(q, " ")
	q = grouping.ReplaceAllString(q, " ")
	seen := map[string]bool{}
	var out []string
	for _, loc := range identifier.FindAllStringIndex(q, -1) {
		m := q[loc[0]:loc[1]]
		// An identifier glued to a digit or a dot is part of a number (1e3, 0x1f).
		if loc[0] > 0 && strings.ContainsRune("0123456789.", rune(q[loc[0]-1])) {
			continue
		}
		if strings.HasSuffix(m, "(") || keywords[m] || seen[m] {
			continue
		}
		seen[m] = true
		out = append(out, m)
	}
	sort.Strings(out)
	return out
}
