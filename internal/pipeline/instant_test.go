package pipeline

import (
	"context"
	"os"
	"os/exec"
	"strings"
	"testing"

	"github.com/vmrestore/vmrestore/internal/catalog"
	"github.com/vmrestore/vmrestore/internal/hypervisor"
	"github.com/vmrestore/vmrestore/internal/job"
	"github.com/vmrestore/vmrestore/internal/overlay"
)

// An instant restore's VM runs from the overlay beside the volume's file, over the backup,
// until the volume is recorded hydrated; a re-run of a hydrated volume starts its VM on the
// volume's file alone, without the overlay or the backup in the disk's chain.
func TestInstantDiskRunsFromOverlayUntilHydrated(t *testing.T) {
	if _, err := exec.LookPath("qemu-img"); err != nil {
		t.Skip("qemu-img is not installed")
	}
	e := newCloneEnv(t)
	v := e.volume(t, "6666666666666666666666666666666f", "raw", 8<<20, 4)
	rec := e.record(v)
	rec.Request.Instant = true
	rec.Checkpoints.Resolved.CPUNum, rec.Checkpoints.Resolved.MemorySize = 1, 64<<20
	rec.Checkpoints.Resolved.VMUUID = "e8e8e8e8e8e8e8e8e8e8e8e8e8e8e8e8"
	host := &catalog.Host{UUID: "d7d7d7d7d7d7d7d7d7d7d7d7d7d7d7d7", Name: "h", ManagementIP: "127.0.0.1"}
	rec.Checkpoints.Placement.HostUUID = host.UUID
	ix := e.index()
	ix.Hosts = map[string]*catalog.Host{host.UUID: host}
	ctx := context.Background()
	backing, err := e.p.backingOf(e.bs, rec, v)
	if err != nil {
		t.Fatal(err)
	}
	path := volumePath(rec, e.ps.URL, v)
	if err := overlay.Create(ctx, overlay.PathOf(path), backing.Path, backing.Format); err != nil {
		t.Fatal(err)
	}
	rec.Checkpoints.Volumes = map[string]job.ClonedFile{v.UUID: {InstallPath: path, Backing: backing}}

	vm, err := e.p.domainSpec(ix, rec)
	if err != nil {
		t.Fatal(err)
	}
	if d := vm.Disks[0]; d.Path != overlay.PathOf(path) || d.BackingPath != backing.Path || d.Format != "qcow2" {
		t.Fatalf("a volume not yet hydrated runs from %+v, not its overlay %s over its backup", d, overlay.PathOf(path))
	}

	f := rec.Checkpoints.Volumes[v.UUID]
	f.Hydrated = true
	rec.Checkpoints.Volumes[v.UUID] = f
	vm, err = e.p.domainSpec(ix, rec)
	if err != nil {
		t.Fatal(err)
	}
	xml, err := hypervisor.DomainXML(vm, hypervisor.DomainQEMU)
	if err != nil {
		t.Fatal(err)
	}
	if d := vm.Disks[0]; d.Path != path || d.Instant() || strings.Contains(xml, backing.Path) || strings.Contains(xml, overlay.PathOf(path)) {
		t.Fatalf("the domain of a hydrated volume does not run from its file %s alone: %+v\n%s", path, d, xml)
	}

	// The overlay of a hydrated volume goes; its file stays.
	if err := removeOverlay(f); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(overlay.PathOf(path)); !os.IsNotExist(err) {
		t.Fatalf("the overlay of a hydrated volume is left: %v", err)
	}
}
