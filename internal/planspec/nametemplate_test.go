package planspec

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/vmrestore/vmrestore/internal/apiv1"
	"github.com/vmrestore/vmrestore/internal/backup"
	"github.com/vmrestore/vmrestore/internal/catalog"
	"github.com/vmrestore/vmrestore/internal/store"
)

// A name template allows what a name needs and refuses, at submission, anything that loops,
// branches, defines, calls other functions or reaches other fields, naming the construct.
func TestNameTemplateAllowsOnlyWhatANameNeeds(t *testing.T) {
	d := nameData{SourceName: "Web_01", SourceUUID: "u", GroupName: "web01-2026", GroupUUID: "g", Tier: 2, Index: 7}
	for text, want := range map[string]string{
		"{{.SourceName}}": "Web_01",
		"{{.SourceName | lower | replace \"_\" \"-\"}}-dr": "web-01-dr",
		"dr-{{.Tier}}-{{.Index}}-{{upper .GroupName}}":     "dr-2-7-WEB01-2026",
		"{{trimSuffix \"-2026\" .GroupName}}":              "web01",
		"{{.GroupName | trimPrefix \"web\" | truncate 3}}": "01-",
		"{{truncate 2 \"é€x\"}}":                           "é€",
		"{{/* a comment */}}{{(lower .SourceName)}}":       "web_01",
		"plain": "plain",
	} {
		tmpl, ec := parseNameTemplate(text)
		if ec != nil {
			t.Errorf("%q refused: %v", text, ec)
			continue
		}
		if got, err := tmpl.execute(d); err != nil || got != want {
			t.Errorf("%q gives %q, %v; want %q", text, got, err, want)
		}
	}
	for text, construct := range map[string]string{
		"{{range 20000}}{{range 100000}}{{end}}{{end}}x": "{{range}}",
		"{{range 20000000}}AAAAAAAAAA{{end}}":            "{{range}}",
		"{{if .Tier}}a{{end}}":                           "{{if}}",
		"{{with .SourceName}}{{.}}{{end}}":               "{{with}}",
		`{{define "x"}}a{{end}}{{template "x"}}`:         "{{define}}",
		`{{template "name"}}`:                            "{{template}}",
		`{{printf "%0999999999d" 1}}`:                    "the function printf",
		"{{$x := .SourceName}}{{$x}}":                    "variables",
		"{{.}}":                                          "{{.}}",
		"{{.Secret}}":                                    "the field .Secret",
		"{{.SourceName.Len}}":                            "the field .SourceName.Len",
		"{{len .SourceName}}":                            "the function len",
		"{{truncate 100000 .SourceName}}":                "the number 100000",
		strings.Repeat("a", MaxNameTemplateLength+1):     "characters long",
	} {
		_, ec := parseNameTemplate(text)
		if ec == nil || ec.Code != "SYS.1007" || !strings.Contains(ec.Details, construct) || !strings.Contains(ec.Details, "nameTemplate") {
			t.Errorf("%.40q: want SYS.1007 naming %s, got %v", text, construct, ec)
		}
	}
	// A name stops at 255 characters, however it is made.
	for _, text := range []string{strings.Repeat("x", 256), "{{.SourceName}}" + strings.Repeat("é", 250), strings.Repeat(`{{replace "_" "____________" .SourceName}}`, 20),
		"{{.SourceName" + strings.Repeat(` | replace "" "aaaaaaaaaaaaaaaa"`, 30) + "}}"} {
		tmpl, ec := parseNameTemplate(text)
		if ec != nil {
			t.Fatalf("%.40q refused at parse: %v", text, ec)
		}
		if _, err := tmpl.execute(d); !errors.Is(err, errNameTooLong) {
			t.Errorf("%.40q: want a refusal past 255 characters, got %v", text, err)
		}
	}
	tmpl, _ := parseNameTemplate(strings.Repeat("é", 255))
	if got, err := tmpl.execute(d); err != nil || len([]rune(got)) != 255 {
		t.Errorf("255 two-byte characters are a valid name: %v", err)
	}
}

// Plan validation stops when its context ends (the client went away).
func TestBuildStopsWhenTheClientGoesAway(t *testing.T) {
	groups := make([]store.IndexedGroup, 2000)
	for i := range groups {
		groups[i] = store.IndexedGroup{Group: backup.Group{GroupUUID: fmt.Sprintf("%032x", i+1), VM: backup.SourceVM{Name: fmt.Sprintf("vm-%d", i)}}}
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	start := time.Now()
	_, err := Build(ctx, &apiv1.PlanSpec{Name: "p", Selector: &apiv1.PlanSelector{}}, Input{Catalog: catalog.NewIndex(&catalog.Site{}, 1), Groups: groups, Admin: true})
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("want context.Canceled, got %v after %v", err, time.Since(start))
	}
}

// FuzzNameTemplate: whatever a client sends as a name template, parsing and running it
// neither panics nor runs away, and what it gives is a name of at most 255 characters.
func FuzzNameTemplate(f *testing.F) {
	for _, s := range []string{"{{.SourceName}}-dr", `{{.SourceName | lower | replace "_" "-"}}`, "{{range 9}}x{{end}}",
		`{{truncate 3 .GroupName}}`, "{{", "{{.}}", `{{printf "%d" 1}}`, "{{/* c */}}", `{{(upper .SourceName) | trimSuffix "X"}}`} {
		f.Add(s)
	}
	d := nameData{SourceName: "Web_01", SourceUUID: "u", GroupName: "web01-2026", GroupUUID: "g", Tier: 2, Index: 7}
	f.Fuzz(func(t *testing.T, text string) {
		tmpl, ec := parseNameTemplate(text)
		if ec != nil {
			if ec.Code != "SYS.1007" {
				t.Fatalf("refusal %v", ec)
			}
			return
		}
		name, err := tmpl.execute(d)
		if err == nil && len([]rune(name)) > 255 {
			t.Fatalf("%q gave a name of %d characters", text, len([]rune(name)))
		}
	})
}
