// Package backupverify re-reads, on a schedule, every volume of every backup group the
// workers index and checks its checksum, so that a backup that rotted (a flipped bit, a
// truncated or replaced file) is found before the day it is needed.
//
// Every worker runs a Verifier; together they verify each group on each of its backup
// storages once per interval (VMRESTORE_BACKUP_VERIFY_INTERVAL; 0, the default, turns it
// off): a group is due when its last result is older than the interval, and a claim in Redis
// lets exactly one worker verify it. Verification gives way to restores: a round starts only
// while the worker runs no restore, and one that a restore interrupts stops, gives its claim
// back and is taken up again later. Results live in Redis; a failure is logged as an error
// naming the group, the volume and its file, counted in
// vmrestore_backup_verifications_total{outcome="failed"}, and exported once per deployment
// as vmrestore_backup_groups_failed_verification, which the
// VmrestoreBackupFailedVerification alert watches.
package backupverify

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"path/filepath"
	"strings"
	"time"

	"github.com/vmrestore/vmrestore/internal/backup"
	"github.com/vmrestore/vmrestore/internal/catalog"
	"github.com/vmrestore/vmrestore/internal/metrics"
	"github.com/vmrestore/vmrestore/internal/store"
)

// Verifier verifies the due groups of the index, round after round.
type Verifier struct {
	Cache    *store.CatalogCache
	Store    *store.Store
	Metrics  *metrics.Metrics // nil: no metrics
	Log      *slog.Logger
	Interval time.Duration // how often each group is verified; <= 0: never
	// Tick is the pause between rounds (default a minute).
	Tick time.Duration
	// Busy reports that the worker runs restores; nil: never busy.
	Busy func() bool
	// Holder names this worker in claims and results.
	Holder string
}

// Run verifies until ctx ends. It returns at once when Interval is not positive.
func (v *Verifier) Run(ctx context.Context) {
	if v.Interval <= 0 {
		return
	}
	tick := v.Tick
	if tick <= 0 {
		tick = time.Minute
	}
	v.Log.Info("scheduled backup verification on", "interval", v.Interval.String())
	for {
		if err := v.Round(ctx); err != nil && ctx.Err() == nil {
			v.Log.Warn("scheduled backup verification: a round failed", "err", err)
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(tick):
		}
	}
}

func (v *Verifier) busy() bool { return v.Busy != nil && v.Busy() }

// errBusy stops a round when a restore starts.
var errBusy = errors.New("a restore started")

// Round verifies every group that is due and that no other worker claimed, one at a time,
// and forgets the results of groups no longer indexed.
func (v *Verifier) Round(ctx context.Context) error {
	if v.busy() {
		return nil
	}
	ix, err := v.Cache.Current(ctx)
	if err != nil {
		return err
	}
	groups, err := v.Store.ListBackupGroups(ctx)
	if err != nil {
		return err
	}
	results, err := v.Store.Verifications(ctx)
	if err != nil {
		return err
	}
	last := map[string]time.Time{}
	indexed := map[string]bool{}
	for _, g := range groups {
		for _, bs := range g.BackupStorageUUIDs {
			indexed[bs+"/"+g.GroupUUID] = true
		}
	}
	var gone []store.Verification
	for _, r := range results {
		key := r.BackupStorageUUID + "/" + r.GroupUUID
		if !indexed[key] {
			gone = append(gone, r)
			continue
		}
		last[key] = r.At
	}
	if err := v.Store.ForgetVerifications(ctx, gone); err != nil {
		return err
	}
	now := time.Now()
	for _, g := range groups {
		for _, bsUUID := range g.BackupStorageUUIDs {
			if at, ok := last[bsUUID+"/"+g.GroupUUID]; ok && now.Sub(at) < v.Interval {
				continue
			}
			bs := ix.BackupStorages[bsUUID]
			if bs == nil || bs.State != catalog.StateEnabled {
				continue
			}
			if v.busy() {
				return nil
			}
			if err := v.verifyOne(ctx, bs, g.GroupUUID); errors.Is(err, errBusy) {
				return nil
			} else if err != nil {
				return err
			}
		}
	}
	return nil
}

// ClaimTTL bounds a claim: a worker that dies verifying holds its group that long.
const ClaimTTL = time.Hour

// verifyOne claims a group on a storage and verifies it, unless another worker has it or
// has just verified it.
func (v *Verifier) verifyOne(ctx context.Context, bs *catalog.BackupStorage, group string) error {
	// A group a running instant restore's VM reads from is verified by that restore, beside
	// its pull; a second reader would only slow the VM down.
	if jobs, err := v.Store.BackingJobs(ctx, group); err != nil || len(jobs) > 0 {
		if len(jobs) > 0 {
			v.Log.Debug("group left alone: it backs running instant restores", "group", group, "jobs", jobs)
		}
		return err
	}
	ok, err := v.Store.ClaimVerification(ctx, bs.UUID, group, v.Holder, ClaimTTL)
	if err != nil || !ok {
		return err
	}
	defer func() {
		rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), time.Second)
		defer cancel()
		_ = v.Store.ReleaseVerification(rctx, bs.UUID, group, v.Holder)
	}()
	// Another worker may have finished it between this round's read and the claim.
	if last, ok, err := v.Store.LastVerification(ctx, bs.UUID, group); err != nil {
		return err
	} else if ok && time.Since(last.At) < v.Interval {
		return nil
	}
	// A restore that starts stops the verification between two reads.
	vctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	go func() {
		t := time.NewTicker(200 * time.Millisecond)
		defer t.Stop()
		for {
			select {
			case <-vctx.Done():
				return
			case <-t.C:
				if v.busy() {
					cancel(errBusy)
					return
				}
			}
		}
	}()
	res := store.Verification{BackupStorageUUID: bs.UUID, GroupUUID: group, Worker: v.Holder, OK: true}
	g, err := backup.Read(bs.URL, group)
	switch {
	case errors.Is(err, backup.ErrNoGroup):
		return nil // deleted since it was indexed: the next index drops it
	case err != nil:
		res.OK, res.Problem = false, err.Error()
	default:
		for i := range g.Volumes {
			vol := &g.Volumes[i]
			r := backup.VerifyVolume(vctx, bs.URL, g, vol, nil)
			if v.Metrics != nil {
				v.Metrics.BackupVerifyBytes.WithLabelValues(bs.UUID).Add(float64(r.DataBytes))
			}
			if vctx.Err() != nil {
				if errors.Is(context.Cause(vctx), errBusy) {
					v.Log.Info("scheduled backup verification paused for a restore", "group", group, "backup_storage", bs.UUID)
					return errBusy
				}
				return vctx.Err()
			}
			if !r.OK {
				res.OK = false
				res.Problem = fmt.Sprintf("volume backup %s (%s, file %s): %s", vol.UUID, vol.Type,
					filepath.Join(backup.GroupDir(bs.URL, group), vol.File), r.Error)
				break
			}
		}
	}
	res.At = time.Now()
	if err := v.Store.SaveVerification(ctx, res); err != nil {
		return err
	}
	outcome := "ok"
	if !res.OK {
		outcome = "failed"
		v.Log.Error("BACKUP FAILED VERIFICATION: this group would not restore", "group", group, "backup_storage", bs.UUID,
			"name", bs.Name, "problem", oneLine(res.Problem))
	} else {
		v.Log.Debug("backup group verified", "group", group, "backup_storage", bs.UUID)
	}
	if v.Metrics != nil {
		v.Metrics.BackupVerifications.WithLabelValues(bs.UUID, outcome).Inc()
	}
	return nil
}

func oneLine(s string) string { return strings.Join(strings.Fields(s), " ") }
