package store

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/vmrestore/vmrestore/internal/job"
	"github.com/vmrestore/vmrestore/internal/zstack"
)

// A job is one Redis hash. Immutable facts are written once at creation; the mutable parts
// (state, stage, progress, cancel flag, outcome) and each stage checkpoint are separate
// fields, so the API (cancel) and the worker (progress, state) never overwrite each other.
// The create scripts also write "submission", a token that tells a resent create from a
// duplicate uuid.
const (
	jfAccount    = "account"
	jfRequest    = "request"
	jfCreated    = "created"
	jfTimeout    = "timeout"
	jfWebHook    = "webhook"
	jfState      = "state"
	jfStage      = "stage"
	jfStarted    = "started"
	jfFinished   = "finished"
	jfAttempts   = "attempts"
	jfHandBacks  = "handBacks"
	jfQueue      = "queue"
	jfVM         = "vm"
	jfVMUUID     = "vmUuid" // the uuid the job generated for its VM, fixed by its first attempt
	jfResult     = "result"
	jfError      = "error"
	jfProgress   = "progress"
	jfCancel     = "cancel"
	jfPlan       = "plan"
	jfPlanItem   = "planItem"
	jfOp         = "op"
	jfInstant    = "instant"
	jfResolved   = "cp:resolved"
	jfPlacement  = "cp:placement"
	jfNICs       = "cp:nics"
	jfDomain     = "cp:domain"
	jfInstance   = "cp:instance"
	jfVolPrefix  = "cp:vol:"
	jfCopyPrefix = "cp:copy:"
	jfDone       = "cp:done:"
	jfStageEnd   = "at:" // + stage: when the stage's checkpoint was written (Unix ms), for run reports
)

// ErrJobExists is returned by CreateJob when the uuid is taken.
var ErrJobExists = errors.New("job uuid already used")

// createJobScript creates a job hash unless the key exists. KEYS: job. ARGV: submission
// token, field, value... A key that holds the same submission token was created by an
// earlier try of this very call (go-redis resends a command whose answer timed out), so it
// counts as created, not as a duplicate.
var createJobScript = redis.NewScript(`
if redis.call('EXISTS', KEYS[1]) == 1 then
  if redis.call('HGET', KEYS[1], 'submission') == ARGV[1] then return 1 end
  return 0
end
redis.call('HSET', KEYS[1], 'submission', unpack(ARGV))
return 1
`)

// CreateJob stores a new pending job, under the submission token r.Submission (made if
// empty). It fails with ErrJobExists if the uuid was used.
func (s *Store) CreateJob(ctx context.Context, r *job.Record) error {
	req, err := json.Marshal(r.Request)
	if err != nil {
		return err
	}
	op, err := json.Marshal(r.Op)
	if err != nil {
		return err
	}
	if r.Submission == "" {
		r.Submission = zstack.NewUUID()
	}
	n, err := createJobScript.Run(ctx, s.rdb, []string{keyJob(r.UUID)},
		r.Submission,
		jfAccount, r.AccountUUID,
		jfRequest, req,
		jfCreated, r.CreatedAt.UnixMilli(),
		jfTimeout, int64(r.Timeout/time.Millisecond),
		jfWebHook, r.WebHook,
		jfState, string(job.Pending),
		jfAttempts, 0,
		jfPlan, r.Plan,
		jfPlanItem, r.PlanItem,
		jfOp, op,
		jfVM, r.VMUUID,
	).Int()
	if err != nil {
		return fmt.Errorf("create job: %w", err)
	}
	if n == 0 {
		return ErrJobExists
	}
	return nil
}

// JobSubmission is what the API reads of a job whose uuid a submission repeats: whether it
// ever started, the resourceUuid its request named, and its plan (a plan queues its items'
// jobs tier by tier).
type JobSubmission struct {
	State        job.State
	Attempts     int
	ResourceUUID string
	Plan         string
}

// GetJobSubmission reads it whoever the job belongs to (the API tells from it only whether
// the uuid is taken). ErrNotFound if the job does not exist.
func (s *Store) GetJobSubmission(ctx context.Context, uuid string) (*JobSubmission, error) {
	v, err := s.rdb.HMGet(ctx, keyJob(uuid), jfState, jfAttempts, jfRequest, jfPlan).Result()
	if err != nil {
		return nil, fmt.Errorf("read job %s: %w", uuid, err)
	}
	state, _ := v[0].(string)
	if state == "" {
		return nil, ErrNotFound
	}
	attempts, _ := v[1].(string)
	plan, _ := v[3].(string)
	out := &JobSubmission{State: job.State(state), Plan: plan}
	out.Attempts, _ = strconv.Atoi(attempts)
	if raw, _ := v[2].(string); raw != "" {
		var req job.Request
		if err := json.Unmarshal([]byte(raw), &req); err != nil {
			return nil, fmt.Errorf("job %s: its request: %w", uuid, err)
		}
		out.ResourceUUID = req.ResourceUUID
	}
	return out, nil
}

// createEndedJobScript creates a job hash that has already ended, unless the key exists: it
// starts the retention clock and publishes the completion, as a job that ends does. A key
// holding the same submission token was made by an earlier try of this call (see
// createJobScript). KEYS: job. ARGV: retention seconds, channel, job uuid, submission token,
// field, value...
var createEndedJobScript = redis.NewScript(`
if redis.call('EXISTS', KEYS[1]) == 1 then
  if redis.call('HGET', KEYS[1], 'submission') == ARGV[4] then return 1 end
  return 0
end
redis.call('HSET', KEYS[1], 'submission', unpack(ARGV, 4))
redis.call('EXPIRE', KEYS[1], ARGV[1])
redis.call('PUBLISH', ARGV[2], ARGV[3])
return 1
`)

// CreateEndedJob stores a job that ended before any task could run for it: a call that
// breaks the API's rules is a job that failed with e (its poll answers 503, as ZStack reports
// its interceptors' refusals); the repeat of a restore whose job was purged is a job that
// succeeded with the VM inventory as result. It fails with ErrJobExists if the uuid was used.
func (s *Store) CreateEndedJob(ctx context.Context, r *job.Record, state job.State, result json.RawMessage, e *zstack.ErrorCode) error {
	req, err := json.Marshal(r.Request)
	if err != nil {
		return err
	}
	op, err := json.Marshal(r.Op)
	if err != nil {
		return err
	}
	outcome, value := jfResult, []byte(result)
	if state != job.Succeeded {
		if value, err = json.Marshal(e); err != nil {
			return err
		}
		outcome = jfError
	}
	n, err := createEndedJobScript.Run(ctx, s.rdb, []string{keyJob(r.UUID)},
		int64(job.Retention/time.Second), ChannelJobDone, r.UUID, zstack.NewUUID(),
		jfAccount, r.AccountUUID,
		jfRequest, req,
		jfCreated, r.CreatedAt.UnixMilli(),
		jfTimeout, int64(r.Timeout/time.Millisecond),
		jfWebHook, r.WebHook,
		jfState, string(state),
		outcome, value,
		jfVM, r.VMUUID,
		jfFinished, time.Now().UnixMilli(),
		jfAttempts, 0,
		jfPlan, r.Plan,
		jfPlanItem, r.PlanItem,
		jfOp, op,
	).Int()
	if err != nil {
		return fmt.Errorf("create ended job: %w", err)
	}
	if n == 0 {
		return ErrJobExists
	}
	return nil
}

// JobExists reports whether a job record with this uuid exists.
func (s *Store) JobExists(ctx context.Context, uuid string) (bool, error) {
	n, err := s.rdb.Exists(ctx, keyJob(uuid)).Result()
	return n == 1, err
}

// abandonJobScript deletes a job record that no attempt has started, if the submission
// (ARGV[1]) created it: 1 when it deleted it, 0 when there was none, -1 when an attempt has
// started or another submission created it.
var abandonJobScript = redis.NewScript(`
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
if redis.call('HGET', KEYS[1], 'submission') ~= ARGV[1] then return -1 end
if redis.call('HGET', KEYS[1], 'state') == 'pending' and redis.call('HGET', KEYS[1], 'attempts') == '0' then
  redis.call('DEL', KEYS[1])
  return 1
end
return -1
`)

// AbandonJob undoes a submission whose task could not be queued, or whose job creation got
// no answer: it deletes the job record the submission created (its token, see CreateJob)
// and releases the resourceUuid binding (skipped when resource is empty), unless an attempt
// has started (the task was queued after all, and the job runs as usual) or the job is
// another call's (a retry created it after this one failed). Repeating it is harmless.
func (s *Store) AbandonJob(ctx context.Context, uuid, submission, resource string, b ResourceBinding) error {
	n, err := abandonJobScript.Run(ctx, s.rdb, []string{keyJob(uuid)}, submission).Int()
	if err != nil {
		return fmt.Errorf("abandon job %s: %w", uuid, err)
	}
	if n < 0 || resource == "" {
		return nil
	}
	if err := s.ReleaseResource(ctx, resource, b); err != nil {
		return fmt.Errorf("release resourceUuid %s: %w", resource, err)
	}
	return nil
}

// viewJobScript is HGETALL of a job that belongs to an account, nothing otherwise.
// KEYS: job. ARGV: account.
var viewJobScript = redis.NewScript(`
if redis.call('HGET', KEYS[1], 'account') ~= ARGV[1] then return {} end
return redis.call('HGETALL', KEYS[1])
`)

// GetJob reads a job with its checkpoints. ErrNotFound if it does not exist or expired, or
// belongs to another account than the one the read is made for (OnBehalfOf).
func (s *Store) GetJob(ctx context.Context, uuid string) (*job.Record, error) {
	var m map[string]string
	var err error
	if account, ok := viewer(ctx); ok {
		m, err = flatMap(viewJobScript.Run(ctx, s.rdb, []string{keyJob(uuid)}, account).Slice())
	} else {
		m, err = s.rdb.HGetAll(ctx, keyJob(uuid)).Result()
	}
	if err != nil {
		return nil, err
	}
	if len(m) == 0 || m[jfState] == "" {
		return nil, ErrNotFound
	}
	return decodeJob(uuid, m)
}

// GetJobs reads many jobs as GetJob does, pipelined: one round trip per 500 jobs. Jobs that
// do not exist, have expired or are another account's (OnBehalfOf) are left out of the map.
func (s *Store) GetJobs(ctx context.Context, uuids []string) (map[string]*job.Record, error) {
	out := make(map[string]*job.Record, len(uuids))
	account, scoped := viewer(ctx)
	const batch = 500
	for i := 0; i < len(uuids); i += batch {
		part := uuids[i:min(i+batch, len(uuids))]
		pipe := s.rdb.Pipeline()
		reads := make([]func() (map[string]string, error), 0, len(part))
		for _, u := range part {
			if scoped {
				c := viewJobScript.Eval(ctx, pipe, []string{keyJob(u)}, account)
				reads = append(reads, func() (map[string]string, error) { return flatMap(c.Slice()) })
			} else {
				c := pipe.HGetAll(ctx, keyJob(u))
				reads = append(reads, c.Result)
			}
		}
		if _, err := pipe.Exec(ctx); err != nil && !errors.Is(err, redis.Nil) {
			return nil, err
		}
		for k, read := range reads {
			m, err := read()
			if err != nil {
				return nil, err
			}
			if len(m) == 0 || m[jfState] == "" {
				continue
			}
			r, err := decodeJob(part[k], m)
			if err != nil {
				return nil, err
			}
			out[part[k]] = r
		}
	}
	return out, nil
}

func decodeJob(uuid string, m map[string]string) (*job.Record, error) {
	r := &job.Record{
		UUID:            uuid,
		AccountUUID:     m[jfAccount],
		State:           job.State(m[jfState]),
		Stage:           m[jfStage],
		WebHook:         m[jfWebHook],
		VMUUID:          m[jfVM],
		GeneratedVMUUID: m[jfVMUUID],
		CancelAsked:     m[jfCancel] == "1",
		Plan:            m[jfPlan],
		Checkpoints:     &job.Checkpoints{},
	}
	r.PlanItem, _ = strconv.Atoi(m[jfPlanItem])
	r.Attempts, _ = strconv.Atoi(m[jfAttempts])
	r.HandBacks, _ = strconv.Atoi(m[jfHandBacks])
	r.Queue = m[jfQueue]
	r.CreatedAt = millis(m[jfCreated])
	r.StartedAt = millis(m[jfStarted])
	r.FinishedAt = millis(m[jfFinished])
	ms, _ := strconv.ParseInt(m[jfTimeout], 10, 64)
	r.Timeout = time.Duration(ms) * time.Millisecond
	if err := unmarshalIf(m[jfRequest], &r.Request); err != nil {
		return nil, fmt.Errorf("job %s request: %w", uuid, err)
	}
	if v := m[jfResult]; v != "" {
		r.Result = json.RawMessage(v)
	}
	if err := unmarshalIf(m[jfOp], &r.Op); err != nil {
		return nil, fmt.Errorf("job %s operation: %w", uuid, err)
	}
	if err := unmarshalIf(m[jfError], &r.Error); err != nil {
		return nil, fmt.Errorf("job %s error: %w", uuid, err)
	}
	if err := unmarshalIf(m[jfProgress], &r.Progress); err != nil {
		return nil, fmt.Errorf("job %s progress: %w", uuid, err)
	}
	if err := unmarshalIf(m[jfInstant], &r.Instant); err != nil {
		return nil, fmt.Errorf("job %s instant: %w", uuid, err)
	}
	cp := r.Checkpoints
	if err := unmarshalIf(m[jfResolved], &cp.Resolved); err != nil {
		return nil, fmt.Errorf("job %s resolved checkpoint: %w", uuid, err)
	}
	if err := unmarshalIf(m[jfPlacement], &cp.Placement); err != nil {
		return nil, fmt.Errorf("job %s placement checkpoint: %w", uuid, err)
	}
	if err := unmarshalIf(m[jfNICs], &cp.NICs); err != nil {
		return nil, fmt.Errorf("job %s nics checkpoint: %w", uuid, err)
	}
	if err := unmarshalIf(m[jfDomain], &cp.Domain); err != nil {
		return nil, fmt.Errorf("job %s domain checkpoint: %w", uuid, err)
	}
	if err := unmarshalIf(m[jfInstance], &cp.Instance); err != nil {
		return nil, fmt.Errorf("job %s instance checkpoint: %w", uuid, err)
	}
	for k, v := range m {
		switch {
		case strings.HasPrefix(k, jfVolPrefix):
			var f job.ClonedFile
			if err := json.Unmarshal([]byte(v), &f); err != nil {
				return nil, fmt.Errorf("job %s volume checkpoint: %w", uuid, err)
			}
			if cp.Volumes == nil {
				cp.Volumes = map[string]job.ClonedFile{}
			}
			cp.Volumes[strings.TrimPrefix(k, jfVolPrefix)] = f
		case strings.HasPrefix(k, jfCopyPrefix):
			var c job.CopyCheckpoint
			if err := json.Unmarshal([]byte(v), &c); err != nil {
				return nil, fmt.Errorf("job %s copy checkpoint: %w", uuid, err)
			}
			if cp.Copies == nil {
				cp.Copies = map[string]job.CopyCheckpoint{}
			}
			cp.Copies[strings.TrimPrefix(k, jfCopyPrefix)] = c
		case strings.HasPrefix(k, jfDone):
			cp.Done = append(cp.Done, strings.TrimPrefix(k, jfDone))
		case strings.HasPrefix(k, jfStageEnd):
			if r.StageEnded == nil {
				r.StageEnded = map[string]time.Time{}
			}
			r.StageEnded[strings.TrimPrefix(k, jfStageEnd)] = millis(v)
		}
	}
	return r, nil
}

// flatMap turns a script's flat field/value list into a map.
func flatMap(flat []any, err error) (map[string]string, error) {
	if err != nil {
		return nil, err
	}
	m := make(map[string]string, len(flat)/2)
	for i := 0; i+1 < len(flat); i += 2 {
		k, _ := flat[i].(string)
		m[k], _ = flat[i+1].(string)
	}
	return m, nil
}

func millis(s string) time.Time {
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil || n == 0 {
		return time.Time{}
	}
	return time.UnixMilli(n)
}

func unmarshalIf(s string, v any) error {
	if s == "" {
		return nil
	}
	return json.Unmarshal([]byte(s), v)
}

// JobStatus is the part of a job a poll needs.
type JobStatus struct {
	State   job.State
	Account string
	Result  json.RawMessage
	Error   *zstack.ErrorCode
}

// viewJobStatusScript is HMGET of a job's state, account, result and error when the job
// belongs to an account, nothing otherwise. KEYS: job. ARGV: account.
var viewJobStatusScript = redis.NewScript(`
local v = redis.call('HMGET', KEYS[1], 'state', 'account', 'result', 'error')
if v[2] ~= ARGV[1] then return {false, false, false, false} end
return v
`)

// GetJobStatus reads what a poll needs in one round trip. ErrNotFound if absent, or if it
// belongs to another account than the one the read is made for (OnBehalfOf).
func (s *Store) GetJobStatus(ctx context.Context, uuid string) (*JobStatus, error) {
	var v []any
	var err error
	if account, ok := viewer(ctx); ok {
		v, err = viewJobStatusScript.Run(ctx, s.rdb, []string{keyJob(uuid)}, account).Slice()
	} else {
		v, err = s.rdb.HMGet(ctx, keyJob(uuid), jfState, jfAccount, jfResult, jfError).Result()
	}
	if err != nil && !errors.Is(err, redis.Nil) {
		return nil, err
	}
	if len(v) < 4 {
		return nil, ErrNotFound
	}
	state, _ := v[0].(string)
	if state == "" {
		return nil, ErrNotFound
	}
	st := &JobStatus{State: job.State(state)}
	st.Account, _ = v[1].(string)
	if res, _ := v[2].(string); res != "" {
		st.Result = json.RawMessage(res)
	}
	if e, _ := v[3].(string); e != "" {
		if err := json.Unmarshal([]byte(e), &st.Error); err != nil {
			return nil, fmt.Errorf("job %s error: %w", uuid, err)
		}
	}
	return st, nil
}

// startAttemptScript marks a job running, counts the attempt (unless the run before handed
// the job back: that run goes on, it is no new attempt), fixes the uuid its VM gets unless
// the request names one (the first attempt's stays, so that a re-run resolve claims the same
// uuid), records the queue the run came from, and records as its current stage the first one
// without a checkpoint (the last, the commit, always runs); it returns the state the job had
// and the whole record, so that an attempt starts in one round trip. A job that had ended is
// returned unchanged. KEYS: job. ARGV: started, a fresh VM uuid, queue, stages...
var startAttemptScript = redis.NewScript(`
local st = redis.call('HGET', KEYS[1], 'state')
if not st then return {''} end
if st == 'succeeded' or st == 'failed' or st == 'cancelled' then
  return {st, redis.call('HGETALL', KEYS[1])}
end
redis.call('HSET', KEYS[1], 'state', 'running')
local counted = 0
if redis.call('HDEL', KEYS[1], 'handedBack') == 0 then
  redis.call('HINCRBY', KEYS[1], 'attempts', 1)
  counted = 1
end
if not redis.call('HGET', KEYS[1], 'started') then redis.call('HSET', KEYS[1], 'started', ARGV[1]) end
redis.call('HSETNX', KEYS[1], 'vmUuid', ARGV[2])
if ARGV[3] ~= '' then redis.call('HSET', KEYS[1], 'queue', ARGV[3]) end
for i = 4, #ARGV do
  if i == #ARGV or redis.call('HEXISTS', KEYS[1], 'cp:done:' .. ARGV[i]) == 0 then
    redis.call('HSET', KEYS[1], 'stage', ARGV[i])
    break
  end
end
return {st, redis.call('HGETALL', KEYS[1]), counted}
`)

// StartAttempt marks the job running and returns the state it had before with the record
// as the attempt starts (ErrNotFound if the job does not exist or expired). A terminal
// state means there is nothing to do; the record is then as the job ended. A run after a
// hand-back continues the attempt; any other run counts a new one. queue is the asynq queue
// the run came from, where a take-over of the job is queued.
func (s *Store) StartAttempt(ctx context.Context, uuid, queue string) (job.State, *job.Record, error) {
	args := []any{time.Now().UnixMilli(), zstack.NewUUID(), queue}
	for _, st := range job.Stages {
		args = append(args, st)
	}
	// The catalog's version comes in the same round trip: the attempt's stages then read the
	// catalog from the cache (CatalogCache.AtLeast) without one of their own.
	var start *redis.Cmd
	var version *redis.StringCmd
	err := s.pipelineScripts(ctx, []*redis.Script{startAttemptScript}, func(pipe redis.Pipeliner) []*redis.Cmd {
		start = startAttemptScript.EvalSha(ctx, pipe, []string{keyJob(uuid)}, args...)
		version = pipe.Get(ctx, keyCatalogVersion())
		return []*redis.Cmd{start}
	})
	if err == nil {
		err = start.Err()
	}
	if err != nil {
		return "", nil, fmt.Errorf("start job %s: %w", uuid, err)
	}
	v, err := start.Slice()
	if err != nil {
		return "", nil, fmt.Errorf("start job %s: %w", uuid, err)
	}
	prev, _ := v[0].(string)
	if prev == "" || len(v) < 2 {
		return "", nil, ErrNotFound
	}
	flat, _ := v[1].([]any)
	m, _ := flatMap(flat, nil)
	rec, err := decodeJob(uuid, m)
	if err != nil {
		return "", nil, err
	}
	if len(v) > 2 {
		n, _ := v[2].(int64)
		rec.NewAttempt = n == 1
	}
	rec.CatalogVersion, _ = version.Int64() // 0 when no catalog was saved
	return job.State(prev), rec, nil
}

// handBackScript records that a running job's run gave its worker slot back on purpose and
// will come back: the next run continues this attempt. KEYS: job.
var handBackScript = redis.NewScript(`
if redis.call('HGET', KEYS[1], 'state') ~= 'running' then return 0 end
redis.call('HSET', KEYS[1], 'handedBack', '1')
return redis.call('HINCRBY', KEYS[1], 'handBacks', 1)
`)

// HandBack records that the job's run hands it back without failing (no clone slot free,
// Redis unreachable, the worker stopping): the next run does not count as a new attempt.
func (s *Store) HandBack(ctx context.Context, uuid string) error {
	return handBackScript.Run(ctx, s.rdb, []string{keyJob(uuid)}).Err()
}

// SetProgress records clone progress.
func (s *Store) SetProgress(ctx context.Context, uuid string, p job.Progress) error {
	b, _ := json.Marshal(p)
	return s.rdb.HSet(ctx, keyJob(uuid), jfProgress, b).Err()
}

// SetInstant records the course of an instant restore.
func (s *Store) SetInstant(ctx context.Context, uuid string, in job.Instant) error {
	b, _ := json.Marshal(in)
	return s.rdb.HSet(ctx, keyJob(uuid), jfInstant, b).Err()
}

// Checkpoint kinds for SaveCheckpoint.
const (
	CheckpointResolved  = jfResolved
	CheckpointPlacement = jfPlacement
	CheckpointNICs      = jfNICs
	CheckpointInstance  = jfInstance
)

// SaveDomainRef records, before the hypervisor is asked to define a VM, the host its domain
// may then exist on; compensation destroys it there.
func (s *Store) SaveDomainRef(ctx context.Context, uuid string, ref job.DomainRef) error {
	b, _ := json.Marshal(ref)
	return s.rdb.HSet(ctx, keyJob(uuid), jfDomain, b).Err()
}

// SaveCheckpoint records a stage's result, marks the stage done and the next one current,
// in one write.
func (s *Store) SaveCheckpoint(ctx context.Context, uuid, stage, kind string, v any) error {
	return s.SaveCheckpoints(ctx, uuid, Checkpoint{Stage: stage, Kind: kind, Value: v, Ended: time.Now()})
}

// Checkpoint is one stage's checkpoint for SaveCheckpoints: the stage, its result stored
// under Kind (none when Kind is empty), and when the stage ended.
type Checkpoint struct {
	Stage, Kind string
	Value       any
	Ended       time.Time
}

// SaveCheckpoints records the checkpoints of consecutive stages in one write: each stage's
// result, the stages done, and the stage after the last one current. A run writes two at
// once where a stage's checkpoint rides with the next one's (see the pipeline), or where a
// stage has nothing to do for the job (an instantiated VM that is not an instant restore
// has nothing to hydrate).
func (s *Store) SaveCheckpoints(ctx context.Context, uuid string, cps ...Checkpoint) error {
	var fields []any
	for _, cp := range cps {
		fields = append(fields, jfDone+cp.Stage, "1", jfStageEnd+cp.Stage, cp.Ended.UnixMilli())
		if cp.Kind != "" {
			b, err := json.Marshal(cp.Value)
			if err != nil {
				return err
			}
			fields = append(fields, cp.Kind, b)
		}
		if r, ok := cp.Value.(*job.Resolved); ok && cp.Stage == job.StageResolve {
			fields = append(fields, jfVM, r.VMUUID)
		}
	}
	fields = append(fields, nextStageField(cps[len(cps)-1].Stage)...)
	return s.rdb.HSet(ctx, keyJob(uuid), fields...).Err()
}

// checkpointFields are the fields that mark a stage done and the next one current.
func checkpointFields(stage string) []any {
	return append([]any{jfDone + stage, "1", jfStageEnd + stage, time.Now().UnixMilli()}, nextStageField(stage)...)
}

// nextStageField makes the stage after stage current (nothing after the last).
func nextStageField(stage string) []any {
	for i, st := range job.Stages {
		if st == stage && i+1 < len(job.Stages) {
			return []any{jfStage, job.Stages[i+1]}
		}
	}
	return nil
}

// SaveClonedVolume records one finished volume of the clone stage (and drops its copy's
// checkpoint).
func (s *Store) SaveClonedVolume(ctx context.Context, uuid, volume string, f job.ClonedFile) error {
	b, _ := json.Marshal(f)
	pipe := s.rdb.TxPipeline()
	pipe.HSet(ctx, keyJob(uuid), jfVolPrefix+volume, b)
	pipe.HDel(ctx, keyJob(uuid), jfCopyPrefix+volume)
	_, err := pipe.Exec(ctx)
	return err
}

// SaveCopyCheckpoint records the last durable position of a volume's copy.
func (s *Store) SaveCopyCheckpoint(ctx context.Context, uuid, volume string, c job.CopyCheckpoint) error {
	b, err := json.Marshal(c)
	if err != nil {
		return err
	}
	return s.rdb.HSet(ctx, keyJob(uuid), jfCopyPrefix+volume, b).Err()
}

// SaveCloneCheckpoint marks the clone stage done with its final progress and every volume it
// copied, in one write.
func (s *Store) SaveCloneCheckpoint(ctx context.Context, uuid string, p job.Progress, volumes map[string]job.ClonedFile) error {
	fields := checkpointFields(job.StageClone)
	b, _ := json.Marshal(p)
	fields = append(fields, jfProgress, b)
	for v, f := range volumes {
		b, _ := json.Marshal(f)
		fields = append(fields, jfVolPrefix+v, b)
	}
	return s.rdb.HSet(ctx, keyJob(uuid), fields...).Err()
}

// finishJobScript ends a job once: it writes the outcome only if the job has not ended,
// starts the retention clock, and publishes the completion event. KEYS: job.
// ARGV: state, outcome field, outcome, finished, retention seconds, channel, job uuid.
var finishJobScript = redis.NewScript(`
local st = redis.call('HGET', KEYS[1], 'state')
if not st then return 0 end
if st == 'succeeded' or st == 'failed' or st == 'cancelled' then return 0 end
redis.call('HSET', KEYS[1], 'state', ARGV[1], ARGV[2], ARGV[3], 'finished', ARGV[4])
redis.call('EXPIRE', KEYS[1], ARGV[5])
redis.call('PUBLISH', ARGV[6], ARGV[7])
return 1
`)

// FinishJob ends a job with its inventory (Succeeded) or error (Failed, Cancelled), then
// publishes the completion. It reports false if the job had already ended.
func (s *Store) FinishJob(ctx context.Context, uuid string, state job.State, result json.RawMessage, e *zstack.ErrorCode) (bool, error) {
	field, value := jfResult, []byte(result)
	if state != job.Succeeded {
		b, err := json.Marshal(e)
		if err != nil {
			return false, err
		}
		field, value = jfError, b
	}
	n, err := finishJobScript.Run(ctx, s.rdb, []string{keyJob(uuid)},
		string(state), field, value, time.Now().UnixMilli(), int64(job.Retention/time.Second), ChannelJobDone, uuid).Int()
	if err != nil {
		return false, fmt.Errorf("finish job %s: %w", uuid, err)
	}
	return n == 1, nil
}

// RequestCancel flags a job for cancellation and tells workers. It reports false when the
// job does not exist or has ended.
func (s *Store) RequestCancel(ctx context.Context, uuid string) (bool, error) {
	st, err := s.GetJobStatus(ctx, uuid)
	if err != nil {
		return false, err
	}
	if st.State.Terminal() {
		return false, nil
	}
	if err := s.rdb.HSet(ctx, keyJob(uuid), jfCancel, "1").Err(); err != nil {
		return false, err
	}
	return true, s.rdb.Publish(ctx, ChannelJobCancel, uuid).Err()
}

// lockScript takes or renews a lock for a token; a holder named by ARGV[3] (a take-over's
// claim) hands it over. KEYS: lock. ARGV: token, ms, claim (optional).
var lockScript = redis.NewScript(`
local cur = redis.call('GET', KEYS[1])
if cur and cur ~= ARGV[1] and cur ~= ARGV[3] then return 0 end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
return 1
`)

var unlockScript = redis.NewScript(`
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
`)

// A job's lock (one key per job, taken or renewed atomically) is also listed, with its expiry
// by Redis's clock, in an index of locked jobs: a lock that lapsed while still listed is a
// worker that died with the job (a worker that stops releases its locks and unlists them),
// which the take-over finds there (LapsedJobLocks) and claims (ClaimLapsedJob).

// indexLockScript lists a job's lock with its expiry. KEYS: index. ARGV: job, ttl ms.
var indexLockScript = redis.NewScript(`
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
redis.call('ZADD', KEYS[1], now + tonumber(ARGV[2]), ARGV[1])
return 1
`)

// lapsedLocksScript lists up to 100 jobs whose listed lock lapsed more than grace ms ago.
// KEYS: index. ARGV: grace ms.
var lapsedLocksScript = redis.NewScript(`
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
return redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', now - tonumber(ARGV[1]), 'LIMIT', 0, 100)
`)

// LockJob takes (or renews) the lock that keeps two workers from running one job at once,
// and lists it for the take-over (one round trip). It reports false when another token holds
// it; claim, when not empty, is a take-over's claim that this token may take the lock from.
func (s *Store) LockJob(ctx context.Context, uuid, token string, ttl time.Duration, claim string) (bool, error) {
	var lock, listed *redis.Cmd
	err := s.pipelineScripts(ctx, []*redis.Script{lockScript, indexLockScript}, func(pipe redis.Pipeliner) []*redis.Cmd {
		lock = lockScript.EvalSha(ctx, pipe, []string{keyJobLock(uuid)}, token, ttl.Milliseconds(), claim)
		// Listed whether or not this token got the lock: a listing is only ever a hint (the
		// take-over checks the lock itself), and a held lock is listed already.
		listed = indexLockScript.EvalSha(ctx, pipe, []string{keyJobsLocked()}, uuid, ttl.Milliseconds())
		return []*redis.Cmd{lock, listed}
	})
	if err != nil {
		return false, err
	}
	n, err := lock.Int()
	if err != nil || n == 0 {
		return false, err
	}
	return true, listed.Err()
}

// UnlockJob releases the lock if token holds it, and unlists it (one round trip).
func (s *Store) UnlockJob(ctx context.Context, uuid, token string) error {
	var unlock *redis.Cmd
	return s.pipelineScripts(ctx, []*redis.Script{unlockScript}, func(pipe redis.Pipeliner) []*redis.Cmd {
		unlock = unlockScript.EvalSha(ctx, pipe, []string{keyJobLock(uuid)}, token)
		pipe.ZRem(ctx, keyJobsLocked(), uuid)
		return []*redis.Cmd{unlock}
	})
}

// pipelineScripts sends the commands queue adds in one round trip. Scripts in a pipeline run
// by their digest (EVALSHA); when Redis does not know one yet (a new or restarted server),
// the scripts are loaded and the pipeline sent again.
func (s *Store) pipelineScripts(ctx context.Context, scripts []*redis.Script, queue func(redis.Pipeliner) []*redis.Cmd) error {
	for try := 0; ; try++ {
		pipe := s.rdb.Pipeline()
		cmds := queue(pipe)
		_, err := pipe.Exec(ctx)
		noScript := false
		for _, c := range cmds {
			if redis.HasErrorPrefix(c.Err(), "NOSCRIPT") {
				noScript = true
			}
		}
		if !noScript || try > 0 {
			if err != nil && !errors.Is(err, redis.Nil) {
				return err
			}
			return nil
		}
		for _, sc := range scripts {
			if err := sc.Load(ctx, s.rdb).Err(); err != nil {
				return err
			}
		}
	}
}

// LapsedJobLocks returns jobs (at most 100) listed as locked whose lock lapsed more than grace
// ago without being released: their worker died, or lost Redis for longer than the lock
// lasts (and then renews it when Redis is back).
func (s *Store) LapsedJobLocks(ctx context.Context, grace time.Duration) ([]string, error) {
	return lapsedLocksScript.Run(ctx, s.rdb, []string{keyJobsLocked()}, grace.Milliseconds()).StringSlice()
}

// JobLocked reports whether a job's lock is held.
func (s *Store) JobLocked(ctx context.Context, uuid string) (bool, error) {
	n, err := s.rdb.Exists(ctx, keyJobLock(uuid)).Result()
	return n == 1, err
}

// ClaimLapsedJob takes a job's lapsed lock for a take-over, as claim, for ttl: the run of the
// take-over (LockJob with this claim) takes it from there. It reports false when the lock is
// held again (its holder came back, or another worker claimed it first).
func (s *Store) ClaimLapsedJob(ctx context.Context, uuid, claim string, ttl time.Duration) (bool, error) {
	ok, err := s.rdb.SetNX(ctx, keyJobLock(uuid), claim, ttl).Result()
	if err != nil || !ok {
		return false, err
	}
	return true, indexLockScript.Run(ctx, s.rdb, []string{keyJobsLocked()}, uuid, ttl.Milliseconds()).Err()
}

// UnlistJobLock takes a job off the index of locked jobs (it has ended, or is gone).
func (s *Store) UnlistJobLock(ctx context.Context, uuid string) error {
	return s.rdb.ZRem(ctx, keyJobsLocked(), uuid).Err()
}
