package httpapi

import (
	"crypto/subtle"
	"net/http"

	"github.com/labstack/echo/v4"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

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
