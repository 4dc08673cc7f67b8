package store

import (
	"context"
	"strconv"
	"time"

	"github.com/redis/go-redis/v9"
)

// A plan's run report is stored when the plan ends and kept for the report retention, after
// the plan's VMs are cleaned up and its jobs have expired: the report itself (a hash of its
// account and its JSON, expiring), its summary in one hash of all summaries (for listings
// and metrics without reading every report), and the lists of reports by end time, global
// and per account. Entries past the retention are pruned from the lists and summaries
// whenever a report is saved or listed.
func keyReport(p string) string         { return prefix + "report:" + p }
func keyReports() string                { return prefix + "reports" }
func keyReportsAccount(a string) string { return prefix + "reports:acct:" + a }
func keyReportSummaries() string        { return prefix + "reports:summary" }

// StoredReport is a report as SaveReport takes it: its plan, account, end, summary and body
// (both JSON).
type StoredReport struct {
	Plan       string
	Account    string
	FinishedAt time.Time
	Summary    []byte
	Body       []byte
}

// SaveReport stores (or replaces) a plan's report for retention.
func (s *Store) SaveReport(ctx context.Context, r StoredReport, retention time.Duration) error {
	score := float64(r.FinishedAt.UnixMilli())
	pipe := s.rdb.Pipeline()
	pipe.HSet(ctx, keyReport(r.Plan), "account", r.Account, "body", r.Body)
	pipe.PExpire(ctx, keyReport(r.Plan), time.Until(r.FinishedAt.Add(retention)))
	pipe.HSet(ctx, keyReportSummaries(), r.Plan, r.Summary)
	pipe.ZAdd(ctx, keyReports(), redis.Z{Score: score, Member: r.Plan})
	pipe.ZAdd(ctx, keyReportsAccount(r.Account), redis.Z{Score: score, Member: r.Plan})
	if _, err := pipe.Exec(ctx); err != nil {
		return err
	}
	return s.pruneReports(ctx, retention)
}

// GetReport reads a stored report's JSON. ErrNotFound if there is none, or it belongs to
// another account than the one the read is made for (OnBehalfOf).
func (s *Store) GetReport(ctx context.Context, plan string) ([]byte, error) {
	v, err := s.rdb.HMGet(ctx, keyReport(plan), "account", "body").Result()
	if err != nil {
		return nil, err
	}
	account, _ := v[0].(string)
	body, _ := v[1].(string)
	if body == "" {
		return nil, ErrNotFound
	}
	if viewerAccount, restricted := viewer(ctx); restricted && viewerAccount != account {
		return nil, ErrNotFound
	}
	return []byte(body), nil
}

// ListReports returns the summaries (JSON) of the reports kept, newest first: an account's
// (all when account is empty).
func (s *Store) ListReports(ctx context.Context, account string, retention time.Duration) ([][]byte, error) {
	if err := s.pruneReports(ctx, retention); err != nil {
		return nil, err
	}
	key := keyReports()
	if account != "" {
		key = keyReportsAccount(account)
		cutoff := "(" + strconv.FormatInt(time.Now().Add(-retention).UnixMilli(), 10)
		if err := s.rdb.ZRemRangeByScore(ctx, key, "-inf", cutoff).Err(); err != nil {
			return nil, err
		}
	}
	plans, err := s.rdb.ZRevRange(ctx, key, 0, -1).Result()
	if err != nil || len(plans) == 0 {
		return nil, err
	}
	vals, err := s.rdb.HMGet(ctx, keyReportSummaries(), plans...).Result()
	if err != nil {
		return nil, err
	}
	out := make([][]byte, 0, len(vals))
	for _, v := range vals {
		if b, ok := v.(string); ok {
			out = append(out, []byte(b))
		}
	}
	return out, nil
}

// pruneReports drops the list entries and summaries of reports past the retention (their
// bodies expire by themselves).
func (s *Store) pruneReports(ctx context.Context, retention time.Duration) error {
	cutoff := "(" + strconv.FormatInt(time.Now().Add(-retention).UnixMilli(), 10)
	old, err := s.rdb.ZRangeByScore(ctx, keyReports(), &redis.ZRangeBy{Min: "-inf", Max: cutoff}).Result()
	if err != nil || len(old) == 0 {
		return err
	}
	pipe := s.rdb.Pipeline()
	members := make([]any, len(old))
	for i, p := range old {
		members[i] = p
	}
	pipe.ZRem(ctx, keyReports(), members...)
	pipe.HDel(ctx, keyReportSummaries(), old...)
	_, err = pipe.Exec(ctx)
	return err
}

// ReportSummaries returns the summaries (JSON) of every report listed, in no order.
func (s *Store) ReportSummaries(ctx context.Context) ([][]byte, error) {
	m, err := s.rdb.HGetAll(ctx, keyReportSummaries()).Result()
	if err != nil {
		return nil, err
	}
	out := make([][]byte, 0, len(m))
	for _, v := range m {
		out = append(out, []byte(v))
	}
	return out, nil
}
