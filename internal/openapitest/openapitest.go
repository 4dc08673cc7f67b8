// Package openapitest checks HTTP exchanges with the native API (/api/v1) against its
// OpenAPI document (apiv1.OpenAPI), with kin-openapi's validator, so that the document is
// what the server really takes and answers. Tests plug it in where their requests go out:
// Check for a helper that already holds both bodies, Transport for an http.Client.
//
// The contract checked, for every exchange under /api/v1:
//   - a method and path the document lacks must be one the server lacks too (404 or 405);
//   - a request the document calls invalid (a wrong type, a missing field, no session) must
//     be refused with a 4xx: the server may not accept what the document forbids;
//   - every answer, success or error, must be one the document describes: its status, its
//     content type and its body's schema.
//
// A request the document calls valid may still be refused by the server (the document does
// not know the catalog); its refusal must then be a documented error answer.
package openapitest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"testing"

	"github.com/getkin/kin-openapi/openapi3"
	"github.com/getkin/kin-openapi/openapi3filter"
	"github.com/getkin/kin-openapi/routers"
	"github.com/getkin/kin-openapi/routers/legacy"

	"github.com/vmrestore/vmrestore/internal/apiv1"
)

// Prefix is the path the document describes (its server URL).
const Prefix = "/api/v1"

var (
	loadOnce sync.Once
	doc      *openapi3.T
	router   routers.Router
	loadErr  error
)

func load() (*openapi3.T, routers.Router, error) {
	loadOnce.Do(func() {
		// A run report's page is text, checked as a string (CSV and plain text have decoders).
		openapi3filter.RegisterBodyDecoder("text/html", openapi3filter.PlainBodyDecoder)
		loader := openapi3.NewLoader()
		d, err := loader.LoadFromData(apiv1.OpenAPI)
		if err != nil {
			loadErr = fmt.Errorf("openapi.yaml does not parse: %w", err)
			return
		}
		if err := d.Validate(context.Background()); err != nil {
			loadErr = fmt.Errorf("openapi.yaml is not a valid OpenAPI document: %w", err)
			return
		}
		r, err := legacy.NewRouter(d)
		if err != nil {
			loadErr = fmt.Errorf("openapi.yaml's paths do not make a router: %w", err)
			return
		}
		doc, router = d, r
	})
	return doc, router, loadErr
}

// Document is the parsed and validated document; it fails tb when the document is invalid.
func Document(tb testing.TB) *openapi3.T {
	tb.Helper()
	d, _, err := load()
	if err != nil {
		tb.Fatal(err)
	}
	return d
}

// session stands for the document's one security scheme: it is met when the request
// carries an Authorization header (the server decides whether the session is valid).
func session(_ context.Context, in *openapi3filter.AuthenticationInput) error {
	if in.RequestValidationInput.Request.Header.Get("Authorization") == "" {
		return errors.New("no Authorization header")
	}
	return nil
}

// Problem is why an exchange breaks the document, or "" when it keeps to it. reqBody and
// respBody are the bodies as sent and received (the request's and response's Body fields
// are not read). Exchanges outside /api/v1 are not checked.
func Problem(req *http.Request, reqBody []byte, status int, header http.Header, respBody []byte) string {
	if !strings.HasPrefix(req.URL.Path, Prefix+"/") {
		return ""
	}
	_, r, err := load()
	if err != nil {
		return err.Error()
	}
	what := req.Method + " " + req.URL.Path
	// The router matches the server URL on the path alone.
	routed := req.Clone(context.Background())
	routed.URL = &url.URL{Path: req.URL.Path, RawPath: req.URL.RawPath, RawQuery: req.URL.RawQuery}
	routed.Body = io.NopCloser(bytes.NewReader(reqBody))
	route, params, err := r.FindRoute(routed)
	if err != nil {
		if status == http.StatusNotFound || status == http.StatusMethodNotAllowed {
			return ""
		}
		return fmt.Sprintf("%s answered %d, but the OpenAPI document has no such operation (%v): add it to internal/apiv1/openapi.yaml", what, status, err)
	}
	in := &openapi3filter.RequestValidationInput{Request: routed, PathParams: params, Route: route,
		Options: &openapi3filter.Options{AuthenticationFunc: session, MultiError: true}}
	if err := openapi3filter.ValidateRequest(context.Background(), in); err != nil {
		if status < 400 || status >= 500 {
			return fmt.Sprintf("%s: the OpenAPI document refuses the request (%v), but the server answered %d: the document or the server is wrong\nrequest body: %s",
				what, err, status, clip(reqBody))
		}
	}
	opts := &openapi3filter.Options{IncludeResponseStatus: true, MultiError: true}
	if mt, _, _ := mime.ParseMediaType(header.Get("Content-Type")); mt == "text/event-stream" {
		opts.ExcludeResponseBody = true // a stream is not read whole
	}
	out := &openapi3filter.ResponseValidationInput{RequestValidationInput: in, Status: status, Header: header, Options: opts}
	out.SetBodyBytes(respBody)
	if err := openapi3filter.ValidateResponse(context.Background(), out); err != nil {
		return fmt.Sprintf("%s answered %d, which the OpenAPI document does not describe: %v\nanswer: %s", what, status, err, clip(respBody))
	}
	return ""
}

func clip(b []byte) string {
	if len(b) > 2000 {
		return string(b[:2000]) + "…"
	}
	return string(b)
}

// Check fails tb (without stopping it) when an exchange breaks the document; see Problem.
func Check(tb testing.TB, req *http.Request, reqBody []byte, status int, header http.Header, respBody []byte) {
	tb.Helper()
	if p := Problem(req, reqBody, status, header, respBody); p != "" {
		tb.Errorf("OpenAPI: %s", p)
	}
}

// Transport wraps base (nil: http.DefaultTransport) so that every /api/v1 exchange through
// it is checked with Check. Bodies are read whole and handed on unchanged, except an event
// stream's, which is handed on as it comes (its status and headers are checked).
func Transport(tb testing.TB, base http.RoundTripper) http.RoundTripper {
	if base == nil {
		base = http.DefaultTransport
	}
	return &transport{tb: tb, base: base}
}

type transport struct {
	tb   testing.TB
	base http.RoundTripper
}

func (t *transport) RoundTrip(req *http.Request) (*http.Response, error) {
	if !strings.HasPrefix(req.URL.Path, Prefix+"/") {
		return t.base.RoundTrip(req)
	}
	var reqBody []byte
	if req.Body != nil && req.Body != http.NoBody {
		b, err := io.ReadAll(req.Body)
		req.Body.Close()
		if err != nil {
			return nil, err
		}
		reqBody = b
		req = req.Clone(req.Context())
		req.Body = io.NopCloser(bytes.NewReader(b))
		req.GetBody = func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(b)), nil }
	}
	resp, err := t.base.RoundTrip(req)
	if err != nil {
		return resp, err
	}
	if mt, _, _ := mime.ParseMediaType(resp.Header.Get("Content-Type")); mt == "text/event-stream" {
		Check(t.tb, req, reqBody, resp.StatusCode, resp.Header, nil)
		return resp, nil
	}
	respBody, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	resp.Body = io.NopCloser(bytes.NewReader(respBody))
	if err != nil {
		return nil, err
	}
	Check(t.tb, req, reqBody, resp.StatusCode, resp.Header, respBody)
	return resp, nil
}
