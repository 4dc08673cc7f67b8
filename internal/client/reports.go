package client

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/url"

	"github.com/vmrestore/vmrestore/internal/apiv1"
)

// RunReport reads a plan's run report (GET /api/v1/plans/{uuid}/report).
func (c *Client) RunReport(ctx context.Context, plan string) (*apiv1.RunReport, error) {
	var r apiv1.RunReport
	if _, err := c.Do(ctx, http.MethodGet, "/api/v1/plans/"+url.PathEscape(plan)+"/report", nil, nil, &r); err != nil {
		return nil, err
	}
	return &r, nil
}

// RunReportAs reads a plan's run report in a format (json, html or csv), as the api wrote it.
func (c *Client) RunReportAs(ctx context.Context, plan, format string) ([]byte, error) {
	timeout := c.Timeout
	if timeout <= 0 {
		timeout = DefaultTimeout
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	req, err := c.newRequest(ctx, http.MethodGet, "/api/v1/plans/"+url.PathEscape(plan)+"/report", url.Values{"format": {format}}, nil)
	if err != nil {
		return nil, err
	}
	resp, err := c.send(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, &NetworkError{Method: req.Method, URL: req.URL.Redacted(), Err: fmt.Errorf("reading the answer: %w", err)}
	}
	return b, nil
}

// ListReports reads the stored run reports the session may see, newest first.
func (c *Client) ListReports(ctx context.Context) ([]apiv1.RunReportSummary, error) {
	var l apiv1.RunReportList
	if _, err := c.Do(ctx, http.MethodGet, "/api/v1/reports", nil, nil, &l); err != nil {
		return nil, err
	}
	return l.Reports, nil
}
