package httpapi

import (
	"cmp"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"strings"
	"time"

	"github.com/labstack/echo/v4"
)

// Request bodies are capped and must arrive in time. ZStack routes take at most
// ZStackBodyLimit (ZStack's requests are a few KiB), login at most LoginBodyLimit (anyone may
// send one), the native API at most NativeBodyLimit (a plan of 50,000 groups with overrides
// fits); each must be received within the time its cap needs on a slow link (about 1
// Mbit/s), counted from the end of the headers, so a client trickling its body cannot hold a
// connection longer. Headers have their own 10 s (ReadHeaderTimeout in package app).
const (
	LoginBodyLimit    = 64 << 10 // 64 KiB
	ZStackBodyLimit   = 1 << 20  // 1 MiB
	NativeBodyLimit   = 32 << 20 // 32 MiB
	ZStackBodyTimeout = 30 * time.Second
	NativeBodyTimeout = 5 * time.Minute
)

// bodyTooLarge is a body over its route's cap.
type bodyTooLarge struct{ limit int64 }

func (e *bodyTooLarge) Error() string {
	return fmt.Sprintf("the request body is larger than %s (%d bytes); send a smaller request", mib(e.limit), e.limit)
}

// mib writes a cap in MiB (KiB below one MiB), as the caps are.
func mib(n int64) string {
	if n < 1<<20 {
		return fmt.Sprintf("%d KiB", n>>10)
	}
	return fmt.Sprintf("%d MiB", n>>20)
}

// limitBody caps a request's body and gives it its time: the body must arrive within its
// route's timeout, counted from here, and reading past its cap fails with bodyTooLarge
// (SYS.1007; 413 on the native API); a body that does not arrive in time fails with a plain
// 408. The handler reads the body itself, after authentication, so an anonymous client cannot
// make the api buffer one.
func (s *Server) limitBody(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) error {
		req := c.Request()
		if req.Body == nil || req.Body == http.NoBody {
			return next(c)
		}
		limit, timeout := s.bodyCap(req.URL.Path)
		if req.ContentLength > limit {
			return &bodyTooLarge{limit: limit}
		}
		// The deadline bounds reading the body only: when the body ends, net/http clears it
		// (its watch for a client that goes away starts there), so long handlers are not cut.
		rc := http.NewResponseController(c.Response())
		if err := rc.SetReadDeadline(time.Now().Add(timeout)); err != nil && !errors.Is(err, http.ErrNotSupported) {
			return err
		}
		req.Body = &cappedBody{ReadCloser: req.Body, left: limit, limit: limit, timeout: timeout}
		return next(c)
	}
}

// bodyCap returns a request's body cap and read timeout, by path.
func (s *Server) bodyCap(path string) (int64, time.Duration) {
	zstackTimeout := cmp.Or(s.Config.ZStackBodyTimeout, ZStackBodyTimeout)
	switch {
	case strings.HasPrefix(path, "/api/"):
		return NativeBodyLimit, cmp.Or(s.Config.NativeBodyTimeout, NativeBodyTimeout)
	case path == loginPath:
		return LoginBodyLimit, zstackTimeout
	}
	return ZStackBodyLimit, zstackTimeout
}

// cappedBody reads a body up to its cap, and says why a read failed in the api's terms.
type cappedBody struct {
	io.ReadCloser
	left, limit int64
	timeout     time.Duration
}

func (b *cappedBody) Read(p []byte) (int, error) {
	if b.left < 0 {
		return 0, &bodyTooLarge{limit: b.limit}
	}
	if int64(len(p)) > b.left+1 {
		p = p[:b.left+1]
	}
	n, err := b.ReadCloser.Read(p)
	b.left -= int64(n)
	switch {
	case b.left < 0:
		return n, &bodyTooLarge{limit: b.limit}
	case errors.Is(err, os.ErrDeadlineExceeded):
		return n, plain(http.StatusRequestTimeout, "the request body did not arrive within %s; send it faster or split the request", b.timeout)
	}
	return n, err
}
