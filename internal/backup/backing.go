package backup

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"github.com/vmrestore/vmrestore/internal/zstack"
)

// BackingPrefix starts the marker files (.backs-<job uuid>) an instant restore leaves in a
// group's folder while its VM runs from the group's volume files, so that tools working on
// the folder alone (restorectl backup delete) see it without Redis. The worker marks the
// group in Redis as well.
const BackingPrefix = ".backs-"

// MarkBacking records in the group's folder that the job's VM runs from its files.
func MarkBacking(storageURL, groupUUID, jobUUID string) error {
	if !zstack.IsUUID(groupUUID) || !zstack.IsUUID(jobUUID) {
		return fmt.Errorf("group %q and job %q must be uuids", groupUUID, jobUUID)
	}
	return os.WriteFile(filepath.Join(GroupDir(storageURL, groupUUID), BackingPrefix+jobUUID), nil, 0o644)
}

// UnmarkBacking removes the job's marker (absent counts as removed).
func UnmarkBacking(storageURL, groupUUID, jobUUID string) error {
	if !zstack.IsUUID(groupUUID) || !zstack.IsUUID(jobUUID) {
		return fmt.Errorf("group %q and job %q must be uuids", groupUUID, jobUUID)
	}
	err := os.Remove(filepath.Join(GroupDir(storageURL, groupUUID), BackingPrefix+jobUUID))
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	return err
}

// BackingJobs lists the jobs whose markers are in the group's folder, sorted.
func BackingJobs(storageURL, groupUUID string) []string {
	entries, err := os.ReadDir(GroupDir(storageURL, groupUUID))
	if err != nil {
		return nil
	}
	var jobs []string
	for _, e := range entries {
		if job, ok := strings.CutPrefix(e.Name(), BackingPrefix); ok && zstack.IsUUID(job) {
			jobs = append(jobs, job)
		}
	}
	sort.Strings(jobs)
	return jobs
}
