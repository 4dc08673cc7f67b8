package httpapi

import (
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/labstack/echo/v4"

	"github.com/vmrestore/vmrestore/internal/metrics"
	"github.com/vmrestore/vmrestore/internal/openapitest"
)

// Every /api/v1 route of routes.go is an operation of the OpenAPI document, and every
// operation of the document is a route.
func TestOpenAPIHasEveryRoute(t *testing.T) {
	e := echo.New()
	(&Server{Metrics: metrics.New()}).routes(e)
	param := regexp.MustCompile(`:([A-Za-z]+)`)
	var routes []string
	for _, r := range e.Routes() {
		if !strings.HasPrefix(r.Path, openapitest.Prefix+"/") || r.Method == echo.RouteNotFound {
			continue
		}
		path := param.ReplaceAllString(strings.TrimPrefix(r.Path, openapitest.Prefix), "{$1}")
		routes = append(routes, r.Method+" "+path)
	}
	var documented []string
	for path, item := range openapitest.Document(t).Paths.Map() {
		for method := range item.Operations() {
			documented = append(documented, method+" "+path)
		}
	}
	slices.Sort(routes)
	slices.Sort(documented)
	if len(routes) < 10 {
		t.Fatalf("found only %d /api/v1 routes: %v", len(routes), routes)
	}
	for _, r := range routes {
		if !slices.Contains(documented, r) {
			t.Errorf("route %s is not in internal/apiv1/openapi.yaml", r)
		}
	}
	for _, d := range documented {
		if !slices.Contains(routes, d) {
			t.Errorf("openapi.yaml documents %s, which routes.go does not serve", d)
		}
	}
}
