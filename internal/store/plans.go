package store

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/vmrestore/vmrestore/internal/job"
)

// A restore plan is kept in a few keys: the plan hash (what was asked, its state, counts by
// item state, bytes done), the items' requests (what each item restores), a compact listing
// of the items (index, tier, group, name, size) read in one GET by progress queries, the
// status of every item that has started, the queue of pending items in tier order, and the
// set of running items. Only the worker holding the plan's lock changes a plan's items; the
// api only writes what the operator asks (pause, resume, cancel, retry) into the plan hash.

// A plan's own keys share the hash tag {plan:<uuid>}, so a batch of changes to them is one
// MULTI/EXEC even on Redis Cluster; the global lists of plans are updated separately.
func planTag(p string) string         { return prefix + "{plan:" + p + "}" }
func keyPlan(p string) string         { return planTag(p) }
func keyPlanReqs(p string) string     { return planTag(p) + ":reqs" }
func keyPlanIndex(p string) string    { return planTag(p) + ":index" }
func keyPlanStatus(p string) string   { return planTag(p) + ":items" }
func keyPlanQueue(p string) string    { return planTag(p) + ":queue" }
func keyPlanRunning(p string) string  { return planTag(p) + ":running" }
func keyPlanLock(p string) string     { return planTag(p) + ":lock" }
func keyPlanSamples(p string) string  { return planTag(p) + ":samples" }
func keyPlans() string                { return prefix + "plans" }
func keyPlansAccount(a string) string { return prefix + "plans:acct:" + a }
func keyPlansActive() string          { return prefix + "plans:active" }
func keyPlanToken(a, t string) string { return prefix + "plan-token:" + a + ":" + t }

// Plan states.
const (
	PlanRunning    = "running"
	PlanPaused     = "paused"
	PlanCancelling = "cancelling"
	PlanSucceeded  = "succeeded"
	PlanFailed     = "failed"
	PlanCancelled  = "cancelled"
)

// PlanEnded reports whether a plan state is final.
func PlanEnded(state string) bool {
	return state == PlanSucceeded || state == PlanFailed || state == PlanCancelled
}

// Item states (the job states, plus pending for items not started).
const (
	ItemPending   = "pending"
	ItemRunning   = "running"
	ItemSucceeded = string(job.Succeeded)
	ItemFailed    = string(job.Failed)
	ItemCancelled = string(job.Cancelled)
)

// ItemStates lists item states in display order.
var ItemStates = []string{ItemPending, ItemRunning, ItemSucceeded, ItemFailed, ItemCancelled}

// PlanMeta is what does not change after a plan is accepted.
type PlanMeta struct {
	UUID          string          `json:"uuid"`
	Name          string          `json:"name"`
	AccountUUID   string          `json:"accountUuid"`
	Mode          string          `json:"mode,omitempty"` // recovery or drill ("" before modes: recovery)
	ClientToken   string          `json:"clientToken,omitempty"`
	CreatedAt     time.Time       `json:"createdAt"`
	Concurrency   int             `json:"concurrency"`
	HaltOnFailure bool            `json:"haltOnFailure"`
	WebHook       string          `json:"webHook,omitempty"`
	ItemCount     int             `json:"itemCount"`
	BytesTotal    int64           `json:"bytesTotal"`     // virtual size of every volume
	DataTotal     int64           `json:"dataBytesTotal"` // backup data of every volume (see PlanItem)
	Tiers         []int           `json:"tiers"`
	Spec          json.RawMessage `json:"spec"`
}

// PlanItem is one group to restore: BytesTotal is the virtual size of its volumes, DataTotal
// the data in their backups (what a restore reads and writes: group.json's actualSize, or the
// virtual size of a volume that declares none).
type PlanItem struct {
	Index      int          `json:"index"`
	Tier       int          `json:"tier"`
	GroupUUID  string       `json:"groupUuid"`
	Name       string       `json:"name"`
	BytesTotal int64        `json:"bytesTotal"`
	DataTotal  int64        `json:"dataBytesTotal"`
	Request    *job.Request `json:"request,omitempty"`
}

// ItemStatus is where an item that has started is. It is stored as one line of fields
// separated by '|' (details last, as they may contain anything), which progress queries of
// 10,000 items parse an order of magnitude faster than JSON. BytesDone counts virtual bytes
// (holes pass at once), DataDone the backup data restored; they share a field, "bytes:data".
type ItemStatus struct {
	State      string
	Stage      string
	Job        string
	VM         string
	BytesDone  int64
	DataDone   int64
	Attempt    int
	Code       string
	Details    string
	StartedAt  int64
	FinishedAt int64
	CancelSent bool
}

func (st ItemStatus) encode() string {
	x := "0"
	if st.CancelSent {
		x = "1"
	}
	return strings.Join([]string{st.State, st.Stage, st.Job, st.VM, strconv.FormatInt(st.BytesDone, 10) + ":" + strconv.FormatInt(st.DataDone, 10),
		strconv.Itoa(st.Attempt), st.Code, strconv.FormatInt(st.StartedAt, 10), strconv.FormatInt(st.FinishedAt, 10), x, st.Details}, "|")
}

func decodeItemStatus(s string) (ItemStatus, error) {
	f := strings.SplitN(s, "|", 11)
	if len(f) != 11 {
		return ItemStatus{}, fmt.Errorf("malformed item status %q", s)
	}
	st := ItemStatus{State: f[0], Stage: f[1], Job: f[2], VM: f[3], Code: f[6], CancelSent: f[9] == "1", Details: f[10]}
	bytesDone, dataDone, _ := strings.Cut(f[4], ":") // a status written before data was counted has no ":"
	st.BytesDone, _ = strconv.ParseInt(bytesDone, 10, 64)
	st.DataDone, _ = strconv.ParseInt(dataDone, 10, 64)
	st.Attempt, _ = strconv.Atoi(f[5])
	st.StartedAt, _ = strconv.ParseInt(f[7], 10, 64)
	st.FinishedAt, _ = strconv.ParseInt(f[8], 10, 64)
	return st, nil
}

// PlanState is the mutable part of a plan.
type PlanState struct {
	State      string
	Reason     string
	Counts     map[string]int
	BytesDone  int64 // virtual bytes
	DataDone   int64 // backup data
	FinishedAt time.Time
	UpdatedAt  time.Time
}

// ErrPlanExists is returned by CreatePlan with the uuid of the plan the client token names.
type ErrPlanExists struct{ UUID string }

func (e *ErrPlanExists) Error() string { return "a plan with this client token exists: " + e.UUID }

// queueEntry encodes a pending item so the queue sorts by tier, then index.
func queueEntry(tier, index int) string { return fmt.Sprintf("%06d:%08d", tier, index) }

func parseQueueEntry(e string) (tier, index int) {
	t, i, _ := strings.Cut(e, ":")
	tier, _ = strconv.Atoi(t)
	index, _ = strconv.Atoi(i)
	return tier, index
}

// CreatePlan stores an accepted plan with all its items pending and makes it active. A
// client token already used by the account returns *ErrPlanExists naming the first plan.
func (s *Store) CreatePlan(ctx context.Context, m *PlanMeta, items []PlanItem) error {
	if m.ClientToken != "" {
		ok, err := s.rdb.SetNX(ctx, keyPlanToken(m.AccountUUID, m.ClientToken), m.UUID, 0).Result()
		if err != nil {
			return err
		}
		if !ok {
			prev, err := s.rdb.Get(ctx, keyPlanToken(m.AccountUUID, m.ClientToken)).Result()
			if err != nil {
				return err
			}
			if n, err := s.rdb.Exists(ctx, keyPlan(prev)).Result(); err == nil && n == 1 {
				return &ErrPlanExists{UUID: prev}
			}
			// The token names a plan whose creation did not complete: take it over.
			if err := s.rdb.Set(ctx, keyPlanToken(m.AccountUUID, m.ClientToken), m.UUID, 0).Err(); err != nil {
				return err
			}
		}
	}
	meta, err := json.Marshal(m)
	if err != nil {
		return err
	}
	var index strings.Builder
	queue := make([]string, 0, len(items))
	pipe := s.rdb.Pipeline()
	reqs := make(map[string]any, 1000)
	for _, it := range items {
		b, err := json.Marshal(it.Request)
		if err != nil {
			return err
		}
		reqs[strconv.Itoa(it.Index)] = b
		if len(reqs) == 1000 {
			pipe.HSet(ctx, keyPlanReqs(m.UUID), reqs)
			reqs = make(map[string]any, 1000)
		}
		fmt.Fprintf(&index, "%d\t%d\t%s\t%d:%d\t%s\n", it.Index, it.Tier, it.GroupUUID, it.BytesTotal, it.DataTotal, strings.ReplaceAll(it.Name, "\n", " "))
		queue = append(queue, queueEntry(it.Tier, it.Index))
	}
	if len(reqs) > 0 {
		pipe.HSet(ctx, keyPlanReqs(m.UUID), reqs)
	}
	sort.Strings(queue)
	for i := 0; i < len(queue); i += 1000 {
		batch := make([]any, 0, 1000)
		for _, q := range queue[i:min(i+1000, len(queue))] {
			batch = append(batch, q)
		}
		pipe.RPush(ctx, keyPlanQueue(m.UUID), batch...)
	}
	pipe.Set(ctx, keyPlanIndex(m.UUID), index.String(), 0)
	if _, err := pipe.Exec(ctx); err != nil {
		return fmt.Errorf("store plan items: %w", err)
	}
	// The plan hash last: a plan is visible only once all its items are stored. The lists
	// of plans are other slots: a plain pipeline, each command atomic on its own.
	if err := s.rdb.HSet(ctx, keyPlan(m.UUID), "meta", meta, "account", m.AccountUUID, "state", PlanRunning, "n:"+ItemPending, len(items),
		"bytesDone", 0, "dataDone", 0, "updatedAt", time.Now().UnixMilli()).Err(); err != nil {
		return fmt.Errorf("store plan: %w", err)
	}
	pipe = s.rdb.Pipeline()
	pipe.ZAdd(ctx, keyPlans(), redis.Z{Score: float64(m.CreatedAt.UnixMilli()), Member: m.UUID})
	pipe.ZAdd(ctx, keyPlansAccount(m.AccountUUID), redis.Z{Score: float64(m.CreatedAt.UnixMilli()), Member: m.UUID})
	pipe.SAdd(ctx, keyPlansActive(), m.UUID)
	pipe.Publish(ctx, ChannelPlanWake, m.UUID)
	if _, err := pipe.Exec(ctx); err != nil {
		return fmt.Errorf("store plan: %w", err)
	}
	return nil
}

// PlanOfClientToken returns the plan an account's client token names, or "" when it names
// none that exists.
func (s *Store) PlanOfClientToken(ctx context.Context, account, token string) (string, error) {
	uuid, err := s.rdb.Get(ctx, keyPlanToken(account, token)).Result()
	if errors.Is(err, redis.Nil) {
		return "", nil
	}
	if err != nil {
		return "", err
	}
	if n, err := s.rdb.Exists(ctx, keyPlan(uuid)).Result(); err != nil || n == 0 {
		return "", err
	}
	return uuid, nil
}

// GetPlan reads a plan's metadata and state. ErrNotFound if it does not exist, or belongs to
// another account than the one the read is made for (OnBehalfOf).
func (s *Store) GetPlan(ctx context.Context, uuid string) (*PlanMeta, *PlanState, error) {
	var h map[string]string
	var err error
	account, restricted := viewer(ctx)
	if restricted {
		h, err = flatMap(viewPlanScript.Run(ctx, s.rdb, []string{keyPlan(uuid)}, account).Slice())
	} else {
		h, err = s.rdb.HGetAll(ctx, keyPlan(uuid)).Result()
	}
	if err != nil {
		return nil, nil, err
	}
	if h["meta"] == "" {
		return nil, nil, ErrNotFound
	}
	var m PlanMeta
	if err := json.Unmarshal([]byte(h["meta"]), &m); err != nil {
		return nil, nil, fmt.Errorf("decode plan %s: %w", uuid, err)
	}
	if restricted && m.AccountUUID != account { // a plan stored before its account had a field of its own
		return nil, nil, ErrNotFound
	}
	st := &PlanState{State: h["state"], Reason: h["reason"], Counts: map[string]int{}}
	for _, s := range ItemStates {
		st.Counts[s], _ = strconv.Atoi(h["n:"+s])
	}
	st.BytesDone, _ = strconv.ParseInt(h["bytesDone"], 10, 64)
	st.DataDone, _ = strconv.ParseInt(h["dataDone"], 10, 64)
	st.FinishedAt = millis(h["finishedAt"])
	st.UpdatedAt = millis(h["updatedAt"])
	return &m, st, nil
}

// viewPlanScript is HGETALL of a plan unless its account field names another account.
// KEYS: plan. ARGV: account.
var viewPlanScript = redis.NewScript(`
local a = redis.call('HGET', KEYS[1], 'account')
if a and a ~= ARGV[1] then return {} end
return redis.call('HGETALL', KEYS[1])
`)

// ListPlans returns the plans of an account (all plans when account is empty), newest first.
func (s *Store) ListPlans(ctx context.Context, account string) ([]string, error) {
	key := keyPlans()
	if account != "" {
		key = keyPlansAccount(account)
	}
	return s.rdb.ZRevRange(ctx, key, 0, -1).Result()
}

// ActivePlans returns the plans that have not ended.
func (s *Store) ActivePlans(ctx context.Context) ([]string, error) {
	return s.rdb.SMembers(ctx, keyPlansActive()).Result()
}

// SetPlanState records an operator's request (pause, resume, cancel) or the plan's end; the
// plan becomes active again unless the state is final.
func (s *Store) SetPlanState(ctx context.Context, uuid, state, reason string) error {
	pipe := s.rdb.Pipeline()
	pipe.HSet(ctx, keyPlan(uuid), "state", state, "reason", reason, "updatedAt", time.Now().UnixMilli())
	if PlanEnded(state) {
		pipe.HSet(ctx, keyPlan(uuid), "finishedAt", time.Now().UnixMilli())
		pipe.SRem(ctx, keyPlansActive(), uuid)
	} else {
		pipe.HDel(ctx, keyPlan(uuid), "finishedAt")
		pipe.SAdd(ctx, keyPlansActive(), uuid)
		pipe.Publish(ctx, ChannelPlanWake, uuid)
	}
	_, err := pipe.Exec(ctx)
	return err
}

// LockPlan takes or renews the lock of the worker driving a plan.
func (s *Store) LockPlan(ctx context.Context, uuid, token string, ttl time.Duration) (bool, error) {
	n, err := lockScript.Run(ctx, s.rdb, []string{keyPlanLock(uuid)}, token, ttl.Milliseconds()).Int()
	return n == 1, err
}

// UnlockPlan releases the plan lock if token holds it.
func (s *Store) UnlockPlan(ctx context.Context, uuid, token string) error {
	return unlockScript.Run(ctx, s.rdb, []string{keyPlanLock(uuid)}, token).Err()
}

// PlanIndex reads the listing of a plan's items, in index order.
func (s *Store) PlanIndex(ctx context.Context, uuid string) ([]PlanItem, error) {
	blob, err := s.rdb.Get(ctx, keyPlanIndex(uuid)).Result()
	if errors.Is(err, redis.Nil) {
		return nil, ErrNotFound
	}
	if err != nil {
		return nil, err
	}
	items := make([]PlanItem, 0, strings.Count(blob, "\n"))
	for len(blob) > 0 {
		line, rest, _ := strings.Cut(blob, "\n")
		blob = rest
		f := strings.SplitN(line, "\t", 5)
		if len(f) != 5 {
			return nil, fmt.Errorf("plan %s: malformed item listing %q", uuid, line)
		}
		var it PlanItem
		it.Index, _ = strconv.Atoi(f[0])
		it.Tier, _ = strconv.Atoi(f[1])
		it.GroupUUID = f[2]
		virtual, data, _ := strings.Cut(f[3], ":") // a plan stored before data was counted has no ":"
		it.BytesTotal, _ = strconv.ParseInt(virtual, 10, 64)
		it.DataTotal, _ = strconv.ParseInt(data, 10, 64)
		it.Name = f[4]
		items = append(items, it)
	}
	return items, nil
}

// PlanRequests reads the job requests of some items.
func (s *Store) PlanRequests(ctx context.Context, uuid string, idx []int) (map[int]*job.Request, error) {
	if len(idx) == 0 {
		return nil, nil
	}
	fields := make([]string, len(idx))
	for i, n := range idx {
		fields[i] = strconv.Itoa(n)
	}
	vals, err := s.rdb.HMGet(ctx, keyPlanReqs(uuid), fields...).Result()
	if err != nil {
		return nil, err
	}
	out := make(map[int]*job.Request, len(idx))
	for i, v := range vals {
		b, _ := v.(string)
		if b == "" {
			return nil, fmt.Errorf("plan %s has no request for item %d", uuid, idx[i])
		}
		var r job.Request
		if err := json.Unmarshal([]byte(b), &r); err != nil {
			return nil, err
		}
		out[idx[i]] = &r
	}
	return out, nil
}

// PlanStatuses reads the status of every item that has started.
func (s *Store) PlanStatuses(ctx context.Context, uuid string) (map[int]ItemStatus, error) {
	m, err := s.rdb.HGetAll(ctx, keyPlanStatus(uuid)).Result()
	if err != nil {
		return nil, err
	}
	return decodeStatuses(m)
}

// PlanStatusesOf reads the status of some items (absent items are pending).
func (s *Store) PlanStatusesOf(ctx context.Context, uuid string, idx []int) (map[int]ItemStatus, error) {
	if len(idx) == 0 {
		return map[int]ItemStatus{}, nil
	}
	fields := make([]string, len(idx))
	for i, n := range idx {
		fields[i] = strconv.Itoa(n)
	}
	vals, err := s.rdb.HMGet(ctx, keyPlanStatus(uuid), fields...).Result()
	if err != nil {
		return nil, err
	}
	m := map[string]string{}
	for i, v := range vals {
		if b, ok := v.(string); ok {
			m[fields[i]] = b
		}
	}
	return decodeStatuses(m)
}

func decodeStatuses(m map[string]string) (map[int]ItemStatus, error) {
	out := make(map[int]ItemStatus, len(m))
	for k, v := range m {
		i, err := strconv.Atoi(k)
		if err != nil {
			continue
		}
		st, err := decodeItemStatus(v)
		if err != nil {
			return nil, fmt.Errorf("item %d: %w", i, err)
		}
		out[i] = st
	}
	return out, nil
}

// PlanRunningItems returns the items currently running.
func (s *Store) PlanRunningItems(ctx context.Context, uuid string) ([]int, error) {
	ms, err := s.rdb.SMembers(ctx, keyPlanRunning(uuid)).Result()
	if err != nil {
		return nil, err
	}
	out := make([]int, 0, len(ms))
	for _, m := range ms {
		if i, err := strconv.Atoi(m); err == nil {
			out = append(out, i)
		}
	}
	sort.Ints(out)
	return out, nil
}

// QueuedItem is a pending item.
type QueuedItem struct{ Tier, Index int }

// PlanQueueHead returns up to n pending items (all with n < 0) in tier order, and how many
// are pending.
func (s *Store) PlanQueueHead(ctx context.Context, uuid string, n int) ([]QueuedItem, int64, error) {
	stop := int64(n) - 1
	if n < 0 {
		stop = -1
	}
	pipe := s.rdb.Pipeline()
	head := pipe.LRange(ctx, keyPlanQueue(uuid), 0, stop)
	length := pipe.LLen(ctx, keyPlanQueue(uuid))
	if _, err := pipe.Exec(ctx); err != nil {
		return nil, 0, err
	}
	out := make([]QueuedItem, 0, len(head.Val()))
	for _, e := range head.Val() {
		t, i := parseQueueEntry(e)
		out = append(out, QueuedItem{Tier: t, Index: i})
	}
	return out, length.Val(), nil
}

// PlanRequeue rewrites the queue with items added (in tier order): used to retry items.
func (s *Store) PlanRequeue(ctx context.Context, uuid string, add []QueuedItem) error {
	cur, err := s.rdb.LRange(ctx, keyPlanQueue(uuid), 0, -1).Result()
	if err != nil {
		return err
	}
	for _, q := range add {
		cur = append(cur, queueEntry(q.Tier, q.Index))
	}
	sort.Strings(cur)
	pipe := s.rdb.TxPipeline()
	pipe.Del(ctx, keyPlanQueue(uuid))
	for i := 0; i < len(cur); i += 1000 {
		batch := make([]any, 0, 1000)
		for _, q := range cur[i:min(i+1000, len(cur))] {
			batch = append(batch, q)
		}
		pipe.RPush(ctx, keyPlanQueue(uuid), batch...)
	}
	if _, err = pipe.Exec(ctx); err != nil {
		return err
	}
	return s.rdb.Publish(ctx, ChannelPlanWake, uuid).Err()
}

// PlanChange is a batch of item transitions written by the plan's driver in one round trip.
type PlanChange struct {
	plan    string
	status  map[string]any
	counts  map[string]int64
	bytes   int64
	data    int64
	started []any
	ended   []any
	popped  int64
}

// NewPlanChange starts a batch for a plan.
func NewPlanChange(plan string) *PlanChange {
	return &PlanChange{plan: plan, status: map[string]any{}, counts: map[string]int64{}}
}

// Item records an item's new status st; old is its previous one (an item that has not
// started: State pending or empty), for the counts and the bytes done.
func (c *PlanChange) Item(index int, old, st ItemStatus) {
	from := old.State
	if from == "" {
		from = ItemPending
	}
	c.status[strconv.Itoa(index)] = st.encode()
	if from != st.State {
		c.counts[from]--
		c.counts[st.State]++
		switch {
		case st.State == ItemRunning:
			c.started = append(c.started, strconv.Itoa(index))
		case from == ItemRunning:
			c.ended = append(c.ended, strconv.Itoa(index))
		}
	}
	c.bytes += st.BytesDone - old.BytesDone
	c.data += st.DataDone - old.DataDone
}

// Popped records that the first n queue entries were taken (started or cancelled).
func (c *PlanChange) Popped(n int) { c.popped += int64(n) }

// Empty reports whether the batch changes nothing.
func (c *PlanChange) Empty() bool { return len(c.status) == 0 && c.popped == 0 }

// ApplyPlanChange writes a batch.
func (s *Store) ApplyPlanChange(ctx context.Context, c *PlanChange) error {
	if c.Empty() {
		return nil
	}
	pipe := s.rdb.TxPipeline()
	if len(c.status) > 0 {
		pipe.HSet(ctx, keyPlanStatus(c.plan), c.status)
	}
	for state, d := range c.counts {
		if d != 0 {
			pipe.HIncrBy(ctx, keyPlan(c.plan), "n:"+state, d)
		}
	}
	if c.bytes != 0 {
		pipe.HIncrBy(ctx, keyPlan(c.plan), "bytesDone", c.bytes)
	}
	if c.data != 0 {
		pipe.HIncrBy(ctx, keyPlan(c.plan), "dataDone", c.data)
	}
	if len(c.started) > 0 {
		pipe.SAdd(ctx, keyPlanRunning(c.plan), c.started...)
	}
	if len(c.ended) > 0 {
		pipe.SRem(ctx, keyPlanRunning(c.plan), c.ended...)
	}
	if c.popped > 0 {
		pipe.LTrim(ctx, keyPlanQueue(c.plan), c.popped, -1)
	}
	pipe.HSet(ctx, keyPlan(c.plan), "updatedAt", time.Now().UnixMilli())
	_, err := pipe.Exec(ctx)
	return err
}

// JobProgress is what the plan driver reads of a running job.
type JobProgress struct {
	State     job.State
	Stage     string
	VM        string
	BytesDone int64 // virtual
	DataBytes int64
	Error     string
	// VMRunning: an instant restore whose VM runs from its backups (hydrating or hydrated).
	VMRunning bool
}

// JobsProgress reads state, stage, VM, bytes done and error of several jobs in one round trip.
func (s *Store) JobsProgress(ctx context.Context, jobs []string) ([]JobProgress, error) {
	pipe := s.rdb.Pipeline()
	cmds := make([]*redis.SliceCmd, len(jobs))
	for i, j := range jobs {
		cmds[i] = pipe.HMGet(ctx, keyJob(j), jfState, jfStage, jfVM, jfProgress, jfError, jfInstant)
	}
	if _, err := pipe.Exec(ctx); err != nil && !errors.Is(err, redis.Nil) {
		return nil, err
	}
	out := make([]JobProgress, len(jobs))
	for i, c := range cmds {
		v := c.Val()
		str := func(k int) string { s, _ := v[k].(string); return s }
		out[i] = JobProgress{State: job.State(str(0)), Stage: str(1), VM: str(2), Error: str(4)}
		if in := str(5); in != "" {
			var ji job.Instant
			out[i].VMRunning = json.Unmarshal([]byte(in), &ji) == nil && !ji.RunningAt.IsZero() && ji.State != job.InstantFailed
		}
		if p := str(3); p != "" {
			var pr job.Progress
			if json.Unmarshal([]byte(p), &pr) == nil {
				out[i].BytesDone, out[i].DataBytes = pr.BytesDone, pr.DataBytes
			}
		}
	}
	return out, nil
}

// AddPlanSample records data done at a moment (kept: the last 120 samples), for throughput.
func (s *Store) AddPlanSample(ctx context.Context, uuid string, at time.Time, dataDone int64) error {
	pipe := s.rdb.Pipeline()
	pipe.LPush(ctx, keyPlanSamples(uuid), fmt.Sprintf("%d:d%d", at.UnixMilli(), dataDone))
	pipe.LTrim(ctx, keyPlanSamples(uuid), 0, 119)
	_, err := pipe.Exec(ctx)
	return err
}

// PlanSample is backup data done at a moment.
type PlanSample struct {
	At       time.Time
	DataDone int64
}

// PlanSamples returns the recorded samples, newest first.
func (s *Store) PlanSamples(ctx context.Context, uuid string) ([]PlanSample, error) {
	raw, err := s.rdb.LRange(ctx, keyPlanSamples(uuid), 0, -1).Result()
	if err != nil {
		return nil, err
	}
	out := make([]PlanSample, 0, len(raw))
	for _, r := range raw {
		a, b, _ := strings.Cut(r, ":")
		ms, _ := strconv.ParseInt(a, 10, 64)
		// Samples of virtual bytes (stored before data was counted, without the "d") are
		// no measure of data: they are skipped.
		d, ok := strings.CutPrefix(b, "d")
		if !ok {
			continue
		}
		n, _ := strconv.ParseInt(d, 10, 64)
		out = append(out, PlanSample{At: time.UnixMilli(ms), DataDone: n})
	}
	return out, nil
}
