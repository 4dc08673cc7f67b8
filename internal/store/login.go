package store

import (
	"context"
	"time"

	"github.com/redis/go-redis/v9"
)

// Failed logins are counted per account name and per client address in fixed windows; a
// counter at its limit blocks further attempts until its window ends. Counting unknown
// account names the same way as known ones keeps the answers from telling which exist.

func keyLoginFailAccount(name string) string { return prefix + "login-fail:account:" + name }
func keyLoginFailAddr(addr string) string    { return prefix + "login-fail:addr:" + addr }

// countFailureScript increments a failure counter, starting its window on the first
// failure. KEYS: counter. ARGV: window ms.
var countFailureScript = redis.NewScript(`
local n = redis.call('INCR', KEYS[1])
if n == 1 then redis.call('PEXPIRE', KEYS[1], ARGV[1]) end
return n
`)

// LoginBlocked reports how long the account name or the client address must wait, or 0 when
// neither has reached its limit of failures.
func (s *Store) LoginBlocked(ctx context.Context, account, addr string, accountLimit, addrLimit int64) (time.Duration, error) {
	pipe := s.rdb.Pipeline()
	a := pipe.Get(ctx, keyLoginFailAccount(account))
	aTTL := pipe.PTTL(ctx, keyLoginFailAccount(account))
	b := pipe.Get(ctx, keyLoginFailAddr(addr))
	bTTL := pipe.PTTL(ctx, keyLoginFailAddr(addr))
	if _, err := pipe.Exec(ctx); err != nil && err != redis.Nil {
		return 0, err
	}
	var wait time.Duration
	if n, _ := a.Int64(); n >= accountLimit {
		wait = max(wait, aTTL.Val())
	}
	if n, _ := b.Int64(); n >= addrLimit {
		wait = max(wait, bTTL.Val())
	}
	return wait, nil
}

// RecordLoginFailure counts a failed login against the account name and the address.
func (s *Store) RecordLoginFailure(ctx context.Context, account, addr string, window time.Duration) error {
	if err := countFailureScript.Run(ctx, s.rdb, []string{keyLoginFailAccount(account)}, window.Milliseconds()).Err(); err != nil {
		return err
	}
	return countFailureScript.Run(ctx, s.rdb, []string{keyLoginFailAddr(addr)}, window.Milliseconds()).Err()
}

// ClearLoginFailures forgets an account's failures after a successful login.
func (s *Store) ClearLoginFailures(ctx context.Context, account string) error {
	return s.rdb.Del(ctx, keyLoginFailAccount(account)).Err()
}

// DeleteAccount removes an account.
func (s *Store) DeleteAccount(ctx context.Context, name string) error {
	return s.rdb.HDel(ctx, keyAccounts(), name).Err()
}
