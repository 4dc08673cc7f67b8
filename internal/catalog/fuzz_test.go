package catalog_test

import (
	"bytes"
	"strings"
	"testing"

	"go.yaml.in/yaml/v3"

	"github.com/vmrestore/vmrestore/internal/catalog"
	"github.com/vmrestore/vmrestore/internal/zstack"
)

func FuzzParse(f *testing.F) {
	base, err := yaml.Marshal(baseSite())
	if err != nil {
		f.Fatal(err)
	}
	f.Add(base)
	f.Add([]byte(""))
	f.Add([]byte("zones: []"))
	f.Add([]byte("zones:\n  - uuid: " + zoneA + "\n    name: z\n"))
	f.Add([]byte(`{"zones":[{"uuid":"` + zoneA + `","name":"z"}],"hosts":[{"memorySize":"1.5 TiB"}]}`))
	f.Add([]byte("&a [*a]"))
	f.Add(bytes.Replace(base, []byte("10.0.0.200"), []byte("10.0.1.200"), 1))
	f.Fuzz(func(t *testing.T, data []byte) {
		s, err := catalog.Parse(data)
		if err != nil {
			if s != nil {
				t.Fatal("site and error")
			}
			if err.Error() == "" {
				t.Fatal("empty error")
			}
			return
		}
		checkSite(t, s)
		// A parsed site written back as YAML parses to the same site.
		out, err := yaml.Marshal(s)
		if err != nil {
			t.Fatal(err)
		}
		again, err := catalog.Parse(out)
		if err != nil {
			t.Fatalf("re-parsing the marshalled site: %v\n%s", err, out)
		}
		out2, _ := yaml.Marshal(again)
		if !bytes.Equal(out, out2) {
			t.Fatalf("round trip differs:\n%s\n---\n%s", out, out2)
		}
		ix := catalog.NewIndex(s, 1)
		for i := range s.Hosts {
			c := ix.HostCapacity(&s.Hosts[i])
			if c.CPU < 0 || c.Memory < 0 {
				t.Fatalf("negative capacity %+v", c)
			}
		}
		for _, l3 := range s.L3Networks {
			if len(ix.Ranges[l3.UUID]) != len(l3.IPRanges) {
				t.Fatalf("l3 %s: %d ranges indexed of %d", l3.UUID, len(ix.Ranges[l3.UUID]), len(l3.IPRanges))
			}
		}
	})
}

func checkSite(t *testing.T, s *catalog.Site) {
	t.Helper()
	if len(s.Zones) == 0 {
		t.Fatal("a site without zones")
	}
	seen := map[string]bool{}
	id := func(uuid string) {
		if !zstack.IsUUID(uuid) || seen[uuid] {
			t.Fatalf("uuid %q invalid or repeated", uuid)
		}
		seen[uuid] = true
	}
	enabled := func(state string) {
		if state != "Enabled" && state != "Disabled" {
			t.Fatalf("state %q", state)
		}
	}
	for _, z := range s.Zones {
		id(z.UUID)
		enabled(z.State)
	}
	for _, c := range s.Clusters {
		id(c.UUID)
		if c.CPUOverProvisioningRatio <= 0 || c.MemoryOverProvisioningRatio <= 0 || c.ReservedHostMemory <= 0 {
			t.Fatalf("cluster %+v left without defaults", c)
		}
	}
	for _, h := range s.Hosts {
		id(h.UUID)
		if h.CPUNum < 1 || h.MemorySize <= 0 || h.CPUSockets == 0 || h.Status == "" {
			t.Fatalf("host %+v", h)
		}
	}
	for _, p := range s.PrimaryStorages {
		id(p.UUID)
		if !strings.HasPrefix(p.URL, "/") || strings.Contains(p.URL, "\x00") || p.OverProvisioningRatio == 0 {
			t.Fatalf("primary storage %+v", p)
		}
	}
	for _, b := range s.BackupStorages {
		id(b.UUID)
		if !strings.HasPrefix(b.URL, "/") || b.MaxConcurrentClones < 1 || b.MaxConcurrentClones > 1024 {
			t.Fatalf("backup storage %+v", b)
		}
	}
	for _, l2 := range s.L2Networks {
		id(l2.UUID)
	}
	for _, l3 := range s.L3Networks {
		id(l3.UUID)
		if l3.IPVersion != 4 || l3.ZoneUUID == "" {
			t.Fatalf("l3 %+v", l3)
		}
		for _, r := range l3.IPRanges {
			id(r.UUID)
			if _, err := catalog.ParseRange(r); err != nil {
				t.Fatalf("accepted range %+v: %v", r, err)
			}
		}
	}
	for _, o := range s.InstanceOfferings {
		id(o.UUID)
		if o.CPUNum < 1 || o.MemorySize <= 0 || o.ReservedMemorySize > o.MemorySize {
			t.Fatalf("offering %+v", o)
		}
	}
	for _, a := range s.Accounts {
		id(a.UUID)
		if a.Name == "admin" || !strings.HasPrefix(a.PasswordHash, "$argon2id$") {
			t.Fatalf("account %+v", a)
		}
	}
}

func FuzzParseBytes(f *testing.F) {
	for _, s := range []string{"0", "4096", "64GiB", "1.5 TiB", "500GB", "-1", "1e3", "8192PiB", ".5K", "1."} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		b, err := catalog.ParseBytes(s)
		if err != nil {
			if b != 0 {
				t.Fatalf("error %v with value %d", err, b)
			}
			return
		}
		if b < 0 {
			t.Fatalf("ParseBytes(%q) = %d is negative", s, b)
		}
		// An accepted size written as a plain integer reads back the same.
		back, err := catalog.ParseBytes(strings.TrimSpace(yamlInt(b)))
		if err != nil || back != b {
			t.Fatalf("ParseBytes(%d) = %d, %v", b, back, err)
		}
	})
}

func yamlInt(b catalog.Bytes) string {
	out, _ := yaml.Marshal(int64(b))
	return string(out)
}
