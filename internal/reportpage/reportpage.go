// Package reportpage renders a plan's run report (apiv1.RunReport) for people: a
// self-contained HTML page (inline CSS and an inline SVG timeline of the tiers and VMs;
// it fetches nothing, so it can be mailed, archived and opened offline) and CSV, one line
// per VM, for spreadsheets and audits.
package reportpage

import (
	"encoding/csv"
	"fmt"
	"io"
	"strconv"
	"time"

	"github.com/vmrestore/vmrestore/internal/apiv1"
	"github.com/vmrestore/vmrestore/internal/job"
)

// CSVHeader is the first line of the CSV: the plan's columns repeat on every line, then the
// VM's tier, its own figures and one column per pipeline stage (seconds).
func CSVHeader() []string {
	h := []string{"plan_uuid", "plan_name", "mode", "started_by", "submitted_at", "finished_at", "plan_state", "plan_rto_seconds",
		"tier", "tier_rto_seconds", "index", "vm_name", "group_uuid", "vm_uuid", "host_uuid", "state", "attempts",
		"queued_at", "started_at", "vm_finished_at", "vm_rto_seconds"}
	for _, s := range job.Stages {
		h = append(h, s+"_seconds")
	}
	return append(h, "data_bytes", "virtual_bytes", "boot_check", "boot_check_result", "error_code", "error",
		"cleanup_state", "freed_cpu", "freed_memory_bytes", "freed_storage_bytes", "freed_ips", "freed_macs", "freed_files")
}

// CSV writes the report as CSV, one line per VM, in index order.
func CSV(w io.Writer, r *apiv1.RunReport) error {
	cw := csv.NewWriter(w)
	if err := cw.Write(CSVHeader()); err != nil {
		return err
	}
	cleaned := map[int]apiv1.CleanupVM{}
	if r.Cleanup != nil {
		for _, c := range r.Cleanup.VMs {
			cleaned[c.Item] = c
		}
	}
	tierRTO := map[int]*float64{}
	for _, t := range r.Tiers {
		tierRTO[t.Tier] = t.RTOSeconds
	}
	for _, vm := range r.VMs {
		line := []string{r.PlanUUID, r.PlanName, r.Mode, r.StartedBy, stamp(&r.SubmittedAt), stamp(r.FinishedAt), r.State, seconds(r.RTOSeconds),
			strconv.Itoa(vm.Tier), seconds(tierRTO[vm.Tier]), strconv.Itoa(vm.Index), vm.Name, vm.GroupUUID, vm.VMUUID, vm.HostUUID, vm.State,
			strconv.Itoa(vm.Attempts), stamp(vm.QueuedAt), stamp(vm.StartedAt), stamp(vm.FinishedAt), seconds(vm.RTOSeconds)}
		stages := map[string]float64{}
		for _, s := range vm.Stages {
			stages[s.Stage] = s.Seconds
		}
		for _, s := range job.Stages {
			v, ok := stages[s]
			if ok {
				line = append(line, strconv.FormatFloat(v, 'f', 3, 64))
			} else {
				line = append(line, "")
			}
		}
		line = append(line, strconv.FormatInt(vm.DataBytes, 10), strconv.FormatInt(vm.VirtualBytes, 10), vm.BootCheck, vm.BootCheckResult, vm.ErrorCode, vm.Error)
		line = append(line, freedColumns(cleaned, vm.Index)...)
		if err := cw.Write(line); err != nil {
			return err
		}
	}
	cw.Flush()
	return cw.Error()
}

// freedColumns are what the cleanup freed of an item's VM, empty when it was not cleaned up.
func freedColumns(cleaned map[int]apiv1.CleanupVM, item int) []string {
	c, ok := cleaned[item]
	if !ok {
		return make([]string, 7)
	}
	f := c.Freed
	n := func(v int64) string { return strconv.FormatInt(v, 10) }
	return []string{c.State, n(f.CPUNum), n(f.MemoryBytes), n(f.StorageBytes), strconv.Itoa(f.IPs), strconv.Itoa(f.MACs), strconv.Itoa(f.Files)}
}

func stamp(t *time.Time) string {
	if t == nil || t.IsZero() {
		return ""
	}
	return t.UTC().Format(time.RFC3339Nano)
}

func seconds(v *float64) string {
	if v == nil {
		return ""
	}
	return strconv.FormatFloat(*v, 'f', 3, 64)
}

// duration writes seconds as people read them: 340 ms, 42.1 s, 3 min 05 s, 1 h 02 min.
func duration(v float64) string {
	switch {
	case v < 1:
		return fmt.Sprintf("%.0f ms", v*1000)
	case v < 60:
		return fmt.Sprintf("%.1f s", v)
	case v < 3600:
		return fmt.Sprintf("%d min %02d s", int(v)/60, int(v)%60)
	default:
		return fmt.Sprintf("%d h %02d min", int(v)/3600, int(v)%3600/60)
	}
}

// bytesText writes a byte count in binary units.
func bytesText(n int64) string {
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%d B", n)
	}
	div, exp := int64(unit), 0
	for m := n / unit; m >= unit; m /= unit {
		div *= unit
		exp++
	}
	return fmt.Sprintf("%.1f %ciB", float64(n)/float64(div), "KMGTPE"[exp])
}
