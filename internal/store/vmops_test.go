package store_test

import (
	"context"
	"errors"
	"testing"

	"github.com/vmrestore/vmrestore/internal/job"
	"github.com/vmrestore/vmrestore/internal/redistest"
	"github.com/vmrestore/vmrestore/internal/store"
	"github.com/vmrestore/vmrestore/internal/zstack"
)

// A destroyed VM's host claims go back and aside; a recover takes them again only when
// they fit, all or none; returning or taking twice changes nothing; the expunge's release
// forgets claims put aside and frees the rest once.
func TestHostCapacityReturnedAndRetaken(t *testing.T) {
	ctx := context.Background()
	rdb := redistest.Start(t).Client()
	st := store.New(rdb)
	const host, ps = "40570000000000000000000000000001", "95000000000000000000000000000001"
	cpu, mem := store.HostCPU(host, 2), store.HostMemory(host, 1<<30)
	for f, v := range map[string]int64{cpu.Field: 4, mem.Field: 2 << 30, "p:" + ps: 100 << 30} {
		if err := rdb.HSet(ctx, "vmr:{cap}:limit", f, v).Err(); err != nil {
			t.Fatal(err)
		}
	}
	claims := []store.Claim{cpu, mem, store.HostVMs(host), store.StorageBytes(ps, "", 10<<30), store.StorageVolumes(ps, 1)}
	reserve := func(jobUUID string) {
		t.Helper()
		res, err := st.Reserve(ctx, jobUUID, []store.Candidate{{Label: "x", Claims: claims}})
		if err != nil || res.Index != 0 {
			t.Fatalf("reserve %s: %+v %v", jobUUID, res, err)
		}
	}
	used := func() map[string]string {
		t.Helper()
		m, err := rdb.HGetAll(ctx, "vmr:{cap}:used").Result()
		if err != nil {
			t.Fatal(err)
		}
		return m
	}
	wantUsed := func(what string, want map[string]string) {
		t.Helper()
		got := used()
		for f, v := range want {
			if got[f] != v {
				t.Fatalf("%s: %s in use is %q, want %q (all: %v)", what, f, got[f], v, got)
			}
		}
		if drift, err := st.CapacityDrift(ctx); err != nil || len(drift) > 0 {
			t.Fatalf("%s: drift %v %v", what, drift, err)
		}
	}
	const j1, j2, j3 = "10b00000000000000000000000000001", "10b00000000000000000000000000002", "10b00000000000000000000000000003"
	reserve(j1)
	wantUsed("reserved", map[string]string{cpu.Field: "2", mem.Field: "1073741824", "h:" + host + ":vms": "1", "p:" + ps: "10737418240"})

	for i := 0; i < 2; i++ {
		ok, err := st.ReturnHostCapacity(ctx, j1)
		if err != nil || ok != (i == 0) {
			t.Fatalf("return %d: %v %v", i, ok, err)
		}
		wantUsed("returned", map[string]string{cpu.Field: "0", mem.Field: "0", "h:" + host + ":vms": "0", "p:" + ps: "10737418240"})
	}
	resv, err := st.GetReservation(ctx, j1)
	if c, m, b := resv.Held(); err != nil || c != 0 || m != 0 || b != 10<<30 {
		t.Fatalf("a destroyed VM's reservation holds cpu %d, memory %d, bytes %d (%v)", c, m, b, err)
	}

	// Two other VMs take the host's CPU: the recover is refused and takes nothing.
	reserve(j2)
	reserve(j3)
	full, err := st.RetakeHostCapacity(ctx, j1)
	if err != nil || full != cpu.Field {
		t.Fatalf("retake on a full host: %q %v", full, err)
	}
	wantUsed("refused", map[string]string{cpu.Field: "4", mem.Field: "2147483648", "h:" + host + ":vms": "2"})

	// One of them goes: the recover takes its claims back, once.
	if _, err := st.Release(ctx, j3); err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 2; i++ {
		if full, err := st.RetakeHostCapacity(ctx, j1); err != nil || full != "" {
			t.Fatalf("retake %d: %q %v", i, full, err)
		}
		wantUsed("retaken", map[string]string{cpu.Field: "4", mem.Field: "2147483648", "h:" + host + ":vms": "2", "p:" + ps: "21474836480"})
	}

	// Destroyed again, then expunged: the release frees the storage once and forgets the
	// host claims put aside, which are not in use.
	if _, err := st.ReturnHostCapacity(ctx, j1); err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 2; i++ {
		if _, err := st.Release(ctx, j1); err != nil {
			t.Fatal(err)
		}
		wantUsed("expunged", map[string]string{cpu.Field: "2", mem.Field: "1073741824", "h:" + host + ":vms": "1", "p:" + ps: "10737418240"})
	}
	if full, err := st.RetakeHostCapacity(ctx, j1); err != nil || full != "" {
		t.Fatalf("retake after the expunge: %q %v", full, err)
	}
	wantUsed("nothing retaken after the expunge", map[string]string{cpu.Field: "2"})
}

// An expunge killed (or losing Redis) after its VM record became a tombstone leaves nothing
// behind: the VM is gone for every read at once, and FinishVMRemoval, as the expunge's next
// run calls it, unlists it and releases its uuid's claim, once; a claim another job holds
// is never touched.
func TestInterruptedVMRemovalIsFinished(t *testing.T) {
	ctx := context.Background()
	rdb := redistest.Start(t).Client()
	st := store.New(rdb)
	const builder, other = "10b00000000000000000000000000001", "10b00000000000000000000000000002"
	vm := &zstack.VmInstanceInventory{UUID: "1e1e1e1e1e1e1e1e1e1e1e1e1e1e1e1e", Name: "web", State: zstack.VMDestroyed}
	if err := st.ClaimVMUUID(ctx, vm.UUID, store.ResourceBinding{JobUUID: builder, AccountUUID: acctA}); err != nil {
		t.Fatal(err)
	}
	if _, err := st.PutVM(ctx, acctA, builder, vm); err != nil {
		t.Fatal(err)
	}
	// The first step of DeleteVM, as a run interrupted right after it leaves it.
	if err := rdb.HDel(ctx, "vmr:vm:"+vm.UUID, "inventory").Err(); err != nil {
		t.Fatal(err)
	}
	if err := rdb.HSet(ctx, "vmr:vm:"+vm.UUID, "removing", "1").Err(); err != nil {
		t.Fatal(err)
	}
	if _, err := st.GetVMRecord(ctx, vm.UUID); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("a VM being removed is still read: %v", err)
	}
	rec := &store.VMRecord{VM: vm, AccountUUID: acctA, JobUUID: builder}
	if err := st.UpdateVM(ctx, rec); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("an operation's update brought a VM being removed back: %v", err)
	}
	if holder, _ := st.ResourceHolder(ctx, vm.UUID); holder != builder {
		t.Fatalf("before the removal is finished the claim is %q", holder)
	}
	for i := 0; i < 2; i++ {
		found, err := st.FinishVMRemoval(ctx, vm.UUID)
		if err != nil || found != (i == 0) {
			t.Fatalf("finish %d: %v %v", i, found, err)
		}
	}
	if holder, _ := st.ResourceHolder(ctx, vm.UUID); holder != "" {
		t.Fatalf("the uuid claim leaked: held by %q", holder)
	}
	if n, _ := st.CountVMs(ctx); n != 0 {
		t.Fatalf("%d VMs still listed", n)
	}
	if n, _ := rdb.Exists(ctx, "vmr:vm:"+vm.UUID).Result(); n != 0 {
		t.Fatal("the tombstone is left")
	}

	// DeleteVM by another job than the builder removes nothing; the builder's removes all.
	if err := st.ClaimVMUUID(ctx, vm.UUID, store.ResourceBinding{JobUUID: builder}); err != nil {
		t.Fatal(err)
	}
	if _, err := st.PutVM(ctx, acctA, builder, vm); err != nil {
		t.Fatal(err)
	}
	if err := st.DeleteVM(ctx, other, vm.UUID); err != nil {
		t.Fatal(err)
	}
	if _, err := st.GetVMRecord(ctx, vm.UUID); err != nil {
		t.Fatalf("another job's DeleteVM removed the VM: %v", err)
	}
	if err := st.DeleteVM(ctx, builder, vm.UUID); err != nil {
		t.Fatal(err)
	}
	holder, _ := st.ResourceHolder(ctx, vm.UUID)
	n, _ := st.CountVMs(ctx)
	if _, err := st.GetVMRecord(ctx, vm.UUID); !errors.Is(err, store.ErrNotFound) || holder != "" || n != 0 {
		t.Fatalf("after DeleteVM: %v, claim %q, %d listed", err, holder, n)
	}
	if found, err := st.FinishVMRemoval(ctx, vm.UUID); found || err != nil {
		t.Fatalf("a finished removal found again: %v %v", found, err)
	}
}

// GetJobs reads many jobs in one pipeline, as GetJob reads each: unknown jobs and, for a
// read on behalf of an account, other accounts' jobs are left out.
func TestGetJobsReadsManyAsGetJobDoes(t *testing.T) {
	ctx := context.Background()
	st := store.New(redistest.Start(t).Client())
	var uuids []string
	for i, acct := range []string{acctA, acctB, acctA} {
		rec := &job.Record{UUID: zstack.NewUUID(), AccountUUID: acct, Op: &job.VMOp{Name: job.OpStop, VMUUID: zstack.NewUUID()}}
		rec.VMUUID = rec.Op.VMUUID
		if err := st.CreateJob(ctx, rec); err != nil {
			t.Fatalf("job %d: %v", i, err)
		}
		uuids = append(uuids, rec.UUID)
	}
	unknown := zstack.NewUUID()
	all, err := st.GetJobs(ctx, append(uuids, unknown))
	if err != nil || len(all) != 3 {
		t.Fatalf("GetJobs: %d %v", len(all), err)
	}
	for _, u := range uuids {
		one, err := st.GetJob(ctx, u)
		if err != nil || all[u] == nil || all[u].AccountUUID != one.AccountUUID || all[u].Op.VMUUID != one.Op.VMUUID || all[u].State != one.State {
			t.Fatalf("job %s: GetJobs %+v, GetJob %+v %v", u, all[u], one, err)
		}
	}
	mine, err := st.GetJobs(store.OnBehalfOf(ctx, acctA, false), append(uuids, unknown))
	if err != nil || len(mine) != 2 || mine[uuids[1]] != nil {
		t.Fatalf("GetJobs for account A: %v %v", mine, err)
	}
}
