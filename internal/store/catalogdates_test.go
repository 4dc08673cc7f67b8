package store_test

import (
	"context"
	"testing"
	"time"

	"github.com/vmrestore/vmrestore/internal/demosite"
	"github.com/vmrestore/vmrestore/internal/redistest"
	"github.com/vmrestore/vmrestore/internal/store"
)

// Catalog objects get a createDate when first loaded and a lastOpDate when a load changes
// them; an unchanged reload keeps both.
func TestCatalogDates(t *testing.T) {
	ctx := context.Background()
	st := store.New(redistest.Start(t).Client())
	site := demosite.Site(demosite.PathsIn(t.TempDir()))
	before := time.Now().Add(-time.Millisecond)
	if _, err := st.SaveCatalog(ctx, site); err != nil {
		t.Fatal(err)
	}
	first, err := st.CatalogDates(ctx)
	if err != nil {
		t.Fatal(err)
	}
	host, zone, rng := site.Hosts[0].UUID, site.Zones[0].UUID, site.L3Networks[0].IPRanges[0].UUID
	for _, u := range []string{host, zone, rng, site.InstanceOfferings[0].UUID, site.PrimaryStorages[0].UUID} {
		d, ok := first[u]
		if !ok || d.Created.Before(before) || !d.LastOp.Equal(d.Created) {
			t.Fatalf("object %s: dates %+v (ok %v)", u, d, ok)
		}
	}
	time.Sleep(5 * time.Millisecond)
	if _, err := st.SaveCatalog(ctx, site); err != nil {
		t.Fatal(err)
	}
	same, _ := st.CatalogDates(ctx)
	if same[host] != first[host] || same[zone] != first[zone] {
		t.Fatalf("an unchanged reload moved the dates: %+v → %+v", first[host], same[host])
	}
	site.Hosts[0].Description = "changed"
	time.Sleep(5 * time.Millisecond)
	if _, err := st.SaveCatalog(ctx, site); err != nil {
		t.Fatal(err)
	}
	changed, _ := st.CatalogDates(ctx)
	if !changed[host].Created.Equal(first[host].Created) || !changed[host].LastOp.After(first[host].LastOp) {
		t.Fatalf("a changed host: %+v → %+v", first[host], changed[host])
	}
	if changed[zone] != first[zone] {
		t.Fatalf("an unchanged zone moved: %+v → %+v", first[zone], changed[zone])
	}
}
