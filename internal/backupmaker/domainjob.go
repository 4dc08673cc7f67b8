package backupmaker

import (
	"context"
	"errors"
	"fmt"
	"os"
	"slices"
	"time"

	"github.com/digitalocean/go-libvirt"
	"libvirt.org/go/libvirtxml"

	"github.com/vmrestore/vmrestore/internal/diskimage"
)

// backupJob is libvirt's push-mode backup job on a running domain: QEMU copies each disk,
// as it was when the job began, to a scratch file while the guest keeps running.
type backupJob struct {
	lv      *libvirt.Libvirt
	dom     libvirt.Domain
	scratch []string // a scratch file per disk, in the disks' order
	skipped []string // the targets of the domain's other disks (CD-ROMs): not backed up
	// scratchDir is the folder given for the scratch files; empty is next to each disk.
	scratchDir string
	poll       time.Duration
	progress   func(done, total int64)
	reported   bool // progress was called while the job ran
}

// ours reports whether the domain's active backup job writes to our scratch files (a run
// that was killed left it), and whether a job is active at all.
func (j *backupJob) ours() (active, ours bool, err error) {
	typ, _, _, _, _, _, _, _, _, _, _, _, err := j.lv.DomainGetJobInfo(j.dom)
	if notRunning(err) {
		return false, false, nil
	}
	if err != nil {
		return false, false, fmt.Errorf("read the job of domain %s: %w", j.dom.Name, err)
	}
	if libvirt.DomainJobType(typ) == libvirt.DomainJobNone {
		return false, false, nil
	}
	x, err := j.lv.DomainBackupGetXMLDesc(j.dom, 0)
	if err != nil {
		return true, false, nil // a job that is not a backup (a migration, a block job)
	}
	var b libvirtxml.DomainBackup
	if err := b.Unmarshal(x); err != nil || b.Push == nil || b.Push.Disks == nil {
		return true, false, nil
	}
	for _, d := range b.Push.Disks.Disks {
		if d.Backup == "no" {
			continue
		}
		if d.Target == nil || d.Target.File == nil || !slices.Contains(j.scratch, d.Target.File.File) {
			return true, false, nil
		}
	}
	return true, true, nil
}

// notRunning reports libvirt's answer for a domain that is not running (so has no job).
func notRunning(err error) bool {
	var le libvirt.Error
	return errors.As(err, &le) && le.Code == uint32(libvirt.ErrOperationInvalid)
}

// endLeftover ends the backup job a killed run left and removes its scratch files; another
// job on the domain is refused, untouched.
func (j *backupJob) endLeftover(ctx context.Context) error {
	active, ours, err := j.ours()
	if err != nil {
		return err
	}
	if active && !ours {
		return fmt.Errorf("domain %s has a job running that is not this backup's (virsh domjobinfo %s shows it); wait for it to end, then back up again",
			j.dom.Name, j.dom.Name)
	}
	if active {
		if err := j.abort(ctx); err != nil {
			return fmt.Errorf("end the backup job an interrupted backup left on domain %s: %w", j.dom.Name, err)
		}
	}
	return j.removeScratch()
}

// abort ends the domain's backup job and waits until libvirt has no job on it.
func (j *backupJob) abort(ctx context.Context) error {
	if err := j.lv.DomainAbortJob(j.dom); err != nil {
		if active, _, _ := j.ours(); active {
			return fmt.Errorf("abort the backup job of domain %s: %w", j.dom.Name, err)
		}
	}
	deadline := time.Now().Add(time.Minute)
	for {
		active, _, err := j.ours()
		if err != nil || !active {
			return err
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("the backup job of domain %s did not end within a minute of being aborted; virsh domjobabort %s ends it", j.dom.Name, j.dom.Name)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(j.poll):
		}
	}
}

func (j *backupJob) removeScratch() error {
	var errs []error
	for _, f := range j.scratch {
		if err := os.Remove(f); err != nil && !errors.Is(err, os.ErrNotExist) {
			errs = append(errs, fmt.Errorf("remove the backup job's file %s: %w", f, err))
		}
	}
	return errors.Join(errs...)
}

// release ends what run began: the job, if it still runs, and the scratch files.
func (j *backupJob) release(ctx context.Context) error {
	var errs []error
	if active, ours, err := j.ours(); err != nil {
		errs = append(errs, err)
	} else if active && ours {
		errs = append(errs, j.abort(ctx))
	}
	return errors.Join(append(errs, j.removeScratch())...)
}

// xml is the job's description: every disk to its scratch file in its own format, the
// others (CD-ROMs) left out.
func (j *backupJob) xml(disks []domainDisk) (string, error) {
	push := &libvirtxml.DomainBackupPushDisks{}
	for i, d := range disks {
		push.Disks = append(push.Disks, libvirtxml.DomainBackupPushDisk{Name: d.Target, Backup: "yes",
			Driver: &libvirtxml.DomainBackupDiskDriver{Type: d.Format},
			Target: &libvirtxml.DomainDiskSource{File: &libvirtxml.DomainDiskSourceFile{File: j.scratch[i]}}})
	}
	for _, t := range j.skipped {
		push.Disks = append(push.Disks, libvirtxml.DomainBackupPushDisk{Name: t, Backup: "no"})
	}
	b := libvirtxml.DomainBackup{Push: &libvirtxml.DomainBackupPush{Disks: push}}
	return b.Marshal()
}

// run begins the backup job, waits for it, and returns the disks to copy: its scratch files.
func (j *backupJob) run(ctx context.Context, disks []domainDisk) ([]Disk, error) {
	for _, d := range disks {
		if d.Block && j.scratchDir == "" {
			return nil, fmt.Errorf("domain %s: disk %s is the block device %s; give a folder for the backup job's copy of it (--scratch), on a file system with room for the disk",
				j.dom.Name, d.Target, d.Source)
		}
	}
	x, err := j.xml(disks)
	if err != nil {
		return nil, err
	}
	if err := j.lv.DomainBackupBegin(j.dom, x, nil, 0); err != nil {
		return nil, fmt.Errorf("begin libvirt's backup job on domain %s: %w", j.dom.Name, err)
	}
	if err := j.wait(ctx); err != nil {
		return nil, err
	}
	out := make([]Disk, 0, len(disks))
	var total int64
	for i, d := range disks {
		info, err := diskimage.Probe(ctx, j.scratch[i])
		if err != nil {
			return nil, fmt.Errorf("domain %s: the backup job's copy of disk %s: %w", j.dom.Name, d.Target, err)
		}
		out = append(out, diskOf(d, i, info.VirtualSize, j.scratch[i]))
		total += info.VirtualSize
	}
	if j.progress != nil && !j.reported {
		j.progress(total, total) // the job ended before it was first looked at
	}
	return out, nil
}

// wait polls the job until it ends, reporting its progress, and returns its outcome.
func (j *backupJob) wait(ctx context.Context) error {
	for {
		typ, _, _, dataTotal, dataDone, _, _, _, _, fileTotal, fileDone, _, err := j.lv.DomainGetJobInfo(j.dom)
		if err != nil {
			return fmt.Errorf("read the backup job of domain %s: %w", j.dom.Name, err)
		}
		if libvirt.DomainJobType(typ) == libvirt.DomainJobNone {
			break
		}
		if j.progress != nil {
			j.reported = true
			if dataTotal == 0 {
				dataTotal, dataDone = fileTotal, fileDone
			}
			j.progress(int64(dataDone), int64(dataTotal))
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(j.poll):
		}
	}
	typ, params, err := j.lv.DomainGetJobStats(j.dom, libvirt.DomainJobStatsCompleted)
	if err != nil {
		return fmt.Errorf("read the outcome of the backup job of domain %s: %w", j.dom.Name, err)
	}
	switch libvirt.DomainJobType(typ) {
	case libvirt.DomainJobCompleted:
		return nil
	case libvirt.DomainJobFailed:
		msg := "no reason given"
		for _, p := range params {
			if p.Field == "errmsg" {
				if s, ok := p.Value.I.(string); ok {
					msg = s
				}
			}
		}
		return fmt.Errorf("libvirt's backup job on domain %s failed: %s", j.dom.Name, msg)
	}
	return fmt.Errorf("libvirt's backup job on domain %s ended without an outcome (job type %d); was the domain stopped meanwhile?", j.dom.Name, typ)
}
