package query_test

import (
	"errors"
	"fmt"
	"net/url"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/vmrestore/vmrestore/internal/query"
	"github.com/vmrestore/vmrestore/internal/zstack"
)

func TestParseCondition(t *testing.T) {
	tests := []struct {
		raw              string
		field, op, value string
	}{
		{"name=web-01", "name", "=", "web-01"},
		{"name!=web-01", "name", "!=", "web-01"},
		{"cpuNum>4", "cpuNum", ">", "4"},
		{"cpuNum<4", "cpuNum", "<", "4"},
		{"cpuNum>=4", "cpuNum", ">=", "4"},
		{"cpuNum<=4", "cpuNum", "<=", "4"},
		{"name?=a,b", "name", "?=", "a,b"},
		{"name!?=a,b", "name", "!?=", "a,b"},
		{"name~=web%", "name", "~=", "web%"},
		{"name!~=web%", "name", "!~=", "web%"},
		{"hostUuid is null", "hostUuid", "is null", ""},
		{"hostUuid not null", "hostUuid", "not null", ""},
		{"hostUuid is null  ", "hostUuid", "is null", "  "},
		{"vmNics.ip=10.0.0.5", "vmNics.ip", "=", "10.0.0.5"},
		{"  name =web", "name", "=", "web"},
		{"name=", "name", "=", ""},
		{"name= web", "name", "=", " web"},
		{"name=a=b", "name", "=", "a=b"},
		{"name=x>y", "name", "=", "x>y"},
		{"name=x<y", "name", "=", "x<y"},
		{"name=x is null", "name", "=", "x is null"},
		{"description=not null", "description", "=", "not null"},
		{"name~=a=b", "name", "~=", "a=b"},
		{"name?=a=b", "name", "?=", "a=b"},
		// Operators are tried in ZStack's order, longest forms first: "!=" is not read as "=",
		// ">=" not as ">" or "=", "!?=" not as "?=", "!~=" not as "~=".
		{"a!=b", "a", "!=", "b"},
		{"a>=b", "a", ">=", "b"},
		{"a<=b", "a", "<=", "b"},
		{"a!?=b", "a", "!?=", "b"},
		{"a!~=b", "a", "!~=", "b"},
		// An operator earlier in that order wins even when it comes later in the text.
		{"name=x!=y", "name=x", "!=", "y"},
		{"name~=x>=y", "name~=x", ">=", "y"},
		{"name=名前", "name", "=", "名前"},
	}
	for _, tc := range tests {
		t.Run(tc.raw, func(t *testing.T) {
			c, err := query.ParseCondition(tc.raw)
			if err != nil {
				t.Fatalf("ParseCondition(%q): %v", tc.raw, err)
			}
			want := query.Condition{Field: tc.field, Op: tc.op, Value: tc.value}
			if c != want {
				t.Fatalf("ParseCondition(%q) = %+v, want %+v", tc.raw, c, want)
			}
		})
	}
}

func TestParseConditionRejects(t *testing.T) {
	tests := []struct {
		raw, want string
	}{
		{"", "doesn't contain any query operator"},
		{"name", "The 'name' in the parameter[q] doesn't contain any query operator. Valid query operators are [!= >= <= !?= !~= ~= ?= = > < is null not null]"},
		{"name~web", "doesn't contain any query operator"},
		{"hostUuid isnull", "doesn't contain any query operator"},
		{"hostUuid is  null", "doesn't contain any query operator"},
		{"=web", "The '=web' in parameter[q] is not a key-value pair split by ="},
		{"  !=web", "is not a key-value pair split by !="},
		{"is null", "doesn't contain any query operator"},
		{" is null", "is not a key-value pair split by  is null"},
		{"hostUuid is null x", "The 'hostUuid is null x' in parameter[q] has text after 'is null'"},
		{"hostUuid not nullable", "has text after 'not null'"},
		{"name=" + strings.Repeat("x", 4092), "A condition in parameter[q] is longer than 4096 characters"},
	}
	for _, tc := range tests {
		t.Run(tc.raw[:min(len(tc.raw), 40)], func(t *testing.T) {
			c, err := query.ParseCondition(tc.raw)
			if err == nil {
				t.Fatalf("ParseCondition(%q) = %+v, want an error", tc.raw, c)
			}
			var qe *query.Error
			if !errors.As(err, &qe) {
				t.Fatalf("error %v is %T, want *query.Error", err, err)
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %q does not contain %q", err, tc.want)
			}
		})
	}
	if _, err := query.ParseCondition("name=" + strings.Repeat("x", 4091)); err != nil {
		t.Fatalf("a condition of 4096 characters: %v", err)
	}
}

func TestParse(t *testing.T) {
	tests := []struct {
		raw  string // a raw query string, decoded as a server would
		want query.Query
	}{
		{"", query.Query{Limit: 1000}},
		{"q=name=web", query.Query{Limit: 1000, Conditions: []query.Condition{{"name", "=", "web"}}}},
		{"q=name%3Dweb&q=cpuNum%3E%3D2", query.Query{Limit: 1000, Conditions: []query.Condition{{"name", "=", "web"}, {"cpuNum", ">=", "2"}}}},
		{"q=hostUuid+is+null", query.Query{Limit: 1000, Conditions: []query.Condition{{"hostUuid", "is null", ""}}}},
		{"limit=10&start=20", query.Query{Limit: 10, Start: 20}},
		{"limit=0", query.Query{Limit: 0}},
		{"limit=100000", query.Query{Limit: 100000}},
		{"limit=%2B5", query.Query{Limit: 5}},
		{"count=true", query.Query{Limit: 1000, Count: true}},
		// Booleans as Java's Boolean.parseBoolean reads them: ZStack's Python SDK sends True.
		{"count=TRUE", query.Query{Limit: 1000, Count: true}},
		{"count=True&replyWithCount=True", query.Query{Limit: 1000, Count: true, ReplyWithCount: true}},
		{"count=1", query.Query{Limit: 1000}},
		{"count=yes", query.Query{Limit: 1000}},
		{"fields=uuid,name", query.Query{Limit: 1000, Fields: []string{"uuid", "name"}}},
		{"fields=+uuid+,+,name", query.Query{Limit: 1000, Fields: []string{"uuid", "name"}}},
		{"replyWithCount=true", query.Query{Limit: 1000, ReplyWithCount: true}},
		{"sort=%2Bname", query.Query{Limit: 1000, SortBy: "name"}},
		{"sort=+name", query.Query{Limit: 1000, SortBy: "name"}}, // '+' decodes to a space
		{"sort=-createDate", query.Query{Limit: 1000, SortBy: "createDate", SortDesc: true}},
		{"sort=name", query.Query{Limit: 1000, SortBy: "name"}},
		{"sort=-+name", query.Query{Limit: 1000, SortBy: "name", SortDesc: true}},
		{"sort=", query.Query{Limit: 1000}},
	}
	for _, tc := range tests {
		t.Run(tc.raw, func(t *testing.T) {
			v, err := url.ParseQuery(tc.raw)
			if err != nil {
				t.Fatal(err)
			}
			q, err := query.Parse(v)
			if err != nil {
				t.Fatalf("Parse(%q): %v", tc.raw, err)
			}
			if !reflect.DeepEqual(*q, tc.want) {
				t.Fatalf("Parse(%q) = %+v, want %+v", tc.raw, *q, tc.want)
			}
		})
	}
}

func TestParseRejects(t *testing.T) {
	many := url.Values{"q": make([]string, 65)}
	for i := range many["q"] {
		many["q"][i] = fmt.Sprintf("name=%d", i)
	}
	tests := []struct {
		name string
		v    url.Values
		want string
	}{
		{"65 conditions", many, "At most 64 conditions are allowed in parameter[q]"},
		{"bad condition", url.Values{"q": {"name=a", "oops"}}, "The 'oops' in the parameter[q] doesn't contain any query operator"},
		{"limit not a number", url.Values{"limit": {"ten"}}, "'limit' must be a non-negative integer"},
		{"limit negative", url.Values{"limit": {"-1"}}, "'limit' must be a non-negative integer"},
		{"limit too large", url.Values{"limit": {"100001"}}, "'limit' must be at most 100000"},
		{"limit overflows", url.Values{"limit": {"99999999999999999999"}}, "'limit' must be a non-negative integer"},
		{"limit fraction", url.Values{"limit": {"1.5"}}, "'limit' must be a non-negative integer"},
		{"start negative", url.Values{"start": {"-5"}}, "'start' must be a non-negative integer"},
		{"start not a number", url.Values{"start": {"x"}}, "'start' must be a non-negative integer"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			q, err := query.Parse(tc.v)
			if err == nil {
				t.Fatalf("Parse = %+v, want an error", q)
			}
			var qe *query.Error
			if !errors.As(err, &qe) || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %v (%T) does not contain %q", err, err, tc.want)
			}
		})
	}
	ok := url.Values{"q": many["q"][:64]}
	if q, err := query.Parse(ok); err != nil || len(q.Conditions) != 64 {
		t.Fatalf("64 conditions: %v", err)
	}
}

// Inventory-like types for Apply.
type usedIP struct {
	IP       string `json:"ip"`
	IPInLong int64  `json:"ipInLong"`
}

type nic struct {
	UUID     string   `json:"uuid"`
	IP       string   `json:"ip"`
	DeviceID int      `json:"deviceId"`
	UsedIPs  []usedIP `json:"usedIps"`
}

type vm struct {
	UUID        string      `json:"uuid"`
	Name        string      `json:"name"`
	Description string      `json:"description"`
	CPUNum      int         `json:"cpuNum"`
	MemorySize  int64       `json:"memorySize"`
	HostUUID    *string     `json:"hostUuid"`
	Ratio       float64     `json:"ratio"`
	HAEnabled   bool        `json:"haEnabled"`
	CreateDate  zstack.Date `json:"createDate"`
	VMNics      []nic       `json:"vmNics"`
	Labels      []string    `json:"labels"`
}

func sp(s string) *string { return &s }

func fixture(tb testing.TB) []map[string]any {
	tb.Helper()
	vms := []vm{
		{UUID: "11111111111111111111111111111111", Name: "web-01", Description: "front end", CPUNum: 9, MemorySize: 9007199254740992,
			HostUUID: sp("aaaa"), Ratio: 0.5, HAEnabled: true,
			VMNics: []nic{{UUID: "n1", IP: "10.0.0.1", DeviceID: 0, UsedIPs: []usedIP{{IP: "10.0.0.1", IPInLong: 167772161}}},
				{UUID: "n2", IP: "10.0.1.1", DeviceID: 1, UsedIPs: []usedIP{{IP: "10.0.1.1", IPInLong: 167772417}}}},
			Labels: []string{"prod", "web"}},
		{UUID: "11111111111111111111111111111112", Name: "web-02", Description: "line one\nline two", CPUNum: 10, MemorySize: 9007199254740993,
			HostUUID: sp("bbbb"), Ratio: 1.25,
			VMNics: []nic{{UUID: "n3", IP: "10.0.0.2", DeviceID: 0}}, Labels: []string{"web"}},
		{UUID: "22222222222222222222222222222222", Name: "db-01", Description: "a+b (primary)", CPUNum: 2, MemorySize: 9223372036854775807,
			HostUUID: nil, Ratio: 10, VMNics: []nic{}},
		{UUID: "9e0c3b6a1f2d4c5b8a9e7d6c5b4a3f21", Name: "DB_02", Description: "", CPUNum: 100, MemorySize: -1,
			HostUUID: sp("aaaa"), Ratio: -2.5},
	}
	items, err := query.ToItems(vms)
	if err != nil {
		tb.Fatal(err)
	}
	return items
}

var known = query.Fields(reflect.TypeOf(vm{}))

func names(items []map[string]any) string {
	var out []string
	for _, it := range items {
		out = append(out, it["name"].(string))
	}
	return strings.Join(out, ",")
}

func run(tb testing.TB, raw string) (*query.Result, error) {
	tb.Helper()
	v, err := url.ParseQuery(raw)
	if err != nil {
		tb.Fatal(err)
	}
	q, err := query.Parse(v)
	if err != nil {
		tb.Fatalf("Parse(%q): %v", raw, err)
	}
	return q.Apply(fixture(tb), known, "VmInstanceInventory")
}

func TestApply(t *testing.T) {
	e := url.QueryEscape
	tests := []struct {
		name  string
		query string
		want  string // names, in order
		total int    // -1: same as the number of names
	}{
		{"no condition", "", "web-01,web-02,db-01,DB_02", -1},
		{"equal", "q=" + e("name=web-01"), "web-01", -1},
		{"equal is case sensitive", "q=" + e("name=WEB-01"), "", -1},
		{"not equal", "q=" + e("name!=web-01"), "web-02,db-01,DB_02", -1},
		{"equal empty string", "q=" + e("description="), "DB_02", -1},
		{"numbers compare as numbers", "q=" + e("cpuNum>9"), "web-02,DB_02", -1},
		{"greater or equal", "q=" + e("cpuNum>=10"), "web-02,DB_02", -1},
		{"less", "q=" + e("cpuNum<10"), "web-01,db-01", -1},
		{"less or equal", "q=" + e("cpuNum<=9"), "web-01,db-01", -1},
		{"number equal with a decimal point", "q=" + e("cpuNum=9.0"), "web-01", -1},
		{"number against text never matches", "q=" + e("cpuNum=nine"), "", -1},
		{"negative numbers", "q=" + e("memorySize<0"), "DB_02", -1},
		{"floats", "q=" + e("ratio>0.75"), "web-02,db-01", -1},
		{"float below zero", "q=" + e("ratio<-1"), "DB_02", -1},
		{"int64 beyond float precision, equal", "q=" + e("memorySize=9007199254740993"), "web-02", -1},
		{"int64 beyond float precision, greater", "q=" + e("memorySize>9007199254740992"), "web-02,db-01", -1},
		{"max int64", "q=" + e("memorySize=9223372036854775807"), "db-01", -1},
		{"max int64, greater than", "q=" + e("memorySize>=9223372036854775806"), "db-01", -1},
		{"all-digit uuids compare as text", "q=" + e("uuid=11111111111111111111111111111112"), "web-02", -1},
		{"all-digit uuids, greater as text", "q=" + e("uuid>11111111111111111111111111111111"), "web-02,db-01,DB_02", -1},
		{"all-digit uuid, in", "q=" + e("uuid?=11111111111111111111111111111111,22222222222222222222222222222222"), "web-01,db-01", -1},
		{"text order, not numeric", "q=" + e("name>db-01"), "web-01,web-02", -1},
		{"bool", "q=" + e("haEnabled=true"), "web-01", -1},
		{"in", "q=" + e("name?=web-01,db-01,nobody"), "web-01,db-01", -1},
		{"in numbers", "q=" + e("cpuNum?=2,10"), "web-02,db-01", -1},
		{"not in", "q=" + e("name!?=web-01,db-01"), "web-02,DB_02", -1},
		{"in with one value", "q=" + e("name?=DB_02"), "DB_02", -1},
		{"like prefix", "q=" + e("name~=web%"), "web-01,web-02", -1},
		{"like suffix", "q=" + e("name~=%-01"), "web-01,db-01", -1},
		{"like single character", "q=" + e("name~=web-0_"), "web-01,web-02", -1},
		{"like underscore is a wildcard", "q=" + e("name~=DB_02"), "DB_02", -1},
		{"like is case sensitive", "q=" + e("name~=db%"), "db-01", -1},
		{"like escapes regexp characters", "q=" + e("description~=a+b (primary)"), "db-01", -1},
		{"like dot is literal", "q=" + e("name~=web.01"), "", -1},
		{"like without wildcard is equality", "q=" + e("name~=web"), "", -1},
		{"like on numbers", "q=" + e("cpuNum~=1%"), "web-02,DB_02", -1},
		{"not like", "q=" + e("name!~=web%"), "db-01,DB_02", -1},
		{"is null", "q=" + e("hostUuid is null"), "db-01", -1},
		{"not null", "q=" + e("hostUuid not null"), "web-01,web-02,DB_02", -1},
		{"nested list field, any element", "q=" + e("vmNics.ip=10.0.1.1"), "web-01", -1},
		{"nested list field, shared value", "q=" + e("vmNics.deviceId=0"), "web-01,web-02", -1},
		{"nested list field, not equal means none equal", "q=" + e("vmNics.ip!=10.0.0.1"), "web-02,db-01,DB_02", -1},
		{"nested list field, like", "q=" + e("vmNics.ip~=10.0.0.%"), "web-01,web-02", -1},
		{"nested list field, not in", "q=" + e("vmNics.ip!?=10.0.0.1,10.0.0.2"), "db-01,DB_02", -1},
		{"nested list field, not like", "q=" + e("vmNics.ip!~=10.0.1.%"), "web-02,db-01,DB_02", -1},
		{"two levels of lists", "q=" + e("vmNics.usedIps.ipInLong>167772161"), "web-01", -1},
		{"empty list is null", "q=" + e("vmNics is null"), "db-01,DB_02", -1},
		{"list of strings", "q=" + e("labels=prod"), "web-01", -1},
		{"conditions are ANDed", "q=" + e("name~=web%") + "&q=" + e("cpuNum>9"), "web-02", -1},
		{"sort ascending text", "sort=name", "DB_02,db-01,web-01,web-02", -1},
		{"sort descending numbers", "sort=-cpuNum", "DB_02,web-02,web-01,db-01", -1},
		{"sort ascending numbers", "sort=%2BcpuNum", "db-01,web-01,web-02,DB_02", -1},
		{"sort big ints exactly", "sort=-memorySize", "db-01,web-02,web-01,DB_02", -1},
		{"sort puts null first", "sort=hostUuid", "db-01,web-01,DB_02,web-02", -1},
		{"sort is stable", "sort=-hostUuid", "web-02,web-01,DB_02,db-01", -1},
		{"sort by a nested field uses the first value", "sort=-vmNics.ip&q=" + e("vmNics not null"), "web-02,web-01", -1},
		{"limit", "sort=name&limit=2", "DB_02,db-01", 4},
		{"start", "sort=name&start=1&limit=2", "db-01,web-01", 4},
		{"start at the end", "start=4", "", 4},
		{"start beyond the end", "start=1000", "", 4},
		{"limit zero", "limit=0", "", 4},
		{"page after filter", "q=" + e("name~=web%") + "&start=1", "web-02", 2},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			res, err := run(t, tc.query)
			if err != nil {
				t.Fatalf("Apply: %v", err)
			}
			if got := names(res.Items); got != tc.want {
				t.Fatalf("items %q, want %q", got, tc.want)
			}
			wantTotal := tc.total
			if wantTotal < 0 {
				wantTotal = len(res.Items)
			}
			if res.Total != wantTotal {
				t.Fatalf("total %d, want %d", res.Total, wantTotal)
			}
		})
	}
}

func TestApplyLikeMatchesAcrossNewlines(t *testing.T) {
	for _, q := range []string{"description~=%", "description~=line%", "description~=%two", "description~=line one_line two"} {
		res, err := run(t, "q="+url.QueryEscape(q)+"&q="+url.QueryEscape("name=web-02"))
		if err != nil {
			t.Fatal(err)
		}
		if names(res.Items) != "web-02" {
			t.Errorf("%s did not match the description %q", q, "line one\nline two")
		}
	}
}

func TestApplyUnknownField(t *testing.T) {
	tests := []struct {
		query, want string
	}{
		{"q=nmae%3Dweb", "inventory class[VmInstanceInventory] not having field[nmae]"},
		{"q=vmNics.mac%3Dx", "not having field[vmNics.mac]"},
		{"q=name%3Dx%21%3Dy", "not having field[name=x]"},
		{"sort=-size", "inventory class[VmInstanceInventory] not having field[size] to sort by"},
		{"fields=name,nmae", "inventory class[VmInstanceInventory] not having field[nmae]"},
		{"fields=vmNics.ip", "not having field[vmNics.ip]; fields names top-level fields"},
	}
	for _, tc := range tests {
		t.Run(tc.query, func(t *testing.T) {
			_, err := run(t, tc.query)
			var qe *query.Error
			if !errors.As(err, &qe) || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("Apply = %v, want *query.Error containing %q", err, tc.want)
			}
		})
	}
}

// fields= answers only the named fields of each item, after filtering and sorting on any.
func TestApplyFields(t *testing.T) {
	res, err := run(t, "fields=name,cpuNum&sort=-cpuNum&q="+url.QueryEscape("name~=web%"))
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Items) != 2 || res.Total != 2 {
		t.Fatalf("%d items, total %d", len(res.Items), res.Total)
	}
	for _, it := range res.Items {
		if len(it) != 2 || it["name"] == nil || it["cpuNum"] == nil {
			t.Fatalf("item %v, want only name and cpuNum", it)
		}
	}
	if names(res.Items) != "web-02,web-01" {
		t.Fatalf("order %s", names(res.Items))
	}
}

func TestApplyDoesNotReorderItsInput(t *testing.T) {
	items := fixture(t)
	before := names(items)
	q := &query.Query{Limit: 1000, SortBy: "name", SortDesc: true}
	if _, err := q.Apply(items, known, "VmInstanceInventory"); err != nil {
		t.Fatal(err)
	}
	if names(items) != before {
		t.Fatalf("Apply reordered its input: %s", names(items))
	}
}

type Embedded struct {
	Region string `json:"region"`
	Hidden string `json:"-"`
}

type node struct {
	Name     string  `json:"name"`
	Children []*node `json:"children"`
}

type inventory struct {
	Embedded
	UUID  string `json:"uuid,omitempty"`
	NoTag int
	//lint:ignore U1000 an unexported field, here for Fields to leave out
	private int
	Skip    string      `json:"-"`
	Created time.Time   `json:"createDate"`
	Updated zstack.Date `json:"lastOpDate"`
	Host    *struct {
		IP string `json:"ip"`
	} `json:"host"`
	Nics []nic             `json:"vmNics"`
	Meta map[string]string `json:"meta"`
	Tree node              `json:"tree"`
}

func TestFields(t *testing.T) {
	got := query.Fields(reflect.TypeOf(inventory{}))
	want := []string{"region", "uuid", "NoTag", "createDate", "lastOpDate", "host", "host.ip",
		"vmNics", "vmNics.uuid", "vmNics.ip", "vmNics.deviceId", "vmNics.usedIps", "vmNics.usedIps.ip", "vmNics.usedIps.ipInLong",
		"meta", "tree", "tree.name", "tree.children", "tree.children.name", "tree.children.children"}
	for _, f := range want {
		if !got[f] {
			t.Errorf("field %q missing", f)
		}
	}
	for _, f := range []string{"Embedded", "Hidden", "private", "Skip", "-", "createDate.wall", "lastOpDate.Time", "UUID"} {
		if got[f] {
			t.Errorf("field %q must not be listed", f)
		}
	}
	// Recursive types stop at a bounded depth.
	deep := "tree" + strings.Repeat(".children", 10)
	if got[deep] {
		t.Errorf("recursion not bounded: %q listed", deep)
	}
	// A pointer or slice type gives the fields of its element.
	if p := query.Fields(reflect.TypeOf([]*inventory{})); !reflect.DeepEqual(p, got) {
		t.Errorf("Fields([]*inventory) differs from Fields(inventory)")
	}
	if f := query.Fields(reflect.TypeOf(0)); len(f) != 0 {
		t.Errorf("Fields(int) = %v", f)
	}
}

func TestToItems(t *testing.T) {
	items, err := query.ToItems([]vm{{Name: "x", MemorySize: 9223372036854775807, VMNics: []nic{{IP: "10.0.0.1"}}}})
	if err != nil || len(items) != 1 {
		t.Fatalf("ToItems = %v, %v", items, err)
	}
	it := items[0]
	if fmt.Sprint(it["memorySize"]) != "9223372036854775807" {
		t.Fatalf("memorySize lost precision: %v (%T)", it["memorySize"], it["memorySize"])
	}
	if _, ok := it["hostUuid"]; !ok || it["hostUuid"] != nil {
		t.Fatalf("hostUuid = %v", it["hostUuid"])
	}
	nics, ok := it["vmNics"].([]any)
	if !ok || len(nics) != 1 || nics[0].(map[string]any)["ip"] != "10.0.0.1" {
		t.Fatalf("vmNics = %#v", it["vmNics"])
	}
	if items, err := query.ToItems[vm](nil); err != nil || items != nil {
		t.Fatalf("ToItems(nil) = %v, %v", items, err)
	}
	if _, err := query.ToItems([]chan int{make(chan int)}); err == nil {
		t.Fatal("ToItems of an unencodable value did not fail")
	}
	if _, err := query.ToItems([]int{1}); err == nil {
		t.Fatal("ToItems of non-objects did not fail")
	}
}
