package store

import (
	"context"
	"time"
)

func keyLease(name string) string { return prefix + "lease:" + name }

// HoldLease takes the named lease for holder, or renews it when holder has it already, for
// ttl. It reports whether holder holds the lease now. A holder that stops renewing loses the
// lease ttl later; another holder can then take it.
func (s *Store) HoldLease(ctx context.Context, name, holder string, ttl time.Duration) (bool, error) {
	n, err := lockScript.Run(ctx, s.rdb, []string{keyLease(name)}, holder, ttl.Milliseconds()).Int()
	return n == 1, err
}

// ReleaseLease gives the named lease up if holder holds it.
func (s *Store) ReleaseLease(ctx context.Context, name, holder string) error {
	return unlockScript.Run(ctx, s.rdb, []string{keyLease(name)}, holder).Err()
}
