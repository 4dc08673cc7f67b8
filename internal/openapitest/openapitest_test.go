package openapitest

import (
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

// The contract's every branch: what the document lacks, what it refuses, what it does not
// describe, and what it does.
func TestProblem(t *testing.T) {
	jsonH := http.Header{"Content-Type": {"application/json; charset=utf-8"}}
	job := `{"uuid":"0123456789abcdef0123456789abcdef","state":"running","groupUuid":"g","name":"n","attempts":1,"handBacks":0,"createdAt":"2026-11-20T02:00:00Z"}`
	errAnswer := `{"error":{"code":"SYS.1003","description":"Resource not found","details":"job x does not exist","elaboration":null,"opaque":null,"cause":null}}`
	plan := `{"name":"p","groups":["0123456789abcdef0123456789abcdef"]}`
	cases := []struct {
		name, method, path, session, body string
		status                            int
		answer                            string
		want                              string // "" when the exchange keeps to the document
	}{
		{"a documented answer", "GET", "/api/v1/jobs/0123456789abcdef0123456789abcdef", "OAuth s", "", 200, job, ""},
		{"outside /api/v1", "GET", "/zstack/v1/zones", "", "", 200, `{"anything":1}`, ""},
		{"an unknown route the server lacks too", "GET", "/api/v1/nothing", "OAuth s", "", 404, "no api mapping", ""},
		{"an unknown route the server serves", "GET", "/api/v1/nothing", "OAuth s", "", 200, "{}", "has no such operation"},
		{"an undocumented field", "GET", "/api/v1/jobs/0123456789abcdef0123456789abcdef", "OAuth s", "", 200, strings.Replace(job, `"name":"n"`, `"name":"n","extra":1`, 1), `property "extra" is unsupported`},
		{"a missing required field", "GET", "/api/v1/jobs/0123456789abcdef0123456789abcdef", "OAuth s", "", 200, strings.Replace(job, `"handBacks":0,`, "", 1), `property "handBacks" is missing`},
		{"an undocumented status", "POST", "/api/v1/plans", "OAuth s", plan, 302, "", "does not describe"},
		{"a documented error", "GET", "/api/v1/jobs/0123456789abcdef0123456789abcdef", "OAuth s", "", 404, errAnswer, ""},
		{"an error that is not an ErrorCode", "GET", "/api/v1/jobs/0123456789abcdef0123456789abcdef", "OAuth s", "", 404, `{"message":"not found"}`, "does not describe"},
		{"a refused request refused", "POST", "/api/v1/plans", "OAuth s", `{"name":"p","bogus":1}`, 400, errAnswer, ""},
		{"a refused request accepted", "POST", "/api/v1/plans", "OAuth s", `{"name":"p","bogus":1}`, 201, "{}", "the OpenAPI document refuses the request"},
		{"no session, accepted", "GET", "/api/v1/jobs/0123456789abcdef0123456789abcdef", "", "", 200, job, "the OpenAPI document refuses the request"},
		{"no session, refused", "GET", "/api/v1/jobs/0123456789abcdef0123456789abcdef", "", "", 401, errAnswer, ""},
		{"the document itself needs no session", "GET", "/api/v1/openapi.yaml", "", "", 200, "openapi: 3.0.3\n", ""},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			req := httptest.NewRequest(c.method, "http://127.0.0.1:8080"+c.path, strings.NewReader(c.body))
			if c.body != "" {
				req.Header.Set("Content-Type", "application/json")
			}
			if c.session != "" {
				req.Header.Set("Authorization", c.session)
			}
			h := jsonH
			if strings.HasSuffix(c.path, ".yaml") {
				h = http.Header{"Content-Type": {"application/yaml"}}
			}
			got := Problem(req, []byte(c.body), c.status, h, []byte(c.answer))
			switch {
			case c.want == "" && got != "":
				t.Fatalf("want no problem, got %s", got)
			case c.want != "" && !strings.Contains(got, c.want):
				t.Fatalf("want a problem containing %q, got %q", c.want, got)
			}
		})
	}
}

// Transport hands every body on unchanged and reports a broken exchange to its test.
func TestTransport(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusOK)
		w.Write([]byte(`{"accounts":[{"uuid":"u","name":"admin","type":"SystemAdmin","extra":true}]}`))
	}))
	defer srv.Close()
	rec := &recorder{TB: t}
	c := &http.Client{Transport: Transport(rec, nil)}
	req, _ := http.NewRequest("GET", srv.URL+"/api/v1/accounts", nil)
	req.Header.Set("Authorization", "OAuth s")
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var b strings.Builder
	if _, err := io.Copy(&b, resp.Body); err != nil || !strings.Contains(b.String(), `"extra":true`) {
		t.Fatalf("the body was not handed on: %q %v", b.String(), err)
	}
	if len(rec.errors) != 1 || !strings.Contains(rec.errors[0], `property "extra" is unsupported`) {
		t.Fatalf("reported %q; want the undocumented field", rec.errors)
	}
}

type recorder struct {
	testing.TB
	errors []string
}

func (r *recorder) Helper() {}

func (r *recorder) Errorf(format string, args ...any) {
	r.errors = append(r.errors, fmt.Sprintf(format, args...))
}
