package store_test

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/vmrestore/vmrestore/internal/redistest"
	"github.com/vmrestore/vmrestore/internal/store"
)

// TestMain runs the child processes of the cross-process tests: a slot holder that renews
// its lease until killed, and a bandwidth consumer that copies (pretends to) until a deadline.
func TestMain(m *testing.M) {
	switch os.Getenv("STORE_TEST_CHILD") {
	case "slot":
		os.Exit(slotChild())
	case "bandwidth":
		os.Exit(bandwidthChild())
	}
	os.Exit(m.Run())
}

func childStore() *store.Store {
	return store.New(redis.NewClient(&redis.Options{Addr: os.Getenv("STORE_TEST_REDIS")}))
}

func slotChild() int {
	s, ctx := childStore(), context.Background()
	lease := time.Second
	ok, err := s.AcquireCloneSlot(ctx, "bs-slot", "child", 1, lease, 0)
	if err != nil || !ok {
		fmt.Println("refused", err)
		return 1
	}
	fmt.Println("held")
	for {
		time.Sleep(lease / 3)
		if ok, err := s.AcquireCloneSlot(ctx, "bs-slot", "child", 1, lease, 0); err != nil || !ok {
			fmt.Println("lost", err)
			return 1
		}
	}
}

// bandwidthChild reserves chunks as a throttled copy does, and reports how many bytes it
// was allowed to read between start and stop (unix ms).
func bandwidthChild() int {
	s, ctx := childStore(), context.Background()
	rate, _ := strconv.ParseInt(os.Getenv("STORE_TEST_RATE"), 10, 64)
	chunk, _ := strconv.ParseInt(os.Getenv("STORE_TEST_CHUNK"), 10, 64)
	startMs, _ := strconv.ParseInt(os.Getenv("STORE_TEST_START"), 10, 64)
	stopMs, _ := strconv.ParseInt(os.Getenv("STORE_TEST_STOP"), 10, 64)
	time.Sleep(time.Until(time.UnixMilli(startMs)))
	var got int64
	for {
		wait, err := s.ReserveBandwidth(ctx, "bs-bw", rate, chunk)
		if err != nil {
			fmt.Println("error", err)
			return 1
		}
		time.Sleep(wait)
		if time.Now().After(time.UnixMilli(stopMs)) {
			break
		}
		got += chunk // "read" the chunk now
	}
	fmt.Println("bytes", got)
	return 0
}

func child(tb testing.TB, kind string, env ...string) (*exec.Cmd, *bufio.Scanner) {
	tb.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), append([]string{"STORE_TEST_CHILD=" + kind}, env...)...)
	out, err := cmd.StdoutPipe()
	if err != nil {
		tb.Fatal(err)
	}
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() {
		if cmd.ProcessState == nil {
			cmd.Process.Kill()
			cmd.Wait()
		}
	})
	return cmd, bufio.NewScanner(out)
}

func newStore(tb testing.TB) (*store.Store, *redistest.Server) {
	tb.Helper()
	srv := redistest.Start(tb)
	return store.New(srv.Client()), srv
}

func TestCloneSlots(t *testing.T) {
	s, _ := newStore(t)
	ctx := context.Background()
	lease := 10 * time.Second
	steps := []struct {
		do     string // acquire or release
		holder string
		want   bool
		inUse  int64
	}{
		{"acquire", "a", true, 1},
		{"acquire", "b", true, 2},
		{"acquire", "c", false, 2}, // limit 2
		{"acquire", "a", true, 2},  // a renewal of a held slot always succeeds
		{"release", "a", true, 1},
		{"acquire", "c", true, 2},
		{"acquire", "a", false, 2},
	}
	for i, st := range steps {
		var ok bool
		var err error
		if st.do == "acquire" {
			ok, err = s.AcquireCloneSlot(ctx, "bs", st.holder, 2, lease, 0)
		} else {
			ok, err = true, s.ReleaseCloneSlot(ctx, "bs", st.holder)
		}
		n, nerr := s.CloneSlotsInUse(ctx, "bs")
		if err != nil || nerr != nil || ok != st.want || n != st.inUse {
			t.Fatalf("step %d (%s %s): ok %v err %v, %d in use (%v); want %v and %d", i, st.do, st.holder, ok, err, n, nerr, st.want, st.inUse)
		}
	}
	// Another storage's slots are separate.
	if ok, err := s.AcquireCloneSlot(ctx, "other-bs", "z", 1, lease, 0); !ok || err != nil {
		t.Fatalf("a busy storage must not hold up another: %v %v", ok, err)
	}
}

// A slot that frees goes to the waiter first in priority order (lower first), not to
// whoever asks first; a waiter that stops asking drops out after CloneWaitLease, and one that
// withdraws at once.
func TestCloneSlotsAreFair(t *testing.T) {
	s, _ := newStore(t)
	ctx := context.Background()
	lease := time.Minute
	acquire := func(holder string, prio float64) bool {
		t.Helper()
		ok, err := s.AcquireCloneSlot(ctx, "bs", holder, 1, lease, prio)
		if err != nil {
			t.Fatal(err)
		}
		return ok
	}
	if !acquire("holder", 5) {
		t.Fatal("the first holder gets the free slot")
	}
	if acquire("young", 20) || acquire("old", 10) || acquire("withdrawn", 1) {
		t.Fatal("no slot is free")
	}
	if n, _ := s.CloneSlotWaiters(ctx, "bs"); n != 3 {
		t.Fatalf("%d waiters, want 3", n)
	}
	if err := s.WithdrawCloneSlotWait(ctx, "bs", "withdrawn"); err != nil {
		t.Fatal(err)
	}
	if err := s.ReleaseCloneSlot(ctx, "bs", "holder"); err != nil {
		t.Fatal(err)
	}
	if acquire("young", 20) {
		t.Fatal("the younger waiter took the slot ahead of the older one")
	}
	if !acquire("old", 10) {
		t.Fatal("the first waiter in priority order gets the freed slot")
	}
	// "young" stops asking: once its place lapses, a newcomer is first.
	if err := s.ReleaseCloneSlot(ctx, "bs", "old"); err != nil {
		t.Fatal(err)
	}
	if acquire("newcomer", 30) {
		t.Fatal("the newcomer took the slot while an earlier waiter still held its place")
	}
	time.Sleep(store.CloneWaitLease + 200*time.Millisecond)
	if !acquire("newcomer", 30) {
		t.Fatal("a waiter that stopped asking still holds up the others")
	}
}

// A process holding a slot keeps it while it lives (renewing its lease) and loses it within
// one lease of being killed.
func TestCloneSlotLeaseExpiresWhenHolderDies(t *testing.T) {
	s, srv := newStore(t)
	ctx := context.Background()
	cmd, out := child(t, "slot", "STORE_TEST_REDIS="+srv.Addr)
	if !out.Scan() || out.Text() != "held" {
		t.Fatalf("the child did not take the slot: %q", out.Text())
	}
	// Three leases long, the live child keeps the only slot.
	for end := time.Now().Add(3 * time.Second); time.Now().Before(end); time.Sleep(100 * time.Millisecond) {
		if ok, err := s.AcquireCloneSlot(ctx, "bs-slot", "parent", 1, time.Second, 0); ok || err != nil {
			t.Fatalf("took the slot of a live holder (ok %v, err %v)", ok, err)
		}
	}
	if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	cmd.Wait()
	killed := time.Now()
	for {
		ok, err := s.AcquireCloneSlot(ctx, "bs-slot", "parent", 1, time.Second, 0)
		if err != nil {
			t.Fatal(err)
		}
		if ok {
			break
		}
		if time.Since(killed) > 3*time.Second {
			t.Fatal("the dead holder's slot did not come back within its lease")
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Logf("the slot came back %v after the holder was killed (lease 1s)", time.Since(killed).Round(time.Millisecond))
	if time.Since(killed) > 1500*time.Millisecond {
		t.Errorf("the slot came back %v after the kill; the lease is 1s", time.Since(killed))
	}
}

// Two processes sharing one storage's bandwidth get, together, the configured rate within
// 10% over several seconds, and each gets a fair part of it.
func TestBandwidthSharedByTwoProcesses(t *testing.T) {
	if testing.Short() {
		t.Skip("runs for 6 seconds")
	}
	_, srv := newStore(t)
	const (
		rate     = 8 << 20
		chunk    = 1 << 20 // what a copy limited to 8 MiB/s reserves per call (rate/8)
		duration = 6 * time.Second
	)
	start := time.Now().Add(500 * time.Millisecond)
	stop := start.Add(duration)
	env := []string{"STORE_TEST_REDIS=" + srv.Addr, fmt.Sprint("STORE_TEST_RATE=", rate), fmt.Sprint("STORE_TEST_CHUNK=", chunk),
		fmt.Sprint("STORE_TEST_START=", start.UnixMilli()), fmt.Sprint("STORE_TEST_STOP=", stop.UnixMilli())}
	var outs []*bufio.Scanner
	var cmds []*exec.Cmd
	for range 2 {
		cmd, out := child(t, "bandwidth", env...)
		cmds, outs = append(cmds, cmd), append(outs, out)
	}
	var total int64
	var each []int64
	for i, out := range outs {
		if !out.Scan() || !strings.HasPrefix(out.Text(), "bytes ") {
			t.Fatalf("child %d: %q", i, out.Text())
		}
		n, _ := strconv.ParseInt(strings.TrimPrefix(out.Text(), "bytes "), 10, 64)
		each = append(each, n)
		total += n
		cmds[i].Wait()
	}
	got := float64(total) / duration.Seconds()
	t.Logf("two processes: %.2f MiB/s together (%v bytes each), limit %.2f MiB/s: %+.1f%%",
		got/(1<<20), each, float64(rate)/(1<<20), (got/rate-1)*100)
	if got > rate*1.1 || got < rate*0.9 {
		t.Errorf("the processes read %.2f MiB/s together; the limit is %.2f MiB/s (±10%%)", got/(1<<20), float64(rate)/(1<<20))
	}
	for i, n := range each {
		if float64(n) < 0.3*float64(total) {
			t.Errorf("process %d got %d of %d bytes: the limit is not shared fairly", i, n, total)
		}
	}
}
