package reportpage

import (
	"fmt"
	"time"

	"github.com/vmrestore/vmrestore/internal/apiv1"
	"github.com/vmrestore/vmrestore/internal/job"
)

// exampleReport is a drill of three tiers (2 databases, 3 application servers, 3 web
// servers) whose VMs take minutes, one web server failing its boot check, then cleaned up:
// what the page tests render and the documentation's screenshot shows.
func exampleReport() *apiv1.RunReport {
	start := time.Date(2026, 11, 27, 2, 0, 0, 0, time.UTC)
	r := &apiv1.RunReport{PlanUUID: "5b0e3c1a9f2d4e6b8a7c6d5e4f3a2b1c", PlanName: "dc-east quarterly drill", Mode: apiv1.ModeDrill,
		State: "failed", Reason: "7 of 8 items restored", StartedBy: "dr-operator", StartedByAccountUUID: "36c27e8ff05c4780bf6d2fa65700f22e",
		SubmittedAt: start, GeneratedAt: start.Add(14 * time.Minute), ItemCount: 8, Counts: map[string]int{"succeeded": 7, "failed": 1},
		TestNetworks: []apiv1.TestNetwork{
			{SourceL3NetworkUUID: "f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0", ProductionL3NetworkUUID: "d50554f493153be78f6740e18e598046", L3NetworkUUID: "f72776b6b5375d0a8b6962f3a7b0a268", Name: "l3-drill"},
			{SourceL3NetworkUUID: "f1f1f1f1f1f1f1f1f1f1f1f1f1f1f1f1", ProductionL3NetworkUUID: "e61665a5a4264cf89a7851f29f6a9157", L3NetworkUUID: "0c4a99d8e8597e2c9d8a8415ad9c248b", Name: "l3-drill-mgmt"},
		}}
	type vmPlan struct {
		name                string
		tier                int
		queued, clone, boot float64 // seconds: wait from submission, copy, boot check
		failed              bool
	}
	plans := []vmPlan{{"db-01", 1, 2, 170, 40, false}, {"db-02", 1, 3, 210, 45, false},
		{"app-01", 2, 262, 120, 35, false}, {"app-02", 2, 262, 95, 30, false}, {"app-03", 2, 263, 140, 38, false},
		{"web-01", 3, 447, 80, 25, false}, {"web-02", 3, 447, 75, 22, false}, {"web-03", 3, 448, 90, 300, true}}
	at := func(s float64) time.Time { return start.Add(time.Duration(s * float64(time.Second))) }
	for i, p := range plans {
		vm := apiv1.RunReportVM{Index: i, Tier: p.tier, Name: p.name + "-drill", GroupUUID: fmt.Sprintf("%032x", 0xa000+i), VMUUID: fmt.Sprintf("%032x", 0xb000+i),
			JobUUID: fmt.Sprintf("%032x", 0xc000+i), State: "succeeded", Attempts: 1, DataBytes: int64(p.clone * 180e6), VirtualBytes: 40 << 30,
			BootCheck: "console:login: $"}
		queued, started := at(p.queued), at(p.queued+1.5)
		vm.QueuedAt, vm.StartedAt = &queued, &started
		t := started
		for _, s := range []struct {
			stage string
			secs  float64
		}{{job.StageResolve, 0.2}, {job.StagePlace, 0.4}, {job.StageNetwork, 0.3}, {job.StageClone, p.clone}, {job.StageInstantiate, p.boot}, {job.StageCommit, 0.2}} {
			vm.Stages = append(vm.Stages, apiv1.RunReportStage{Stage: s.stage, StartedAt: t, Seconds: s.secs})
			t = t.Add(time.Duration(s.secs * float64(time.Second)))
		}
		end := t
		vm.FinishedAt = &end
		if p.failed {
			vm.State, vm.ErrorCode, vm.VMUUID = "failed", "SYS.1006", ""
			vm.Error = "boot check console:login: $ failed: the console printed no line matching \"login: $\" within 5m0s (last line: \"[  301.2] systemd[1]: Timed out waiting for device /dev/vdb\")"
			vm.BootCheckResult = "failed: the console printed no line matching \"login: $\" within 5m0s"
			vm.Stages = vm.Stages[:len(vm.Stages)-1]
		} else {
			rto := end.Sub(start).Seconds()
			vm.RTOSeconds = &rto
			vm.BootCheckResult = "passed: console:login: $: matched \"" + p.name + " login: \""
		}
		r.VMs = append(r.VMs, vm)
	}
	r.Tiers = exampleTiers(r.VMs)
	for _, t := range r.Tiers {
		r.DataBytes += t.DataBytes
		if t.RTOSeconds != nil && (r.RTOSeconds == nil || *t.RTOSeconds > *r.RTOSeconds) {
			v := *t.RTOSeconds
			r.RTOSeconds = &v
		}
	}
	fin := *r.VMs[len(r.VMs)-1].FinishedAt
	r.FinishedAt = &fin
	cleanEnd := fin.Add(31 * time.Minute)
	r.Cleanup = &apiv1.PlanCleanup{UUID: "7d3c2b1a0f9e4d8c7b6a5f4e3d2c1b0a", PlanUUID: r.PlanUUID, State: apiv1.CleanupSucceeded,
		StartedAt: fin.Add(30 * time.Minute), FinishedAt: &cleanEnd,
		Freed: apiv1.CleanupFreed{VMs: 7, CPUNum: 28, MemoryBytes: 56 << 30, StorageBytes: 280 << 30, IPs: 9, MACs: 9, Files: 14}}
	return r
}

func exampleTiers(vms []apiv1.RunReportVM) []apiv1.RunReportTier {
	var out []apiv1.RunReportTier
	for tier := 1; tier <= 3; tier++ {
		t := apiv1.RunReportTier{Tier: tier, Counts: map[string]int{}, Complete: true}
		for _, vm := range vms {
			if vm.Tier != tier {
				continue
			}
			t.ItemCount++
			t.Counts[vm.State]++
			t.DataBytes += vm.DataBytes
			if t.StartedAt == nil || vm.StartedAt.Before(*t.StartedAt) {
				t.StartedAt = vm.StartedAt
			}
			if t.EndedAt == nil || vm.FinishedAt.After(*t.EndedAt) {
				t.EndedAt = vm.FinishedAt
			}
			if vm.State != "succeeded" {
				t.Complete = false
				continue
			}
			if t.RTOSeconds == nil || *vm.RTOSeconds > *t.RTOSeconds {
				v := *vm.RTOSeconds
				t.RTOSeconds = &v
			}
		}
		out = append(out, t)
	}
	return out
}
