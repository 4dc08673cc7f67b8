// Command restorectl drives a vmrestore api over HTTP: log in, submit and watch bulk restore
// plans, operate on them, list restored VMs and read restore jobs. See docs/restorectl.md.
package main

import (
	"context"
	"os"
	"os/signal"
	"syscall"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := run(ctx, os.Args[1:], os.Getenv, os.Stdin, os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}
