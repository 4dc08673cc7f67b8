// Package redistest starts private redis-server processes for tests: each on a free port of
// 127.0.0.1, in its own temporary directory, killed when the test ends. Tests never touch a
// Redis they did not start.
package redistest

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

// Server is a running redis-server.
type Server struct {
	Addr string
	Dir  string
	args []string
	cmd  *exec.Cmd
	tb   testing.TB
}

// Options of a test server.
type Options struct {
	// AOF turns on append-only persistence with appendfsync everysec.
	AOF bool
	// Extra arguments for redis-server.
	Args []string
}

// Start runs a redis-server for the test (or benchmark) and stops it at cleanup.
func Start(tb testing.TB, opt ...Options) *Server {
	tb.Helper()
	var o Options
	if len(opt) > 0 {
		o = opt[0]
	}
	if _, err := exec.LookPath("redis-server"); err != nil {
		tb.Fatalf("redis-server is not on PATH: %v (install Debian's redis-server package)", err)
	}
	dir := tb.TempDir()
	var lastErr error
	for attempt := 0; attempt < 5; attempt++ {
		port := FreePort(tb)
		args := []string{"--port", strconv.Itoa(port), "--bind", "127.0.0.1", "--dir", dir,
			"--save", "", "--daemonize", "no", "--logfile", filepath.Join(dir, "redis.log")}
		if o.AOF {
			args = append(args, "--appendonly", "yes", "--appendfsync", "everysec")
		} else {
			args = append(args, "--appendonly", "no")
		}
		args = append(args, o.Args...)
		s := &Server{Addr: net.JoinHostPort("127.0.0.1", strconv.Itoa(port)), Dir: dir, args: args, tb: tb}
		if lastErr = s.start(); lastErr == nil {
			tb.Cleanup(s.Kill)
			return s
		}
	}
	tb.Fatalf("start redis-server: %v", lastErr)
	return nil
}

// StartShared runs a redis-server that outlives any one test, for setups shared by several
// benchmarks; the caller stops it with Kill (from TestMain).
func StartShared() (*Server, error) {
	dir, err := os.MkdirTemp("", "vmrestore-redis-")
	if err != nil {
		return nil, err
	}
	var lastErr error
	for attempt := 0; attempt < 5; attempt++ {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, err
		}
		port := l.Addr().(*net.TCPAddr).Port
		l.Close()
		s := &Server{Addr: net.JoinHostPort("127.0.0.1", strconv.Itoa(port)), Dir: dir,
			args: []string{"--port", strconv.Itoa(port), "--bind", "127.0.0.1", "--dir", dir, "--save", "",
				"--appendonly", "no", "--daemonize", "no", "--logfile", filepath.Join(dir, "redis.log")}}
		if lastErr = s.start(); lastErr == nil {
			return s, nil
		}
	}
	return nil, lastErr
}

func (s *Server) start() error {
	s.cmd = exec.Command("redis-server", s.args...)
	if err := s.cmd.Start(); err != nil {
		return err
	}
	deadline := time.Now().Add(10 * time.Second)
	c := redis.NewClient(&redis.Options{Addr: s.Addr, DialTimeout: 200 * time.Millisecond})
	defer c.Close()
	for time.Now().Before(deadline) {
		if c.Ping(context.Background()).Err() == nil {
			return nil
		}
		time.Sleep(20 * time.Millisecond)
	}
	s.cmd.Process.Kill()
	s.cmd.Wait()
	log, _ := os.ReadFile(filepath.Join(s.Dir, "redis.log"))
	return fmt.Errorf("redis-server on %s did not answer: %s", s.Addr, log)
}

// Client returns a client of the server, closed at cleanup (for a shared server, when the
// process exits).
func (s *Server) Client() *redis.Client {
	c := redis.NewClient(&redis.Options{Addr: s.Addr, PoolSize: 64})
	if s.tb != nil {
		s.tb.Cleanup(func() { c.Close() })
	}
	return c
}

// Kill stops the server at once (SIGKILL). A shared server's directory is removed too.
func (s *Server) Kill() {
	if s.cmd != nil && s.cmd.Process != nil {
		s.cmd.Process.Kill()
		s.cmd.Wait()
		s.cmd = nil
	}
	if s.tb == nil {
		os.RemoveAll(s.Dir)
	}
}

// Restart kills the server and starts it again on the same port and directory (with AOF
// the data survives).
func (s *Server) Restart() {
	s.tb.Helper()
	s.Kill()
	if err := s.start(); err != nil {
		s.tb.Fatalf("restart redis-server: %v", err)
	}
}

// FreePort returns a TCP port that was free a moment ago.
func FreePort(tb testing.TB) int {
	tb.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatalf("find a free port: %v", err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}
