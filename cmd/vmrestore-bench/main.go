// Command vmrestore-bench measures vmrestore's figures beside references taken in the same
// run (see internal/bench), prints a table, and with BENCH_OUT=<file> writes them as JSON:
// a list of {name, value, unit, reference, ratio, target, met}.
//
//	vmrestore-bench            full sizes (make bench)
//	vmrestore-bench -quick     every figure at reduced size, under a minute (make bench-quick)
//	vmrestore-bench -only orchestration -cpuprofile cpu.out
//	                           one step, with a CPU profile for go tool pprof
package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"runtime/pprof"
	"slices"
	"strings"
	"syscall"

	"github.com/vmrestore/vmrestore/internal/bench"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	os.Exit(run(ctx, os.Args[1:], os.Getenv, os.Stdout, os.Stderr))
}

func run(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("vmrestore-bench", flag.ContinueOnError)
	fs.SetOutput(stderr)
	quick := fs.Bool("quick", false, "every figure at reduced size (under a minute)")
	dir := fs.String("dir", "/var/tmp", "directory on a real disk for files (clone figures need a disk, not tmpfs)")
	out := fs.String("out", getenv("BENCH_OUT"), "write the figures as JSON to this file (env BENCH_OUT)")
	only := fs.String("only", "", "comma-separated steps to run, of: "+strings.Join(bench.Steps(), ", "))
	cpuProfile := fs.String("cpuprofile", "", "write a CPU profile of the run to this file")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	var steps []string
	if *only != "" {
		for _, s := range strings.Split(*only, ",") {
			if !slices.Contains(bench.Steps(), strings.TrimSpace(s)) {
				fmt.Fprintf(stderr, "vmrestore-bench: no step %q; the steps are: %s\n", s, strings.Join(bench.Steps(), ", "))
				return 2
			}
			steps = append(steps, strings.TrimSpace(s))
		}
	}
	if *cpuProfile != "" {
		f, err := os.Create(*cpuProfile)
		if err == nil {
			err = pprof.StartCPUProfile(f)
		}
		if err != nil {
			fmt.Fprintln(stderr, "vmrestore-bench: cpu profile:", err)
			return 1
		}
		defer f.Close()
		defer pprof.StopCPUProfile()
	}
	figs := bench.Run(ctx, bench.Config{Quick: *quick, Dir: *dir, Log: stderr, Only: steps})
	bench.PrintTable(stdout, figs)
	if *out != "" {
		if err := bench.WriteJSON(*out, figs); err != nil {
			fmt.Fprintln(stderr, "vmrestore-bench:", err)
			return 1
		}
		fmt.Fprintf(stderr, "figures written to %s\n", *out)
	}
	return 0
}
