package hypervisor

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/url"
	"os/user"
	"strings"
	"sync"
	"time"

	"github.com/digitalocean/go-libvirt"
	"github.com/digitalocean/go-libvirt/socket"
	"github.com/digitalocean/go-libvirt/socket/dialers"
)

// DefaultURITemplate reaches each host's libvirtd over TLS at its management address.
const DefaultURITemplate = "qemu+tls://{managementIp}/system"

// LocalURI is the libvirt of the machine the worker runs on.
const LocalURI = "qemu:///system"

// Placeholders of the URI template.
const (
	placeholderIP   = "{managementIp}"
	placeholderUUID = "{hostUuid}"
)

// ExpandURI fills the template for a host. A template naming {managementIp} needs the
// host's managementIp in the site catalog.
func ExpandURI(template string, h Host) (string, error) {
	if strings.Contains(template, placeholderIP) && h.ManagementIP == "" {
		return "", fmt.Errorf("%s has no managementIp in the site catalog, and the libvirt URI template %q needs it", h, template)
	}
	ip := h.ManagementIP
	if strings.Contains(ip, ":") {
		ip = "[" + ip + "]"
	}
	return strings.NewReplacer(placeholderIP, ip, placeholderUUID, h.UUID).Replace(template), nil
}

// CheckURITemplate validates a template: it must expand to a libvirt URI whose driver is
// qemu (or test, libvirt's test driver) over a transport vmrestore can dial, with host key
// and certificate checks on.
func CheckURITemplate(template string) error {
	uri, err := ExpandURI(template, Host{UUID: "00000000000000000000000000000000", ManagementIP: "192.0.2.1"})
	if err != nil {
		return err
	}
	u, err := url.Parse(uri)
	if err != nil {
		return fmt.Errorf("libvirt URI template %q does not parse: %v", template, err)
	}
	_, err = dialerFor(u, time.Second)
	return err
}

// redact hides a URI's password, if it carries one, for logs and errors.
func redact(uri string) string {
	u, err := url.Parse(uri)
	if err != nil {
		return "(unparsable libvirt URI)"
	}
	return u.Redacted()
}

// dialerFor picks go-libvirt's dialer for a URI, refusing options that turn host key or
// certificate checks off.
func dialerFor(u *url.URL, timeout time.Duration) (socket.Dialer, error) {
	driver, transport, _ := strings.Cut(u.Scheme, "+")
	if driver != "qemu" && driver != "test" {
		return nil, fmt.Errorf("libvirt URI %s: driver %q must be qemu (or test, libvirt's test driver)", redact(u.String()), driver)
	}
	if transport == "" {
		transport = "unix"
		if u.Host != "" {
			transport = "tls"
		}
	}
	q := u.Query()
	if q.Get("no_verify") != "" && q.Get("no_verify") != "0" {
		return nil, fmt.Errorf("libvirt URI %s: no_verify turns certificate or host key checks off; vmrestore keeps them on", redact(u.String()))
	}
	if v := q.Get("known_hosts_verify"); v != "" && v != "normal" {
		return nil, fmt.Errorf("libvirt URI %s: known_hosts_verify=%s turns host key checks off; vmrestore keeps them on (add the host keys to known_hosts)", redact(u.String()), v)
	}
	switch transport {
	case "unix":
		opts := []dialers.LocalOption{dialers.WithLocalTimeout(timeout)}
		if s := q.Get("socket"); s != "" {
			opts = append(opts, dialers.WithSocket(s))
		}
		return dialers.NewLocal(opts...), nil
	case "tcp":
		opts := []dialers.RemoteOption{dialers.WithRemoteTimeout(timeout)}
		if p := u.Port(); p != "" {
			opts = append(opts, dialers.UsePort(p))
		}
		return dialers.NewRemote(u.Hostname(), opts...), nil
	case "tls":
		var opts []dialers.TLSOption
		if p := u.Port(); p != "" {
			opts = append(opts, dialers.UseTLSPort(p))
		}
		if p := q.Get("pkipath"); p != "" {
			opts = append(opts, dialers.UsePKIPath(p))
		}
		return dialers.NewTLS(u.Hostname(), opts...), nil
	case "ssh", "libssh", "libssh2":
		var opts []dialers.SSHOption
		if transport == "ssh" {
			if me, err := user.Current(); err == nil {
				opts = append(opts, dialers.WithSystemSSHDefaults(me))
			}
		}
		if p := u.Port(); p != "" {
			opts = append(opts, dialers.UseSSHPort(p))
		}
		if name := u.User.Username(); name != "" {
			opts = append(opts, dialers.UseSSHUsername(name))
		}
		if pw, ok := u.User.Password(); ok {
			opts = append(opts, dialers.UseSSHPassword(pw))
		}
		if k := q.Get("keyfile"); k != "" {
			opts = append(opts, dialers.UseKeyFile(k))
		}
		if k := q.Get("known_hosts"); k != "" {
			opts = append(opts, dialers.UseKnownHostsFile(k))
		}
		if s := q.Get("socket"); s != "" {
			opts = append(opts, dialers.WithRemoteSocket(s))
		}
		return dialers.NewSSH(u.Hostname(), opts...), nil
	}
	return nil, fmt.Errorf("libvirt URI %s: transport %q must be unix, tls, tcp, ssh or libssh", redact(u.String()), transport)
}

// trackingDialer remembers the connection it opened, so that a call that hangs can be
// ended by closing it (go-libvirt's calls take no context).
type trackingDialer struct {
	inner socket.Dialer
	mu    sync.Mutex
	conn  net.Conn
}

func (d *trackingDialer) Dial() (net.Conn, error) {
	c, err := d.inner.Dial()
	if err != nil {
		return nil, err
	}
	nc := &notifyConn{Conn: c}
	d.mu.Lock()
	d.conn = nc
	d.mu.Unlock()
	return nc, nil
}

func (d *trackingDialer) close() {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.conn != nil {
		d.conn.Close()
	}
}

// Conn is one connection to a host's libvirtd.
type Conn struct {
	URI    string // redacted
	lv     *libvirt.Libvirt
	dialer *trackingDialer
}

// Pool keeps one connection per libvirt URI, opens it on first use, reopens it after a
// disconnect, and bounds every call with a deadline.
type Pool struct {
	// Template expands to each host's URI (see ExpandURI).
	Template string
	// LocalHosts are the hosts this worker runs on: they are reached at LocalURI.
	LocalHosts map[string]bool
	// CallTimeout bounds each libvirt call, connecting included.
	CallTimeout time.Duration
	Log         *slog.Logger

	mu    sync.Mutex
	conns map[string]*Conn
}

// URIFor is the URI a host is reached at.
func (p *Pool) URIFor(h Host) (string, error) {
	if p.LocalHosts[h.UUID] {
		return LocalURI, nil
	}
	return ExpandURI(p.Template, h)
}

func (p *Pool) timeout() time.Duration {
	if p.CallTimeout > 0 {
		return p.CallTimeout
	}
	return 30 * time.Second
}

// ErrUnreachable marks errors reaching a host's libvirtd: the connection failed or was lost,
// or a call did not answer in time. The network error is kept as text only, so that it is
// never mistaken for an outage of vmrestore's own Redis.
var ErrUnreachable = errors.New("libvirt unreachable")

// get returns the host's open connection and its pool key, connecting if there is none.
func (p *Pool) get(ctx context.Context, h Host) (*Conn, string, error) {
	uri, err := p.URIFor(h)
	if err != nil {
		return nil, "", fmt.Errorf("%w: %w", ErrNotBootable, err)
	}
	p.mu.Lock()
	if p.conns == nil {
		p.conns = map[string]*Conn{}
	}
	c := p.conns[uri]
	p.mu.Unlock()
	if c != nil && c.lv.IsConnected() {
		return c, uri, nil
	}
	if c != nil {
		p.drop(uri, c)
	}
	c, err = p.open(ctx, uri)
	if err != nil {
		return nil, "", fmt.Errorf("%w: %s through %s: %v", ErrUnreachable, h, redact(uri), err)
	}
	p.mu.Lock()
	if cur := p.conns[uri]; cur != nil && cur.lv.IsConnected() {
		p.mu.Unlock()
		c.close()
		return cur, uri, nil
	}
	p.conns[uri] = c
	p.mu.Unlock()
	return c, uri, nil
}

// open dials and authenticates a new connection, within the call timeout.
func (p *Pool) open(ctx context.Context, uri string) (*Conn, error) {
	u, err := url.Parse(uri)
	if err != nil {
		return nil, err
	}
	inner, err := dialerFor(u, p.timeout())
	if err != nil {
		return nil, err
	}
	td := &trackingDialer{inner: inner}
	c := &Conn{URI: redact(uri), lv: libvirt.NewWithDialer(td), dialer: td}
	err = p.bounded(ctx, c, "connect", func(lv *libvirt.Libvirt) error {
		return lv.ConnectToURI(libvirt.RemoteURI(u))
	})
	if err != nil {
		return nil, err
	}
	return c, nil
}

// Open returns a connection of its own (not pooled) to the host: for a console stream,
// which ties its connection up until it is closed.
func (p *Pool) Open(ctx context.Context, h Host) (*Conn, error) {
	uri, err := p.URIFor(h)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrNotBootable, err)
	}
	c, err := p.open(ctx, uri)
	if err != nil {
		return nil, fmt.Errorf("%w: %s through %s: %v", ErrUnreachable, h, redact(uri), err)
	}
	return c, nil
}

func (c *Conn) close() {
	done := make(chan struct{})
	go func() {
		_ = c.lv.Disconnect()
		close(done)
	}()
	select {
	case <-done:
	case <-time.After(2 * time.Second):
	}
	c.dialer.close()
}

// Close ends a connection from Open.
func (c *Conn) Close() { c.close() }

func (p *Pool) drop(uri string, c *Conn) {
	p.mu.Lock()
	if p.conns[uri] == c {
		delete(p.conns, uri)
	}
	p.mu.Unlock()
	c.dialer.close()
}

// Close ends every pooled connection.
func (p *Pool) Close() {
	p.mu.Lock()
	conns := p.conns
	p.conns = nil
	p.mu.Unlock()
	for _, c := range conns {
		c.close()
	}
}

// Call runs fn on the host's pooled connection within the call timeout. A call that does
// not answer in time, or that finds the connection lost, drops the connection, so the next
// call reconnects. When ctx ends first, Call returns ctx's error while fn may still run:
// read what fn sets only when Call returns nil.
func (p *Pool) Call(ctx context.Context, h Host, what string, fn func(lv *libvirt.Libvirt) error) error {
	c, uri, err := p.get(ctx, h)
	if err != nil {
		return err
	}
	err = p.bounded(ctx, c, what, fn)
	if err != nil && lostConnection(err) {
		p.drop(uri, c)
		return fmt.Errorf("%w: %s through %s on %s: %v", ErrUnreachable, what, c.URI, h, err)
	}
	return err
}

// errCallTimeout marks a call that did not answer in time.
var errCallTimeout = errors.New("libvirt did not answer in time")

// bounded runs fn on c with a deadline: the call timeout, or ctx's deadline if sooner. When
// the deadline passes, the connection is closed, which ends the call.
func (p *Pool) bounded(ctx context.Context, c *Conn, what string, fn func(lv *libvirt.Libvirt) error) error {
	limit := p.timeout()
	if d, ok := ctx.Deadline(); ok && time.Until(d) < limit {
		limit = max(time.Until(d), time.Millisecond)
	}
	done := make(chan error, 1)
	go func() { done <- fn(c.lv) }()
	timer := time.NewTimer(limit)
	defer timer.Stop()
	select {
	case err := <-done:
		return err
	case <-timer.C:
		c.dialer.close()
		<-done
		return fmt.Errorf("%s: %w within %s (connection closed)", what, errCallTimeout, limit.Round(time.Millisecond))
	case <-ctx.Done():
		// The call goes on in the background, still bounded: if it hangs, the connection
		// is closed when its time is up.
		go func() {
			select {
			case <-done:
			case <-timer.C:
				c.dialer.close()
			}
		}()
		return ctx.Err()
	}
}

// lostConnection reports whether err says the connection is gone (the daemon died, the
// network broke, a call timed out), as opposed to an answer from libvirt.
func lostConnection(err error) bool {
	var le libvirt.Error
	if errors.As(err, &le) {
		return false
	}
	if errors.Is(err, libvirt.ErrInterrupted) || errors.Is(err, errCallTimeout) {
		return true
	}
	var ne net.Error
	if errors.As(err, &ne) {
		return true
	}
	msg := err.Error()
	return strings.Contains(msg, "EOF") || strings.Contains(msg, "broken pipe") || strings.Contains(msg, "connection reset") ||
		strings.Contains(msg, "use of closed network connection")
}

// RedactedTemplate is a URI template fit for logs (a password, if any, hidden).
func RedactedTemplate(template string) string {
	s := redact(strings.NewReplacer(placeholderIP, "MANAGEMENTIP", placeholderUUID, "HOSTUUID").Replace(template))
	return strings.NewReplacer("MANAGEMENTIP", placeholderIP, "HOSTUUID", placeholderUUID).Replace(s)
}
