package hypervisor

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"regexp"
	"strings"
	"sync"
	"time"

	"github.com/digitalocean/go-libvirt"

	"github.com/vmrestore/vmrestore/internal/job"
)

// consoleTail is how many console lines a failed check reports.
const consoleTail = 15

// consoleWatch reads a domain's serial console on a connection of its own and tells when a
// line matches the check's pattern.
type consoleWatch struct {
	conn     *Conn
	re       *regexp.Regexp
	matched  chan string   // the matching line, once
	panicked chan string   // a kernel panic line before any match, once
	ended    chan struct{} // the stream ended (the guest stopped, or the connection closed)

	mu      sync.Mutex
	partial []byte
	lines   []string
	openErr error
	found   bool
	panic   bool
}

// kernelPanic is the line Linux prints when it panics ("Kernel panic - not syncing: VFS:
// Unable to mount root fs ..."). A guest that printed it before the check's pattern will not
// print the pattern: it halts, or reboots into the same panic.
var kernelPanic = regexp.MustCompile(`Kernel panic - not syncing`)

// ansi matches terminal escape sequences, which firmware and boot loaders print.
var ansi = regexp.MustCompile(`\x1b(\[[0-9;?]*[ -/]*[@-~]|[@-Z\\-_]|c)`)

// Write receives console bytes; it splits them into lines.
func (w *consoleWatch) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.partial = append(w.partial, p...)
	for {
		i := bytes.IndexAny(w.partial, "\r\n")
		if i < 0 {
			break
		}
		w.line(string(w.partial[:i]))
		w.partial = w.partial[i+1:]
	}
	if len(w.partial) > 4096 { // a line with no end: judge what came so far
		w.line(string(w.partial))
		w.partial = w.partial[:0]
	} else if len(w.partial) > 0 && !w.found && w.re.MatchString(clean(string(w.partial))) {
		// A prompt ("login: ") has no newline after it.
		w.line(string(w.partial))
		w.partial = w.partial[:0]
	}
	return len(p), nil
}

func clean(s string) string {
	s = ansi.ReplaceAllString(s, "")
	return strings.Map(func(r rune) rune {
		if r < ' ' && r != '\t' || r == 0x7f {
			return -1
		}
		return r
	}, s)
}

func (w *consoleWatch) line(raw string) {
	c := clean(raw)
	s := strings.TrimRight(c, " \t")
	if s == "" {
		return
	}
	w.lines = append(w.lines, s)
	if len(w.lines) > consoleTail {
		w.lines = w.lines[len(w.lines)-consoleTail:]
	}
	if !w.found && (w.re.MatchString(c) || w.re.MatchString(s)) {
		w.found = true
		w.matched <- s
	} else if !w.found && !w.panic && kernelPanic.MatchString(s) {
		w.panic = true
		w.panicked <- s
	}
}

func (w *consoleWatch) tail() []string {
	w.mu.Lock()
	defer w.mu.Unlock()
	out := append([]string(nil), w.lines...)
	if p := strings.TrimSpace(clean(string(w.partial))); p != "" {
		out = append(out, p)
	}
	return out
}

func (w *consoleWatch) close() { w.conn.Close() }

// watchConsole opens the domain's console on a new connection and returns once libvirt has
// answered the open, so that nothing the guest prints after that is missed.
func (l *Libvirt) watchConsole(ctx context.Context, h Host, dom libvirt.Domain, check *job.BootCheck) (*consoleWatch, error) {
	c, err := l.Pool.Open(ctx, h)
	if err != nil {
		return nil, err
	}
	w := &consoleWatch{conn: c, re: check.Regexp(), matched: make(chan string, 1), panicked: make(chan string, 1), ended: make(chan struct{})}
	answered := c.dialer.notifyNextRead()
	go func() {
		err := c.lv.DomainOpenConsole(dom, nil, w, uint32(libvirt.DomainConsoleForce))
		w.mu.Lock()
		w.openErr = err
		w.mu.Unlock()
		close(w.ended)
	}()
	select {
	case <-answered:
	case <-w.ended:
	case <-time.After(l.Pool.timeout()):
		c.Close()
		return nil, fmt.Errorf("%w: open the console of domain %s on %s: no answer within %s", ErrUnreachable, dom.Name, h, l.Pool.timeout())
	case <-ctx.Done():
		c.Close()
		return nil, ctx.Err()
	}
	w.mu.Lock()
	openErr := w.openErr
	w.mu.Unlock()
	if openErr != nil {
		c.Close()
		return nil, refused("open the console of domain "+dom.Name, h, openErr)
	}
	return w, nil
}

// bootCheck waits until the check passes or its timeout ends, and says how it passed.
func (l *Libvirt) bootCheck(ctx context.Context, h Host, dom libvirt.Domain, check *job.BootCheck, watch *consoleWatch) (string, error) {
	if check == nil {
		return "", nil
	}
	start := time.Now()
	deadline := time.NewTimer(check.Timeout)
	defer deadline.Stop()
	switch check.Mode {
	case job.BootRunning:
		var st int32
		err := l.Pool.Call(ctx, h, "read the state of domain "+dom.Name, func(lv *libvirt.Libvirt) error {
			var err error
			st, _, err = lv.DomainGetState(dom, 0)
			return err
		})
		if err != nil {
			return "", err
		}
		if s := libvirt.DomainState(st); s != libvirt.DomainRunning {
			return "", &BootCheckError{Check: check, Reason: fmt.Sprintf("the domain is %s, not running", zstackState(s))}
		}
		return "the domain is running", nil

	case job.BootGuestAgent:
		interval := l.agentPollInterval
		if interval <= 0 {
			interval = 2 * time.Second
		}
		var last error
		for {
			err := l.Pool.Call(ctx, h, "ping the guest agent of domain "+dom.Name, func(lv *libvirt.Libvirt) error {
				_, err := lv.QEMUDomainAgentCommand(dom, `{"execute":"guest-ping"}`, 5, 0)
				return err
			})
			if err == nil {
				return fmt.Sprintf("the guest agent answered guest-ping after %s", time.Since(start).Round(100*time.Millisecond)), nil
			}
			var le libvirt.Error
			if !errors.As(err, &le) {
				return "", err // the host, not the guest: an outage, retried as such
			}
			last = err
			select {
			case <-ctx.Done():
				return "", ctx.Err()
			case <-deadline.C:
				return "", &BootCheckError{Check: check, Reason: fmt.Sprintf("the guest agent did not answer guest-ping (last answer: %v)", last)}
			case <-time.After(interval):
			}
		}

	case job.BootConsole:
		select {
		case line := <-watch.matched:
			return fmt.Sprintf("the console printed %q after %s", line, time.Since(start).Round(100*time.Millisecond)), nil
		case <-watch.ended:
			select {
			case line := <-watch.matched:
				return fmt.Sprintf("the console printed %q after %s", line, time.Since(start).Round(100*time.Millisecond)), nil
			default:
			}
			watch.mu.Lock()
			err := watch.openErr
			watch.mu.Unlock()
			if err != nil && lostConnection(err) {
				return "", fmt.Errorf("%w: the console of domain %s on %s: %v", ErrUnreachable, dom.Name, h, err)
			}
			return "", &BootCheckError{Check: check, Reason: "the guest stopped before the check passed", Console: watch.tail()}
		case <-watch.panicked:
			return "", &BootCheckError{Check: check, Reason: fmt.Sprintf("the guest's kernel panicked after %s", time.Since(start).Round(100*time.Millisecond)), Console: watch.tail()}
		case <-deadline.C:
			return "", &BootCheckError{Check: check, Reason: "no console line matched", Console: watch.tail()}
		case <-ctx.Done():
			return "", ctx.Err()
		}
	}
	return "", fmt.Errorf("unknown boot check mode %q", check.Mode)
}

// notifyConn tells once when a read returns data.
type notifyConn struct {
	net.Conn
	mu     sync.Mutex
	notify chan struct{}
}

func (c *notifyConn) Read(p []byte) (int, error) {
	n, err := c.Conn.Read(p)
	if n > 0 {
		c.mu.Lock()
		if c.notify != nil {
			close(c.notify)
			c.notify = nil
		}
		c.mu.Unlock()
	}
	return n, err
}

// notifyNextRead returns a channel closed when the connection next receives data: the
// answer to the call about to be sent.
func (d *trackingDialer) notifyNextRead() <-chan struct{} {
	ch := make(chan struct{})
	d.mu.Lock()
	defer d.mu.Unlock()
	if nc, ok := d.conn.(*notifyConn); ok {
		nc.mu.Lock()
		nc.notify = ch
		nc.mu.Unlock()
		return ch
	}
	close(ch) // not wrapped: nothing to wait for
	return ch
}
