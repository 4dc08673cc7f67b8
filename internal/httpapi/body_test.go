package httpapi

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/labstack/echo/v4"

	"github.com/vmrestore/vmrestore/internal/metrics"
)

// bodyServer serves the api's middleware with two extra routes that read their body and say
// how long it was, one on each side of the caps, and one that keeps working after its body.
func bodyServer(t *testing.T, cfg Config) *httptest.Server {
	t.Helper()
	s := &Server{Metrics: metrics.New(), Log: slog.New(slog.NewTextHandler(io.Discard, nil)), Config: cfg}
	e := s.Handler()
	echoLen := func(c echo.Context) error {
		b, err := io.ReadAll(c.Request().Body)
		if err != nil {
			return err
		}
		return c.String(http.StatusOK, fmt.Sprint(len(b)))
	}
	e.POST("/zstack/v1/test-body", echoLen)
	e.POST("/api/v1/test-body", echoLen)
	e.POST("/api/v1/test-slow-handler", func(c echo.Context) error {
		if _, err := io.ReadAll(c.Request().Body); err != nil {
			return err
		}
		select { // work past the body's deadline: the request must not be cut
		case <-time.After(3 * cfg.ZStackBodyTimeout):
			return c.String(http.StatusOK, "done")
		case <-c.Request().Context().Done():
			return c.String(http.StatusOK, "cancelled")
		}
	})
	srv := httptest.NewServer(e)
	t.Cleanup(srv.Close)
	return srv
}

func post(t *testing.T, url string, body io.Reader, size int64) (int, string) {
	t.Helper()
	method := "POST"
	if strings.HasSuffix(url, "/accounts/login") {
		method = "PUT"
	}
	req, _ := http.NewRequest(method, url, body)
	req.ContentLength = size // -1: chunked, so only reading finds the size
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// Caps are binary: 1 MiB (ZStack), 64 KiB (login), 32 MiB (native API) mean 1,048,576,
// 65,536 and 33,554,432 bytes, and the refusal says so; they hold whether the client gives a
// Content-Length or not.
func TestBodyCapsAreMiB(t *testing.T) {
	srv := bodyServer(t, Config{})
	for _, c := range []struct {
		path   string
		limit  int64
		says   string
		status int
	}{
		{"/zstack/v1/test-body", 1 << 20, "larger than 1 MiB (1048576 bytes)", 503},
		{"/zstack/v1/accounts/login", 64 << 10, "larger than 64 KiB (65536 bytes)", 503},
		{"/api/v1/test-body", 32 << 20, "larger than 32 MiB (33554432 bytes)", 413},
	} {
		for _, size := range []int64{c.limit, -1} {
			n := c.limit
			if c.path != "/zstack/v1/accounts/login" {
				status, body := post(t, srv.URL+c.path, bytes.NewReader(make([]byte, n)), size)
				if status != 200 || body != fmt.Sprint(n) {
					t.Errorf("%s: exactly the cap (%d bytes, content length %d): %d %.100s", c.path, n, size, status, body)
				}
			}
			over := size
			if over > 0 {
				over++
			}
			status, body := post(t, srv.URL+c.path, bytes.NewReader(make([]byte, n+1)), over)
			var m map[string]map[string]string
			json.Unmarshal([]byte(body), &m)
			if status != c.status || m["error"]["code"] != "SYS.1007" || !strings.Contains(m["error"]["details"], c.says) {
				t.Errorf("%s: one byte over the cap (content length %d): %d %.200s", c.path, over, status, body)
			}
		}
	}
}

// A body trickled slower than its time allows is cut with 408; a body that arrived in time
// lets its handler run as long as it needs.
func TestSlowBodiesAreCut(t *testing.T) {
	srv := bodyServer(t, Config{ZStackBodyTimeout: 300 * time.Millisecond, NativeBodyTimeout: 600 * time.Millisecond})
	for path, limit := range map[string]time.Duration{"/zstack/v1/test-body": 300 * time.Millisecond, "/api/v1/test-body": 600 * time.Millisecond} {
		conn, err := net.Dial("tcp", srv.Listener.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		start := time.Now()
		fmt.Fprintf(conn, "POST %s HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n\r\n", path)
		done := make(chan string)
		go func() {
			resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
			if err != nil {
				done <- err.Error()
				return
			}
			b, _ := io.ReadAll(resp.Body)
			done <- fmt.Sprint(resp.StatusCode, " ", string(b))
		}()
		var answer string
	trickle:
		for i := 0; i < 100; i++ {
			select {
			case answer = <-done:
				break trickle
			case <-time.After(50 * time.Millisecond):
				conn.Write([]byte("x"))
			}
		}
		took := time.Since(start)
		conn.Close()
		if !strings.HasPrefix(answer, "408 ") || took < limit || took > limit+2*time.Second {
			t.Errorf("%s: a trickled body: %q after %v (limit %v)", path, answer, took, limit)
		}
	}
	// The deadline covered the body only.
	status, body := post(t, srv.URL+"/api/v1/test-slow-handler", strings.NewReader("{}"), 2)
	if status != 200 || body != "done" {
		t.Fatalf("a handler working past the body's time: %d %s", status, body)
	}
}
