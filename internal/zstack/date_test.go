package zstack_test

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/vmrestore/vmrestore/internal/zstack"
)

// inZone runs the test with time.Local set to a fixed zone, restoring it afterwards. Tests
// using it must not run in parallel.
func inZone(tb testing.TB, offsetHours int) *time.Location {
	tb.Helper()
	old := time.Local
	loc := time.FixedZone("TEST", offsetHours*3600)
	time.Local = loc
	tb.Cleanup(func() { time.Local = old })
	return loc
}

func TestDateMarshalWritesZStackFormInLocalTime(t *testing.T) {
	loc := inZone(t, 8)
	tests := []struct {
		name string
		t    time.Time
		want string
	}{
		{"contract example", time.Date(2017, 11, 14, 22, 20, 57, 0, loc), `"Nov 14, 2017 10:20:57 PM"`},
		{"UTC is written in local time", time.Date(2017, 11, 14, 14, 20, 57, 0, time.UTC), `"Nov 14, 2017 10:20:57 PM"`},
		{"midnight", time.Date(2024, 1, 2, 0, 0, 0, 0, loc), `"Jan 2, 2024 12:00:00 AM"`},
		{"noon", time.Date(2024, 1, 2, 12, 0, 0, 0, loc), `"Jan 2, 2024 12:00:00 PM"`},
		{"morning, one-digit hour and day", time.Date(2024, 3, 5, 9, 7, 3, 0, loc), `"Mar 5, 2024 9:07:03 AM"`},
		{"fraction is dropped", time.Date(2024, 12, 31, 23, 59, 59, 999999999, loc), `"Dec 31, 2024 11:59:59 PM"`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			b, err := json.Marshal(zstack.Date{Time: tc.t})
			if err != nil {
				t.Fatal(err)
			}
			if string(b) != tc.want {
				t.Fatalf("Marshal = %s, want %s", b, tc.want)
			}
			if s := (zstack.Date{Time: tc.t}).String(); `"`+s+`"` != tc.want {
				t.Fatalf("String() = %q, want %s", s, tc.want)
			}
		})
	}
}

func TestDateMarshalZeroIsNull(t *testing.T) {
	b, err := json.Marshal(struct {
		D zstack.Date  `json:"d"`
		P *zstack.Date `json:"p"`
	}{})
	if err != nil {
		t.Fatal(err)
	}
	if string(b) != `{"d":null,"p":null}` {
		t.Fatalf("zero dates marshal to %s", b)
	}
}

func TestDateUnmarshalAcceptsBothForms(t *testing.T) {
	loc := inZone(t, 8)
	want := time.Date(2017, 11, 14, 22, 20, 57, 0, loc)
	tests := []struct {
		name string
		in   string
		want time.Time
	}{
		{"ZStack form", `"Nov 14, 2017 10:20:57 PM"`, want},
		{"ZStack form with milliseconds", `"Nov 14, 2017 10:20:57.123 PM"`, want.Add(123 * time.Millisecond)},
		{"ZStack form, AM", `"Jan 2, 2024 9:07:03 AM"`, time.Date(2024, 1, 2, 9, 7, 3, 0, loc)},
		{"ZStack form, two-digit day", `"Dec 25, 2023 12:00:00 AM"`, time.Date(2023, 12, 25, 0, 0, 0, 0, loc)},
		{"RFC 3339 UTC", `"2017-11-14T14:20:57Z"`, want},
		{"RFC 3339 with offset", `"2017-11-14T22:20:57+08:00"`, want},
		{"RFC 3339 other offset", `"2017-11-14T09:20:57-05:00"`, want},
		{"RFC 3339 nanoseconds", `"2017-11-14T14:20:57.5Z"`, want.Add(500 * time.Millisecond)},
		{"ISO without zone is local", `"2017-11-14T22:20:57"`, want},
		{"ISO with space is local", `"2017-11-14 22:20:57"`, want},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var d zstack.Date
			if err := json.Unmarshal([]byte(tc.in), &d); err != nil {
				t.Fatalf("Unmarshal(%s): %v", tc.in, err)
			}
			if !d.Equal(tc.want) {
				t.Fatalf("Unmarshal(%s) = %v, want %v", tc.in, d.Time, tc.want)
			}
		})
	}
}

func TestDateUnmarshalRejects(t *testing.T) {
	tests := []struct {
		in      string
		wantErr string
	}{
		{`1510698057000`, "date must be a string"},
		{`true`, "date must be a string"},
		{`{}`, "date must be a string"},
		{`""`, "is neither like"},
		{`"yesterday"`, `date "yesterday" is neither like "Jan 2, 2006 3:04:05 PM" nor ISO 8601`},
		{`"Nov 31, 2017 10:20:57 PM"`, "is neither like"},
		{`"Nov 14, 2017 22:20:57 PM"`, "is neither like"},
		{`"Nov 14, 2017, 10:20:57 PM"`, "is neither like"},
		{`"2017-11-14"`, "is neither like"},
		{`"2017-13-14T22:20:57Z"`, "is neither like"},
	}
	for _, tc := range tests {
		t.Run(tc.in, func(t *testing.T) {
			d := zstack.Date{Time: time.Date(2000, 1, 1, 0, 0, 0, 0, time.UTC)}
			err := json.Unmarshal([]byte(tc.in), &d)
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Fatalf("Unmarshal(%s) err = %v, want containing %q", tc.in, err, tc.wantErr)
			}
		})
	}
}

func TestDateUnmarshalNullClears(t *testing.T) {
	var v struct {
		D zstack.Date `json:"d"`
	}
	v.D = zstack.Now()
	if err := json.Unmarshal([]byte(`{"d":null}`), &v); err != nil {
		t.Fatal(err)
	}
	if !v.D.IsZero() {
		t.Fatalf("null left %v", v.D)
	}
}

func TestDateRoundTrip(t *testing.T) {
	for _, off := range []int{0, 8, -5} {
		inZone(t, off)
		for _, tm := range []time.Time{
			time.Date(2017, 11, 14, 22, 20, 57, 0, time.UTC),
			time.Date(1999, 12, 31, 23, 59, 59, 0, time.UTC),
			time.Date(2038, 1, 19, 3, 14, 8, 0, time.UTC),
			zstack.Now().Time,
		} {
			b, err := json.Marshal(zstack.Date{Time: tm})
			if err != nil {
				t.Fatal(err)
			}
			var back zstack.Date
			if err := json.Unmarshal(b, &back); err != nil {
				t.Fatalf("zone %+d: %s does not read back: %v", off, b, err)
			}
			if !back.Equal(tm) {
				t.Fatalf("zone %+d: %v -> %s -> %v", off, tm, b, back.Time)
			}
		}
	}
}

func TestNowHasNoFraction(t *testing.T) {
	n := zstack.Now()
	if n.Nanosecond() != 0 {
		t.Fatalf("Now() = %v carries a fraction", n.Time)
	}
	if d := time.Since(n.Time); d < 0 || d > 2*time.Second {
		t.Fatalf("Now() is %v away from the clock", d)
	}
}

func TestParseDate(t *testing.T) {
	d, err := zstack.ParseDate("Nov 14, 2017 10:20:57 PM")
	if err != nil || d.Year() != 2017 || d.Month() != time.November || d.Hour() != 22 {
		t.Fatalf("ParseDate = %v, %v", d.Time, err)
	}
	if _, err := zstack.ParseDate("14/11/2017"); err == nil {
		t.Fatal("ParseDate accepted a day-first date")
	}
}
