package store

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/redis/go-redis/v9"

	"github.com/vmrestore/vmrestore/internal/zstack"
)

// Resource claims make VM uuids unique across the deployment, as ZStack's primary key on
// every resource uuid does. A claim binds a uuid to the job that creates a VM under it: the
// API claims a request's resourceUuid before the job exists, and the resolve stage claims
// the uuid it generates. A claim outlives its job when the job succeeds (the VM keeps its
// uuid) and is released only by the job that holds it, when that job fails.
//
// A resourceUuid is refused (SYS.1007) when it names anything that exists: a uuid of the
// site catalog, an account, an indexed backup group, a VM record, or a claim of another
// job, unless that claim is an earlier request of the same account for the same group (the
// client repeating itself, answered with the first job).

// ResourceBinding is what a claimed uuid is bound to: the job that creates the VM, the group
// it restores (empty for a uuid the job generated itself) and the account it restores for.
type ResourceBinding struct {
	JobUUID     string
	GroupUUID   string
	AccountUUID string
}

func (b ResourceBinding) value() string { return b.JobUUID + ":" + b.GroupUUID + ":" + b.AccountUUID }

// parseBinding reads a stored claim; claims written before accounts were recorded have none.
func parseBinding(v string) *ResourceBinding {
	parts := strings.SplitN(v, ":", 3)
	b := &ResourceBinding{JobUUID: parts[0]}
	if len(parts) > 1 {
		b.GroupUUID = parts[1]
	}
	if len(parts) > 2 {
		b.AccountUUID = parts[2]
	}
	return b
}

// ResourceTaken is the refusal of a resourceUuid that names an existing resource.
func ResourceTaken(resource string) *zstack.ErrorCode {
	return zstack.InvalidArgument("resourceUuid[%s] is already used by another resource; choose another resourceUuid, or omit it and one is generated", resource)
}

// claimScript binds a uuid to a job unless another job holds it. It returns {1} when it
// bound it now, {2} when this job held it already, {0, binding} when another job holds it.
// KEYS: claim. ARGV: binding, job uuid.
var claimScript = redis.NewScript(`
local v = redis.call('GET', KEYS[1])
if not v then
  redis.call('SET', KEYS[1], ARGV[1])
  return {1}
end
if string.sub(v, 1, string.len(ARGV[2]) + 1) == ARGV[2] .. ':' then return {2} end
return {0, v}
`)

// claim runs claimScript: fresh reports a claim made now, prev the binding of another job.
func (s *Store) claim(ctx context.Context, uuid string, b ResourceBinding) (fresh bool, prev *ResourceBinding, err error) {
	v, err := claimScript.Run(ctx, s.rdb, []string{keyResource(uuid)}, b.value(), b.JobUUID).Slice()
	if err != nil {
		return false, nil, fmt.Errorf("claim uuid %s: %w", uuid, err)
	}
	switch n, _ := v[0].(int64); n {
	case 1:
		return true, nil, nil
	case 2:
		return false, nil, nil
	}
	other, _ := v[1].(string)
	return false, parseBinding(other), nil
}

// ClaimResource binds a requested resourceUuid to a job. It refuses (ResourceTaken) a uuid
// that names an existing resource of anyone, or that another job holds, except an earlier
// request of the same account for the same group: that binding is returned (and nothing is
// bound), so the caller can answer with the first job. Claiming again for the job that holds
// the uuid succeeds and returns nil.
func (s *Store) ClaimResource(ctx context.Context, resource string, b ResourceBinding) (*ResourceBinding, error) {
	fresh, prev, err := s.claim(ctx, resource, b)
	if err != nil {
		return nil, err
	}
	if prev != nil {
		// Claims made before accounts were recorded leave the account check to the caller.
		if prev.GroupUUID == "" || prev.GroupUUID != b.GroupUUID || prev.AccountUUID != "" && prev.AccountUUID != b.AccountUUID {
			return nil, ResourceTaken(resource)
		}
		return prev, nil
	}
	if !fresh {
		return nil, nil
	}
	taken, err := s.resourceExists(ctx, resource)
	if err == nil && !taken {
		return nil, nil
	}
	if rerr := s.ReleaseResource(context.WithoutCancel(ctx), resource, b); rerr != nil {
		return nil, errors.Join(err, rerr)
	}
	if err != nil {
		return nil, err
	}
	return nil, ResourceTaken(resource)
}

// ClaimVMUUID binds a uuid the job generated for its VM, so that no request can take it
// later. A generated uuid is random: another job holding it means something is badly wrong,
// and the job must not go on.
func (s *Store) ClaimVMUUID(ctx context.Context, uuid string, b ResourceBinding) error {
	_, prev, err := s.claim(ctx, uuid, b)
	if err != nil {
		return err
	}
	if prev != nil {
		return zstack.Errorf(zstack.CodeInternal, "the VM uuid %s this restore generated is held by job %s; submit the restore again", uuid, prev.JobUUID)
	}
	return nil
}

// resourceExists reports whether uuid names something that exists without a claim: a uuid of
// the site catalog, an account, an indexed backup group, or a VM record written before
// claims existed.
func (s *Store) resourceExists(ctx context.Context, uuid string) (bool, error) {
	ix, err := s.view.Current(ctx)
	if err != nil && !errors.Is(err, ErrNotFound) {
		return false, err
	}
	if ix != nil && ix.Has(uuid) {
		return true, nil
	}
	if _, known, err := s.accountType(ctx, uuid); err != nil || known {
		return known, err
	}
	pipe := s.rdb.Pipeline()
	group := pipe.HExists(ctx, keyBackups(), uuid)
	vm := pipe.Exists(ctx, keyVM(uuid))
	if _, err := pipe.Exec(ctx); err != nil {
		return false, err
	}
	return group.Val() || vm.Val() > 0, nil
}

// releaseResourceScript deletes a claim held by a job. KEYS: claim. ARGV: job uuid.
var releaseResourceScript = redis.NewScript(`
local v = redis.call('GET', KEYS[1])
if v and string.sub(v, 1, string.len(ARGV[1]) + 1) == ARGV[1] .. ':' then return redis.call('DEL', KEYS[1]) end
return 0
`)

// ReleaseResource unbinds a uuid if b's job still holds it (a failed restore frees it for a
// retry). A uuid held by another job is left alone.
func (s *Store) ReleaseResource(ctx context.Context, resource string, b ResourceBinding) error {
	return releaseResourceScript.Run(ctx, s.rdb, []string{keyResource(resource)}, b.JobUUID).Err()
}

// ResourceHolder returns the job that holds a uuid's claim, or "" when none does.
func (s *Store) ResourceHolder(ctx context.Context, uuid string) (string, error) {
	v, err := s.rdb.Get(ctx, keyResource(uuid)).Result()
	if errors.Is(err, redis.Nil) {
		return "", nil
	}
	if err != nil {
		return "", err
	}
	return parseBinding(v).JobUUID, nil
}
