package catalog_test

import (
	"testing"

	"github.com/vmrestore/vmrestore/internal/catalog"
)

// The sample site shipped in deploy/ must stay loadable.
func TestExampleSiteFileLoads(t *testing.T) {
	s, err := catalog.LoadFile("../../deploy/site.example.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if len(s.Hosts) != 5 || len(s.L3Networks) != 2 || s.BackupStorages[0].BandwidthBytesPerSecond != 800e6 {
		t.Fatalf("example site read wrongly: %d hosts, %d l3s, bandwidth %d", len(s.Hosts), len(s.L3Networks), s.BackupStorages[0].BandwidthBytesPerSecond)
	}
}
