package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/vmrestore/vmrestore/internal/client"
	"github.com/vmrestore/vmrestore/internal/zstack"
)

// Exit codes.
const (
	exitOK          = 0
	exitError       = 1   // an API, network or file error
	exitUsage       = 2   // a wrong command line
	exitPlanFailed  = 3   // the plan ended failed or cancelled, or a dry run refused items
	exitInterrupted = 130 // Ctrl-C
)

const defaultURL = "http://127.0.0.1:8080"

// cli is one run of restorectl: its streams, environment and global flags.
type cli struct {
	ctx    context.Context
	getenv func(string) string
	stdin  io.Reader
	stdout io.Writer
	stderr io.Writer

	url     string
	session string
	output  string
	timeout time.Duration
	caFile  string
}

// exitCode ends a command with a code; err, when set, is printed like any error.
type exitCode struct {
	code int
	err  error
}

func (e *exitCode) Error() string {
	if e.err != nil {
		return e.err.Error()
	}
	return fmt.Sprintf("exit status %d", e.code)
}

// usageError is a wrong command line.
type usageError struct {
	err error
	cmd *cobra.Command
}

func (e *usageError) Error() string { return e.err.Error() }

// run is restorectl: it parses args, runs the command and returns the exit code.
func run(ctx context.Context, args []string, getenv func(string) string, stdin io.Reader, stdout, stderr io.Writer) int {
	a := &cli{ctx: ctx, getenv: getenv, stdin: stdin, stdout: stdout, stderr: stderr}
	root := a.rootCommand()
	root.SetArgs(args)
	root.SetIn(stdin)
	root.SetOut(stdout)
	root.SetErr(stderr)
	return a.report(root.ExecuteContext(ctx))
}

func (a *cli) env(key, def string) string {
	if v := a.getenv(key); v != "" {
		return v
	}
	return def
}

func (a *cli) rootCommand() *cobra.Command {
	root := &cobra.Command{
		Use:   "restorectl",
		Short: "Drive a vmrestore api: bulk restore plans, restored VMs, restore jobs; take and check backups",
		Long: `restorectl drives a vmrestore api over HTTP.

  restorectl login                        open a session (saved per api URL)
  restorectl plan apply -f plan.yaml      submit a bulk restore plan (--dry-run: simulate it; --watch: follow it)
  restorectl plan watch <uuid>            live progress until the plan ends (exit 3 if it failed or was cancelled)
  restorectl plan list|get|cancel|pause|resume|retry
  restorectl plan drill -f plan.yaml      rehearse: dry run, restore onto test networks, boot checks, hold, cleanup, report
  restorectl plan cleanup|report <uuid>   destroy and expunge what a plan restored; its run report (html, csv, json)
  restorectl report list                  the kept run reports of ended plans and drills
  restorectl vm list [--q name=web01]     restored VMs
  restorectl vm destroy|recover|expunge|stop|start|reboot <uuid>
  restorectl job get|cancel <uuid>        one restore job
  restorectl backup create --storage bs-main --root disk.qcow2 --name web01 --cpu 2 --memory 4G
                                          take a backup group from disk images
  restorectl backup list|show|verify|delete --storage bs-main
                                          the groups of a backup storage; verify re-reads every volume

Exit codes: 0 success, 1 error, 2 wrong command line, 3 the plan failed or was cancelled
(or a dry run refused items, or a backup failed verification), 130 interrupted.`,
		SilenceErrors: true,
		SilenceUsage:  true,
		PersistentPreRunE: func(cmd *cobra.Command, _ []string) error {
			switch a.output {
			case "table", "json", "yaml":
			default:
				return &usageError{err: fmt.Errorf("-o %q: the output format must be table, json or yaml", a.output), cmd: cmd}
			}
			return nil
		},
	}
	pf := root.PersistentFlags()
	pf.StringVar(&a.url, "url", a.env("RESTORECTL_URL", defaultURL), "the vmrestore api (env RESTORECTL_URL)")
	pf.StringVar(&a.session, "session", a.getenv("RESTORECTL_SESSION"), "session uuid to use instead of the saved one (env RESTORECTL_SESSION)")
	pf.StringVarP(&a.output, "output", "o", "table", "output format: table, json or yaml")
	pf.DurationVar(&a.timeout, "timeout", client.DefaultTimeout, "how long one API request may take")
	pf.StringVar(&a.caFile, "ca-file", a.getenv("RESTORECTL_CA_FILE"), "PEM file of the CA that signed an https api's certificate, trusted besides the system's (env RESTORECTL_CA_FILE)")
	root.SetFlagErrorFunc(func(cmd *cobra.Command, err error) error {
		// "plan aply -f x" fails on -f, a flag of apply, not of plan: the misspelt command
		// before it is the mistake to point at.
		if cmd.HasSubCommands() {
			if args := cmd.Flags().Args(); len(args) > 0 {
				return unknownCommand(cmd, args[0])
			}
		}
		return &usageError{err: err, cmd: cmd}
	})

	root.AddCommand(a.loginCommand(), a.logoutCommand(), a.planCommand(), a.vmCommand(), a.jobCommand(), a.backupCommand(), a.reportCommand())
	group(root)
	return root
}

// group makes cmd a command that only holds subcommands: without one it prints its help,
// with an unknown one it is a usage error (cobra would print the help and succeed).
func group(cmd *cobra.Command) *cobra.Command {
	cmd.Args = cobra.ArbitraryArgs
	cmd.RunE = func(cmd *cobra.Command, args []string) error {
		if len(args) == 0 {
			return cmd.Help()
		}
		return unknownCommand(cmd, args[0])
	}
	return cmd
}

// unknownCommand is the usage error of a subcommand cmd does not have, with the closest one.
func unknownCommand(cmd *cobra.Command, name string) error {
	msg := fmt.Sprintf("unknown command %q for %q", name, cmd.CommandPath())
	cmd.SuggestionsMinimumDistance = 2
	if s := cmd.SuggestionsFor(name); len(s) > 0 {
		msg += fmt.Sprintf(" (did you mean %q?)", s[0])
	}
	return &usageError{err: errors.New(msg), cmd: cmd}
}

// args checks the number of positional arguments as a usage error.
func args(n int, names string) cobra.PositionalArgs {
	return func(cmd *cobra.Command, args []string) error {
		if len(args) != n {
			if n == 0 {
				return &usageError{err: fmt.Errorf("%s takes no arguments", cmd.CommandPath()), cmd: cmd}
			}
			return &usageError{err: fmt.Errorf("%s needs %s (got %d arguments)", cmd.CommandPath(), names, len(args)), cmd: cmd}
		}
		return nil
	}
}

// baseURL is --url, checked and normalised (the key of saved sessions).
func (a *cli) baseURL() (string, error) {
	return normalizeURL(a.url)
}

func normalizeURL(raw string) (string, error) {
	raw = strings.TrimSpace(raw)
	if !strings.Contains(raw, "://") {
		raw = "http://" + raw
	}
	u, err := url.Parse(raw)
	if err != nil || u.Host == "" || (u.Scheme != "http" && u.Scheme != "https") || u.RawQuery != "" || u.Fragment != "" {
		return "", &usageError{err: fmt.Errorf("--url %q must look like http://host:port", raw)}
	}
	u.Scheme = strings.ToLower(u.Scheme)
	u.Host = strings.ToLower(u.Host)
	u.Path = strings.TrimRight(u.Path, "/")
	u.RawPath = ""
	return u.String(), nil
}

// newClient returns a client of base with session, over HTTPS trusting --ca-file if given.
func (a *cli) newClient(base, session string) (*client.Client, error) {
	c := &client.Client{BaseURL: base, Session: session, Timeout: a.timeout, UserAgent: "restorectl"}
	if a.caFile == "" {
		c.HTTP = &http.Client{Transport: wrapTransport(http.DefaultTransport)}
		return c, nil
	}
	pemBytes, err := os.ReadFile(a.caFile)
	if err != nil {
		return nil, fmt.Errorf("--ca-file: %w", err)
	}
	pool, err := x509.SystemCertPool()
	if err != nil {
		pool = x509.NewCertPool()
	}
	if !pool.AppendCertsFromPEM(pemBytes) {
		return nil, fmt.Errorf("--ca-file %s holds no PEM certificate", a.caFile)
	}
	t := http.DefaultTransport.(*http.Transport).Clone()
	t.TLSClientConfig = &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}
	c.HTTP = &http.Client{Transport: wrapTransport(t)}
	return c, nil
}

// wrapTransport wraps the transport of every client restorectl makes: as it is here, or, in
// the tests, checking each exchange with the api against its OpenAPI document.
var wrapTransport = func(rt http.RoundTripper) http.RoundTripper { return rt }

// client returns a client of --url with the session: --session, RESTORECTL_SESSION, or the
// one saved by login for this URL.
func (a *cli) client() (*client.Client, error) {
	base, err := a.baseURL()
	if err != nil {
		return nil, err
	}
	c, err := a.newClient(base, "")
	if err != nil {
		return nil, err
	}
	if a.session != "" {
		c.Session = a.session
		return c, nil
	}
	path, err := a.sessionsPath()
	if err != nil {
		return nil, err
	}
	f, err := loadSessions(path)
	if err != nil {
		return nil, err
	}
	s, ok := f.Sessions[base]
	if !ok || s.UUID == "" {
		return nil, fmt.Errorf("not logged in to %s: run `restorectl login --url %s` (or give --session)", base, base)
	}
	c.Session = s.UUID
	return c, nil
}

// report prints err as the user should see it and returns the exit code.
func (a *cli) report(err error) int {
	if err == nil {
		return exitOK
	}
	code := exitError
	var ec *exitCode
	if errors.As(err, &ec) {
		if ec.err == nil {
			return ec.code
		}
		code, err = ec.code, ec.err
	}
	var ue *usageError
	var ae *client.APIError
	var ne *client.NetworkError
	switch {
	case a.ctx.Err() != nil && errors.Is(err, context.Canceled):
		fmt.Fprintln(a.stderr, "interrupted")
		return exitInterrupted
	case errors.As(err, &ue):
		fmt.Fprintf(a.stderr, "error: %v\n", ue.err)
		if ue.cmd != nil {
			fmt.Fprintf(a.stderr, "Run '%s --help' for usage.\n", ue.cmd.CommandPath())
		}
		return exitUsage
	case strings.HasPrefix(err.Error(), "unknown command ") || strings.HasPrefix(err.Error(), "unknown flag"):
		fmt.Fprintf(a.stderr, "error: %v\nRun 'restorectl --help' for usage.\n", err)
		return exitUsage
	case errors.As(err, &ae) && ae.Code != nil:
		printErrorCode(a.stderr, ae.Code)
		if ae.RetryAfter != "" {
			fmt.Fprintf(a.stderr, "  hint: the api asks to wait %s s before trying again\n", ae.RetryAfter)
		} else if hint := codeHint(ae.Code.Code, a.url); hint != "" {
			fmt.Fprintf(a.stderr, "  hint: %s\n", hint)
		}
	case errors.As(err, &ae):
		text := strings.TrimSpace(ae.Text)
		if len(text) > 300 {
			text = text[:300] + "…"
		}
		fmt.Fprintf(a.stderr, "error: the api answered %d to %s %s: %s\n", ae.Status, ae.Method, ae.URL, text)
		switch {
		case strings.Contains(text, "Authorization"):
			fmt.Fprintf(a.stderr, "  hint: the request carried no session: run `restorectl login --url %s`\n", a.url)
		case ae.Status == 404:
			fmt.Fprintln(a.stderr, "  hint: is --url a vmrestore api of a version with this route?")
		}
	case errors.As(err, &ne):
		fmt.Fprintf(a.stderr, "error: cannot reach the vmrestore api at %s: %v\n  hint: %s\n", a.url, ne, ne.Hint())
	default:
		fmt.Fprintf(a.stderr, "error: %v\n", err)
	}
	return code
}

// printErrorCode prints a ZStack ErrorCode and its causes.
func printErrorCode(w io.Writer, ec *zstack.ErrorCode) {
	fmt.Fprintf(w, "error: %s\n", codeText(ec))
	for c, n := ec.Cause, 0; c != nil && n < 10; c, n = c.Cause, n+1 {
		fmt.Fprintf(w, "  cause: %s\n", codeText(c))
	}
}

func codeText(ec *zstack.ErrorCode) string {
	text := ec.Details
	if text == "" {
		text = ec.Description
	}
	return ec.Code + ": " + text
}

func codeHint(code, base string) string {
	switch code {
	case zstack.CodeInvalidSession:
		return fmt.Sprintf("the session is unknown, expired or logged out: run `restorectl login --url %s`", base)
	case zstack.CodeAuthFailed:
		return "check the account (--account or RESTORECTL_ACCOUNT, admin by default) and its password; an api in embedded mode makes a new admin password at every start and prints it in its banner"
	case zstack.CodePermission:
		return "this account may not do that: log in as an account that may (admin)"
	}
	return ""
}

// isTerminal reports whether w (or r) is a terminal.
func isTerminal(f any) bool {
	file, ok := f.(*os.File)
	return ok && termIsTerminal(int(file.Fd()))
}
