package main

import (
	"fmt"
	"io"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/vmrestore/vmrestore/internal/apiv1"
)

func (a *cli) planCommand() *cobra.Command {
	cmd := group(&cobra.Command{
		Use:   "plan",
		Short: "Bulk restore plans: apply, watch, list, get, cancel, pause, resume, retry, cleanup, report, drill",
	})
	cmd.AddCommand(a.planApplyCommand(), a.planWatchCommand(), a.planListCommand(), a.planGetCommand(),
		a.planOpCommand("cancel", "Cancel a plan: pending items never start, running ones stop and give back what they took"),
		a.planOpCommand("pause", "Pause a plan: start no more items (running ones go on)"),
		a.planOpCommand("resume", "Resume a paused (or halted) plan"),
		a.planRetryCommand(), a.planCleanupCommand(), a.planReportCommand(), a.planDrillCommand())
	return cmd
}

// watchOptions are the flags of commands that can watch a plan.
type watchOptions struct {
	interval time.Duration
	plain    bool
}

func (w *watchOptions) flags(cmd *cobra.Command) {
	cmd.Flags().DurationVar(&w.interval, "interval", 5*time.Second, "without a terminal: at most one progress line per interval")
	cmd.Flags().BoolVar(&w.plain, "plain", false, "print progress lines, not bars, even on a terminal")
}

func (a *cli) planApplyCommand() *cobra.Command {
	var file string
	var dryRun, watch bool
	var wo watchOptions
	cmd := &cobra.Command{
		Use:   "apply -f plan.yaml",
		Short: "Submit a restore plan (YAML or JSON), or simulate it with --dry-run",
		Long: `Submit a restore plan read from a YAML or JSON file ("-f -" reads stdin). Fields the plan
spec does not have are refused. With --dry-run the api simulates the plan against the capacity
free now and stores nothing: the report says where each VM would land or why it would not, and
the totals needed against what is free; the exit code is 3 when an item would be refused.
With --watch, the plan is watched until it ends (see 'restorectl plan watch').`,
		Args: args(0, ""),
		RunE: func(cmd *cobra.Command, _ []string) error {
			if file == "" {
				return &usageError{err: fmt.Errorf("give the plan file with -f (or -f - for stdin)"), cmd: cmd}
			}
			if dryRun && watch {
				return &usageError{err: fmt.Errorf("--dry-run and --watch do not go together: a dry run stores no plan"), cmd: cmd}
			}
			spec, err := readSpec(file, a.stdin)
			if err != nil {
				return err
			}
			c, err := a.client()
			if err != nil {
				return err
			}
			if dryRun {
				rep, err := c.DryRun(a.ctx, spec)
				if err != nil {
					return err
				}
				if err := a.print(rep, func(w io.Writer) error { return dryRunTable(w, spec.Name, rep) }); err != nil {
					return err
				}
				if rep.Refused > 0 {
					return &exitCode{code: exitPlanFailed}
				}
				return nil
			}
			rep, existing, err := c.SubmitPlan(a.ctx, spec)
			if err != nil {
				return err
			}
			if a.output == "table" || watch {
				w := a.stdout
				if a.output != "table" {
					w = a.stderr
				}
				if existing {
					fmt.Fprintf(w, "plan %s already exists for clientToken %q (%s, %s): not submitted again\n", rep.UUID, spec.ClientToken, rep.Name, rep.State)
				} else {
					fmt.Fprintf(w, "plan %s created: %q, %d VM(s) in %d tier(s), %s of backup data (%s virtual)\n", rep.UUID, rep.Name, rep.ItemCount,
						len(rep.Tiers), bytesText(rep.BytesTotal), bytesText(rep.VirtualBytesTotal))
				}
				if !watch {
					fmt.Fprintf(w, "watch it: restorectl plan watch %s\n", rep.UUID)
				}
			}
			if watch {
				return a.watch(c, rep.UUID, wo)
			}
			if a.output != "table" {
				return a.print(rep, nil)
			}
			return nil
		},
	}
	cmd.Flags().StringVarP(&file, "file", "f", "", "the plan file, YAML or JSON (- for stdin)")
	cmd.Flags().BoolVar(&dryRun, "dry-run", false, "simulate the plan against the capacity free now; store nothing")
	cmd.Flags().BoolVar(&watch, "watch", false, "watch the plan until it ends")
	wo.flags(cmd)
	return cmd
}

// named is a catalog object as a person finds it: its name, then its uuid.
func named(name, uuid string) string {
	if name == "" || uuid == "" {
		return uuid
	}
	return name + " (" + uuid + ")"
}

func dryRunTable(w io.Writer, name string, rep *apiv1.DryRunReport) error {
	fmt.Fprintf(w, "Dry run of plan %q: %d of %d VM(s) fit, %d refused", name, rep.Fits, rep.ItemCount, rep.Refused)
	if rep.Warnings > 0 {
		fmt.Fprintf(w, ", %d with warnings", rep.Warnings)
	}
	fmt.Fprintln(w)
	if rep.Mode == apiv1.ModeDrill {
		fmt.Fprintln(w, "Mode: drill: every NIC goes onto an isolated test network, never a production address:")
		for _, n := range rep.TestNetworks {
			from := "any other source network"
			if n.SourceL3NetworkUUID != "" {
				from = "source " + n.SourceL3NetworkUUID + " (production " + n.ProductionL3NetworkUUID + ")"
			}
			fmt.Fprintf(w, "  %s -> test network %s\n", from, named(n.Name, n.L3NetworkUUID))
		}
	}
	var fit, refused []apiv1.DryRunItem
	for _, it := range rep.Items {
		if it.Fits {
			fit = append(fit, it)
		} else {
			refused = append(refused, it)
		}
	}
	random := false
	if len(fit) > 0 {
		fmt.Fprintln(w, "\nWould land:")
		fmt.Fprintln(w, "INDEX\tTIER\tNAME\tGROUP\tCPU\tMEMORY\tHOST\tPRIMARY STORAGE\tIPS")
		for _, it := range fit {
			var ps []string
			var size int64
			for _, v := range it.Volumes {
				size += v.Size
				if s := named(v.PrimaryStorageName, v.PrimaryStorageUUID); !slices.Contains(ps, s) {
					ps = append(ps, s)
				}
			}
			var ips []string
			for _, n := range it.NICs {
				ip := n.IP
				switch {
				case n.Static:
					ip += "(kept)"
				case n.Random:
					ip += "~"
					random = true
				}
				ips = append(ips, ip)
			}
			fmt.Fprintf(w, "%d\t%d\t%s\t%s\t%d\t%s\t%s\t%s (%s)\t%s\n", it.Index, it.Tier, it.Name, it.GroupUUID, it.CPUNum,
				bytesText(it.MemorySize), dash(named(it.HostName, it.HostUUID)), strings.Join(ps, ","), bytesText(size), dash(strings.Join(ips, ",")))
		}
	}
	if len(refused) > 0 {
		fmt.Fprintln(w, "\nWould be refused:")
		fmt.Fprintln(w, "INDEX\tTIER\tNAME\tGROUP\tCPU\tMEMORY\tWHY")
		for _, it := range refused {
			fmt.Fprintf(w, "%d\t%d\t%s\t%s\t%d\t%s\t%s\n", it.Index, it.Tier, it.Name, it.GroupUUID, it.CPUNum,
				bytesText(it.MemorySize), oneLine(it.ErrorCode+": "+it.Error))
		}
		var codes []string
		for code, n := range rep.Refusals {
			codes = append(codes, fmt.Sprintf("%s × %d", code, n))
		}
		sort.Strings(codes)
		fmt.Fprintf(w, "Refusals by code: %s\n", strings.Join(codes, ", "))
	}
	if rep.Warnings > 0 {
		fmt.Fprintln(w, "\nWarnings:")
		for _, it := range rep.Items {
			for _, warning := range it.Warnings {
				fmt.Fprintf(w, "  item %d (%s): %s\n", it.Index, it.Name, oneLine(warning))
			}
		}
	}
	if random {
		fmt.Fprintln(w, "~ the L3 network allocates at random: the address shown is free now, the real one is chosen at restore")
	}
	if rep.Note != "" && len(fit) > 0 {
		fmt.Fprintf(w, "Note: %s.\n", rep.Note)
	}
	fmt.Fprintln(w)
	fmt.Fprintln(w, "TOTALS\tNEEDED\tFREE\t")
	res := func(label string, need, free int64, bytes bool) {
		text := func(n int64) string {
			if bytes {
				return bytesText(n)
			}
			return fmt.Sprint(n)
		}
		mark := ""
		if need > free {
			mark = "short by " + text(need-free)
		}
		fmt.Fprintf(w, "%s\t%s\t%s\t%s\n", label, text(need), text(free), mark)
	}
	res("cpu", rep.Needed.CPU, rep.Free.CPU, false)
	res("memory", rep.Needed.Memory, rep.Free.Memory, true)
	res("storage", rep.Needed.Storage, rep.Free.Storage, true)
	return nil
}

func (a *cli) planWatchCommand() *cobra.Command {
	var wo watchOptions
	cmd := &cobra.Command{
		Use:   "watch <plan uuid>",
		Short: "Watch a plan until it ends: live progress, then the failed items and why",
		Long: `Watch a plan until it ends. On a terminal: a progress bar per tier and one for the whole plan
(VMs done/total, bytes done/total, throughput, ETA); otherwise a progress line at most every
--interval. Progress comes from the api's event stream, or from polling when the stream breaks.
At the end the failed and cancelled items are listed with their reasons. Exit code: 0 when
every item succeeded, 3 when the plan failed or was cancelled. Ctrl-C stops watching only.
With -o json or yaml, progress goes to stderr and the final report (with its items) to stdout.`,
		Args: args(1, "a plan uuid"),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := a.client()
			if err != nil {
				return err
			}
			return a.watch(c, args[0], wo)
		},
	}
	wo.flags(cmd)
	return cmd
}

func (a *cli) planListCommand() *cobra.Command {
	return &cobra.Command{
		Use:   "list",
		Short: "List the plans this session may see, newest first",
		Args:  args(0, ""),
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := a.client()
			if err != nil {
				return err
			}
			plans, err := c.ListPlans(a.ctx)
			if err != nil {
				return err
			}
			if plans == nil {
				plans = []apiv1.PlanReport{}
			}
			return a.print(plans, func(w io.Writer) error {
				if len(plans) == 0 {
					fmt.Fprintln(w, "No plans.")
					return nil
				}
				fmt.Fprintln(w, "UUID\tNAME\tSTATE\tVMS DONE\tFAILED\tDATA\tCREATED")
				for _, p := range plans {
					fmt.Fprintf(w, "%s\t%s\t%s\t%d/%d\t%d\t%s/%s\t%s\n", p.UUID, p.Name, p.State, ended(p.Counts), p.ItemCount,
						p.Counts["failed"]+p.Counts["cancelled"], bytesText(p.BytesDone), bytesText(p.BytesTotal), timeText(&p.CreatedAt))
				}
				return nil
			})
		},
	}
}

func (a *cli) planGetCommand() *cobra.Command {
	var items string
	cmd := &cobra.Command{
		Use:   "get <plan uuid>",
		Short: "Show a plan: totals, tiers and its items",
		Args:  args(1, "a plan uuid"),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := a.client()
			if err != nil {
				return err
			}
			rep, err := c.GetPlan(a.ctx, args[0], items)
			if err != nil {
				return err
			}
			return a.print(rep, func(w io.Writer) error { return planTable(w, rep) })
		},
	}
	cmd.Flags().StringVar(&items, "items", "all", "which items: all, none, pending, running, succeeded, failed or cancelled")
	return cmd
}

// planTable writes a plan's totals, tiers and items.
func planTable(w io.Writer, rep *apiv1.PlanReport) error {
	state := rep.State
	if rep.Reason != "" {
		state += " (" + rep.Reason + ")"
	}
	fmt.Fprintf(w, "Plan:\t%s\n", rep.UUID)
	fmt.Fprintf(w, "Name:\t%s\n", rep.Name)
	fmt.Fprintf(w, "State:\t%s\n", state)
	fmt.Fprintf(w, "Created:\t%s\n", timeText(&rep.CreatedAt))
	if rep.FinishedAt != nil {
		fmt.Fprintf(w, "Finished:\t%s (took %s)\n", timeText(rep.FinishedAt), durationText(rep.FinishedAt.Sub(rep.CreatedAt)))
	}
	fmt.Fprintf(w, "VMs:\t%d/%d done: %s\n", ended(rep.Counts), rep.ItemCount, countsText(rep.Counts))
	fmt.Fprintf(w, "Data:\t%s/%s of backup data (virtual size %s/%s)\n", bytesText(rep.BytesDone), bytesText(rep.BytesTotal),
		bytesText(rep.VirtualBytesDone), bytesText(rep.VirtualBytesTotal))
	if rep.FinishedAt == nil {
		fmt.Fprintf(w, "Throughput:\t%s, ETA %s\n", rateText(rep.ThroughputBytesPerSecond), etaText(rep.EtaSeconds))
	}
	fmt.Fprintf(w, "Concurrency:\t%d\n", rep.Concurrency)
	for _, t := range rep.Tiers {
		total := 0
		for _, n := range t.Counts {
			total += n
		}
		fmt.Fprintf(w, "Tier %d:\t%d/%d done: %s; data %s/%s (virtual %s)\n", t.Tier, ended(t.Counts), total, countsText(t.Counts),
			bytesText(t.BytesDone), bytesText(t.BytesTotal), bytesText(t.VirtualBytesTotal))
	}
	if len(rep.Items) == 0 {
		return nil
	}
	fmt.Fprintln(w)
	fmt.Fprintln(w, "INDEX\tTIER\tNAME\tGROUP\tSTATE\tSTAGE\tATTEMPT\tDATA\tVIRTUAL\tVM\tJOB\tERROR")
	for _, it := range rep.Items {
		errText := ""
		if it.ErrorCode != "" || it.Error != "" {
			errText = oneLine(it.ErrorCode + ": " + it.Error)
		}
		fmt.Fprintf(w, "%d\t%d\t%s\t%s\t%s\t%s\t%d\t%s/%s\t%s\t%s\t%s\t%s\n", it.Index, it.Tier, it.Name, it.GroupUUID, it.State,
			dash(it.Stage), it.Attempt, bytesText(it.BytesDone), bytesText(it.BytesTotal), bytesText(it.VirtualBytesTotal), dash(it.VMUUID), dash(it.JobUUID), dash(errText))
	}
	return nil
}

func (a *cli) planOpCommand(op, short string) *cobra.Command {
	var watch bool
	var wo watchOptions
	cmd := &cobra.Command{
		Use:   op + " <plan uuid>",
		Short: short,
		Args:  args(1, "a plan uuid"),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := a.client()
			if err != nil {
				return err
			}
			rep, err := c.OperatePlan(a.ctx, args[0], op)
			if err != nil {
				return err
			}
			if a.output == "table" || watch {
				w := a.stdout
				if a.output != "table" {
					w = a.stderr
				}
				state := rep.State
				if rep.Reason != "" {
					state += " (" + rep.Reason + ")"
				}
				fmt.Fprintf(w, "plan %s: %s; VMs %d/%d done: %s\n", rep.UUID, state, ended(rep.Counts), rep.ItemCount, countsText(rep.Counts))
			}
			if watch {
				return a.watch(c, rep.UUID, wo)
			}
			if a.output != "table" {
				return a.print(rep, nil)
			}
			return nil
		},
	}
	cmd.Flags().BoolVar(&watch, "watch", false, "then watch the plan until it ends")
	wo.flags(cmd)
	return cmd
}

func (a *cli) planRetryCommand() *cobra.Command {
	var watch bool
	var wo watchOptions
	cmd := &cobra.Command{
		Use:   "retry <plan uuid>",
		Short: "Run a plan's failed and cancelled items again, as new jobs",
		Args:  args(1, "a plan uuid"),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := a.client()
			if err != nil {
				return err
			}
			n, rep, err := c.RetryPlan(a.ctx, args[0])
			if err != nil {
				return err
			}
			if rep == nil {
				rep = &apiv1.PlanReport{UUID: args[0], State: "unknown"}
			}
			if a.output == "table" || watch {
				w := a.stdout
				if a.output != "table" {
					w = a.stderr
				}
				fmt.Fprintf(w, "plan %s: %d item(s) requeued; the plan is %s\n", args[0], n, rep.State)
			}
			if watch {
				return a.watch(c, args[0], wo)
			}
			if a.output != "table" {
				return a.print(map[string]any{"retried": n, "plan": rep}, nil)
			}
			return nil
		},
	}
	cmd.Flags().BoolVar(&watch, "watch", false, "then watch the plan until it ends")
	wo.flags(cmd)
	return cmd
}
