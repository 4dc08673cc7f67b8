package httpapi

import (
	"github.com/labstack/echo/v4"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/vmrestore/vmrestore/internal/metrics"
)

// answerErrors renders a handler's error inside the middleware chain, with handleError (the
// one mapping), so that the HTTP metrics (vmrestore_http_*{code}) and the access log record
// the status the client really got. Left to echo, the error would be rendered after every
// middleware returned, and they would see 200 or 500 for a 503 or a 400.
func (s *Server) answerErrors(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) error {
		if err := next(c); err != nil {
			s.handleError(err, c)
		}
		return nil
	}
}

// httpHistogramOpts gives vmrestore_http_request_duration_seconds buckets that reach past the
// synchronous wait of CreateVmFromVmBackup; the size histograms keep echoprometheus's.
func httpHistogramOpts(o prometheus.HistogramOpts) prometheus.HistogramOpts {
	if o.Name == "request_duration_seconds" {
		o.Buckets = metrics.HTTPDurationBuckets
	}
	return o
}
