package plan

import (
	"strings"
	"testing"

	"github.com/vmrestore/vmrestore/internal/apiv1"
)

// A dry run warns of names that are already a VM's or another item's, and only of those.
func TestWarnNameCollisions(t *testing.T) {
	rep := &apiv1.DryRunReport{Items: []apiv1.DryRunItem{
		{Index: 0, Name: "db01-dr"},
		{Index: 1, Name: "web01-dr"},
		{Index: 2, Name: "app-dr"},
		{Index: 3, Name: "app-dr"},
	}}
	WarnNameCollisions(rep, map[string][]string{"web01-dr": {"f50a58ead39c400f90f572572821b8b9"}, "other": {"x"}})
	want := map[int][]string{
		1: {`a VM named "web01-dr" already exists on the recovery site (uuid f50a58ead39c400f90f572572821b8b9)`},
		2: {`item(s) 3 of this plan are named "app-dr" too`},
		3: {`item(s) 2 of this plan are named "app-dr" too`},
	}
	for _, it := range rep.Items {
		if len(it.Warnings) != len(want[it.Index]) {
			t.Fatalf("item %d: warnings %q, want %d", it.Index, it.Warnings, len(want[it.Index]))
		}
		for i, w := range want[it.Index] {
			if !strings.Contains(it.Warnings[i], w) {
				t.Errorf("item %d: warning %q lacks %q", it.Index, it.Warnings[i], w)
			}
		}
	}
	if rep.Warnings != 3 {
		t.Errorf("warnings %d, want 3 items", rep.Warnings)
	}
}
