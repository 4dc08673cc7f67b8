package store

import "context"

// An instant restore runs its VM from the files of a backup group until the hydrate stage
// has pulled them into the VM's overlays. While it does, the group is marked here (a set of
// the jobs it backs), and the tools that would delete or re-read the group refuse to, or
// leave it alone.

func keyBacking(group string) string { return prefix + "backing:" + group }

// MarkBacking records that the job's VM runs from the group's backups.
func (s *Store) MarkBacking(ctx context.Context, group, jobUUID string) error {
	return s.rdb.SAdd(ctx, keyBacking(group), jobUUID).Err()
}

// UnmarkBacking records that the job's VM no longer needs the group (hydrated, or the job
// was compensated).
func (s *Store) UnmarkBacking(ctx context.Context, group, jobUUID string) error {
	return s.rdb.SRem(ctx, keyBacking(group), jobUUID).Err()
}

// BackingJobs lists the jobs whose VMs run from the group's backups (none: the group backs
// no running instant restore).
func (s *Store) BackingJobs(ctx context.Context, group string) ([]string, error) {
	return s.rdb.SMembers(ctx, keyBacking(group)).Result()
}
