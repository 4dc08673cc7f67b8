package httpapi

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/labstack/echo/v4"

	"github.com/vmrestore/vmrestore/internal/metrics"
	"github.com/vmrestore/vmrestore/internal/zstack"
)

// Answers write what users wrote as they wrote it: a q= condition's >= is not \u003e=.
func TestAnswersDoNotEscapeUserText(t *testing.T) {
	e := echo.New()
	rec := httptest.NewRecorder()
	c := e.NewContext(httptest.NewRequest(http.MethodGet, "/zstack/v1/vm-instances?q=cpuNum%3E%3Dx", nil), rec)
	if err := writeJSON(c, http.StatusServiceUnavailable, zstack.ErrorAnswer{Error: zstack.InvalidArgument("condition[cpuNum>=x] & <more>")}); err != nil {
		t.Fatal(err)
	}
	body := rec.Body.String()
	if !strings.Contains(body, `condition[cpuNum>=x] & <more>`) || strings.Contains(body, `\u003e`) {
		t.Fatalf("answer %q escapes the user's text", body)
	}
	if !strings.HasSuffix(body, "}\n") || strings.HasSuffix(body, "\n\n") {
		t.Fatalf("answer %q must end its line once", body)
	}
	if got := rec.Header().Get("X-Content-Type-Options"); got != "nosniff" {
		t.Fatalf("X-Content-Type-Options %q, want nosniff", got)
	}
}

// GET / says where things are instead of 404.
func TestIndexPointsToTheDocs(t *testing.T) {
	e := echo.New()
	(&Server{Metrics: metrics.New()}).routes(e)
	rec := httptest.NewRecorder()
	e.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/", nil))
	if rec.Code != http.StatusOK {
		t.Fatalf("GET / answered %d: %s", rec.Code, rec.Body)
	}
	for _, want := range []string{"/api/v1/openapi.yaml", "/zstack/v1", "docs/api.md", "PUT /zstack/v1/accounts/login"} {
		if !strings.Contains(rec.Body.String(), want) {
			t.Errorf("GET / does not name %s: %s", want, rec.Body)
		}
	}
}

// A plan with a field it does not have is told which fields a plan has.
func TestPlanWithAnUnknownFieldListsThePlansFields(t *testing.T) {
	e := echo.New()
	req := httptest.NewRequest(http.MethodPost, "/api/v1/plans", strings.NewReader(`{"name": "p", "params": {"name": "web01-dr"}}`))
	err := (&Server{}).submitPlan()(e.NewContext(req, httptest.NewRecorder()))
	ec, ok := zstack.AsErrorCode(err)
	if !ok || ec.Code != zstack.CodeInvalidArgument || !strings.Contains(ec.Details, `unknown field "params"`) ||
		!strings.Contains(ec.Details, "a plan's fields are name, mode, clientToken, groups, selector, defaults") {
		t.Fatalf("got %v", err)
	}
}
