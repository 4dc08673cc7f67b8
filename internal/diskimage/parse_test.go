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

// qemu-img's answer describes an untrusted image (its backing file name, sizes): whatever it
// holds, parse returns an Info that a group can hold, or an error, and never panics.
func FuzzParseQemuInfo(f *testing.F) {
	f.Add([]byte(`{"format":"qcow2","virtual-size":1073741824,"actual-size":200704,"format-specific":{"type":"qcow2","data":{"corrupt":false}},"dirty-flag":false}`))
	f.Add([]byte(`{"format":"raw","virtual-size":10485760}`))
	f.Add([]byte(`{"format":"qcow2","virtual-size":1,"backing-filename":"/etc/shadow"}`))
	f.Add([]byte(`{"format":"vmdk","virtual-size":-1}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		i, err := parse(data)
		if err != nil {
			return
		}
		if (i.Format != "qcow2" && i.Format != "raw") || i.VirtualSize <= 0 {
			t.Fatalf("parse accepted %+v from %q", i, data)
		}
	})
}
