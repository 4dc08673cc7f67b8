// Command api serves vmrestore's HTTP API. With REDIS_ADDR unset it runs the embedded mode:
// an in-process Redis, in-process workers and a generated demo site, in one command.
//
//	api [flags]             run the api (see docs/configuration.md for flags and environment variables)
//	api hash-password       read a password on stdin, print the passwordHash for a site file account
package main

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"syscall"

	"github.com/vmrestore/vmrestore/internal/app"
	"github.com/vmrestore/vmrestore/internal/auth"
	"github.com/vmrestore/vmrestore/internal/embedded"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Args[1:], os.Getenv, os.Stdin, os.Stdout, os.Stderr); err != nil {
		fmt.Fprintln(os.Stderr, "vmrestore api:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, args []string, getenv func(string) string, stdin io.Reader, stdout, stderr io.Writer) error {
	if len(args) > 0 && args[0] == "hash-password" {
		return hashPassword(stdin, stdout)
	}
	c, err := app.LoadConfig("api", args, getenv, stderr)
	if err != nil {
		return err
	}
	log := app.NewLogger(c, stderr)
	a, err := embedded.StartAPI(ctx, c, stdout, log)
	if err != nil {
		return err
	}
	fmt.Fprint(stdout, embedded.Banner(a, c))
	if err := a.Wait(); err != nil && ctx.Err() == nil {
		return err
	}
	log.Info("api stopped")
	return nil
}

// hashPassword turns a password read from stdin into the argon2id passwordHash that a site
// file account carries (the hash of the password's SHA-512 hex, as ZStack clients send it).
func hashPassword(stdin io.Reader, stdout io.Writer) error {
	line, err := bufio.NewReader(stdin).ReadString('\n')
	if err != nil && err != io.EOF {
		return err
	}
	pw := strings.TrimRight(line, "\r\n")
	if pw == "" {
		return fmt.Errorf("no password on stdin; use: printf %%s 'the password' | api hash-password")
	}
	h, err := auth.HashPassword(auth.SHA512Hex(pw))
	if err != nil {
		return err
	}
	fmt.Fprintln(stdout, h)
	return nil
}
