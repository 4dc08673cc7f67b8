package app_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/vmrestore/vmrestore/internal/demosite"
)

// A restore that fails in its network stage (its static address is another VM's) fails
// there, records where it was placed, and gives back everything it took: the placement's
// capacity, its MAC (taken in the same round trip as the address) and its volumes (none).
func TestNetworkStageFailureRecordsItsPlacementAndCompensates(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	tags := []string{"staticIp::" + demosite.L3ProdUUID + "::10.10.0.77"}
	first, _ := e.restoreWithTags(demosite.GroupWeb01UUID, webParams("holds-77"), tags, time.Minute)
	mustf(t, first.status == 200, "the first restore: %d %s", first.status, first.body)
	macs, err := e.store.UsedMacs(ctx)
	mustf(t, err == nil && len(macs) > 0, "the first VM's MACs: %v %v", macs, err)
	ips, err := e.store.CountUsedIPs(ctx, demosite.L3ProdUUID)
	mustf(t, err == nil && ips > 0, "the first VM's addresses: %d %v", ips, err)

	second, id := e.restoreWithTags(demosite.GroupWeb01UUID, webParams("wants-77"), tags, time.Minute)
	ec := second.errorCode()
	cause, _ := ec["cause"].(map[string]any)
	mustf(t, cause != nil && str(cause, "code") == "L3.1000" && strings.Contains(str(cause, "details"), "10.10.0.77"),
		"the second restore must fail on its address: %s", second.body)
	j := e.do("GET", "/api/v1/jobs/"+id, e.session, nil, nil).json()
	mustf(t, str(j, "stage") == "network" && str(j, "state") == "failed", "the failed job's stage and state: %v", j)
	rec, err := e.store.GetJob(ctx, id)
	mustf(t, err == nil && rec.Checkpoints.Placement != nil && rec.Checkpoints.Placement.HostUUID != "" && rec.Checkpoints.StageDone("place"),
		"the failed job's placement checkpoint: %+v %v", rec.Checkpoints, err)

	after, err := e.store.UsedMacs(ctx)
	mustf(t, err == nil && len(after) == len(macs), "MACs after the failure: %v, before it: %v (%v)", after, macs, err)
	n, err := e.store.CountUsedIPs(ctx, demosite.L3ProdUUID)
	mustf(t, err == nil && n == ips, "addresses after the failure: %d, before it: %d (%v)", n, ips, err)
	e.checkInvariants()
}
