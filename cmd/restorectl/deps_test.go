package main

import (
	"os/exec"
	"strings"
	"testing"
)

// TestLinksNoServerPackage keeps restorectl a client: it speaks HTTP to the api and reads
// backup folders, so nothing that talks to Redis, queues jobs, places or restores VMs may be
// linked into it (go list -deps ./cmd/restorectl).
func TestLinksNoServerPackage(t *testing.T) {
	out, err := exec.Command("go", "list", "-deps", ".").CombinedOutput()
	if err != nil {
		t.Fatalf("go list -deps: %v\n%s", err, out)
	}
	deps := strings.Fields(string(out))
	if len(deps) < 10 {
		t.Fatalf("go list -deps listed %d packages; expected restorectl's whole import graph:\n%s", len(deps), out)
	}
	forbidden := []string{
		"github.com/redis/", "github.com/hibiken/asynq", "github.com/alicebob/miniredis",
		"/internal/store", "/internal/queue", "/internal/pipeline", "/internal/placement",
		"/internal/plan", "/internal/httpapi", "/internal/app", "/internal/hypervisor",
	}
	for _, d := range deps {
		for _, f := range forbidden {
			if strings.Contains(d, f) {
				t.Errorf("restorectl links %s (matches %q): a client must not; move the type it needs to internal/apiv1 or internal/zstack", d, f)
			}
		}
	}
}
