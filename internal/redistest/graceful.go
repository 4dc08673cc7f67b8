package redistest

import (
	"syscall"
	"time"
)

// StopGracefully shuts the server down the way an operator's `systemctl stop` does (SIGTERM):
// Redis finishes the command it is running, fsyncs the append-only file and exits, so with
// AOF nothing it acknowledged is lost (Kill, a SIGKILL, can lose the last second of writes
// under appendfsync everysec). The port stays free until StartAgain.
func (s *Server) StopGracefully() {
	s.tb.Helper()
	if s.cmd == nil || s.cmd.Process == nil {
		return
	}
	if err := s.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		s.tb.Fatalf("stop redis-server on %s: %v", s.Addr, err)
	}
	exited := make(chan error, 1)
	go func() { exited <- s.cmd.Wait() }()
	select {
	case err := <-exited:
		s.cmd = nil
		if err != nil {
			s.tb.Fatalf("redis-server on %s did not exit cleanly on SIGTERM: %v", s.Addr, err)
		}
	case <-time.After(30 * time.Second):
		s.cmd.Process.Kill()
		<-exited
		s.cmd = nil
		s.tb.Fatalf("redis-server on %s ignored SIGTERM for 30 s", s.Addr)
	}
}

// StartAgain starts a stopped server on the same port and directory; with AOF it loads the
// data it had. It returns once the server answers PING.
func (s *Server) StartAgain() {
	s.tb.Helper()
	if s.cmd != nil {
		s.tb.Fatalf("redis-server on %s is still running", s.Addr)
	}
	if err := s.start(); err != nil {
		s.tb.Fatalf("start redis-server again on %s: %v", s.Addr, err)
	}
}

// RestartGracefully is StopGracefully then StartAgain; it returns how long the server did
// not answer.
func (s *Server) RestartGracefully() time.Duration {
	s.tb.Helper()
	t := time.Now()
	s.StopGracefully()
	s.StartAgain()
	return time.Since(t)
}
