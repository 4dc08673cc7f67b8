package main

import (
	"fmt"
	"io"
	"time"

	"github.com/spf13/cobra"

	"github.com/vmrestore/vmrestore/internal/apiv1"
	"github.com/vmrestore/vmrestore/internal/client"
)

func (a *cli) planCleanupCommand() *cobra.Command {
	var interval time.Duration
	var noWait bool
	cmd := &cobra.Command{
		Use:   "cleanup <plan uuid>",
		Short: "Destroy and expunge every VM a plan created (cancelling the plan first if it runs), and say what that freed",
		Long: `Cancel the plan if it still runs, then destroy and expunge every VM it created, highest tier
first: their capacity, primary-storage bytes, addresses, MACs, volume files and domains are
released. Progress is printed as the VMs go; the end says what was freed. Running it again
finishes what an interrupted cleanup left, and finds the rest gone.`,
		Args: args(1, "a plan uuid"),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := a.client()
			if err != nil {
				return err
			}
			run, err := c.CleanupPlan(a.ctx, args[0])
			if err != nil {
				return err
			}
			if !noWait {
				if run, err = a.waitCleanup(c, args[0], interval); err != nil {
					return err
				}
			}
			if err := a.print(run, func(w io.Writer) error { return cleanupTable(w, run) }); err != nil {
				return err
			}
			if run.State == apiv1.CleanupFailed {
				return fmt.Errorf("the cleanup of plan %s failed: %s", args[0], run.Reason)
			}
			return nil
		},
	}
	cmd.Flags().DurationVar(&interval, "interval", time.Second, "how often to read the cleanup's progress")
	cmd.Flags().BoolVar(&noWait, "no-wait", false, "start the cleanup and return (restorectl plan get shows it)")
	return cmd
}

// waitCleanup follows a plan's cleanup until it ends, printing a line whenever a VM is done.
func (a *cli) waitCleanup(c *client.Client, plan string, interval time.Duration) (*apiv1.PlanCleanup, error) {
	last := ""
	for {
		rep, err := c.GetPlan(a.ctx, plan, "none")
		if err != nil {
			return nil, err
		}
		run := rep.Cleanup
		if run == nil {
			return nil, fmt.Errorf("plan %s shows no cleanup; is the api the same version?", plan)
		}
		done := 0
		for _, v := range run.VMs {
			if v.State != apiv1.CleanupVMPending && v.State != apiv1.CleanupVMExpunging {
				done++
			}
		}
		line := fmt.Sprintf("cleanup of plan %s: %s, %d/%d VMs done, %s freed so far", plan, run.State, done, len(run.VMs), freedText(run.Freed))
		if line != last {
			fmt.Fprintln(a.stderr, line)
			last = line
		}
		if run.State != apiv1.CleanupRunning {
			return run, nil
		}
		select {
		case <-a.ctx.Done():
			return nil, a.ctx.Err()
		case <-time.After(interval):
		}
	}
}

func freedText(f apiv1.CleanupFreed) string {
	return fmt.Sprintf("%d VMs, %d vCPUs, %s memory, %s storage, %d IPs, %d MACs, %d files",
		f.VMs, f.CPUNum, bytesText(f.MemoryBytes), bytesText(f.StorageBytes), f.IPs, f.MACs, f.Files)
}

func cleanupTable(w io.Writer, run *apiv1.PlanCleanup) error {
	fmt.Fprintln(w, "TIER\tVM\tNAME\tSTATE\tFREED")
	for _, v := range run.VMs {
		what := freedText(v.Freed)
		if v.Error != nil {
			what = v.Error.Error()
		}
		fmt.Fprintf(w, "%d\t%s\t%s\t%s\t%s\n", v.Tier, v.VMUUID, v.Name, v.State, what)
	}
	fmt.Fprintf(w, "\nCleanup %s: %s. Freed %s.\n", run.UUID, run.State, freedText(run.Freed))
	return nil
}

// vmOpCommands are restorectl vm destroy|expunge|recover|stop|start|reboot.
func (a *cli) vmOpCommands() []*cobra.Command {
	ops := []struct{ op, short, flag, flagHelp, def string }{
		{"destroy", "Destroy a VM: its domain is stopped, its host capacity and addresses given back, the VM kept as Destroyed (recover or expunge it)", "delete-mode", "Permissive or Enforcing (destroy even when the host cannot stop the domain)", "Permissive"},
		{"expunge", "Expunge a destroyed VM: release its storage, MACs, files and domain, and remove it", "", "", ""},
		{"recover", "Recover a destroyed VM: it takes its host capacity and addresses again and is Stopped", "", "", ""},
		{"stop", "Stop a VM", "type", "grace (the guest shuts down, forced after a bound) or cold", "grace"},
		{"start", "Start a stopped VM on its host", "host", "the host uuid (only the VM's own host is possible)", ""},
		{"reboot", "Reboot a running VM (a graceful stop, then a start)", "", "", ""},
	}
	params := map[string]string{"delete-mode": "deleteMode", "type": "type", "host": "hostUuid"}
	var out []*cobra.Command
	for _, o := range ops {
		var value string
		cmd := &cobra.Command{
			Use:   o.op + " <vm uuid>",
			Short: o.short,
			Args:  args(1, "a VM uuid"),
			RunE: func(cmd *cobra.Command, args []string) error {
				c, err := a.client()
				if err != nil {
					return err
				}
				op := client.VMOperation{VMUUID: args[0], Op: o.op, Params: map[string]string{}}
				if o.flag != "" && value != "" {
					op.Params[params[o.flag]] = value
				}
				vm, err := c.RunVMOperation(a.ctx, op, func(job string) {
					fmt.Fprintf(a.stderr, "%s of VM %s queued as job %s; waiting for it\n", o.op, args[0], job)
				})
				if err != nil {
					return err
				}
				if vm == nil {
					fmt.Fprintf(a.stderr, "VM %s: %s done\n", args[0], o.op)
					return nil
				}
				return a.print(vm, func(w io.Writer) error {
					_, err := fmt.Fprintf(w, "VM %s (%s): %s done, now %s\n", vm.UUID, vm.Name, o.op, vm.State)
					return err
				})
			},
		}
		if o.flag != "" {
			cmd.Flags().StringVar(&value, o.flag, o.def, o.flagHelp)
		}
		out = append(out, cmd)
	}
	return out
}
