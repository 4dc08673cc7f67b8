package catalog

import (
	"encoding/json"
	"fmt"
	"math"
	"strconv"
	"strings"

	"go.yaml.in/yaml/v3"
)

// Bytes is a size in bytes. In YAML and JSON it is written either as an integer or as a
// string with a binary or decimal unit ("64GiB", "1.5 TiB", "500GB", "4096").
type Bytes int64

var byteUnits = map[string]float64{
	"":    1,
	"b":   1,
	"k":   1 << 10,
	"kb":  1e3,
	"kib": 1 << 10,
	"m":   1 << 20,
	"mb":  1e6,
	"mib": 1 << 20,
	"g":   1 << 30,
	"gb":  1e9,
	"gib": 1 << 30,
	"t":   1 << 40,
	"tb":  1e12,
	"tib": 1 << 40,
	"p":   1 << 50,
	"pb":  1e15,
	"pib": 1 << 50,
}

// ParseBytes reads a size such as "64GiB", "1.5 TiB" or "4096".
func ParseBytes(s string) (Bytes, error) {
	t := strings.TrimSpace(s)
	i := 0
	for i < len(t) && (t[i] >= '0' && t[i] <= '9' || t[i] == '.') {
		i++
	}
	if i == 0 {
		return 0, fmt.Errorf("size %q: expected a number with an optional unit such as GiB", s)
	}
	n, err := strconv.ParseFloat(t[:i], 64)
	if err != nil {
		return 0, fmt.Errorf("size %q: %v", s, err)
	}
	mult, ok := byteUnits[strings.ToLower(strings.TrimSpace(t[i:]))]
	if !ok {
		return 0, fmt.Errorf("size %q: unknown unit %q (use B, KiB, MiB, GiB, TiB, PiB or KB, MB, GB, TB, PB)", s, strings.TrimSpace(t[i:]))
	}
	v := n * mult
	if v > math.MaxInt64/2 || math.IsNaN(v) {
		return 0, fmt.Errorf("size %q is too large", s)
	}
	return Bytes(math.Round(v)), nil
}

// UnmarshalYAML accepts integers and unit strings.
func (b *Bytes) UnmarshalYAML(node *yaml.Node) error {
	if node.Kind != yaml.ScalarNode {
		return fmt.Errorf("line %d: a size must be a number or a string like \"64GiB\"", node.Line)
	}
	v, err := ParseBytes(node.Value)
	if err != nil {
		return fmt.Errorf("line %d: %v", node.Line, err)
	}
	*b = v
	return nil
}

// UnmarshalJSON accepts integers and unit strings.
func (b *Bytes) UnmarshalJSON(data []byte) error {
	var s string
	if len(data) > 0 && data[0] == '"' {
		if err := json.Unmarshal(data, &s); err != nil {
			return err
		}
	} else {
		s = string(data)
	}
	v, err := ParseBytes(s)
	if err != nil {
		return err
	}
	*b = v
	return nil
}
