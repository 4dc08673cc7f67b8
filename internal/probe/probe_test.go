package probe_test

import (
	"context"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/vmrestore/vmrestore/internal/catalog"
	"github.com/vmrestore/vmrestore/internal/probe"
	"github.com/vmrestore/vmrestore/internal/redistest"
	"github.com/vmrestore/vmrestore/internal/store"
)

func TestMissingOrReadOnlyStorageIsMarkedDownUntilItRecovers(t *testing.T) {
	dir := t.TempDir()
	ok, gone, ro := filepath.Join(dir, "ok"), filepath.Join(dir, "gone"), filepath.Join(dir, "ro")
	os.MkdirAll(ok, 0o750)
	os.MkdirAll(ro, 0o750)
	// A read-only bind is not available to a test; a file where the directory should be is
	// as unwritable.
	os.WriteFile(ro+"-file", nil, 0o640)
	site := &catalog.Site{Zones: []catalog.Zone{{UUID: "01000000000000000000000000000000", Name: "z"}}}
	for i, url := range []string{ok, gone, ro + "-file"} {
		site.PrimaryStorages = append(site.PrimaryStorages, catalog.PrimaryStorage{UUID: "0200000000000000000000000000000" + string(rune('a'+i)),
			Name: "ps", ZoneUUID: "01000000000000000000000000000000", Type: catalog.PSNFS, URL: url, TotalCapacity: 1 << 40})
	}
	if err := site.Normalize(); err != nil {
		t.Fatal(err)
	}
	st := store.New(redistest.Start(t).Client())
	ctx := context.Background()
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	ix := catalog.NewIndex(site, 1)
	if err := probe.Once(ctx, ix, st, log); err != nil {
		t.Fatal(err)
	}
	down, _ := st.StoragesDown(ctx)
	if _, isDown := down[site.PrimaryStorages[0].UUID]; isDown {
		t.Fatalf("a writable directory was marked down: %v", down)
	}
	if !strings.Contains(down[site.PrimaryStorages[1].UUID], "is not reachable") {
		t.Fatalf("a missing directory: %q", down[site.PrimaryStorages[1].UUID])
	}
	if !strings.Contains(down[site.PrimaryStorages[2].UUID], "is not a directory") {
		t.Fatalf("a file instead of a directory: %q", down[site.PrimaryStorages[2].UUID])
	}
	u, _ := st.Usage(ctx, []string{store.FieldStorageBytes(site.PrimaryStorages[1].UUID, "")})
	if u[0].Limit != -1 || u[0].Down == "" {
		t.Fatalf("placement must see the storage down: %+v", u[0])
	}
	os.MkdirAll(gone, 0o750)
	probe.Once(ctx, ix, st, log)
	down, _ = st.StoragesDown(ctx)
	if _, still := down[site.PrimaryStorages[1].UUID]; still {
		t.Fatalf("a recovered directory stays down: %v", down)
	}
	entries, _ := os.ReadDir(ok)
	if len(entries) != 0 {
		t.Fatalf("the probe left files behind: %v", entries)
	}
}
