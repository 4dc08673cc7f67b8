package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/spf13/cobra"

	"github.com/vmrestore/vmrestore/internal/apiv1"
	"github.com/vmrestore/vmrestore/internal/client"
	"github.com/vmrestore/vmrestore/internal/job"
)

// drillOptions are the flags of restorectl plan drill.
type drillOptions struct {
	file, bootCheck, reportFile, reportFormat string
	hold                                      time.Duration
	holdUntilKey, keep                        bool
	wo                                        watchOptions
}

func (a *cli) planDrillCommand() *cobra.Command {
	var o drillOptions
	cmd := &cobra.Command{
		Use:   "drill -f plan.yaml",
		Short: "Rehearse a plan: dry run, restore onto the test networks, boot checks, hold, cleanup, report",
		Long: `Run a whole DR rehearsal of a plan file: the plan runs as a drill (mode: drill), so every NIC
goes onto an isolated test network (the mappings' testL3NetworkUuid, or the plan's default
testL3NetworkUuid) and a production address is never taken. In turn:

  1. dry run: where each VM would land; a VM that would not fit stops the drill (exit 3);
  2. restore, with live progress; every VM proves it booted (--boot-check, when the plan
     names no boot check of its own; the embedded demo's simulator supports "running" only);
  3. hold: the VMs stay up for --hold (like 30m), or until Enter is pressed
     (--hold-until-key), for the application teams to check them;
  4. cleanup: every VM the drill created is destroyed and expunged, highest tier first;
  5. report: saved to --report (html by default), and the RTOs printed.

A failed restore still gets its cleanup and its report; the exit code is then 3.`,
		Args: args(0, ""),
		RunE: func(cmd *cobra.Command, _ []string) error {
			if o.file == "" {
				return &usageError{err: fmt.Errorf("give the plan file with -f (or -f - for stdin)"), cmd: cmd}
			}
			if o.hold > 0 && o.holdUntilKey {
				return &usageError{err: fmt.Errorf("give --hold or --hold-until-key, not both"), cmd: cmd}
			}
			if o.reportFormat != "html" && o.reportFormat != "csv" && o.reportFormat != "json" {
				return &usageError{err: fmt.Errorf("--report-format %q must be html, csv or json", o.reportFormat), cmd: cmd}
			}
			return a.drill(o)
		},
	}
	cmd.Flags().StringVarP(&o.file, "file", "f", "", "the plan file, YAML or JSON (- for stdin)")
	cmd.Flags().StringVar(&o.bootCheck, "boot-check", job.BootRunning, `the boot check of plans that name none: running, guestAgent or console:<regex> ("" for none)`)
	cmd.Flags().DurationVar(&o.hold, "hold", 0, "keep the restored VMs this long before the cleanup (like 30m)")
	cmd.Flags().BoolVar(&o.holdUntilKey, "hold-until-key", false, "keep the restored VMs until Enter is pressed")
	cmd.Flags().BoolVar(&o.keep, "no-cleanup", false, "leave the VMs (clean up later with restorectl plan cleanup)")
	cmd.Flags().StringVar(&o.reportFile, "report", "", "where to save the report (default drill-<plan uuid>.<format>)")
	cmd.Flags().StringVar(&o.reportFormat, "report-format", "html", "html, csv or json")
	o.wo.flags(cmd)
	return cmd
}

// drill runs the rehearsal's steps; a failed restore goes on to the cleanup and the report.
func (a *cli) drill(o drillOptions) error {
	spec, err := readSpec(o.file, a.stdin)
	if err != nil {
		return err
	}
	if spec.Mode != apiv1.ModeDrill {
		fmt.Fprintf(a.stderr, "drill: plan %q runs as a drill: every NIC goes onto its test network\n", spec.Name)
		spec.Mode = apiv1.ModeDrill
	}
	if o.bootCheck != "" && !spec.HasBootCheck() {
		check, err := job.ParseBootCheck(o.bootCheck, 0)
		if err != nil {
			return &usageError{err: fmt.Errorf("--boot-check: %w", err)}
		}
		spec.Defaults.BootCheck = check
	}
	c, err := a.client()
	if err != nil {
		return err
	}
	fmt.Fprintln(a.stderr, "drill 1/5: dry run")
	dry, err := c.DryRun(a.ctx, spec)
	if err != nil {
		return err
	}
	if err := dryRunTable(a.stderr, spec.Name, dry); err != nil {
		return err
	}
	if dry.Refused > 0 {
		fmt.Fprintf(a.stderr, "drill stopped: %d VM(s) would not fit; nothing was restored\n", dry.Refused)
		return &exitCode{code: exitPlanFailed}
	}
	fmt.Fprintln(a.stderr, "drill 2/5: restore onto the test networks")
	rep, _, err := c.SubmitPlan(a.ctx, spec)
	if err != nil {
		return err
	}
	restoreErr := a.drillWatch(c, rep.UUID, o.wo)
	var code *exitCode
	if restoreErr != nil && !errors.As(restoreErr, &code) {
		fmt.Fprintf(a.stderr, "drill stopped while watching the restore; its VMs may be up: restorectl plan cleanup %s\n", rep.UUID)
		return restoreErr
	}
	if err := a.drillHold(rep.UUID, o); err != nil {
		return err
	}
	if o.keep {
		fmt.Fprintf(a.stderr, "drill 4/5: no cleanup (--no-cleanup); when done: restorectl plan cleanup %s\n", rep.UUID)
	} else if err := a.drillCleanup(c, rep.UUID); err != nil {
		return err
	}
	if err := a.drillReport(c, rep.UUID, o); err != nil {
		return err
	}
	return restoreErr
}

// drillWatch follows the restore with the usual progress, its summary on stderr.
// A plan that pauses (a tier with boot checks failed) ends the drill's restore: it waits
// for nobody during a rehearsal, and the cleanup cancels it.
func (a *cli) drillWatch(c *client.Client, plan string, wo watchOptions) error {
	saved, out, parent := a.output, a.stdout, a.ctx
	a.output, a.stdout = "table", a.stderr // stdout is kept for the report's figures
	ctx, stop := context.WithCancel(parent)
	a.ctx = ctx
	defer func() { a.output, a.stdout, a.ctx = saved, out, parent; stop() }()
	paused := make(chan struct{})
	go func() {
		for ctx.Err() == nil {
			if rep, err := c.GetPlan(ctx, plan, "none"); err == nil && rep.State == "paused" {
				close(paused)
				stop()
				return
			}
			select {
			case <-ctx.Done():
			case <-time.After(2 * time.Second):
			}
		}
	}()
	err := a.watch(c, plan, wo)
	select {
	case <-paused:
		fmt.Fprintf(a.stderr, "drill: plan %s paused (a tier's boot checks failed); the drill goes on to the cleanup\n", plan)
		return &exitCode{code: exitPlanFailed}
	default:
		return err
	}
}

// drillHold keeps the VMs for the hold asked, showing the time left every minute.
func (a *cli) drillHold(plan string, o drillOptions) error {
	switch {
	case o.holdUntilKey:
		return a.waitForKey(fmt.Sprintf("drill 3/5: hold: the VMs of plan %s stay up; press Enter to clean up\n", plan))
	case o.hold > 0:
		end := time.Now().Add(o.hold)
		for left := o.hold; left > 0; left = time.Until(end) {
			fmt.Fprintf(a.stderr, "drill 3/5: hold: the VMs stay up %s more (cleanup at %s)\n", durationText(left.Round(time.Second)), end.Local().Format("15:04:05"))
			select {
			case <-a.ctx.Done():
				fmt.Fprintf(a.stderr, "drill stopped during the hold; the VMs are up: restorectl plan cleanup %s\n", plan)
				return a.ctx.Err()
			case <-time.After(min(left, time.Minute)):
			}
		}
	default:
		fmt.Fprintln(a.stderr, "drill 3/5: no hold")
	}
	return nil
}

// drillCleanup destroys and expunges the drill's VMs, with progress, and says what it freed.
func (a *cli) drillCleanup(c *client.Client, plan string) error {
	fmt.Fprintln(a.stderr, "drill 4/5: cleanup")
	if _, err := c.CleanupPlan(a.ctx, plan); err != nil {
		return fmt.Errorf("the cleanup of plan %s did not start (%w); run it again: restorectl plan cleanup %s", plan, err, plan)
	}
	run, err := a.waitCleanup(c, plan, time.Second)
	if err != nil {
		return err
	}
	if run.State == apiv1.CleanupFailed {
		return fmt.Errorf("the cleanup of plan %s failed: %s; run it again: restorectl plan cleanup %s", plan, run.Reason, plan)
	}
	fmt.Fprintf(a.stderr, "cleanup %s: freed %s\n", run.State, freedText(run.Freed))
	return nil
}

// drillReport saves the report and prints its RTOs.
func (a *cli) drillReport(c *client.Client, plan string, o drillOptions) error {
	fmt.Fprintln(a.stderr, "drill 5/5: report")
	file := o.reportFile
	if file == "" {
		file = "drill-" + plan + "." + o.reportFormat
	}
	if err := a.saveReport(c, plan, o.reportFormat, file); err != nil {
		return err
	}
	rep, err := c.RunReport(a.ctx, plan)
	if err != nil {
		return err
	}
	return a.print(rep, func(w io.Writer) error { return rtoTable(w, rep) })
}

// rtoTable is a report's RTOs: the plan's, and each tier's.
func rtoTable(w io.Writer, r *apiv1.RunReport) error {
	fmt.Fprintf(w, "Drill %s (%s) %s: %d/%d VM(s) restored, RTO %s\n", r.PlanName, r.PlanUUID, r.State, r.Counts["succeeded"], r.ItemCount, rtoText(r.RTOSeconds))
	fmt.Fprintln(w, "TIER\tVMS\tRESTORED\tRTO")
	for _, t := range r.Tiers {
		fmt.Fprintf(w, "%d\t%d\t%d\t%s\n", t.Tier, t.ItemCount, t.Counts["succeeded"], rtoText(t.RTOSeconds))
	}
	return nil
}
