// Command worker runs vmrestore's restore pipeline: an asynq server taking restore jobs from
// Redis (REDIS_ADDR), with /metrics, /healthz and /readyz on VMRESTORE_METRICS_ADDR. Run as
// many as the restores need; see docs/operations.md.
package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"

	"github.com/vmrestore/vmrestore/internal/app"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Args[1:], os.Getenv, os.Stdout, os.Stderr); err != nil {
		fmt.Fprintln(os.Stderr, "vmrestore worker:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	c, err := app.LoadConfig("worker", args, getenv, stderr)
	if err != nil {
		return err
	}
	log := app.NewLogger(c, stderr)
	w, err := app.StartWorker(ctx, c, log)
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "vmrestore worker running: concurrency %d, metrics on http://%s/metrics, Redis at %s\n",
		c.Concurrency, w.MetricsAddr, c.RedisAddr)
	if err := w.Wait(); err != nil && ctx.Err() == nil {
		return err
	}
	log.Info("worker stopped")
	return nil
}
