package main

import (
	"bufio"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/vmrestore/vmrestore/internal/apiv1"
	"github.com/vmrestore/vmrestore/internal/client"
)

func (a *cli) planReportCommand() *cobra.Command {
	var format, file string
	cmd := &cobra.Command{
		Use:   "report <plan uuid>",
		Short: "A plan's run report: RTO per VM, tier and plan, stage timings, boot checks, failures, what cleanup freed",
		Long: `Print or save a plan's run report. --format json (the default) is the report as the API
answers it; html a self-contained page with the tiers' timeline (it loads nothing; open it
in a browser, mail it, archive it); csv one line per VM. --save writes it to a file (-o is
restorectl's output format, as for every command). The report
is kept after the plan's cleanup, for the api's VMRESTORE_REPORT_RETENTION.`,
		Args: args(1, "a plan uuid"),
		RunE: func(cmd *cobra.Command, args []string) error {
			if format != "json" && format != "html" && format != "csv" {
				return &usageError{err: fmt.Errorf("--format %q must be json, html or csv", format), cmd: cmd}
			}
			c, err := a.client()
			if err != nil {
				return err
			}
			return a.saveReport(c, args[0], format, file)
		},
	}
	cmd.Flags().StringVar(&format, "format", "json", "json, html or csv")
	cmd.Flags().StringVar(&file, "save", "", "write the report to this file instead of stdout")
	return cmd
}

// saveReport fetches a report in a format and writes it to file, or stdout when file is "".
func (a *cli) saveReport(c *client.Client, plan, format, file string) error {
	b, err := c.RunReportAs(a.ctx, plan, format)
	if err != nil {
		return err
	}
	if file == "" {
		_, err = a.stdout.Write(b)
		return err
	}
	if err := os.WriteFile(file, b, 0o644); err != nil {
		return fmt.Errorf("write the report: %w", err)
	}
	fmt.Fprintf(a.stderr, "report of plan %s written to %s (%s, %s)\n", plan, file, format, bytesText(int64(len(b))))
	return nil
}

func (a *cli) reportCommand() *cobra.Command {
	cmd := group(&cobra.Command{Use: "report", Short: "Run reports of ended plans and drills: list"})
	list := &cobra.Command{
		Use:   "list",
		Short: "The run reports kept, newest first: plan, mode, outcome, RTO, what cleanup freed",
		Args:  args(0, ""),
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := a.client()
			if err != nil {
				return err
			}
			reports, err := c.ListReports(a.ctx)
			if err != nil {
				return err
			}
			return a.print(apiv1.RunReportList{Reports: reports}, func(w io.Writer) error { return reportTable(w, reports) })
		},
	}
	cmd.AddCommand(list)
	return cmd
}

func reportTable(w io.Writer, reports []apiv1.RunReportSummary) error {
	fmt.Fprintln(w, "PLAN\tNAME\tMODE\tSTATE\tSTARTED BY\tSUBMITTED\tVMS\tRTO\tTIER RTOS\tCLEANED UP")
	for _, r := range reports {
		var tiers []string
		for _, t := range r.Tiers {
			mark := ""
			if !t.Complete {
				mark = " (incomplete)"
			}
			tiers = append(tiers, fmt.Sprintf("%d: %s%s", t.Tier, rtoText(t.RTOSeconds), mark))
		}
		cleaned := "-"
		if r.Freed != nil {
			cleaned = fmt.Sprintf("%d VMs", r.Freed.VMs)
		}
		fmt.Fprintf(w, "%s\t%s\t%s\t%s\t%s\t%s\t%d/%d\t%s\t%s\t%s\n", r.PlanUUID, r.PlanName, r.Mode, r.State, r.StartedBy,
			r.SubmittedAt.Local().Format("2006-01-02 15:04"), r.Counts["succeeded"], r.ItemCount, rtoText(r.RTOSeconds), dash(strings.Join(tiers, ", ")), cleaned)
	}
	if len(reports) == 0 {
		fmt.Fprintln(w, "(no reports kept: a plan's report is kept when it ends)")
	}
	return nil
}

// rtoText is an RTO as people read it; under a minute to a tenth of a second.
func rtoText(v *float64) string {
	switch {
	case v == nil:
		return "-"
	case *v < 60:
		return fmt.Sprintf("%.1fs", *v)
	}
	return durationText(time.Duration(*v * float64(time.Second)))
}

// waitForKey waits until the user presses Enter (or stdin ends, or the command is stopped).
func (a *cli) waitForKey(prompt string) error {
	fmt.Fprint(a.stderr, prompt)
	line := make(chan error, 1)
	go func() {
		_, err := bufio.NewReader(a.stdin).ReadString('\n')
		line <- err
	}()
	select {
	case <-a.ctx.Done():
		return a.ctx.Err()
	case <-line:
		return nil
	}
}
