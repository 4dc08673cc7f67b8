package store_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/vmrestore/vmrestore/internal/redistest"
	"github.com/vmrestore/vmrestore/internal/store"
)

var limits = store.LoginLimits{PairFree: 5, PairMaxWait: 15 * time.Minute, NameFree: 10, NameMaxWait: time.Minute,
	AddressLimit: 50, Window: 15 * time.Minute, BaseWait: time.Second, FamiliarFor: 30 * 24 * time.Hour, MaxFamiliar: 3}

// The limits hold back the attempt past each budget, and only those: a name's back-off
// spares the addresses it logged in from; a right password gives its reservation back.
func TestLoginLimits(t *testing.T) {
	ctx := context.Background()
	st := store.New(redistest.Start(t).Client())
	try := func(name, addr string) (int, time.Duration) {
		t.Helper()
		why, wait, err := st.ReserveLoginAttempt(ctx, name, addr, limits)
		if err != nil {
			t.Fatal(err)
		}
		return why, wait
	}
	// The owner logged in from 10.0.0.1 once.
	if why, _ := try("admin", "10.0.0.1"); why != store.LoginAllowed {
		t.Fatal("first login held back")
	}
	if err := st.LoginSucceeded(ctx, "admin", "10.0.0.1", limits); err != nil {
		t.Fatal(err)
	}

	// One address guessing: five tries, then back-off doubling from 1 s.
	for i := 0; i < limits.PairFree; i++ {
		if why, _ := try("admin", "192.0.2.7"); why != store.LoginAllowed {
			t.Fatalf("try %d held back (%d)", i+1, why)
		}
	}
	why, wait := try("admin", "192.0.2.7")
	if why != store.LoginByPair || wait <= 0 || wait > time.Second {
		t.Fatalf("the sixth try: reason %d, wait %v; want the pair's 1 s", why, wait)
	}
	// Other addresses guessing: the name reaches its ten, then new addresses back off...
	for i := 0; i < limits.NameFree-limits.PairFree; i++ {
		if why, _ := try("admin", fmt.Sprintf("198.51.100.%d", i)); why != store.LoginAllowed {
			t.Fatalf("guess %d from a fresh address held back (%d)", i, why)
		}
	}
	if why, _ := try("admin", "203.0.113.9"); why != store.LoginByName {
		t.Fatalf("past the name's budget a new address must wait, got reason %d", why)
	}
	// ...but the owner's address does not.
	if why, _ := try("admin", "10.0.0.1"); why != store.LoginAllowed {
		t.Fatalf("the owner's familiar address is held back (%d)", why)
	}
	if err := st.LoginSucceeded(ctx, "admin", "10.0.0.1", limits); err != nil {
		t.Fatal(err)
	}
	// Another name from a guessing address is not affected by admin's back-off.
	if why, _ := try("bob", "192.0.2.7"); why != store.LoginAllowed {
		t.Fatalf("another name from the guessing address held back (%d)", why)
	}

	// One address spraying names: 50 failures, then it waits out its window.
	for i := 0; i < limits.AddressLimit; i++ {
		if why, _ := try(fmt.Sprintf("user%d", i), "192.0.2.99"); why != store.LoginAllowed {
			t.Fatalf("spray %d held back (%d)", i, why)
		}
	}
	why, wait = try("someone-else", "192.0.2.99")
	if why != store.LoginByAddress || wait < 14*time.Minute {
		t.Fatalf("the 51st failure from one address: reason %d, wait %v", why, wait)
	}

	// A right password gives its reservation back: four failures and a success leave the
	// pair clean, so five more tries go through.
	for i := 0; i < 4; i++ {
		try("carol", "10.9.9.9")
	}
	try("carol", "10.9.9.9")
	if err := st.LoginSucceeded(ctx, "carol", "10.9.9.9", limits); err != nil {
		t.Fatal(err)
	}
	for i := 0; i < limits.PairFree; i++ {
		if why, _ := try("carol", "10.9.9.9"); why != store.LoginAllowed {
			t.Fatalf("after a success, try %d held back (%d)", i+1, why)
		}
	}
}
