package main

import (
	"net/http"
	"testing"

	"github.com/vmrestore/vmrestore/internal/openapitest"
)

// checkAPIExchanges makes every client restorectl creates during t check its exchanges with
// the api's /api/v1 against the OpenAPI document.
func checkAPIExchanges(t *testing.T) {
	t.Helper()
	prev := wrapTransport
	wrapTransport = func(rt http.RoundTripper) http.RoundTripper { return openapitest.Transport(t, rt) }
	t.Cleanup(func() { wrapTransport = prev })
}
