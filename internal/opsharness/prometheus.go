package opsharness

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/vmrestore/vmrestore/internal/testenv"
)

// RepoRoot returns the repository's root: the closest folder above the working directory
// that holds go.mod.
func RepoRoot(tb testing.TB) string {
	tb.Helper()
	dir, err := os.Getwd()
	if err != nil {
		tb.Fatal(err)
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			tb.Fatal("no go.mod above the working directory")
		}
		dir = parent
	}
}

// NeedPrometheus returns the paths of prometheus and promtool, or skips the test (fails it
// under CI) with the way to install them.
func NeedPrometheus(tb testing.TB) (prometheus, promtool string) {
	tb.Helper()
	const hint = "install Debian's prometheus package (.ci/run does) to run this test"
	return testenv.LookPath(tb, "prometheus", hint), testenv.LookPath(tb, "promtool", hint)
}

// Promtool runs promtool with args in dir and fails the test, with its output, unless it
// succeeds. It returns the output.
func Promtool(tb testing.TB, promtool, dir string, args ...string) string {
	tb.Helper()
	cmd := exec.Command(promtool, args...)
	cmd.Dir = dir
	out, err := cmd.CombinedOutput()
	if err != nil {
		tb.Fatalf("promtool %v: %v\n%s", args, err, out)
	}
	return string(out)
}

// Prometheus is a prometheus server started for a test, on a free port of 127.0.0.1 with
// its storage in a temporary folder; it is killed when the test ends.
type Prometheus struct {
	URL string
	log string
}

// StartPrometheus runs prometheus with the given configuration file and waits until it is
// ready. Exemplar storage is on, so that query_exemplars answers.
func StartPrometheus(tb testing.TB, binary, configFile string) *Prometheus {
	tb.Helper()
	dir := tb.TempDir()
	logFile := filepath.Join(dir, "prometheus.log")
	var lastErr error
	for attempt := 0; attempt < 3; attempt++ {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			tb.Fatal(err)
		}
		addr := l.Addr().String()
		l.Close()
		logf, err := os.Create(logFile)
		if err != nil {
			tb.Fatal(err)
		}
		cmd := exec.Command(binary,
			"--config.file="+configFile,
			"--storage.tsdb.path="+filepath.Join(dir, "data"+strconv.Itoa(attempt)),
			"--web.listen-address="+addr,
			"--enable-feature=exemplar-storage",
			"--log.level=warn")
		cmd.Stdout, cmd.Stderr = logf, logf
		if err := cmd.Start(); err != nil {
			logf.Close()
			tb.Fatalf("start prometheus: %v", err)
		}
		done := make(chan struct{})
		go func() { cmd.Wait(); logf.Close(); close(done) }()
		p := &Prometheus{URL: "http://" + addr, log: logFile}
		if lastErr = p.waitReady(done, 30*time.Second); lastErr == nil {
			tb.Cleanup(func() {
				cmd.Process.Kill()
				<-done
			})
			return p
		}
		cmd.Process.Kill()
		<-done
	}
	tb.Fatalf("prometheus did not become ready: %v\n%s", lastErr, readTail(logFile))
	return nil
}

func (p *Prometheus) waitReady(exited <-chan struct{}, within time.Duration) error {
	deadline := time.Now().Add(within)
	for time.Now().Before(deadline) {
		select {
		case <-exited:
			return errors.New("prometheus exited")
		default:
		}
		resp, err := http.Get(p.URL + "/-/ready")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == 200 {
				return nil
			}
		}
		time.Sleep(100 * time.Millisecond)
	}
	return fmt.Errorf("not ready within %s", within)
}

// Log returns the end of prometheus's log, for failure messages.
func (p *Prometheus) Log() string { return readTail(p.log) }

func readTail(path string) string {
	b, _ := os.ReadFile(path)
	if len(b) > 4000 {
		b = b[len(b)-4000:]
	}
	return string(b)
}

// Sample is one series of an instant vector answer.
type Sample struct {
	Metric map[string]string `json:"metric"`
	Value  [2]any            `json:"value"`
}

// Float returns the sample's value.
func (s Sample) Float() float64 {
	str, _ := s.Value[1].(string)
	f, _ := strconv.ParseFloat(str, 64)
	return f
}

// QueryError is an answer of Prometheus's API with status "error" (a parse error is
// errorType "bad_data").
type QueryError struct {
	Type, Message string
}

func (e *QueryError) Error() string { return e.Type + ": " + e.Message }

// Query runs an instant query now and returns its vector (a scalar answer is returned as one
// sample without labels).
func (p *Prometheus) Query(ctx context.Context, q string) ([]Sample, error) {
	var data struct {
		ResultType string          `json:"resultType"`
		Result     json.RawMessage `json:"result"`
	}
	if err := p.get(ctx, "/api/v1/query", url.Values{"query": {q}}, &data); err != nil {
		return nil, err
	}
	switch data.ResultType {
	case "vector":
		var v []Sample
		err := json.Unmarshal(data.Result, &v)
		return v, err
	case "scalar":
		var s [2]any
		if err := json.Unmarshal(data.Result, &s); err != nil {
			return nil, err
		}
		return []Sample{{Metric: map[string]string{}, Value: s}}, nil
	}
	return nil, fmt.Errorf("query %q answered a %s", q, data.ResultType)
}

// Exemplar is one exemplar of query_exemplars.
type Exemplar struct {
	Labels map[string]string `json:"labels"`
	Value  string            `json:"value"`
}

// Exemplars returns the exemplars of the series q selects over the last window.
func (p *Prometheus) Exemplars(ctx context.Context, q string, window time.Duration) ([]Exemplar, error) {
	now := time.Now()
	var data []struct {
		Exemplars []Exemplar `json:"exemplars"`
	}
	err := p.get(ctx, "/api/v1/query_exemplars", url.Values{"query": {q},
		"start": {strconv.FormatInt(now.Add(-window).Unix(), 10)}, "end": {strconv.FormatInt(now.Unix()+1, 10)}}, &data)
	var out []Exemplar
	for _, d := range data {
		out = append(out, d.Exemplars...)
	}
	return out, err
}

// MetricNames returns every metric name Prometheus holds.
func (p *Prometheus) MetricNames(ctx context.Context) (map[string]bool, error) {
	var names []string
	if err := p.get(ctx, "/api/v1/label/__name__/values", nil, &names); err != nil {
		return nil, err
	}
	out := make(map[string]bool, len(names))
	for _, n := range names {
		out[n] = true
	}
	return out, nil
}

// RuleHealth is the evaluation state of one loaded rule.
type RuleHealth struct {
	Group, Name, Health, LastError, State string
}

// Rules returns every rule Prometheus loaded, with its evaluation health.
func (p *Prometheus) Rules(ctx context.Context) ([]RuleHealth, error) {
	var data struct {
		Groups []struct {
			Name  string `json:"name"`
			Rules []struct {
				Name      string `json:"name"`
				Health    string `json:"health"`
				LastError string `json:"lastError"`
				State     string `json:"state"`
			} `json:"rules"`
		} `json:"groups"`
	}
	if err := p.get(ctx, "/api/v1/rules", nil, &data); err != nil {
		return nil, err
	}
	var out []RuleHealth
	for _, g := range data.Groups {
		for _, r := range g.Rules {
			out = append(out, RuleHealth{Group: g.Name, Name: r.Name, Health: r.Health, LastError: r.LastError, State: r.State})
		}
	}
	return out, nil
}

// Target is one scrape target's state.
type Target struct {
	Job, Instance, Health, LastError string
}

// Targets returns the active scrape targets.
func (p *Prometheus) Targets(ctx context.Context) ([]Target, error) {
	var data struct {
		Active []struct {
			Labels    map[string]string `json:"labels"`
			Health    string            `json:"health"`
			LastError string            `json:"lastError"`
		} `json:"activeTargets"`
	}
	if err := p.get(ctx, "/api/v1/targets", url.Values{"state": {"active"}}, &data); err != nil {
		return nil, err
	}
	var out []Target
	for _, a := range data.Active {
		out = append(out, Target{Job: a.Labels["job"], Instance: a.Labels["instance"], Health: a.Health, LastError: a.LastError})
	}
	return out, nil
}

// get calls Prometheus's HTTP API and decodes its data.
func (p *Prometheus) get(ctx context.Context, path string, v url.Values, data any) error {
	u := p.URL + path
	if len(v) > 0 {
		u += "?" + v.Encode()
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return err
	}
	var env struct {
		Status    string          `json:"status"`
		ErrorType string          `json:"errorType"`
		Error     string          `json:"error"`
		Data      json.RawMessage `json:"data"`
	}
	if err := json.Unmarshal(body, &env); err != nil {
		return fmt.Errorf("GET %s: %d %s", path, resp.StatusCode, body)
	}
	if env.Status != "success" {
		return &QueryError{Type: env.ErrorType, Message: env.Error}
	}
	return json.Unmarshal(env.Data, data)
}
