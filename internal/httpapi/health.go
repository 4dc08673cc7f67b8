package httpapi

import (
	"crypto/subtle"
	"net/http"

	"github.com/labstack/echo/v4"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// index answers GET / with where things are, for whoever opens the api's address first.
func (s *Server) index() echo.HandlerFunc {
	type entry struct {
		Path string `json:"path"`
		What string `json:"what"`
	}
	body := struct {
		Service string  `json:"service"`
		Routes  []entry `json:"routes"`
		Docs    string  `json:"docs"`
	}{
		Service: "vmrestore: restores VMs from ZStack VM backup groups, many at a time",
		Routes: []entry{
			{"/zstack/v1", "ZStack's API (CreateVmFromVmBackup, queries, api-jobs); log in with PUT /zstack/v1/accounts/login"},
			{"/api/v1", "vmrestore's own API: restores, plans, jobs, accounts"},
			{"/api/v1/openapi.yaml", "the OpenAPI document of /api/v1"},
			{"/healthz", "liveness"},
			{"/readyz", "readiness (Redis reachable, catalog loaded)"},
			{"/metrics", "Prometheus metrics"},
		},
		Docs: "README.md and docs/ in vmrestore's source: docs/api.md (both APIs), docs/plans.md (bulk restore plans), docs/restorectl.md (the command-line client)",
	}
	return func(c echo.Context) error {
		return writeJSON(c, http.StatusOK, body)
	}
}

// healthz answers 200 while the process runs.
func (s *Server) healthz() echo.HandlerFunc {
	return func(c echo.Context) error {
		return writeJSON(c, http.StatusOK, map[string]any{"status": "ok"})
	}
}

// readyz answers 200 when the process can serve (Redis reachable, catalog loaded), else 503
// with the reason.
func (s *Server) readyz() echo.HandlerFunc {
	return func(c echo.Context) error {
		if s.Ready != nil {
			if err := s.Ready(); err != nil {
				return writeJSON(c, http.StatusServiceUnavailable, map[string]any{"status": "not ready", "reason": err.Error()})
			}
		}
		return writeJSON(c, http.StatusOK, map[string]any{"status": "ready"})
	}
}

// metrics serves Prometheus metrics (OpenMetrics when asked, for exemplars), behind a bearer
// token when one is configured.
func (s *Server) metrics() echo.HandlerFunc {
	h := promhttp.HandlerFor(s.Metrics.Registry, promhttp.HandlerOpts{EnableOpenMetrics: true})
	return func(c echo.Context) error {
		if t := s.Config.MetricsToken; t != "" {
			got := c.Request().Header.Get("Authorization")
			if subtle.ConstantTimeCompare([]byte(got), []byte("Bearer "+t)) != 1 {
				return c.String(http.StatusUnauthorized, "metrics need 'Authorization: Bearer <token>'")
			}
		}
		h.ServeHTTP(c.Response(), c.Request())
		return nil
	}
}
