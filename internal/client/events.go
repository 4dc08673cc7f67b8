package client

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"net/url"
	"strings"
)

// Event is one Server-Sent Event: its name ("message" when the stream gave none) and data.
type Event struct {
	Name string
	Data []byte
}

// EventStream reads the events of GET /api/v1/plans/{uuid}/events.
type EventStream struct {
	body   io.ReadCloser
	sc     *bufio.Scanner
	cancel context.CancelFunc
}

// ErrStreamClosed is returned by Next when the server closed the stream.
var ErrStreamClosed = errors.New("the event stream was closed by the api")

// maxEventLine bounds one line of the stream.
const maxEventLine = 16 << 20

// PlanEvents opens a plan's event stream. It has no timeout: close it (or cancel ctx) to stop.
func (c *Client) PlanEvents(ctx context.Context, uuid string) (*EventStream, error) {
	ctx, cancel := context.WithCancel(ctx)
	req, err := c.newRequest(ctx, http.MethodGet, "/api/v1/plans/"+url.PathEscape(uuid)+"/events", nil, nil)
	if err != nil {
		cancel()
		return nil, err
	}
	req.Header.Set("Accept", "text/event-stream")
	req.Header.Set("Cache-Control", "no-cache")
	resp, err := c.send(req)
	if err != nil {
		cancel()
		return nil, err
	}
	if mt, _, _ := mime.ParseMediaType(resp.Header.Get("Content-Type")); mt != "text/event-stream" {
		resp.Body.Close()
		cancel()
		return nil, fmt.Errorf("GET %s answered %q, not an event stream (a proxy in between?)", req.URL.Redacted(), resp.Header.Get("Content-Type"))
	}
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 64<<10), maxEventLine)
	return &EventStream{body: resp.Body, sc: sc, cancel: cancel}, nil
}

// Next returns the next event. At the end of the stream it returns ErrStreamClosed (an
// event cut in the middle is dropped); a broken connection returns the read error.
func (s *EventStream) Next() (Event, error) {
	var ev Event
	var data []string
	seen := false
	for s.sc.Scan() {
		line := s.sc.Text()
		if line == "" {
			if !seen {
				continue
			}
			if ev.Name == "" {
				ev.Name = "message"
			}
			ev.Data = []byte(strings.Join(data, "\n"))
			return ev, nil
		}
		if strings.HasPrefix(line, ":") {
			continue // a comment (keep-alive)
		}
		field, value, _ := strings.Cut(line, ":")
		value = strings.TrimPrefix(value, " ")
		switch field {
		case "event":
			ev.Name, seen = value, true
		case "data":
			data, seen = append(data, value), true
		}
	}
	if err := s.sc.Err(); err != nil {
		return Event{}, err
	}
	return Event{}, ErrStreamClosed
}

// Close ends the stream.
func (s *EventStream) Close() error {
	s.cancel()
	return s.body.Close()
}
