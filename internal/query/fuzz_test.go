package query_test

import (
	"errors"
	"net/url"
	"slices"
	"strings"
	"testing"

	"github.com/vmrestore/vmrestore/internal/query"
)

var opOrder = []string{"!=", ">=", "<=", "!?=", "!~=", "~=", "?=", "=", ">", "<", " is null", " not null"}

func FuzzParseCondition(f *testing.F) {
	for _, s := range []string{"", "name=web", "a!=b", "a>=b", "a!?=x,y", "a!~=x%", "hostUuid is null", "hostUuid not null",
		"hostUuid is null x", "=x", "name=x!=y", "vmNics.ip~=10.0.0.%", "a<b", "cpuNum>9", strings.Repeat("a", 4097)} {
		f.Add(s)
	}
	items := fixture(f)
	f.Fuzz(func(t *testing.T, raw string) {
		c, err := query.ParseCondition(raw)
		if err != nil {
			var qe *query.Error
			if !errors.As(err, &qe) {
				t.Fatalf("error %v is %T, want *query.Error", err, err)
			}
			return
		}
		if len(raw) > 4096 {
			t.Fatalf("a condition of %d characters accepted", len(raw))
		}
		if c.Field == "" || c.Field != strings.TrimSpace(c.Field) {
			t.Fatalf("field %q", c.Field)
		}
		i := slices.IndexFunc(opOrder, func(op string) bool { return strings.TrimSpace(op) == c.Op })
		if i < 0 {
			t.Fatalf("unknown operator %q", c.Op)
		}
		// No operator earlier in ZStack's order occurs in the text.
		for _, earlier := range opOrder[:i] {
			if strings.Contains(raw, earlier) {
				t.Fatalf("%q parsed with %q although it contains %q", raw, c.Op, earlier)
			}
		}
		// The condition is the text split at the first occurrence of its operator.
		op := opOrder[i]
		at := strings.Index(raw, op)
		if strings.TrimSpace(raw[:at]) != c.Field || raw[at+len(op):] != c.Value {
			t.Fatalf("%q split as %+v", raw, c)
		}
		if (c.Op == "is null" || c.Op == "not null") && strings.TrimSpace(c.Value) != "" {
			t.Fatalf("%q: text after %s accepted", raw, c.Op)
		}
		// Any parsed condition can be applied to a known field without error or panic.
		q := &query.Query{Conditions: []query.Condition{c}, Limit: 1000}
		res, err := q.Apply(items, map[string]bool{c.Field: true}, "X")
		if err != nil {
			t.Fatalf("Apply(%+v): %v", c, err)
		}
		if res.Total > len(items) || len(res.Items) != res.Total {
			t.Fatalf("Apply returned %d of %d (total %d)", len(res.Items), len(items), res.Total)
		}
	})
}

func FuzzParse(f *testing.F) {
	for _, s := range []string{"", "q=name%3Dweb", "q=name=web&q=cpuNum>9", "limit=10&start=2", "limit=100001", "limit=-1",
		"count=true&replyWithCount=true", "sort=-cpuNum", "sort=+name", "sort=%2Bname", "q=hostUuid+is+null", "q=%zz", "sort=-"} {
		f.Add(s)
	}
	items := fixture(f)
	f.Fuzz(func(t *testing.T, raw string) {
		v, _ := url.ParseQuery(raw) // keeps what it could decode
		q, err := query.Parse(v)
		if err != nil {
			var qe *query.Error
			if !errors.As(err, &qe) {
				t.Fatalf("error %v is %T, want *query.Error", err, err)
			}
			return
		}
		if q.Limit < 0 || q.Limit > query.MaxLimit || q.Start < 0 {
			t.Fatalf("limit %d start %d", q.Limit, q.Start)
		}
		if v.Get("limit") == "" && q.Limit != query.DefaultLimit {
			t.Fatalf("default limit %d", q.Limit)
		}
		if len(q.Conditions) != len(v["q"]) {
			t.Fatalf("%d conditions from %d q values", len(q.Conditions), len(v["q"]))
		}
		if q.Count != (v.Get("count") == "true") || q.ReplyWithCount != (v.Get("replyWithCount") == "true") {
			t.Fatalf("count flags %v %v", q.Count, q.ReplyWithCount)
		}
		if q.SortBy != strings.TrimSpace(q.SortBy) || (q.SortDesc && !strings.HasPrefix(strings.TrimSpace(v.Get("sort")), "-")) {
			t.Fatalf("sort %q desc %v from %q", q.SortBy, q.SortDesc, v.Get("sort"))
		}
		res, err := q.Apply(items, known, "VmInstanceInventory")
		if err != nil {
			var qe *query.Error
			if !errors.As(err, &qe) || !strings.Contains(err.Error(), "not having field") {
				t.Fatalf("Apply: %v (%T)", err, err)
			}
			return
		}
		if len(res.Items) > q.Limit || res.Total > len(items) || len(res.Items) > res.Total {
			t.Fatalf("%d items, total %d, limit %d", len(res.Items), res.Total, q.Limit)
		}
		if q.Start >= res.Total && len(res.Items) != 0 {
			t.Fatalf("start %d beyond total %d gave %d items", q.Start, res.Total, len(res.Items))
		}
		for _, it := range res.Items {
			if !slices.ContainsFunc(items, func(x map[string]any) bool { return x["uuid"] == it["uuid"] }) {
				t.Fatalf("item %v not from the input", it["uuid"])
			}
		}
	})
}
