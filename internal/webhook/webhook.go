// Package webhook posts web hooks (a finished job's answer, a finished plan's summary) to the
// URLs clients give, without letting those URLs reach inside the deployment.
//
// A web hook URL is the client's choice, and the POST goes out from a worker, next to Redis,
// the storage networks and cloud metadata services. So by default a hook may only reach
// public addresses: loopback, link-local, private, shared (CGNAT), unspecified, multicast and
// other special-purpose addresses are refused. The check is made on the address actually
// connected to, at connect time (a net.Dialer Control function), so a name that resolves to
// an internal address, a DNS answer that changes between check and use, or a redirect cannot
// get around it. Redirects to another scheme or host are refused too. An operator opens what
// they want with VMRESTORE_WEBHOOK_ALLOW_CIDRS (for instance a receiver on 10.20.0.0/16).
//
// URLs may carry credentials (user:password@, or a token in the query): they are sent, as
// the client asked, but every log line and error shows the URL through Redact.
package webhook

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"strings"
	"syscall"
	"time"
)

// MaxURLLength bounds a web hook URL.
const MaxURLLength = 2048

// Timeout is how long a receiver has to answer one try.
const Timeout = 10 * time.Second

// maxRedirects bounds the same-host redirects followed.
const maxRedirects = 3

// ErrRefused marks a hook the policy refuses: a URL that is not an absolute http(s) URL, too
// long, or that leads to an address not allowed. Trying again cannot help.
var ErrRefused = errors.New("web hook refused")

// refused is a policy refusal with its reason.
type refused struct{ reason string }

func (r *refused) Error() string { return r.reason }
func (r *refused) Is(target error) bool {
	return target == ErrRefused
}

func refusef(format string, args ...any) error {
	return &refused{reason: fmt.Sprintf(format, args...)}
}

// blocked are the special-purpose ranges (RFC 6890 and successors) a hook may not reach
// unless allowed, besides what netip classifies as loopback, private, link-local,
// unspecified or multicast.
var blocked = []netip.Prefix{
	netip.MustParsePrefix("0.0.0.0/8"),       // "this network"
	netip.MustParsePrefix("100.64.0.0/10"),   // shared address space (CGNAT; some clouds' metadata)
	netip.MustParsePrefix("192.0.0.0/24"),    // IETF protocol assignments
	netip.MustParsePrefix("192.0.2.0/24"),    // documentation
	netip.MustParsePrefix("198.18.0.0/15"),   // benchmarking
	netip.MustParsePrefix("198.51.100.0/24"), // documentation
	netip.MustParsePrefix("203.0.113.0/24"),  // documentation
	netip.MustParsePrefix("240.0.0.0/4"),     // reserved, broadcast
	netip.MustParsePrefix("64:ff9b::/96"),    // NAT64: may map to any IPv4 address
	netip.MustParsePrefix("64:ff9b:1::/48"),  // local-use NAT64
	netip.MustParsePrefix("100::/64"),        // discard
	netip.MustParsePrefix("2001:db8::/32"),   // documentation
	netip.MustParsePrefix("2002::/16"),       // 6to4: embeds any IPv4 address
}

// Policy says which addresses hooks may reach.
type Policy struct {
	allow []netip.Prefix
}

// ParseAllowList parses a comma-separated list of CIDRs (or single addresses) that hooks may
// reach even though they are internal. Empty allows only public addresses.
func ParseAllowList(list string) ([]netip.Prefix, error) {
	var out []netip.Prefix
	for _, f := range strings.Split(list, ",") {
		f = strings.TrimSpace(f)
		if f == "" {
			continue
		}
		if p, err := netip.ParsePrefix(f); err == nil {
			out = append(out, p.Masked())
			continue
		}
		a, err := netip.ParseAddr(f)
		if err != nil {
			return nil, fmt.Errorf("%q is neither a CIDR like 10.20.0.0/16 nor an address", f)
		}
		out = append(out, netip.PrefixFrom(a.Unmap(), a.Unmap().BitLen()))
	}
	return out, nil
}

// NewPolicy allows public addresses and the prefixes given.
func NewPolicy(allow []netip.Prefix) *Policy { return &Policy{allow: allow} }

// Allowed reports why a hook may not connect to ip, or nil when it may. A nil policy allows
// public addresses only.
func (p *Policy) Allowed(ip netip.Addr) error {
	ip = ip.Unmap()
	var allow []netip.Prefix
	if p != nil {
		allow = p.allow
	}
	for _, a := range allow {
		if a.Contains(ip) {
			return nil
		}
	}
	kind := ""
	switch {
	case ip.IsLoopback():
		kind = "loopback"
	case ip.IsUnspecified():
		kind = "unspecified"
	case ip.IsLinkLocalUnicast(), ip.IsLinkLocalMulticast():
		kind = "link-local"
	case ip.IsPrivate():
		kind = "private"
	case ip.IsMulticast(), ip.IsInterfaceLocalMulticast():
		kind = "multicast"
	}
	for _, b := range blocked {
		if kind == "" && b.Contains(ip) {
			kind = "special-purpose (" + b.String() + ")"
		}
	}
	if kind == "" {
		return nil
	}
	return refusef("web hook address %s is %s; web hooks reach only public addresses unless VMRESTORE_WEBHOOK_ALLOW_CIDRS allows it", ip, kind)
}

// CheckURL checks a web hook URL when it is given: an absolute http or https URL of at most
// MaxURLLength characters, whose host, when it is an address or "localhost", is allowed.
// Names are checked again, on the address they resolve to, each time the hook is posted.
func (p *Policy) CheckURL(raw string) error {
	if len(raw) > MaxURLLength {
		return refusef("the web hook URL is %d characters long, more than %d", len(raw), MaxURLLength)
	}
	u, err := url.Parse(raw)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Hostname() == "" {
		return refusef("the web hook must be an absolute http or https URL")
	}
	host := strings.TrimSuffix(strings.ToLower(u.Hostname()), ".")
	if host == "localhost" || strings.HasSuffix(host, ".localhost") {
		host = "127.0.0.1" // RFC 6761: always loopback
	}
	if ip, err := netip.ParseAddr(host); err == nil {
		return p.Allowed(ip)
	}
	return nil
}

// Client posts hooks under a policy.
type Client struct {
	policy *Policy
	http   *http.Client
}

// NewClient returns a client that connects only where the policy allows, follows at most a
// few redirects on the same scheme and host, ignores proxy settings (the address checked
// must be the address reached) and gives each try Timeout.
func NewClient(p *Policy) *Client {
	dialer := &net.Dialer{
		Timeout: Timeout,
		Control: func(network, address string, _ syscall.RawConn) error {
			ap, err := netip.ParseAddrPort(address)
			if err != nil {
				return refusef("web hook address %q cannot be checked", address)
			}
			return p.Allowed(ap.Addr())
		},
	}
	transport := &http.Transport{
		Proxy:                 nil,
		DialContext:           dialer.DialContext,
		ForceAttemptHTTP2:     true,
		MaxIdleConns:          16,
		IdleConnTimeout:       30 * time.Second,
		TLSHandshakeTimeout:   Timeout,
		ResponseHeaderTimeout: Timeout,
	}
	return &Client{policy: p, http: &http.Client{
		Transport: transport,
		Timeout:   Timeout,
		CheckRedirect: func(req *http.Request, via []*http.Request) error {
			first := via[0].URL
			if req.URL.Scheme != first.Scheme || req.URL.Host != first.Host {
				return refusef("the web hook receiver redirected to another scheme or host (%s); hooks follow redirects only on the same one", Redact(req.URL.String()))
			}
			if len(via) > maxRedirects {
				return refusef("the web hook receiver redirected more than %d times", maxRedirects)
			}
			return nil
		},
	}}
}

// Post sends body to a hook URL with the given headers and wants a 2xx answer. An error wraps
// ErrRefused when the policy refuses the hook (retrying cannot help); any other error is a
// failed try. Errors show the URL only through Redact.
func (c *Client) Post(ctx context.Context, rawURL string, header http.Header, body []byte) error {
	if err := c.policy.CheckURL(rawURL); err != nil {
		return err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, rawURL, bytes.NewReader(body))
	if err != nil {
		return refusef("the web hook URL cannot be used: it must be an absolute http or https URL")
	}
	for k, v := range header {
		req.Header[k] = v
	}
	resp, err := c.http.Do(req)
	if err != nil {
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err // its text carries the URL, credentials and all
		}
		var r *refused
		if errors.As(err, &r) {
			return r
		}
		return fmt.Errorf("post to %s: %w", Redact(rawURL), err)
	}
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	resp.Body.Close()
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		return fmt.Errorf("%s answered %d", Redact(rawURL), resp.StatusCode)
	}
	return nil
}

// Redact returns a URL fit for logs: its user info and the values of its query replaced by
// "xxxxx", its fragment dropped. A URL that does not parse is shown as a
// placeholder.
func Redact(raw string) string {
	u, err := url.Parse(raw)
	if err != nil {
		return "(unparsable URL)"
	}
	if u.User != nil {
		u.User = url.User("xxxxx") // a user name alone may be a token
	}
	if u.RawQuery != "" {
		q := u.Query()
		for k := range q {
			q[k] = []string{"xxxxx"}
		}
		u.RawQuery = q.Encode()
	}
	u.Fragment, u.RawFragment = "", ""
	return u.String()
}
