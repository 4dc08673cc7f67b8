package zstack

import (
	"encoding/json"
	"fmt"
	"time"
)

// dateLayout is Java's US default date-time format, which ZStack writes: "Nov 14, 2017 10:20:57 PM".
const dateLayout = "Jan 2, 2006 3:04:05 PM"

// inputLayouts are the forms accepted on input: ZStack's (with or without milliseconds) and ISO 8601.
var inputLayouts = []string{dateLayout, "Jan 2, 2006 3:04:05.000 PM", time.RFC3339Nano, "2006-01-02T15:04:05", "2006-01-02 15:04:05"}

// Date is a timestamp written the way ZStack writes dates (server local time). The zero
// Date is written as null.
type Date struct{ time.Time }

// Now returns the current time truncated to the second, as ZStack dates carry no fraction.
func Now() Date { return Date{time.Now().Truncate(time.Second)} }

// String formats the date in ZStack's form, in local time.
func (d Date) String() string { return d.Local().Format(dateLayout) }

// MarshalJSON writes ZStack's form, or null for the zero date.
func (d Date) MarshalJSON() ([]byte, error) {
	if d.IsZero() {
		return []byte("null"), nil
	}
	return json.Marshal(d.String())
}

// UnmarshalJSON reads ZStack's form, ISO 8601, or null.
func (d *Date) UnmarshalJSON(b []byte) error {
	if string(b) == "null" {
		*d = Date{}
		return nil
	}
	var s string
	if err := json.Unmarshal(b, &s); err != nil {
		return fmt.Errorf("date must be a string: %w", err)
	}
	t, err := ParseDate(s)
	if err != nil {
		return err
	}
	*d = t
	return nil
}

// ParseDate reads a date in ZStack's form or ISO 8601 (local time when no zone is given).
func ParseDate(s string) (Date, error) {
	for _, l := range inputLayouts {
		if t, err := time.ParseInLocation(l, s, time.Local); err == nil {
			return Date{t}, nil
		}
	}
	return Date{}, fmt.Errorf("date %q is neither like %q nor ISO 8601", s, dateLayout)
}
