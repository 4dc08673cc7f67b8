// Command vmrestore-dashboards writes the Grafana dashboards that internal/dashboards builds
// to dashboards/*.json, the files Grafana provisions (docker-compose.yml mounts them) and
// internal/opsharness proves against a real Prometheus. Run it from the repository root after
// changing a dashboard's code, and commit the JSON with the code:
//
//	go run ./cmd/vmrestore-dashboards     (make dashboards)
//	go run ./cmd/vmrestore-dashboards -dir /tmp/out
//
// A vmrestore-*.json in the directory that the code no longer builds is removed.
package main

import (
	"bytes"
	"errors"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"slices"

	"github.com/vmrestore/vmrestore/internal/dashboards"
)

func main() { os.Exit(run(os.Args[1:], os.Stdout, os.Stderr)) }

func run(args []string, stdout, stderr io.Writer) int {
	fl := flag.NewFlagSet("vmrestore-dashboards", flag.ContinueOnError)
	fl.SetOutput(stderr)
	dir := fl.String("dir", "dashboards", "directory to write the dashboards' JSON to")
	if err := fl.Parse(args); err != nil {
		return 2
	}
	if err := write(*dir, stdout); err != nil {
		fmt.Fprintf(stderr, "vmrestore-dashboards: %v\n", err)
		return 1
	}
	return 0
}

func write(dir string, out io.Writer) error {
	if st, err := os.Stat(dir); err != nil || !st.IsDir() {
		return fmt.Errorf("%s is not a directory: run from the repository root, or name the directory with -dir", dir)
	}
	files, err := dashboards.Files()
	if err != nil {
		return fmt.Errorf("building the dashboards: %w", err)
	}
	var names []string
	for _, f := range files {
		names = append(names, f.Name)
		path := filepath.Join(dir, f.Name)
		old, err := os.ReadFile(path)
		switch {
		case err == nil && bytes.Equal(old, f.JSON):
			fmt.Fprintf(out, "%s: unchanged\n", path)
			continue
		case err != nil && !errors.Is(err, fs.ErrNotExist):
			return err
		}
		if err := os.WriteFile(path, f.JSON, 0o644); err != nil {
			return err
		}
		fmt.Fprintf(out, "%s: written (%d bytes)\n", path, len(f.JSON))
	}
	stale, err := filepath.Glob(filepath.Join(dir, "vmrestore-*.json"))
	if err != nil {
		return err
	}
	for _, path := range stale {
		if slices.Contains(names, filepath.Base(path)) {
			continue
		}
		if err := os.Remove(path); err != nil {
			return err
		}
		fmt.Fprintf(out, "%s: removed (no dashboard of that name in internal/dashboards)\n", path)
	}
	return nil
}
