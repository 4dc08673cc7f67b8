// Package client is a Go client of a vmrestore api over HTTP: the ZStack routes it needs
// (login, logout, VM instances) and the native /api/v1 routes (plans, jobs, the plan event
// stream). It is what restorectl uses; it reads no Redis and no file of the server.
package client

import (
	"bytes"
	"context"
	"crypto/sha512"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/vmrestore/vmrestore/internal/apiv1"
	"github.com/vmrestore/vmrestore/internal/zstack"
)

// DefaultTimeout bounds one ordinary request (not an event stream).
const DefaultTimeout = 2 * time.Minute

// Client calls one vmrestore api.
type Client struct {
	// BaseURL is the api's address, like http://127.0.0.1:8080 (no trailing slash needed).
	BaseURL string
	// Session is the session uuid sent as "Authorization: OAuth <uuid>".
	Session string
	// HTTP is the HTTP client; nil uses one without a global timeout (each ordinary request
	// is bounded by Timeout, event streams are not).
	HTTP *http.Client
	// Timeout bounds an ordinary request; zero is DefaultTimeout.
	Timeout time.Duration
	// UserAgent is sent with every request.
	UserAgent string
}

// APIError is an answer other than 2xx. Code is the ZStack ErrorCode of an {"error": …}
// body; Text is the body when it is not one (for example a plain-text 400 or 404).
type APIError struct {
	Method string
	URL    string
	Status int
	Code   *zstack.ErrorCode
	Text   string
	// RetryAfter is the Retry-After header, when the api sent one (login limits, or every
	// password check slot busy).
	RetryAfter string
}

func (e *APIError) Error() string {
	if e.Code != nil {
		return e.Code.Error()
	}
	text := strings.TrimSpace(e.Text)
	if len(text) > 300 {
		text = text[:300] + "…"
	}
	return fmt.Sprintf("%s %s answered %d %s: %s", e.Method, e.URL, e.Status, http.StatusText(e.Status), text)
}

// HasCode reports whether err is an APIError with the given ZStack code.
func HasCode(err error, code string) bool {
	var ae *APIError
	return errors.As(err, &ae) && ae.Code != nil && ae.Code.Code == code
}

// NetworkError is a request that got no HTTP answer: nothing listens, the name does not
// resolve, the connection broke or timed out.
type NetworkError struct {
	Method string
	URL    string
	Err    error
}

func (e *NetworkError) Error() string {
	return fmt.Sprintf("%s %s: %v", e.Method, e.URL, e.Err)
}

func (e *NetworkError) Unwrap() error { return e.Err }

// Hint says what a user can do about a network error.
func (e *NetworkError) Hint() string {
	var dnsErr *net.DNSError
	var opErr *net.OpError
	msg := e.Err.Error()
	switch {
	case errors.Is(e.Err, context.DeadlineExceeded) || isTimeout(e.Err):
		return "the api did not answer in time: check that it is up and not overloaded, and that no firewall drops the traffic"
	case errors.As(e.Err, &dnsErr):
		return "the host name of the api does not resolve: check --url (or RESTORECTL_URL)"
	case strings.Contains(msg, "connection refused"):
		return "nothing listens at that address: start the api (go run ./cmd/api) or fix --url (or RESTORECTL_URL)"
	case strings.Contains(msg, "HTTP response to HTTPS client"):
		return "the api speaks plain HTTP: use an http:// URL"
	case strings.Contains(msg, "x509:") && (strings.Contains(msg, "unknown authority") || strings.Contains(msg, "not valid for")):
		return "the api's certificate is not trusted here (an unknown CA, or not issued for this address): give its CA with --ca-file (or RESTORECTL_CA_FILE), or fix the host in --url"
	case strings.Contains(msg, "malformed HTTP response"), strings.Contains(msg, "tls:"), strings.Contains(msg, "x509:"):
		return "the address does not answer as the api does: check the scheme (http or https) and port of --url"
	case errors.As(e.Err, &opErr):
		return "the network to the api failed: check the address in --url and the network, then try again"
	}
	return "check that the api is running at --url (or RESTORECTL_URL) and try again"
}

func isTimeout(err error) bool {
	var te interface{ Timeout() bool }
	return errors.As(err, &te) && te.Timeout()
}

func (c *Client) httpClient() *http.Client {
	if c.HTTP != nil {
		return c.HTTP
	}
	return http.DefaultClient
}

func (c *Client) url(path string, q url.Values) string {
	u := strings.TrimRight(c.BaseURL, "/") + path
	if len(q) > 0 {
		u += "?" + q.Encode()
	}
	return u
}

// newRequest builds a request with the session and a JSON body (nil: none).
func (c *Client) newRequest(ctx context.Context, method, path string, q url.Values, body any) (*http.Request, error) {
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return nil, err
		}
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, c.url(path, q), rd)
	if err != nil {
		return nil, fmt.Errorf("the api address %q does not make a valid URL: %w", c.BaseURL, err)
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	req.Header.Set("Accept", "application/json")
	if c.Session != "" {
		req.Header.Set("Authorization", "OAuth "+c.Session)
	}
	if c.UserAgent != "" {
		req.Header.Set("User-Agent", c.UserAgent)
	}
	return req, nil
}

// send runs a request and turns transport failures into NetworkError and non-2xx answers
// into APIError. The caller closes the body of a returned response.
func (c *Client) send(req *http.Request) (*http.Response, error) {
	resp, err := c.httpClient().Do(req)
	if err != nil {
		if req.Context().Err() != nil && errors.Is(err, context.Canceled) {
			return nil, err
		}
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err
		}
		return nil, &NetworkError{Method: req.Method, URL: req.URL.Redacted(), Err: err}
	}
	if resp.StatusCode/100 == 2 {
		return resp, nil
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	ae := &APIError{Method: req.Method, URL: req.URL.Redacted(), Status: resp.StatusCode, Text: string(b),
		RetryAfter: resp.Header.Get("Retry-After")}
	var wrapped zstack.ErrorAnswer
	if json.Unmarshal(b, &wrapped) == nil && wrapped.Error != nil && wrapped.Error.Code != "" {
		ae.Code = wrapped.Error
	}
	return nil, ae
}

// Do sends a JSON request and decodes a JSON answer into out (nil: discarded). It returns
// the HTTP status of a 2xx answer.
func (c *Client) Do(ctx context.Context, method, path string, q url.Values, body, out any) (int, error) {
	timeout := c.Timeout
	if timeout <= 0 {
		timeout = DefaultTimeout
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	req, err := c.newRequest(ctx, method, path, q, body)
	if err != nil {
		return 0, err
	}
	resp, err := c.send(req)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return resp.StatusCode, &NetworkError{Method: method, URL: req.URL.Redacted(), Err: fmt.Errorf("reading the answer: %w", err)}
	}
	if out != nil && len(bytes.TrimSpace(b)) > 0 {
		if err := json.Unmarshal(b, out); err != nil {
			return resp.StatusCode, fmt.Errorf("%s %s: the answer is not what this restorectl expects (%v); is the api the same version?", method, req.URL.Redacted(), err)
		}
	}
	return resp.StatusCode, nil
}

// PasswordHash is what ZStack clients send as the password: its SHA-512, in hex.
func PasswordHash(password string) string {
	sum := sha512.Sum512([]byte(password))
	return hex.EncodeToString(sum[:])
}

// Login opens a session for an account (PUT /zstack/v1/accounts/login).
func (c *Client) Login(ctx context.Context, account, password string) (*zstack.SessionInventory, error) {
	body := zstack.LogInByAccountRequest{LogInByAccount: &zstack.LogInByAccount{AccountName: account, Password: PasswordHash(password)}}
	var out struct {
		Inventory *zstack.SessionInventory `json:"inventory"`
	}
	if _, err := c.Do(ctx, http.MethodPut, "/zstack/v1/accounts/login", nil, body, &out); err != nil {
		return nil, err
	}
	if out.Inventory == nil || out.Inventory.UUID == "" {
		return nil, errors.New("the login answer carries no session")
	}
	return out.Inventory, nil
}

// Logout ends a session (DELETE /zstack/v1/accounts/sessions/{uuid}).
func (c *Client) Logout(ctx context.Context, session string) error {
	_, err := c.Do(ctx, http.MethodDelete, "/zstack/v1/accounts/sessions/"+url.PathEscape(session), nil, nil, nil)
	return err
}

// SubmitPlan submits a plan. existing is true when its clientToken named an earlier plan,
// which is returned instead of a new one.
func (c *Client) SubmitPlan(ctx context.Context, spec *apiv1.PlanSpec) (rep *apiv1.PlanReport, existing bool, err error) {
	rep = &apiv1.PlanReport{}
	status, err := c.Do(ctx, http.MethodPost, "/api/v1/plans", nil, spec, rep)
	if err != nil {
		return nil, false, err
	}
	return rep, status == http.StatusOK, nil
}

// DryRun simulates a plan against the capacity free now; nothing is stored.
func (c *Client) DryRun(ctx context.Context, spec *apiv1.PlanSpec) (*apiv1.DryRunReport, error) {
	rep := &apiv1.DryRunReport{}
	if _, err := c.Do(ctx, http.MethodPost, "/api/v1/plans", url.Values{"dryRun": {"true"}}, spec, rep); err != nil {
		return nil, err
	}
	return rep, nil
}

// ListPlans lists the plans the session may see, newest first, without items.
func (c *Client) ListPlans(ctx context.Context) ([]apiv1.PlanReport, error) {
	var out apiv1.PlanList
	_, err := c.Do(ctx, http.MethodGet, "/api/v1/plans", nil, nil, &out)
	return out.Plans, err
}

// GetPlan reads a plan's progress. items is "all" (or ""), "none", or an item state.
func (c *Client) GetPlan(ctx context.Context, uuid, items string) (*apiv1.PlanReport, error) {
	var q url.Values
	if items != "" {
		q = url.Values{"items": {items}}
	}
	rep := &apiv1.PlanReport{}
	if _, err := c.Do(ctx, http.MethodGet, "/api/v1/plans/"+url.PathEscape(uuid), q, nil, rep); err != nil {
		return nil, err
	}
	return rep, nil
}

// OperatePlan is cancel, pause or resume; it returns the plan afterwards.
func (c *Client) OperatePlan(ctx context.Context, uuid, op string) (*apiv1.PlanReport, error) {
	rep := &apiv1.PlanReport{}
	if _, err := c.Do(ctx, http.MethodPost, "/api/v1/plans/"+url.PathEscape(uuid)+"/"+op, nil, nil, rep); err != nil {
		return nil, err
	}
	return rep, nil
}

// RetryPlan runs the failed and cancelled items again; it returns how many were requeued.
func (c *Client) RetryPlan(ctx context.Context, uuid string) (int, *apiv1.PlanReport, error) {
	var out apiv1.PlanRetried
	if _, err := c.Do(ctx, http.MethodPost, "/api/v1/plans/"+url.PathEscape(uuid)+"/retry", nil, nil, &out); err != nil {
		return 0, nil, err
	}
	return out.Retried, out.Plan, nil
}

// GetJob reads a restore job. raw is the answer as the api sent it.
func (c *Client) GetJob(ctx context.Context, uuid string) (*apiv1.Job, json.RawMessage, error) {
	var raw json.RawMessage
	if _, err := c.Do(ctx, http.MethodGet, "/api/v1/jobs/"+url.PathEscape(uuid), nil, nil, &raw); err != nil {
		return nil, nil, err
	}
	j := &apiv1.Job{}
	if err := json.Unmarshal(raw, j); err != nil {
		return nil, nil, fmt.Errorf("the job answer is not what this restorectl expects: %w", err)
	}
	return j, raw, nil
}

// CancelJob asks a restore job to stop.
func (c *Client) CancelJob(ctx context.Context, uuid string) (*apiv1.Job, json.RawMessage, error) {
	var raw json.RawMessage
	if _, err := c.Do(ctx, http.MethodPost, "/api/v1/jobs/"+url.PathEscape(uuid)+"/cancel", nil, nil, &raw); err != nil {
		return nil, nil, err
	}
	j := &apiv1.Job{}
	if err := json.Unmarshal(raw, j); err != nil {
		return nil, nil, fmt.Errorf("the job answer is not what this restorectl expects: %w", err)
	}
	return j, raw, nil
}

// VMQuery is a ZStack query of VM instances.
type VMQuery struct {
	Conditions []string // q= conditions, like "name=web01" or "state?=Running,Stopped"
	Limit      int      // 0: the api's default
	Start      int
	Sort       string // "+field" or "-field"
}

// ListVMs queries VM instances (GET /zstack/v1/vm-instances). raw holds each inventory as
// the api sent it.
func (c *Client) ListVMs(ctx context.Context, qy VMQuery) ([]zstack.VmInstanceInventory, []json.RawMessage, error) {
	q := url.Values{}
	for _, cond := range qy.Conditions {
		q.Add("q", cond)
	}
	if qy.Limit > 0 {
		q.Set("limit", fmt.Sprint(qy.Limit))
	}
	if qy.Start > 0 {
		q.Set("start", fmt.Sprint(qy.Start))
	}
	if qy.Sort != "" {
		q.Set("sort", qy.Sort)
	}
	var out struct {
		Inventories []json.RawMessage `json:"inventories"`
	}
	if _, err := c.Do(ctx, http.MethodGet, "/zstack/v1/vm-instances", q, nil, &out); err != nil {
		return nil, nil, err
	}
	vms := make([]zstack.VmInstanceInventory, len(out.Inventories))
	for i, r := range out.Inventories {
		if err := json.Unmarshal(r, &vms[i]); err != nil {
			return nil, nil, fmt.Errorf("a VM inventory is not what this restorectl expects: %w", err)
		}
	}
	if out.Inventories == nil {
		out.Inventories = []json.RawMessage{}
	}
	return vms, out.Inventories, nil
}
