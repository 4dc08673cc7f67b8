package app_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/vmrestore/vmrestore/internal/demosite"
	"github.com/vmrestore/vmrestore/internal/job"
	"github.com/vmrestore/vmrestore/internal/queue"
	"github.com/vmrestore/vmrestore/internal/zstack"
)

// Finding: account B restoring with "resourceUuid": <A's VM> took A's VM over when its job
// succeeded, and deleted it for everyone when its job failed. A resourceUuid naming anything
// that exists is now refused before a job exists, and compensation only removes what its own
// job created.
func TestResourceUUIDCannotNameAnotherResource(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	alice, bob := e.newTenant("alice"), e.newTenant("bob")
	ag := ownedGroup(t, e, demosite.GroupWeb01UUID, "a11ce000a11ce000a11ce000a11ce001", alice.uuid)
	bg := ownedGroup(t, e, demosite.GroupWeb01UUID, "b0b00000b0b00000b0b00000b0b00001", bob.uuid)
	waitGroupIndexed(t, e, ag)
	waitGroupIndexed(t, e, bg)
	// The ZStack route answers 202 at once; these calls ask for the wait to read the answer.
	restore := func(s, group string, params map[string]any, headers map[string]string) response {
		if headers == nil {
			headers = map[string]string{"Prefer": "wait=60"}
		}
		return e.do("POST", "/zstack/v1/vm-instances/from/vm-backups/"+group, s, map[string]any{"params": params}, headers)
	}

	r := restore(alice.session, ag, webParams("alice-vm"), nil)
	mustf(t, r.status == 200, "alice restores: %d %s", r.status, r.body)
	inv := r.json()["inventory"].(map[string]any)
	vm := str(inv, "uuid")
	aliceIP := str(inv["vmNics"].([]any)[0].(map[string]any), "ip")

	refused := func(what string, r response) {
		t.Helper()
		ec := r.errorCode()
		mustf(t, str(ec, "code") == "SYS.1007" && strings.Contains(str(ec, "details"), "already used"), "%s: %s", what, r.body)
	}
	p := webParams("bob-takes")
	p["resourceUuid"] = vm
	refused("bob names alice's VM", restore(bob.session, bg, p, nil))
	p["resourceUuid"] = demosite.ZoneUUID
	refused("bob names a zone", restore(bob.session, bg, p, nil))
	p["resourceUuid"] = alice.uuid
	refused("bob names alice's account", restore(bob.session, bg, p, nil))
	p["resourceUuid"] = ag
	refused("bob names alice's backup group", restore(bob.session, bg, p, nil))
	// A resourceUuid alice requested, her job still running: taken too.
	q := webParams("alice-second")
	q["resourceUuid"] = "a11ce000a11ce000a11ce000a11ce0ff"
	async := restore(alice.session, ag, q, map[string]string{"Prefer": "respond-async"})
	mustf(t, async.status == 202, "alice's async restore: %d %s", async.status, async.body)
	p["resourceUuid"] = q["resourceUuid"]
	refused("bob names alice's requested uuid", restore(bob.session, bg, p, nil))
	mustf(t, e.poll(str(async.json(), "location"), time.Minute).status == 200, "alice's second restore")

	// Behind the API, a job of bob's that names alice's VM (as one queued before this check
	// existed would) and then fails (alice's address) must leave her VM alone.
	ctx := context.Background()
	req, ec := job.FromZStack(bg, &zstack.CreateVmFromVmBackupRequest{
		Params:     zstack.CreateVmFromVmBackupParams{Name: "bob-behind", InstanceOfferingUUID: demosite.OfferingSmall, L3NetworkUUIDs: []string{demosite.L3ProdUUID}, ResourceUUID: vm},
		SystemTags: []string{"staticIp::" + demosite.L3ProdUUID + "::" + aliceIP}})
	mustf(t, ec == nil, "request: %v", ec)
	jobUUID := zstack.NewUUID()
	rec := &job.Record{UUID: jobUUID, AccountUUID: bob.uuid, Request: req, CreatedAt: time.Now(), Timeout: time.Hour}
	mustf(t, e.store.CreateJob(ctx, rec) == nil, "create bob's job")
	mustf(t, queue.NewClient(e.store.Client(), 0).EnqueueRestore(ctx, jobUUID, rec.Deadline()) == nil, "queue bob's job")
	done := e.do("GET", "/zstack/v1/api-jobs/"+jobUUID, bob.session, nil, nil)
	for deadline := time.Now().Add(time.Minute); done.status == 202 && time.Now().Before(deadline); {
		time.Sleep(50 * time.Millisecond)
		done = e.do("GET", "/zstack/v1/api-jobs/"+jobUUID, bob.session, nil, nil)
	}
	mustf(t, done.status == 503, "bob's job behind the API must fail: %d %s", done.status, done.body)

	// Alice's VM is still hers, whole; bob has none.
	mine := e.do("GET", "/zstack/v1/vm-instances/"+vm, alice.session, nil, nil).json()["inventories"].([]any)
	mustf(t, len(mine) == 1 && str(mine[0].(map[string]any), "name") == "alice-vm", "alice's VM after bob's tries: %v", mine)
	mustf(t, len(e.do("GET", "/zstack/v1/vm-instances", bob.session, nil, nil).json()["inventories"].([]any)) == 0, "bob lists a VM")
	_, owner, err := e.store.GetVM(ctx, vm)
	mustf(t, err == nil && owner == alice.uuid, "the VM record's owner: %q %v", owner, err)
	e.checkInvariants()
}

// Another account's job and a job that does not exist answer the same, from the store
// itself, whatever the route: bob cannot tell alice's job uuid from a random one.
func TestForeignJobsAnswerAsUnknown(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	alice, bob := e.newTenant("alice"), e.newTenant("bob")
	ag := ownedGroup(t, e, demosite.GroupWeb01UUID, "a11ce000a11ce000a11ce000a11ce002", alice.uuid)
	waitGroupIndexed(t, e, ag)
	r := e.do("POST", "/zstack/v1/vm-instances/from/vm-backups/"+ag, alice.session, map[string]any{"params": webParams("a")}, map[string]string{"Prefer": "respond-async"})
	loc := str(r.json(), "location")
	aliceJob := loc[len(loc)-32:]
	e.poll(loc, time.Minute)
	unknown := zstack.NewUUID()
	for _, path := range []string{"/zstack/v1/api-jobs/", "/api/v1/jobs/"} {
		foreign := e.do("GET", path+aliceJob, bob.session, nil, nil)
		none := e.do("GET", path+unknown, bob.session, nil, nil)
		mustf(t, foreign.status == none.status && strings.ReplaceAll(string(foreign.body), aliceJob, unknown) == string(none.body),
			"%s: alice's job answers %d %s, an unknown one %d %s", path, foreign.status, foreign.body, none.status, none.body)
	}
	c := e.do("POST", "/api/v1/jobs/"+aliceJob+"/cancel", bob.session, nil, nil)
	mustf(t, c.status == 404, "bob cancels alice's job: %d", c.status)
}

// BenchmarkPollForeignVsUnknown measures what a tenant sees when polling another account's
// job and a job that does not exist: the same answer after the same work.
func BenchmarkPollForeignVsUnknown(b *testing.B) {
	e := newEnv(b)
	alice, bob := e.newTenant("alice"), e.newTenant("bob")
	ag := ownedGroup(b, e, demosite.GroupWeb01UUID, "a11ce000a11ce000a11ce000a11ce003", alice.uuid)
	waitGroupIndexed(b, e, ag)
	r := e.do("POST", "/zstack/v1/vm-instances/from/vm-backups/"+ag, alice.session, map[string]any{"params": webParams("a")}, nil)
	mustf(b, r.status == 200, "restore: %d", r.status)
	var loc string
	rr := e.do("POST", "/zstack/v1/vm-instances/from/vm-backups/"+ag, alice.session, map[string]any{"params": webParams("b")}, map[string]string{"Prefer": "respond-async"})
	loc = str(rr.json(), "location")
	e.poll(loc, time.Minute)
	for name, uuid := range map[string]string{"foreign": loc[len(loc)-32:], "unknown": zstack.NewUUID()} {
		b.Run(name, func(b *testing.B) {
			for b.Loop() {
				e.do("GET", "/zstack/v1/api-jobs/"+uuid, bob.session, nil, nil)
			}
		})
	}
}
