package catalog_test

import (
	"encoding/json"
	"math"
	"strings"
	"testing"

	"go.yaml.in/yaml/v3"

	"github.com/vmrestore/vmrestore/internal/catalog"
)

func TestParseBytes(t *testing.T) {
	tests := []struct {
		in      string
		want    catalog.Bytes
		wantErr string
	}{
		{"0", 0, ""},
		{"4096", 4096, ""},
		{"  4096  ", 4096, ""},
		{"1B", 1, ""},
		{"1b", 1, ""},
		{"1K", 1 << 10, ""},
		{"1KB", 1000, ""},
		{"1KiB", 1 << 10, ""},
		{"1kib", 1 << 10, ""},
		{"1M", 1 << 20, ""},
		{"1MB", 1000000, ""},
		{"1MiB", 1 << 20, ""},
		{"64G", 64 << 30, ""},
		{"64GiB", 64 << 30, ""},
		{"64 GiB", 64 << 30, ""},
		{"500GB", 500e9, ""},
		{"1.5 TiB", 3 << 39, ""},
		{"1.5TB", 1.5e12, ""},
		{"2T", 2 << 40, ""},
		{"1PiB", 1 << 50, ""},
		{"1PB", 1e15, ""},
		{"4096P", 4096 << 50, ""},
		{"0.5", 1, ""},   // rounded to the nearest byte
		{"0.4", 0, ""},   // rounded to the nearest byte
		{"1.", 1, ""},    // strconv accepts a trailing dot
		{".5K", 512, ""}, // and a leading one
		{"", 0, "expected a number with an optional unit"},
		{"   ", 0, "expected a number with an optional unit"},
		{"GiB", 0, "expected a number with an optional unit"},
		{"-1", 0, "expected a number with an optional unit"},
		{"-1GiB", 0, "expected a number with an optional unit"},
		{"+1", 0, "expected a number with an optional unit"},
		{".", 0, `size "."`},
		{"1..2", 0, `size "1..2"`},
		{"1.2.3G", 0, `size "1.2.3G"`},
		{"1e3", 0, `unknown unit "e3"`},
		{"0x10", 0, `unknown unit "x10"`},
		{"10 gigabytes", 0, `unknown unit "gigabytes"`},
		{"10EiB", 0, `unknown unit "EiB"`},
		{"1,000", 0, `unknown unit ",000"`},
		{"1 000", 0, `unknown unit "000"`},
		{"8192PiB", 0, "is too large"},
		{"9223372036854775807", 0, "is too large"},
		{"4700000000000000000", 0, "is too large"},
		{"4097PiB", 0, "is too large"},
		{"1" + strings.Repeat("0", 400), 0, `size "1000`},
	}
	for _, tc := range tests {
		name := tc.in
		if len(name) > 30 {
			name = name[:30]
		}
		t.Run(name, func(t *testing.T) {
			got, err := catalog.ParseBytes(tc.in)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("ParseBytes(%q) = %d, %v; want error containing %q", tc.in, got, err, tc.wantErr)
				}
				return
			}
			if err != nil || got != tc.want {
				t.Fatalf("ParseBytes(%q) = %d, %v; want %d", tc.in, got, err, tc.want)
			}
		})
	}
}

func TestParseBytesLargestAccepted(t *testing.T) {
	got, err := catalog.ParseBytes("4611686018427387000")
	if err != nil || got <= 0 || int64(got) > math.MaxInt64/2 {
		t.Fatalf("ParseBytes near MaxInt64/2 = %d, %v", got, err)
	}
}

type sized struct {
	Size catalog.Bytes `yaml:"size" json:"size"`
}

func TestBytesUnmarshalYAML(t *testing.T) {
	tests := []struct {
		in      string
		want    catalog.Bytes
		wantErr string
	}{
		{"size: 4096", 4096, ""},
		{"size: 64GiB", 64 << 30, ""},
		{`size: "1.5 TiB"`, 3 << 39, ""},
		{"size: '500GB'", 500e9, ""},
		{"size: 2.5", 3, ""},
		{"size:", 0, ""}, // null leaves the zero value
		{"size: ~", 0, ""},
		{"size: [1]", 0, "line 1: a size must be a number or a string like"},
		{"size: {a: 1}", 0, "a size must be a number or a string"},
		{"\n\nsize: lots", 0, "line 3: size \"lots\": expected a number"},
		{"size: -5", 0, "expected a number"},
		{"size: 5 XB", 0, `unknown unit "XB"`},
	}
	for _, tc := range tests {
		t.Run(tc.in, func(t *testing.T) {
			var v sized
			err := yaml.Unmarshal([]byte(tc.in), &v)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("yaml %q: %d, %v; want error containing %q", tc.in, v.Size, err, tc.wantErr)
				}
				return
			}
			if err != nil || v.Size != tc.want {
				t.Fatalf("yaml %q: %d, %v; want %d", tc.in, v.Size, err, tc.want)
			}
		})
	}
}

func TestBytesUnmarshalJSON(t *testing.T) {
	tests := []struct {
		in      string
		want    catalog.Bytes
		wantErr string
	}{
		{`{"size":4096}`, 4096, ""},
		{`{"size":"64GiB"}`, 64 << 30, ""},
		{`{"size":"1.5 TiB"}`, 3 << 39, ""},
		{`{"size":1.5}`, 2, ""},
		{`{"size":9007199254740993}`, 9007199254740992, ""}, // via float64: the last bit is lost
		{`{"size":"x"}`, 0, `size "x": expected a number`},
		{`{"size":-1}`, 0, "expected a number"},
		{`{"size":1e3}`, 0, `unknown unit "e3"`},
		{`{"size":true}`, 0, "expected a number"},
		{`{"size":[1]}`, 0, "expected a number"},
		{`{"size":"\u0031GiB"}`, 1 << 30, ""},
	}
	for _, tc := range tests {
		t.Run(tc.in, func(t *testing.T) {
			var v sized
			err := json.Unmarshal([]byte(tc.in), &v)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("json %s: %d, %v; want error containing %q", tc.in, v.Size, err, tc.wantErr)
				}
				return
			}
			if err != nil || v.Size != tc.want {
				t.Fatalf("json %s: %d, %v; want %d", tc.in, v.Size, err, tc.want)
			}
		})
	}
}

func TestBytesMarshalsAsInteger(t *testing.T) {
	b, err := json.Marshal(sized{Size: 64 << 30})
	if err != nil || string(b) != `{"size":68719476736}` {
		t.Fatalf("json = %s, %v", b, err)
	}
	var back sized
	if err := json.Unmarshal(b, &back); err != nil || back.Size != 64<<30 {
		t.Fatalf("json round trip = %d, %v", back.Size, err)
	}
	y, err := yaml.Marshal(sized{Size: 1 << 40})
	if err != nil || strings.TrimSpace(string(y)) != "size: 1099511627776" {
		t.Fatalf("yaml = %q, %v", y, err)
	}
}
