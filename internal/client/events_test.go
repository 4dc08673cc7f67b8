package client

import (
	"context"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"testing"
)

func TestEventStream(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Authorization") != "OAuth s1" {
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(http.StatusUnauthorized)
			io.WriteString(w, `{"error":{"code":"ID.1001","details":"Session expired","cause":{"code":"X.1","details":"why"}}}`)
			return
		}
		w.Header().Set("Content-Type", "text/event-stream; charset=utf-8")
		io.WriteString(w, ": keep-alive\n\nevent: progress\ndata: {\"a\":1}\n\ndata: line1\ndata: line2\n\nevent: end\ndata: {}\n\nevent: item\ndata: {\"cut")
	}))
	defer srv.Close()

	c := &Client{BaseURL: srv.URL + "/", Session: "s1"}
	s, err := c.PlanEvents(context.Background(), "p")
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	want := []Event{{"progress", []byte(`{"a":1}`)}, {"message", []byte("line1\nline2")}, {"end", []byte("{}")}}
	for _, w := range want {
		ev, err := s.Next()
		if err != nil || ev.Name != w.Name || string(ev.Data) != string(w.Data) {
			t.Fatalf("got %q %q %v, want %q %q", ev.Name, ev.Data, err, w.Name, w.Data)
		}
	}
	if _, err := s.Next(); !errors.Is(err, ErrStreamClosed) {
		t.Fatalf("a cut event: %v, want ErrStreamClosed", err)
	}

	c.Session = "other"
	_, err = c.PlanEvents(context.Background(), "p")
	var ae *APIError
	if !errors.As(err, &ae) || ae.Status != 401 || ae.Code == nil || ae.Code.Code != "ID.1001" || ae.Code.Cause.Code != "X.1" || !HasCode(err, "ID.1001") {
		t.Fatalf("an error answer: %#v", err)
	}
}

func TestNetworkErrorHint(t *testing.T) {
	srv := httptest.NewServer(http.NotFoundHandler())
	addr := srv.URL
	srv.Close()
	c := &Client{BaseURL: addr}
	_, err := c.ListPlans(context.Background())
	var ne *NetworkError
	if !errors.As(err, &ne) || ne.Method != "GET" || ne.Hint() == "" {
		t.Fatalf("got %#v", err)
	}
	if h := ne.Hint(); h != "nothing listens at that address: start the api (go run ./cmd/api) or fix --url (or RESTORECTL_URL)" {
		t.Fatalf("hint: %q", h)
	}
	// A plain-text answer (not an ErrorCode) keeps its text.
	srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.Error(w, "no api mapping to "+r.URL.Path, http.StatusNotFound)
	}))
	defer srv.Close()
	c = &Client{BaseURL: srv.URL}
	_, err = c.GetPlan(context.Background(), "x", "none")
	var ae *APIError
	if !errors.As(err, &ae) || ae.Status != 404 || ae.Code != nil || ae.Text != "no api mapping to /api/v1/plans/x\n" {
		t.Fatalf("got %#v", err)
	}
}
