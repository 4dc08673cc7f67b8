package main

import (
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/vmrestore/vmrestore/internal/apiv1"
	"github.com/vmrestore/vmrestore/internal/client"
)

func (a *cli) vmCommand() *cobra.Command {
	cmd := group(&cobra.Command{Use: "vm", Short: "Restored VM instances: list, destroy, expunge, recover, stop, start, reboot"})
	var qy client.VMQuery
	list := &cobra.Command{
		Use:   "list",
		Short: "List VM instances (ZStack query conditions with --q)",
		Long: `List VM instances, as GET /zstack/v1/vm-instances answers them. Each --q is a ZStack query
condition passed as q=: name=web01-dr, state=Running, vmNics.ip=10.10.0.21, name~=web%,
state?=Running,Stopped, hostUuid!=<uuid>, description not null. An unknown field is an error.`,
		Args: args(0, ""),
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := a.client()
			if err != nil {
				return err
			}
			vms, raw, err := c.ListVMs(a.ctx, qy)
			if err != nil {
				return err
			}
			return a.print(raw, func(w io.Writer) error {
				if len(vms) == 0 {
					fmt.Fprintln(w, "No VM instances match.")
					return nil
				}
				fmt.Fprintln(w, "UUID\tNAME\tSTATE\tCPU\tMEMORY\tHOST\tIPS\tCREATED")
				for _, vm := range vms {
					var ips []string
					for _, n := range vm.VMNics {
						if n.IP != "" {
							ips = append(ips, n.IP)
						}
					}
					host := vm.HostUUID
					if host == "" {
						host = vm.LastHostUUID
					}
					created := "-"
					if !vm.CreateDate.IsZero() {
						created = vm.CreateDate.String()
					}
					fmt.Fprintf(w, "%s\t%s\t%s\t%d\t%s\t%s\t%s\t%s\n", vm.UUID, vm.Name, vm.State, vm.CPUNum, bytesText(vm.MemorySize),
						dash(host), dash(strings.Join(ips, ",")), created)
				}
				return nil
			})
		},
	}
	list.Flags().StringArrayVar(&qy.Conditions, "q", nil, "a query condition, like name=web01-dr (repeatable)")
	list.Flags().IntVar(&qy.Limit, "limit", 0, "at most this many (the api's default is 1000)")
	list.Flags().IntVar(&qy.Start, "start", 0, "skip this many")
	list.Flags().StringVar(&qy.Sort, "sort", "", "sort by a field: +name or -createDate")
	cmd.AddCommand(list)
	cmd.AddCommand(a.vmOpCommands()...)
	return cmd
}

func (a *cli) jobCommand() *cobra.Command {
	cmd := group(&cobra.Command{Use: "job", Short: "Restore jobs"})
	get := &cobra.Command{
		Use:   "get <job uuid>",
		Short: "Show a restore job: state, stage, bytes, error",
		Args:  args(1, "a job uuid"),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := a.client()
			if err != nil {
				return err
			}
			j, raw, err := c.GetJob(a.ctx, args[0])
			if err != nil {
				return err
			}
			return a.print(raw, func(w io.Writer) error { return jobTable(w, j) })
		},
	}
	cancel := &cobra.Command{
		Use:   "cancel <job uuid>",
		Short: "Cancel a restore job: a pending job never starts, a running one stops and gives back what it took",
		Args:  args(1, "a job uuid"),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := a.client()
			if err != nil {
				return err
			}
			j, raw, err := c.CancelJob(a.ctx, args[0])
			if err != nil {
				return err
			}
			return a.print(raw, func(w io.Writer) error {
				fmt.Fprintf(w, "job %s: cancel requested (it was %s); it stops within seconds\n", j.UUID, j.State)
				return nil
			})
		},
	}
	cmd.AddCommand(get, cancel)
	return cmd
}

func jobTable(w io.Writer, j *apiv1.Job) error {
	fmt.Fprintf(w, "Job:\t%s\n", j.UUID)
	if j.Outcome != "" {
		fmt.Fprintf(w, "State:\t%s: %s\n", j.State, j.Outcome)
	} else {
		fmt.Fprintf(w, "State:\t%s\n", j.State)
	}
	fmt.Fprintf(w, "Stage:\t%s\n", dash(j.Stage))
	fmt.Fprintf(w, "Name:\t%s\n", j.Name)
	fmt.Fprintf(w, "Group:\t%s\n", j.GroupUUID)
	fmt.Fprintf(w, "VM:\t%s\n", dash(j.VMUUID))
	if j.PlanUUID != "" {
		item := "-"
		if j.PlanItem != nil {
			item = fmt.Sprint(*j.PlanItem)
		}
		fmt.Fprintf(w, "Plan:\t%s (item %s)\n", j.PlanUUID, item)
	}
	fmt.Fprintf(w, "Attempts:\t%d (hand-backs %d)\n", j.Attempts, j.HandBacks)
	fmt.Fprintf(w, "Created:\t%s\n", timeText(&j.CreatedAt))
	fmt.Fprintf(w, "Started:\t%s\n", timeText(j.StartedAt))
	fmt.Fprintf(w, "Finished:\t%s\n", timeText(j.FinishedAt))
	if in := j.Instant; in != nil {
		fmt.Fprintf(w, "Instant:\t%s\n", instantText(j.CreatedAt, in))
	}
	if j.Progress != nil {
		fmt.Fprintf(w, "Data:\t%s/%s of backup data (the backup files' length: %s/%s)\n", bytesText(j.Progress.DataBytes), bytesText(j.Progress.DataBytesTotal),
			bytesText(j.Progress.BytesDone), bytesText(j.Progress.BytesTotal))
	}
	if j.Cancel {
		fmt.Fprintf(w, "Cancel:\trequested\n")
	}
	if j.Error != nil {
		fmt.Fprintf(w, "Error:\t%s\n", oneLine(codeText(j.Error)))
		for c, n := j.Error.Cause, 0; c != nil && n < 10; c, n = c.Cause, n+1 {
			fmt.Fprintf(w, "Cause:\t%s\n", oneLine(codeText(c)))
		}
	}
	return nil
}

// instantText tells an instant restore's course: when its VM ran, and how long it ran from
// its backups before it was hydrated.
func instantText(created time.Time, in *apiv1.JobInstant) string {
	text := in.State
	if in.RunningAt != nil {
		text += fmt.Sprintf("; the VM ran %s after the request (%s)", in.RunningAt.Sub(created).Round(10*time.Millisecond), timeText(in.RunningAt))
		if in.HydratedAt != nil {
			text += fmt.Sprintf(", from its backups for %s until hydrated (%s)", durationText(in.HydratedAt.Sub(*in.RunningAt)), timeText(in.HydratedAt))
		}
	}
	return text
}
