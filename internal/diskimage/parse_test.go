package diskimage

import (
	"strings"
	"testing"
)

// What qemu-img reports and a backup cannot hold is refused, each case with its reason.
func TestParseRefusals(t *testing.T) {
	for _, c := range []struct{ json, want string }{
		{`{"format":"qcow2","virtual-size":1024,"encrypted":true}`, "encrypted"},
		{`{"format":"qcow2","virtual-size":1024,"format-specific":{"type":"qcow2","data":{"corrupt":true}}}`, "corrupt"},
		{`{"format":"qcow2","virtual-size":1024,"dirty-flag":true}`, "dirty"},
		{`{"format":"vhdx","virtual-size":1024}`, "the image is vhdx"},
		{`{"format":"raw","virtual-size":0}`, "virtual size of 0"},
		{`not json`, "not its JSON"},
	} {
		if _, err := parse([]byte(c.json)); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: %v, want %q", c.json, err, c.want)
		}
	}
	i, err := parse([]byte(`{"format":"qcow2","virtual-size":1024,"actual-size":10,"format-specific":{"type":"qcow2","data":{"corrupt":false}}}`))
	if err != nil || i.Format != "qcow2" || i.VirtualSize != 1024 || i.ActualSize != 10 {
		t.Fatalf("a good qcow2: %+v %v", i, err)
	}
}
