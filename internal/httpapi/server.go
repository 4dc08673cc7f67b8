// Package httpapi serves vmrestore over HTTP with echo: ZStack's API under /zstack/v1 (login,
// CreateVmFromVmBackup answered 202 with the poll location, api-jobs polling, queries),
// vmrestore's native API under /api/v1 (the synchronous restore, plans, jobs, accounts),
// health and readiness, and Prometheus metrics. Every route is listed in routes.go.
//
// Errors have one mapping, in handleError: a *zstack.ErrorCode becomes 503 {"error": ...} as
// ZStack answers a failed API; transport-level problems (missing Authorization, bad
// X-Job-UUID, unknown path) are plain text with ZStack's wording; anything else is logged with
// the request id and answered as SYS.1000 without leaking its text.
package httpapi

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/labstack/echo-contrib/echoprometheus"
	"github.com/labstack/echo/v4"
	"github.com/labstack/echo/v4/middleware"

	"github.com/vmrestore/vmrestore/internal/auth"
	"github.com/vmrestore/vmrestore/internal/metrics"
	"github.com/vmrestore/vmrestore/internal/plan"
	"github.com/vmrestore/vmrestore/internal/queue"
	"github.com/vmrestore/vmrestore/internal/store"
	"github.com/vmrestore/vmrestore/internal/webhook"
	"github.com/vmrestore/vmrestore/internal/zstack"
)

// Config tunes the API.
type Config struct {
	// WaitLimit bounds how long a restore call waits for its job before answering 202 with
	// the poll location (the native POST /api/v1/restores waits this long, a ZStack call only
	// with "Prefer: wait=N"); zero never waits.
	WaitLimit time.Duration
	// MetricsToken, when set, is required as a bearer token on /metrics.
	MetricsToken string
	// ZStackBodyTimeout and NativeBodyTimeout, when set, replace the default times a request
	// body has to arrive in (ZStackBodyTimeout, NativeBodyTimeout).
	ZStackBodyTimeout, NativeBodyTimeout time.Duration
	// PublicURL, when set, is the URL clients reach the api at: the poll locations of 202
	// answers are built on it rather than on the request's Host header.
	PublicURL string
	// WriteTimeout bounds how long an answer may take to be written, from the start of the
	// request (a restore that waits included); zero: WaitLimit plus a minute. Event streams
	// renew their own deadline at each event instead (planEvents).
	WriteTimeout time.Duration
	// ReportRetention is how long run reports are kept (plan.DefaultReportRetention when 0).
	ReportRetention time.Duration
}

// writeTimeout is Config.WriteTimeout, or its default.
func (c Config) writeTimeout() time.Duration {
	if c.WriteTimeout > 0 {
		return c.WriteTimeout
	}
	return c.WaitLimit + time.Minute
}

// writeDeadline gives every answer Config.WriteTimeout to be written, so that a client that
// stops reading cannot hold a connection. It is per request rather than the http.Server's
// WriteTimeout, which would also cut long-lived event streams.
func (s *Server) writeDeadline(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) error {
		// An error means the connection cannot take deadlines (a test recorder): nothing to bound.
		_ = http.NewResponseController(c.Response()).SetWriteDeadline(time.Now().Add(s.Config.writeTimeout()))
		return next(c)
	}
}

// Server holds what the handlers need.
type Server struct {
	Store   *store.Store
	Catalog *store.CatalogCache
	Events  *store.Events
	Queue   *queue.Client
	Auth    *auth.Service
	Plans   *plan.Service
	// WebHooks says where X-Web-Hook may point.
	WebHooks *webhook.Policy
	Metrics  *metrics.Metrics
	Log      *slog.Logger
	Config   Config
	// Ready reports whether the process can serve (Redis reachable, catalog loaded).
	Ready func() error

	queryPaths map[string]bool // the ZStack query resources, set by routes
}

// Handler builds the echo instance with every route.
func (s *Server) Handler() *echo.Echo {
	e := echo.New()
	e.HideBanner, e.HidePort = true, true
	e.HTTPErrorHandler = s.handleError
	// Client addresses (login limits) are the peer's, never a header a client can forge.
	e.IPExtractor = echo.ExtractIPDirect()
	e.Use(middleware.RequestID())
	e.Use(s.writeDeadline)
	e.Use(echoprometheus.NewMiddlewareWithConfig(echoprometheus.MiddlewareConfig{
		Namespace: "vmrestore", Subsystem: "http", Registerer: s.Metrics.Registry,
		DoNotUseRequestPathFor404: true,
		HistogramOptsFunc:         httpHistogramOpts,
		LabelFuncs: map[string]echoprometheus.LabelValueFunc{
			"host": func(echo.Context, error) string { return "" },
		},
		Skipper: func(c echo.Context) bool { return c.Path() == "/metrics" },
	}))
	e.Use(s.accessLog)
	e.Use(s.answerErrors) // inside the metrics and the access log: they see the status answered
	e.Use(s.limitBody)
	e.Use(s.publicBase)
	s.routes(e)
	return e
}

// plainError is a transport-level refusal answered as plain text, as ZStack's REST server does.
type plainError struct {
	status int
	text   string
}

func (e *plainError) Error() string { return e.text }

func plain(status int, format string, args ...any) error {
	return &plainError{status: status, text: fmt.Sprintf(format, args...)}
}

func (s *Server) handleError(err error, c echo.Context) {
	if c.Response().Committed {
		return
	}
	var pe *plainError
	var ec *zstack.ErrorCode
	var he *echo.HTTPError
	var th *auth.Throttled
	var big *bodyTooLarge
	if errors.As(err, &th) {
		c.Response().Header().Set("Retry-After", strconv.Itoa(th.RetryAfterSeconds()))
	}
	switch {
	case errors.Is(err, context.Canceled) && c.Request().Context().Err() != nil:
		// The client went away and its request's work stopped: no one reads an answer.
		s.Log.Debug("request abandoned by its client", "request_id", c.Response().Header().Get(echo.HeaderXRequestID),
			"method", c.Request().Method, "path", c.Path())
		c.Response().WriteHeader(499) // nginx's "client closed request", for the access log and metrics
	case errors.As(err, &pe):
		_ = c.String(pe.status, pe.text)
	case errors.As(err, &big):
		status := http.StatusServiceUnavailable // a refused ZStack API, as ZStack answers it
		if strings.HasPrefix(c.Request().URL.Path, "/api/") {
			status = http.StatusRequestEntityTooLarge
		}
		_ = writeJSON(c, status, zstack.ErrorAnswer{Error: zstack.InvalidArgument("%s", big.Error())})
	case errors.As(err, &ec):
		status := http.StatusServiceUnavailable // how ZStack answers a failed API
		if strings.HasPrefix(c.Request().URL.Path, "/api/") {
			status = nativeStatus(ec)
			if th != nil {
				status = http.StatusTooManyRequests
			}
		}
		_ = writeJSON(c, status, zstack.ErrorAnswer{Error: ec})
	case errors.As(err, &he):
		path := c.Request().URL.Path
		switch {
		case he.Code == http.StatusNotFound:
			_ = c.String(http.StatusNotFound, "no api mapping to "+path)
		case he.Code == http.StatusMethodNotAllowed && s.isQueryPath(c.Request().Method, path):
			_ = c.String(http.StatusNotFound, "no api mapping to "+path)
		case he.Code == http.StatusMethodNotAllowed:
			_ = c.String(http.StatusMethodNotAllowed, fmt.Sprintf("The method[%s] is not allowed for the path[%s]", c.Request().Method, path))
		default:
			_ = c.String(he.Code, fmt.Sprint(he.Message))
		}
	default:
		id := c.Response().Header().Get(echo.HeaderXRequestID)
		s.Log.Error("request failed", "request_id", id, "method", c.Request().Method, "path", c.Path(), "err", err)
		_ = writeJSON(c, http.StatusServiceUnavailable, zstack.ErrorAnswer{Error: zstack.Errorf(zstack.CodeInternal,
			"the server could not complete the request (request id %s); its log has the cause. If Redis is unreachable, restore it and retry", id)})
	}
}

// nativeStatus maps an ErrorCode to the HTTP status of the native /api/v1 routes, which,
// unlike ZStack's, use statuses that say what happened.
func nativeStatus(ec *zstack.ErrorCode) int {
	switch ec.Code {
	case zstack.CodeInvalidArgument:
		return http.StatusBadRequest
	case zstack.CodeNotFound:
		return http.StatusNotFound
	case zstack.CodeInvalidSession, zstack.CodeAuthFailed:
		return http.StatusUnauthorized
	case zstack.CodePermission:
		return http.StatusForbidden
	case zstack.CodeOperation:
		return http.StatusConflict
	case zstack.CodeTooManySessions:
		return http.StatusTooManyRequests
	}
	return http.StatusServiceUnavailable
}

// writeJSON writes v with ZStack's JSON content type (see writeJSONBytes). Answers carry
// what users wrote (names, q= conditions) in their errors: <, > and & are written as they
// are, not as \u003c, \u003e and \u0026, which the answer's content type makes safe.
func writeJSON(c echo.Context, status int, v any) error {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		return err
	}
	return writeJSONBytes(c, status, bytes.TrimSuffix(buf.Bytes(), []byte{'\n'}))
}

// writeJSONBytes writes an encoded JSON answer, ending with a newline so that an answer
// printed by curl ends its line.
func writeJSONBytes(c echo.Context, status int, b []byte) error {
	c.Response().Header().Set(echo.HeaderContentType, "application/json; charset=utf-8")
	c.Response().Header().Set(echo.HeaderXContentTypeOptions, "nosniff")
	c.Response().WriteHeader(status)
	if _, err := c.Response().Write(b); err != nil {
		return err
	}
	_, err := c.Response().Write([]byte{'\n'})
	return err
}

// publicURLKey holds the configured public URL in a request's context, for the URLs the
// api answers with (jobLocation).
const publicURLKey = "vmrestore.publicURL"

// publicBase makes the configured public URL (VMRESTORE_PUBLIC_URL) known to handlers.
func (s *Server) publicBase(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) error {
		if s.Config.PublicURL != "" {
			c.Set(publicURLKey, s.Config.PublicURL)
		}
		return next(c)
	}
}

// accessLog logs each request at debug level (errors are logged by handleError).
func (s *Server) accessLog(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) error {
		start := time.Now()
		err := next(c)
		s.Log.Debug("http request", "request_id", c.Response().Header().Get(echo.HeaderXRequestID),
			"method", c.Request().Method, "route", c.Path(), "status", c.Response().Status, "duration", time.Since(start))
		return err
	}
}
