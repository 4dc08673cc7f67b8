// Package query implements ZStack's query parameters for list APIs:
//
//	q=<field><op><value>   (repeatable; ops = != > < >= <= ?= (in) !?= (not in) ~= (like, % wildcard) !~= (not like),
//	                        and the suffixes "is null" / "not null")
//	limit, start, count=true, replyWithCount=true, sort=+field|-field, fields=a,b
//
// Booleans are read as Java's Boolean.parseBoolean reads them (true in any case is true,
// anything else false), since ZStack's Python SDK sends count=True.
// Items are inventories encoded to JSON objects (decoded with UseNumber, see ToItems); a field may be a path into nested objects
// and lists (vmNics.ip), which matches when any element matches. Fields are checked against
// the inventory's declared JSON fields, so a typo is an error, not an empty answer.
package query

import (
	"encoding/json"
	"fmt"
	"math"
	"net/url"
	"reflect"
	"regexp"
	"sort"
	"strconv"
	"strings"
)

// DefaultLimit is ZStack's default page size; MaxLimit bounds what one call may ask.
const (
	DefaultLimit = 1000
	MaxLimit     = 100000
	maxConds     = 64
	maxValueLen  = 4096
)

// Operators in the order ZStack looks for them in a condition (longest forms first, so that
// "!=" is not read as "=").
var operators = []string{"!=", ">=", "<=", "!?=", "!~=", "~=", "?=", "=", ">", "<", " is null", " not null"}

// Condition is one q= filter.
type Condition struct {
	Field string
	Op    string
	Value string
}

// Query is a parsed set of query parameters.
type Query struct {
	Conditions     []Condition
	Limit          int
	Start          int
	Count          bool
	ReplyWithCount bool
	SortBy         string
	SortDesc       bool
	// Fields, when set, are the only fields of each item answered (ZStack's fields=).
	Fields []string
}

// Error is a malformed query; its text is meant for the client.
type Error struct{ msg string }

func (e *Error) Error() string { return e.msg }

func errorf(format string, args ...any) error { return &Error{fmt.Sprintf(format, args...)} }

// Parse reads query parameters. Fields are checked later, against the inventory type.
func Parse(v url.Values) (*Query, error) {
	q := &Query{Limit: DefaultLimit}
	conds := v["q"]
	if len(conds) > maxConds {
		return nil, errorf("Invalid query parameter. At most %d conditions are allowed in parameter[q]", maxConds)
	}
	for _, raw := range conds {
		c, err := ParseCondition(raw)
		if err != nil {
			return nil, err
		}
		q.Conditions = append(q.Conditions, c)
	}
	var err error
	if q.Limit, err = intParam(v, "limit", DefaultLimit); err != nil {
		return nil, err
	}
	if q.Limit > MaxLimit {
		return nil, errorf("Invalid query parameter. 'limit' must be at most %d", MaxLimit)
	}
	if q.Start, err = intParam(v, "start", 0); err != nil {
		return nil, err
	}
	q.Count = strings.EqualFold(strings.TrimSpace(v.Get("count")), "true")
	q.ReplyWithCount = strings.EqualFold(strings.TrimSpace(v.Get("replyWithCount")), "true")
	if fs, ok := v["fields"]; ok {
		for _, f := range strings.Split(fs[0], ",") {
			if f = strings.TrimSpace(f); f != "" {
				q.Fields = append(q.Fields, f)
			}
		}
		if len(q.Fields) == 0 {
			return nil, errorf("Invalid query parameter. 'fields' contains zero field")
		}
	}
	if s := strings.TrimSpace(v.Get("sort")); s != "" {
		switch s[0] {
		case '-':
			q.SortBy, q.SortDesc = strings.TrimSpace(s[1:]), true
		case '+':
			q.SortBy = strings.TrimSpace(s[1:])
		default:
			q.SortBy = s
		}
	}
	return q, nil
}

func intParam(v url.Values, name string, def int) (int, error) {
	s := v.Get(name)
	if s == "" {
		return def, nil
	}
	n, err := strconv.Atoi(s)
	if err != nil || n < 0 {
		return 0, errorf("Invalid query parameter. '%s' must be a non-negative integer", name)
	}
	return n, nil
}

// ParseCondition splits one q= value on the first operator it contains, in ZStack's order.
func ParseCondition(raw string) (Condition, error) {
	if len(raw) > maxValueLen {
		return Condition{}, errorf("Invalid query parameter. A condition in parameter[q] is longer than %d characters", maxValueLen)
	}
	for _, op := range operators {
		i := strings.Index(raw, op)
		if i < 0 {
			continue
		}
		c := Condition{Field: strings.TrimSpace(raw[:i]), Op: strings.TrimSpace(op), Value: raw[i+len(op):]}
		if c.Field == "" {
			return Condition{}, errorf("Invalid query parameter. The '%s' in parameter[q] is not a key-value pair split by %s", raw, op)
		}
		if (c.Op == "is null" || c.Op == "not null") && strings.TrimSpace(c.Value) != "" {
			return Condition{}, errorf("Invalid query parameter. The '%s' in parameter[q] has text after '%s'", raw, c.Op)
		}
		return c, nil
	}
	return Condition{}, errorf("Invalid query parameter. The '%s' in the parameter[q] doesn't contain any query operator. Valid query operators are %v", raw, trimmedOps())
}

func trimmedOps() []string {
	out := make([]string, len(operators))
	for i, o := range operators {
		out[i] = strings.TrimSpace(o)
	}
	return out
}

// Fields lists the JSON field paths of an inventory type (nested structs and lists of
// structs included, joined with '.').
func Fields(t reflect.Type) map[string]bool {
	out := map[string]bool{}
	collectFields(t, "", out, 0)
	return out
}

func collectFields(t reflect.Type, prefix string, out map[string]bool, depth int) {
	for t.Kind() == reflect.Pointer || t.Kind() == reflect.Slice {
		t = t.Elem()
	}
	if t.Kind() != reflect.Struct || depth > 4 {
		return
	}
	for i := 0; i < t.NumField(); i++ {
		f := t.Field(i)
		if !f.IsExported() {
			continue
		}
		name := strings.Split(f.Tag.Get("json"), ",")[0]
		if name == "-" {
			continue
		}
		if f.Anonymous && name == "" {
			collectFields(f.Type, prefix, out, depth)
			continue
		}
		if name == "" {
			name = f.Name
		}
		out[prefix+name] = true
		ft := f.Type
		for ft.Kind() == reflect.Pointer || ft.Kind() == reflect.Slice {
			ft = ft.Elem()
		}
		if ft.Kind() == reflect.Struct && ft.PkgPath() != "time" && ft.Name() != "Date" {
			collectFields(ft, prefix+name+".", out, depth+1)
		}
	}
}

// Result is a query's answer: the page of items and, when asked, the total that matched.
type Result struct {
	Items []map[string]any
	Total int
}

// Apply filters, sorts and pages items. known lists the fields the inventory has (see Fields);
// an unknown field in a condition or sort is an error, as in ZStack.
func (q *Query) Apply(items []map[string]any, known map[string]bool, inventory string) (*Result, error) {
	matchers := make([]func(map[string]any) bool, 0, len(q.Conditions))
	for _, c := range q.Conditions {
		if !known[c.Field] {
			return nil, errorf("inventory class[%s] not having field[%s]", inventory, c.Field)
		}
		m, err := matcher(c)
		if err != nil {
			return nil, err
		}
		matchers = append(matchers, m)
	}
	if q.SortBy != "" && !known[q.SortBy] {
		return nil, errorf("inventory class[%s] not having field[%s] to sort by", inventory, q.SortBy)
	}
	for _, f := range q.Fields {
		if !known[f] || strings.Contains(f, ".") {
			return nil, errorf("inventory class[%s] not having field[%s]; fields names top-level fields", inventory, f)
		}
	}
	var out []map[string]any
	for _, it := range items {
		ok := true
		for _, m := range matchers {
			if !m(it) {
				ok = false
				break
			}
		}
		if ok {
			out = append(out, it)
		}
	}
	if q.SortBy != "" {
		sort.SliceStable(out, func(a, b int) bool {
			va, vb := first(lookup(out[a], q.SortBy)), first(lookup(out[b], q.SortBy))
			c := compare(va, vb)
			if q.SortDesc {
				return c > 0
			}
			return c < 0
		})
	}
	total := len(out)
	start := min(q.Start, len(out))
	end := min(start+q.Limit, len(out))
	page := out[start:end]
	if len(q.Fields) > 0 {
		projected := make([]map[string]any, len(page))
		for i, it := range page {
			m := make(map[string]any, len(q.Fields))
			for _, f := range q.Fields {
				if v, ok := it[f]; ok {
					m[f] = v
				}
			}
			projected[i] = m
		}
		page = projected
	}
	return &Result{Items: page, Total: total}, nil
}

// lookup returns the values at a field path (several when the path crosses a list).
func lookup(item any, path string) []any {
	vals := []any{item}
	for _, part := range strings.Split(path, ".") {
		var next []any
		for _, v := range vals {
			switch x := v.(type) {
			case map[string]any:
				if f, ok := x[part]; ok {
					next = append(next, flatten(f)...)
				}
			}
		}
		vals = next
	}
	return vals
}

func flatten(v any) []any {
	if l, ok := v.([]any); ok {
		return l
	}
	return []any{v}
}

func first(v []any) any {
	if len(v) == 0 {
		return nil
	}
	return v[0]
}

func matcher(c Condition) (func(map[string]any) bool, error) {
	anyOf := func(pred func(v any) bool) func(map[string]any) bool {
		return func(it map[string]any) bool {
			for _, v := range lookup(it, c.Field) {
				if pred(v) {
					return true
				}
			}
			return false
		}
	}
	switch c.Op {
	case "is null":
		return func(it map[string]any) bool {
			vals := lookup(it, c.Field)
			return len(vals) == 0 || vals[0] == nil
		}, nil
	case "not null":
		return func(it map[string]any) bool {
			vals := lookup(it, c.Field)
			return len(vals) > 0 && vals[0] != nil
		}, nil
	case "=":
		return anyOf(func(v any) bool { return compare(v, c.Value) == 0 }), nil
	case "!=":
		return func(it map[string]any) bool {
			for _, v := range lookup(it, c.Field) {
				if compare(v, c.Value) == 0 {
					return false
				}
			}
			return true
		}, nil
	case ">":
		return anyOf(func(v any) bool { return v != nil && compare(v, c.Value) > 0 }), nil
	case "<":
		return anyOf(func(v any) bool { return v != nil && compare(v, c.Value) < 0 }), nil
	case ">=":
		return anyOf(func(v any) bool { return v != nil && compare(v, c.Value) >= 0 }), nil
	case "<=":
		return anyOf(func(v any) bool { return v != nil && compare(v, c.Value) <= 0 }), nil
	case "?=", "!?=":
		set := strings.Split(c.Value, ",")
		in := func(v any) bool {
			for _, s := range set {
				if compare(v, s) == 0 {
					return true
				}
			}
			return false
		}
		if c.Op == "?=" {
			return anyOf(in), nil
		}
		return func(it map[string]any) bool {
			for _, v := range lookup(it, c.Field) {
				if in(v) {
					return false
				}
			}
			return true
		}, nil
	case "~=", "!~=":
		re, err := likePattern(c.Value)
		if err != nil {
			return nil, err
		}
		like := func(v any) bool { return v != nil && re.MatchString(text(v)) }
		if c.Op == "~=" {
			return anyOf(like), nil
		}
		return func(it map[string]any) bool {
			for _, v := range lookup(it, c.Field) {
				if like(v) {
					return false
				}
			}
			return true
		}, nil
	}
	return nil, errorf("Invalid query parameter. Unknown operator %q", c.Op)
}

// likePattern turns a SQL LIKE pattern (% any run, _ one character) into a regexp.
func likePattern(p string) (*regexp.Regexp, error) {
	var b strings.Builder
	b.WriteString("(?s)^")
	for _, r := range p {
		switch r {
		case '%':
			b.WriteString(".*")
		case '_':
			b.WriteString(".")
		default:
			b.WriteString(regexp.QuoteMeta(string(r)))
		}
	}
	b.WriteString("$")
	re, err := regexp.Compile(b.String())
	if err != nil {
		return nil, errorf("Invalid query parameter. Bad like pattern %q", p)
	}
	return re, nil
}

func text(v any) string {
	switch x := v.(type) {
	case string:
		return x
	case json.Number:
		return string(x)
	case bool:
		return strconv.FormatBool(x)
	case nil:
		return ""
	}
	return fmt.Sprint(v)
}

// compare orders a JSON value (decoded with UseNumber) against another JSON value or a query
// string: numerically when the JSON value is a number, as text otherwise. nil sorts first.
func compare(v any, w any) int {
	if v == nil || w == nil {
		switch {
		case v == nil && w == nil:
			return 0
		case v == nil:
			return -1
		}
		return 1
	}
	if nv, ok := v.(json.Number); ok {
		if c, ok := compareNumbers(string(nv), text(w)); ok {
			return c
		}
	}
	return strings.Compare(text(v), text(w))
}

// compareNumbers compares exactly as integers when both are, else as floats.
func compareNumbers(a, b string) (int, bool) {
	ia, erra := strconv.ParseInt(a, 10, 64)
	ib, errb := strconv.ParseInt(strings.TrimSpace(b), 10, 64)
	if erra == nil && errb == nil {
		return cmpOrdered(ia, ib), true
	}
	fa, erra := strconv.ParseFloat(a, 64)
	fb, errb := strconv.ParseFloat(strings.TrimSpace(b), 64)
	if erra != nil || errb != nil || math.IsNaN(fa) || math.IsNaN(fb) {
		return 0, false
	}
	return cmpOrdered(fa, fb), true
}

func cmpOrdered[T int64 | float64](a, b T) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

// ToItems encodes inventories to JSON objects, keeping numbers exact (json.Number).
func ToItems[T any](invs []T) ([]map[string]any, error) {
	b, err := json.Marshal(invs)
	if err != nil {
		return nil, err
	}
	dec := json.NewDecoder(strings.NewReader(string(b)))
	dec.UseNumber()
	var out []map[string]any
	if err := dec.Decode(&out); err != nil {
		return nil, err
	}
	return out, nil
}
