package store_test

import (
	"context"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/vmrestore/vmrestore/internal/catalog"
	"github.com/vmrestore/vmrestore/internal/job"
	"github.com/vmrestore/vmrestore/internal/redistest"
	"github.com/vmrestore/vmrestore/internal/store"
	"github.com/vmrestore/vmrestore/internal/zstack"
)

const (
	acctA  = "aaaa0000aaaa0000aaaa0000aaaa0000"
	acctB  = "bbbb0000bbbb0000bbbb0000bbbb0000"
	groupA = "a0a0a0a0a0a0a0a0a0a0a0a0a0a0a0a0"
	groupB = "b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0"
)

func wantTaken(tb testing.TB, err error, what string) {
	tb.Helper()
	ec, ok := zstack.AsErrorCode(err)
	if !ok || ec.Code != zstack.CodeInvalidArgument || !strings.Contains(ec.Details, "already used") {
		tb.Fatalf("%s: want SYS.1007 'already used', got %v", what, err)
	}
}

// A resourceUuid is refused when it names anything that exists, of anyone: a VM another
// job generated, another account's claim, a catalog uuid, an account, a backup group, a VM
// record that predates claims. The same account repeating a request for the same group gets
// the first binding back; the holding job may claim again.
func TestClaimResourceRefusesEveryExistingResource(t *testing.T) {
	ctx := context.Background()
	r := redistest.Start(t)
	st := store.New(r.Client())
	site := &catalog.Site{Zones: []catalog.Zone{{UUID: "20ae0000000000000000000000000000", Name: "z"}},
		Accounts: []catalog.Account{{UUID: "acc70000000000000000000000000000", Name: "site-acct", PasswordHash: "x"}}}
	if _, err := st.SaveCatalog(ctx, site); err != nil {
		t.Fatal(err)
	}
	if err := st.PutAccount(ctx, catalog.Account{UUID: "acc80000000000000000000000000000", Name: "api-acct"}); err != nil {
		t.Fatal(err)
	}
	if err := st.ReplaceBackupIndex(ctx, []store.IndexedGroup{{}}); err != nil {
		t.Fatal(err)
	}
	var g store.IndexedGroup
	g.GroupUUID = "9909090909090909090909090909090a"
	if err := st.ReplaceBackupIndex(ctx, []store.IndexedGroup{g}); err != nil {
		t.Fatal(err)
	}

	// Account A's job generated the uuid of its VM and claimed it.
	vm := "1e1e1e1e1e1e1e1e1e1e1e1e1e1e1e1e"
	a1 := store.ResourceBinding{JobUUID: "10b00000000000000000000000000001", AccountUUID: acctA}
	if err := st.ClaimVMUUID(ctx, vm, a1); err != nil {
		t.Fatal(err)
	}
	b1 := store.ResourceBinding{JobUUID: "10b00000000000000000000000000002", GroupUUID: groupB, AccountUUID: acctB}
	for what, uuid := range map[string]string{
		"a VM another account's job generated": vm,
		"a zone of the catalog":                "20ae0000000000000000000000000000",
		"an account of the site file":          "acc70000000000000000000000000000",
		"an account made through the API":      "acc80000000000000000000000000000",
		"an indexed backup group":              "9909090909090909090909090909090a",
	} {
		prev, err := st.ClaimResource(ctx, uuid, b1)
		wantTaken(t, err, what)
		if prev != nil {
			t.Fatalf("%s: a refusal returns no binding", what)
		}
	}
	// A refused claim binds nothing: the uuid is still A's.
	if h, _ := st.ResourceHolder(ctx, vm); h != a1.JobUUID {
		t.Fatalf("the VM uuid's holder is %q after a refused claim", h)
	}
	if h, _ := st.ResourceHolder(ctx, "20ae0000000000000000000000000000"); h != "" {
		t.Fatalf("a refused catalog uuid stayed claimed by %q", h)
	}

	// A VM record written before claims existed is someone's too.
	legacy := "1e9ac7000000000000000000000000aa"
	r.Client().HSet(ctx, "vmr:vm:"+legacy, "inventory", `{"uuid":"`+legacy+`"}`, "account", acctA)
	_, err := st.ClaimResource(ctx, legacy, b1)
	wantTaken(t, err, "a VM record without a claim")

	// A requested uuid: A's first request binds it; A repeating it for the same group gets
	// that binding; B, or A for another group, is refused.
	req := "5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e"
	first := store.ResourceBinding{JobUUID: "10b00000000000000000000000000003", GroupUUID: groupA, AccountUUID: acctA}
	if prev, err := st.ClaimResource(ctx, req, first); err != nil || prev != nil {
		t.Fatalf("first claim: %v %v", prev, err)
	}
	again := first
	again.JobUUID = "10b00000000000000000000000000004"
	if prev, err := st.ClaimResource(ctx, req, again); err != nil || prev == nil || prev.JobUUID != first.JobUUID {
		t.Fatalf("the same request again: %+v %v", prev, err)
	}
	if prev, err := st.ClaimResource(ctx, req, first); err != nil || prev != nil {
		t.Fatalf("the holding job claiming again: %+v %v", prev, err)
	}
	other := b1
	other.GroupUUID = groupA
	_, err = st.ClaimResource(ctx, req, other)
	wantTaken(t, err, "another account, same group")
	otherGroup := again
	otherGroup.GroupUUID = groupB
	_, err = st.ClaimResource(ctx, req, otherGroup)
	wantTaken(t, err, "same account, another group")

	// Only the holder releases a claim.
	if err := st.ReleaseResource(ctx, req, b1); err != nil {
		t.Fatal(err)
	}
	if h, _ := st.ResourceHolder(ctx, req); h != first.JobUUID {
		t.Fatalf("another job released the claim: holder %q", h)
	}
	if err := st.ReleaseResource(ctx, req, first); err != nil {
		t.Fatal(err)
	}
	if h, _ := st.ResourceHolder(ctx, req); h != "" {
		t.Fatalf("the holder could not release its claim: holder %q", h)
	}

	// Concurrent claims of one free uuid: exactly one wins.
	free := "f4ee0000000000000000000000000000"
	var wg sync.WaitGroup
	var mu sync.Mutex
	won := 0
	for i := 0; i < 20; i++ {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			b := store.ResourceBinding{JobUUID: "c0c0c0c0c0c0c0c0c0c0c0c0c0c0c0" + string(rune('a'+i%6)) + string(rune('a'+i/6)), GroupUUID: groupB, AccountUUID: acctB}
			if prev, err := st.ClaimResource(ctx, free, b); err == nil && prev == nil {
				mu.Lock()
				won++
				mu.Unlock()
			}
		}(i)
	}
	wg.Wait()
	if won != 1 {
		t.Fatalf("%d concurrent claims won, want 1", won)
	}
}

// A VM record is written and deleted only by the job that built it: another job can neither
// replace nor remove it.
func TestVMRecordsBelongToTheirJob(t *testing.T) {
	ctx := context.Background()
	st := store.New(redistest.Start(t).Client())
	vm := &zstack.VmInstanceInventory{UUID: "1e1e1e1e1e1e1e1e1e1e1e1e1e1e1e1e", Name: "a's", CreateDate: zstack.Now()}
	jobA, jobB := "10b00000000000000000000000000001", "10b00000000000000000000000000002"
	if _, err := st.PutVM(ctx, acctA, jobA, vm); err != nil {
		t.Fatal(err)
	}
	if _, err := st.PutVM(ctx, acctA, jobA, vm); err != nil {
		t.Fatalf("the same job writing its VM again: %v", err)
	}
	theirs := *vm
	theirs.Name = "b's"
	_, err := st.PutVM(ctx, acctB, jobB, &theirs)
	wantTaken(t, err, "another job overwriting the VM")
	if err := st.DeleteVM(ctx, jobB, vm.UUID); err != nil {
		t.Fatal(err)
	}
	got, owner, err := st.GetVM(ctx, vm.UUID)
	if err != nil || owner != acctA || got.Name != "a's" {
		t.Fatalf("after another job's put and delete: %+v %q %v", got, owner, err)
	}
	if l, _ := st.ListVMs(ctx, acctB); len(l) != 0 {
		t.Fatalf("B lists %d VMs", len(l))
	}
	if err := st.DeleteVM(ctx, jobA, vm.UUID); err != nil {
		t.Fatal(err)
	}
	if _, _, err := st.GetVM(ctx, vm.UUID); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("the job that built the VM deletes it: %v", err)
	}
	if l, _ := st.ListVMs(ctx, ""); len(l) != 0 {
		t.Fatalf("the deleted VM is still listed: %d", len(l))
	}
}

// Reads made on behalf of an account see another account's job or plan exactly as one that
// does not exist; SystemAdmin and the workers see all.
func TestReadsOnBehalfOfAnAccountSeeOnlyItsOwn(t *testing.T) {
	ctx := context.Background()
	st := store.New(redistest.Start(t).Client())
	id := "5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a"
	rec := &job.Record{UUID: id, AccountUUID: acctA, CreatedAt: time.Now(), Timeout: time.Hour, Request: &job.Request{GroupUUID: groupA}}
	if err := st.CreateJob(ctx, rec); err != nil {
		t.Fatal(err)
	}
	for who, c := range map[string]context.Context{
		"the owner": store.OnBehalfOf(ctx, acctA, false), "admin": store.OnBehalfOf(ctx, acctB, true), "a worker": ctx,
	} {
		if st, err := st.GetJobStatus(c, id); err != nil || st.Account != acctA {
			t.Fatalf("%s polls: %+v %v", who, st, err)
		}
		if r, err := st.GetJob(c, id); err != nil || r.AccountUUID != acctA {
			t.Fatalf("%s reads: %+v %v", who, r, err)
		}
	}
	b := store.OnBehalfOf(ctx, acctB, false)
	for _, uuid := range []string{id, "0000000000000000000000000000dead"} {
		if _, err := st.GetJobStatus(b, uuid); !errors.Is(err, store.ErrNotFound) {
			t.Fatalf("another account polls %s: %v", uuid, err)
		}
		if _, err := st.GetJob(b, uuid); !errors.Is(err, store.ErrNotFound) {
			t.Fatalf("another account reads %s: %v", uuid, err)
		}
	}

	plan := &store.PlanMeta{UUID: "9a9a9a9a9a9a9a9a9a9a9a9a9a9a9a9a", Name: "p", AccountUUID: acctA, CreatedAt: time.Now(), Concurrency: 1}
	if err := st.CreatePlan(ctx, plan, nil); err != nil {
		t.Fatal(err)
	}
	if m, _, err := st.GetPlan(store.OnBehalfOf(ctx, acctA, false), plan.UUID); err != nil || m.AccountUUID != acctA {
		t.Fatalf("the owner reads its plan: %v", err)
	}
	if _, _, err := st.GetPlan(b, plan.UUID); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("another account reads the plan: %v", err)
	}
}
