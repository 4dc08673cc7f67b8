package webhook

import (
	"context"
	"errors"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"net/url"
	"strings"
	"sync/atomic"
	"testing"
)

func mustAllow(tb testing.TB, list string) *Policy {
	tb.Helper()
	p, err := ParseAllowList(list)
	if err != nil {
		tb.Fatal(err)
	}
	return NewPolicy(p)
}

func TestPolicyRefusesInternalAddresses(t *testing.T) {
	p := mustAllow(t, "")
	for _, a := range []string{"127.0.0.1", "127.8.9.10", "::1", "0.0.0.0", "::", "10.1.2.3", "172.16.0.1", "192.168.1.1",
		"169.254.169.254", "fe80::1", "fc00::1", "100.100.100.200", "::ffff:127.0.0.1", "224.0.0.1", "255.255.255.255",
		"64:ff9b::7f00:1", "2002:7f00:1::1"} {
		if err := p.Allowed(netip.MustParseAddr(a)); !errors.Is(err, ErrRefused) {
			t.Errorf("%s allowed", a)
		}
	}
	for _, a := range []string{"8.8.8.8", "1.1.1.1", "2606:4700::1111"} {
		if err := p.Allowed(netip.MustParseAddr(a)); err != nil {
			t.Errorf("%s refused: %v", a, err)
		}
	}
	open := mustAllow(t, "10.20.0.0/16, 127.0.0.1")
	for a, ok := range map[string]bool{"10.20.3.4": true, "10.21.0.1": false, "127.0.0.1": true, "127.0.0.2": false, "::ffff:10.20.0.9": true} {
		if err := open.Allowed(netip.MustParseAddr(a)); (err == nil) != ok {
			t.Errorf("with an allow list, %s: %v", a, err)
		}
	}
	if _, err := ParseAllowList("10.0.0.0/33"); err == nil {
		t.Error("a bad CIDR is accepted")
	}
}

func TestCheckURL(t *testing.T) {
	p := mustAllow(t, "")
	for _, u := range []string{"http://localhost:6379/", "http://LOCALHOST./x", "http://a.localhost/", "http://127.0.0.1/",
		"http://[::1]:8080/", "http://0.0.0.0/", "http://169.254.169.254/latest/meta-data", "ftp://example.com/",
		"/relative", "http://", "https://example.com/" + strings.Repeat("a", MaxURLLength)} {
		if err := p.CheckURL(u); !errors.Is(err, ErrRefused) {
			t.Errorf("%q accepted", u)
		}
	}
	for _, u := range []string{"https://hooks.example.com/dr?token=x", "http://user:pw@8.8.8.8:8080/h"} {
		if err := p.CheckURL(u); err != nil {
			t.Errorf("%q refused: %v", u, err)
		}
	}
}

// The address is checked when the connection is made, whatever the URL said: a name, or a
// URL that passed CheckURL, that leads to a refused address does not connect.
func TestDialTimeCheck(t *testing.T) {
	var hits atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { hits.Add(1) }))
	defer srv.Close()
	c := NewClient(mustAllow(t, ""))
	// Bypass CheckURL: the transport alone must refuse.
	req, _ := http.NewRequest("POST", srv.URL, nil)
	_, err := c.http.Do(req)
	if !errors.Is(err, ErrRefused) || hits.Load() != 0 {
		t.Fatalf("a loopback connection was made: %v, %d hits", err, hits.Load())
	}
	// "localhost" by name resolves to loopback: refused (by CheckURL or the dial).
	_, port, _ := net.SplitHostPort(srv.Listener.Addr().String())
	err = c.Post(context.Background(), "http://localhost:"+port+"/", nil, nil)
	if !errors.Is(err, ErrRefused) || hits.Load() != 0 {
		t.Fatalf("localhost: %v, %d hits", err, hits.Load())
	}
	// Allowed, it goes through.
	ok := NewClient(mustAllow(t, "127.0.0.1/32"))
	if err := ok.Post(context.Background(), srv.URL, nil, []byte("{}")); err != nil || hits.Load() != 1 {
		t.Fatalf("an allowed receiver: %v, %d hits", err, hits.Load())
	}
}

// Redirects are followed on the same scheme and host only; credentials never show in errors.
func TestRedirectsAndRedaction(t *testing.T) {
	var inner atomic.Int32
	// The second receiver listens on another loopback address: another host.
	ln, err := net.Listen("tcp", "127.0.0.2:0")
	if err != nil {
		t.Skipf("no second loopback address: %v", err)
	}
	other := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { inner.Add(1) }))
	other.Listener.Close()
	other.Listener = ln
	other.Start()
	defer other.Close()
	var gotAuth atomic.Value
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/away":
			http.Redirect(w, r, other.URL+"/steal", http.StatusTemporaryRedirect)
		case "/moved":
			http.Redirect(w, r, "/final", http.StatusTemporaryRedirect)
		case "/final":
			u, p, _ := r.BasicAuth()
			gotAuth.Store(u + ":" + p)
		default:
			w.WriteHeader(500)
		}
	}))
	defer srv.Close()
	c := NewClient(mustAllow(t, "127.0.0.0/8"))
	secret := strings.Replace(srv.URL, "http://", "http://hookuser:s3cret@", 1)

	err = c.Post(context.Background(), secret+"/away?token=t0ken", nil, []byte("{}"))
	if !errors.Is(err, ErrRefused) || inner.Load() != 0 {
		t.Fatalf("a redirect to another host: %v, %d hits there", err, inner.Load())
	}
	if err := c.Post(context.Background(), secret+"/moved", nil, []byte("{}")); err != nil {
		t.Fatalf("a same-host redirect: %v", err)
	}
	if gotAuth.Load() != "hookuser:s3cret" {
		t.Fatalf("the URL's credentials are sent as Basic auth: got %v", gotAuth.Load())
	}
	err = c.Post(context.Background(), secret+"/fails?token=t0ken", nil, []byte("{}"))
	if err == nil || errors.Is(err, ErrRefused) {
		t.Fatalf("a 500 is a failed try, not a refusal: %v", err)
	}
	for _, e := range []error{err} {
		if strings.Contains(e.Error(), "s3cret") || strings.Contains(e.Error(), "t0ken") || strings.Contains(e.Error(), "hookuser") {
			t.Fatalf("an error shows a credential: %v", e)
		}
	}
	// A receiver that does not answer: the error names the redacted URL only.
	dead := NewClient(mustAllow(t, "127.0.0.0/8"))
	l, _ := net.Listen("tcp", "127.0.0.1:0")
	addr := l.Addr().String()
	l.Close()
	err = dead.Post(context.Background(), "http://u:s3cret@"+addr+"/x?token=t0ken", nil, nil)
	if err == nil || strings.Contains(err.Error(), "s3cret") || strings.Contains(err.Error(), "t0ken") {
		t.Fatalf("connection refused: %v", err)
	}
	if got := Redact("https://u:p@h.example/p?token=abc&x=1#frag"); strings.Contains(got, "abc") || strings.Contains(got, ":p@") || strings.Contains(got, "frag") || !strings.Contains(got, "h.example/p") {
		t.Fatalf("Redact: %s", got)
	}
}

// FuzzCheckURL: any URL a client gives is checked without panic, a URL that passes is an
// http(s) URL of at most MaxURLLength characters, and Redact never shows its user info.
func FuzzCheckURL(f *testing.F) {
	for _, s := range []string{"https://hooks.example.com/x?token=t", "http://u:p@127.0.0.1:6379/", "http://[::ffff:10.0.0.1]/",
		"http://localhost./", "ftp://x", "http://%zz", "http://0x7f.1/", "http://[fe80::1%25eth0]/"} {
		f.Add(s)
	}
	p := NewPolicy(nil)
	f.Fuzz(func(t *testing.T, raw string) {
		if err := p.CheckURL(raw); err == nil {
			if len(raw) > MaxURLLength || !(strings.HasPrefix(strings.ToLower(raw), "http://") || strings.HasPrefix(strings.ToLower(raw), "https://")) {
				t.Fatalf("%q passed", raw)
			}
		}
		red := Redact(raw)
		if u, err := url.Parse(raw); err == nil && u.User != nil {
			if pw, ok := u.User.Password(); ok && len(pw) > 5 && strings.Contains(red, pw) {
				t.Fatalf("Redact(%q) = %q shows the password", raw, red)
			}
		}
	})
}
