package store

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/vmrestore/vmrestore/internal/catalog"
	"github.com/vmrestore/vmrestore/internal/zstack"
)

// PutAccount stores or replaces an account (by name).
func (s *Store) PutAccount(ctx context.Context, a catalog.Account) error {
	b, err := json.Marshal(a)
	if err != nil {
		return err
	}
	return s.rdb.HSet(ctx, keyAccounts(), a.Name, b).Err()
}

// GetAccount reads an account by name, or ErrNotFound.
func (s *Store) GetAccount(ctx context.Context, name string) (*catalog.Account, error) {
	b, err := s.rdb.HGet(ctx, keyAccounts(), name).Bytes()
	if errors.Is(err, redis.Nil) {
		return nil, ErrNotFound
	}
	if err != nil {
		return nil, err
	}
	var a catalog.Account
	if err := json.Unmarshal(b, &a); err != nil {
		return nil, fmt.Errorf("decode account %q: %w", name, err)
	}
	return &a, nil
}

// ListAccounts returns every account.
func (s *Store) ListAccounts(ctx context.Context) ([]catalog.Account, error) {
	m, err := s.rdb.HGetAll(ctx, keyAccounts()).Result()
	if err != nil {
		return nil, err
	}
	out := make([]catalog.Account, 0, len(m))
	for name, b := range m {
		var a catalog.Account
		if err := json.Unmarshal([]byte(b), &a); err != nil {
			return nil, fmt.Errorf("decode account %q: %w", name, err)
		}
		out = append(out, a)
	}
	return out, nil
}

// accountTypesFresh bounds how long SystemAdmin trusts the account types it read.
const accountTypesFresh = 10 * time.Second

// SystemAdmin reports whether the account is a SystemAdmin. The accounts' types are read at
// most every accountTypesFresh (and at once for an account not seen yet), so that the
// ownership check of a restore costs no round trip; a changed type or a deleted account
// shows within that time.
func (s *Store) SystemAdmin(ctx context.Context, uuid string) (bool, error) {
	t, _, err := s.accountType(ctx, uuid)
	return t == catalog.AccountSystemAdmin, err
}

// accountType returns an account's type and whether the account exists, from the types
// read at most accountTypesFresh ago (at once for an account not seen yet).
func (s *Store) accountType(ctx context.Context, uuid string) (string, bool, error) {
	c := &s.accountTypes
	c.Lock()
	t, known := c.byUUID[uuid]
	fresh := time.Since(c.read) <= accountTypesFresh
	c.Unlock()
	if known && fresh {
		return t, true, nil
	}
	// Read outside the lock: with Redis slow or down, restores do not queue behind it.
	accounts, err := s.ListAccounts(ctx)
	if err != nil {
		return "", false, err
	}
	types := make(map[string]string, len(accounts))
	for _, a := range accounts {
		types[a.UUID] = a.Type
	}
	c.Lock()
	c.byUUID, c.read = types, time.Now()
	c.Unlock()
	t, known = types[uuid]
	return t, known, nil
}

// Session is a login session as stored.
type Session struct {
	UUID        string    `json:"uuid"`
	AccountUUID string    `json:"accountUuid"`
	AccountName string    `json:"accountName"`
	AccountType string    `json:"accountType"`
	CreatedAt   time.Time `json:"createdAt"`
	ExpiresAt   time.Time `json:"expiresAt"`
}

// Inventory returns the session as ZStack's SessionInventory.
func (s *Session) Inventory() zstack.SessionInventory {
	return zstack.SessionInventory{
		UUID: s.UUID, AccountUUID: s.AccountUUID, UserUUID: s.AccountUUID,
		ExpiredDate: zstack.Date{Time: s.ExpiresAt}, CreateDate: zstack.Date{Time: s.CreatedAt},
	}
}

// ErrTooManySessions is returned by CreateSession when the account is at its limit.
var ErrTooManySessions = errors.New("too many sessions")

// addSessionScript admits a session under the per-account limit, dropping expired entries
// first. KEYS: account sessions zset. ARGV: now ms, limit, session, expiry ms.
var addSessionScript = redis.NewScript(`
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', ARGV[1])
if redis.call('ZCARD', KEYS[1]) >= tonumber(ARGV[2]) then return 0 end
redis.call('ZADD', KEYS[1], ARGV[4], ARGV[3])
redis.call('PEXPIREAT', KEYS[1], ARGV[4])
return 1
`)

// CreateSession stores a session that expires after ttl, unless the account already holds
// limit live sessions (ErrTooManySessions).
func (s *Store) CreateSession(ctx context.Context, sess *Session, limit int) error {
	n, err := addSessionScript.Run(ctx, s.rdb, []string{keyAcctSessions(sess.AccountUUID)},
		time.Now().UnixMilli(), limit, sess.UUID, sess.ExpiresAt.UnixMilli()).Int()
	if err != nil {
		return fmt.Errorf("create session: %w", err)
	}
	if n == 0 {
		return ErrTooManySessions
	}
	b, _ := json.Marshal(sess)
	return s.rdb.Set(ctx, keySession(sess.UUID), b, time.Until(sess.ExpiresAt)).Err()
}

// GetSession reads a live session, or ErrNotFound (unknown or expired).
func (s *Store) GetSession(ctx context.Context, uuid string) (*Session, error) {
	b, err := s.rdb.Get(ctx, keySession(uuid)).Bytes()
	if errors.Is(err, redis.Nil) {
		return nil, ErrNotFound
	}
	if err != nil {
		return nil, err
	}
	var sess Session
	if err := json.Unmarshal(b, &sess); err != nil {
		return nil, fmt.Errorf("decode session: %w", err)
	}
	if time.Now().After(sess.ExpiresAt) {
		return nil, ErrNotFound
	}
	return &sess, nil
}

// DeleteSession ends a session (logout). Deleting an unknown session is harmless.
func (s *Store) DeleteSession(ctx context.Context, uuid string) error {
	sess, err := s.GetSession(ctx, uuid)
	if errors.Is(err, ErrNotFound) {
		return nil
	}
	if err != nil {
		return err
	}
	if err := s.rdb.Del(ctx, keySession(uuid)).Err(); err != nil {
		return err
	}
	return s.rdb.ZRem(ctx, keyAcctSessions(sess.AccountUUID), uuid).Err()
}

// RevokeSessions ends every session of an account (after a password change).
func (s *Store) RevokeSessions(ctx context.Context, account string) error {
	ids, err := s.rdb.ZRange(ctx, keyAcctSessions(account), 0, -1).Result()
	if err != nil {
		return err
	}
	for _, id := range ids {
		if err := s.rdb.Del(ctx, keySession(id)).Err(); err != nil {
			return err
		}
	}
	return s.rdb.Del(ctx, keyAcctSessions(account)).Err()
}
