// Package auth is ZStack-style login: accounts whose password is known only as a slow hash
// (argon2id) of the SHA-512 hex that ZStack clients send, sessions with an expiry and a
// per-account limit, and the admin account whose password comes from
// VMRESTORE_ADMIN_PASSWORD or is generated and shown once.
package auth

import (
	"context"
	"crypto/rand"
	"crypto/sha512"
	"encoding/hex"
	"errors"
	"fmt"
	"math/big"
	"strings"
	"time"

	"github.com/alexedwards/argon2id"

	"github.com/vmrestore/vmrestore/internal/catalog"
	"github.com/vmrestore/vmrestore/internal/store"
	"github.com/vmrestore/vmrestore/internal/zstack"
)

// Admin account identity (ZStack's own admin account uuid).
const (
	AdminName = "admin"
	AdminUUID = "36c27e8ff05c4780bf6d2fa65700f22e"
)

// Defaults from ZStack.
const (
	DefaultSessionTTL  = 7200 * time.Second
	DefaultMaxSessions = 500
)

// Login abuse limits: at most this many failed logins per account name, and per client
// address, within FailureWindow; past them, logins answer ID.1000 with Retry-After until
// the window ends.
const (
	AccountFailureLimit = 10
	AddressFailureLimit = 50
	FailureWindow       = 15 * time.Minute
)

// Throttled is a refused login whose account or address must wait.
type Throttled struct {
	*zstack.ErrorCode
	RetryAfter time.Duration
}

func (t *Throttled) Unwrap() error { return t.ErrorCode }

// hashParams follow OWASP's argon2id recommendation (19 MiB, 2 iterations, 1 lane): about
// 30 ms per login on one core, and a memory cost that makes offline guessing expensive.
var hashParams = &argon2id.Params{Memory: 19 * 1024, Iterations: 2, Parallelism: 1, SaltLength: 16, KeyLength: 32}

// SHA512Hex is what a ZStack client sends as the password.
func SHA512Hex(password string) string {
	sum := sha512.Sum512([]byte(password))
	return hex.EncodeToString(sum[:])
}

// HashPassword returns the stored form of a password given as its SHA-512 hex.
func HashPassword(sha512Hex string) (string, error) {
	return argon2id.CreateHash(strings.ToLower(sha512Hex), hashParams)
}

// Service logs accounts in and checks sessions.
type Service struct {
	Store       *store.Store
	SessionTTL  time.Duration
	MaxSessions int
	dummy       string
}

// New returns a Service with ZStack's defaults where ttl or max are zero.
func New(s *store.Store, ttl time.Duration, max int) *Service {
	if ttl <= 0 {
		ttl = DefaultSessionTTL
	}
	if max <= 0 {
		max = DefaultMaxSessions
	}
	dummy, _ := HashPassword(SHA512Hex("no account has this password"))
	return &Service{Store: s, SessionTTL: ttl, MaxSessions: max, dummy: dummy}
}

// EnsureAdmin makes sure the admin account exists. With a password given, the admin gets it
// (its sessions are revoked if it changed). Without one, an existing admin is kept, and a
// missing admin is created with a generated password, which is returned to be shown once.
func (s *Service) EnsureAdmin(ctx context.Context, password string) (generated string, err error) {
	cur, err := s.Store.GetAccount(ctx, AdminName)
	if err != nil && !errors.Is(err, store.ErrNotFound) {
		return "", err
	}
	if password == "" {
		if cur != nil {
			return "", nil
		}
		password = RandomPassword()
		generated = password
	} else if cur != nil {
		if ok, _ := argon2id.ComparePasswordAndHash(SHA512Hex(password), cur.PasswordHash); ok {
			return "", nil
		}
	}
	h, err := HashPassword(SHA512Hex(password))
	if err != nil {
		return "", err
	}
	if err := s.Store.PutAccount(ctx, catalog.Account{UUID: AdminUUID, Name: AdminName, Type: catalog.AccountSystemAdmin, PasswordHash: h}); err != nil {
		return "", err
	}
	if cur != nil {
		if err := s.Store.RevokeSessions(ctx, AdminUUID); err != nil {
			return "", err
		}
	}
	return generated, nil
}

// SyncAccounts stores the site file's accounts. An account whose password hash changed loses
// its sessions.
func (s *Service) SyncAccounts(ctx context.Context, accounts []catalog.Account) error {
	for _, a := range accounts {
		cur, err := s.Store.GetAccount(ctx, a.Name)
		if err != nil && !errors.Is(err, store.ErrNotFound) {
			return err
		}
		if cur != nil && cur.PasswordHash == a.PasswordHash && cur.UUID == a.UUID && cur.Type == a.Type {
			continue
		}
		if err := s.Store.PutAccount(ctx, a); err != nil {
			return err
		}
		if cur != nil {
			if err := s.Store.RevokeSessions(ctx, cur.UUID); err != nil {
				return err
			}
		}
	}
	return nil
}

// RandomPassword returns 20 characters from an unambiguous alphabet (~115 bits).
func RandomPassword() string {
	const alphabet = "abcdefghjkmnpqrstuvwxyzABCDEFGHJKMNPQRSTUVWXYZ23456789"
	b := make([]byte, 20)
	for i := range b {
		n, _ := rand.Int(rand.Reader, big.NewInt(int64(len(alphabet))))
		b[i] = alphabet[n.Int64()]
	}
	return string(b)
}

// errBadLogin is the one answer to every failed login, so that answers do not tell which
// account names exist.
func errBadLogin() *zstack.ErrorCode {
	return zstack.Errorf(zstack.CodeAuthFailed, "wrong account name or password")
}

// Login checks an account name and SHA-512 hex password, from a client address, and opens a
// session. Unknown names cost the same hash computation as known ones and count against
// the same limits, so neither answers nor timings tell which names exist.
func (s *Service) Login(ctx context.Context, name, sha512Hex, addr string) (*store.Session, error) {
	wait, err := s.Store.LoginBlocked(ctx, name, addr, AccountFailureLimit, AddressFailureLimit)
	if err != nil {
		return nil, err
	}
	if wait > 0 {
		secs := int(wait.Round(time.Second) / time.Second)
		return nil, &Throttled{RetryAfter: wait, ErrorCode: zstack.Errorf(zstack.CodeAuthFailed,
			"too many failed logins for this account or from this address; retry in %d s", max(secs, 1))}
	}
	a, err := s.Store.GetAccount(ctx, name)
	if err != nil && !errors.Is(err, store.ErrNotFound) {
		return nil, err
	}
	hash := s.dummy
	if a != nil {
		hash = a.PasswordHash
	}
	ok, err := argon2id.ComparePasswordAndHash(strings.ToLower(sha512Hex), hash)
	if err != nil || !ok || a == nil {
		if err := s.Store.RecordLoginFailure(ctx, name, addr, FailureWindow); err != nil {
			return nil, err
		}
		return nil, errBadLogin()
	}
	if err := s.Store.ClearLoginFailures(ctx, name); err != nil {
		return nil, err
	}
	now := time.Now()
	sess := &store.Session{
		UUID: zstack.NewUUID(), AccountUUID: a.UUID, AccountName: a.Name, AccountType: a.Type,
		CreatedAt: now.Truncate(time.Second), ExpiresAt: now.Add(s.SessionTTL).Truncate(time.Second),
	}
	if err := s.Store.CreateSession(ctx, sess, s.MaxSessions); err != nil {
		if errors.Is(err, store.ErrTooManySessions) {
			return nil, zstack.Errorf(zstack.CodeTooManySessions,
				"account[%s] already has %d live sessions, the maximum; log out unused sessions or wait for them to expire", name, s.MaxSessions)
		}
		return nil, err
	}
	return sess, nil
}

// Session returns the live session of a token, or ID.1001.
func (s *Service) Session(ctx context.Context, token string) (*store.Session, error) {
	if !zstack.IsUUID(token) {
		return nil, zstack.Errorf(zstack.CodeInvalidSession, "Session expired")
	}
	sess, err := s.Store.GetSession(ctx, token)
	if errors.Is(err, store.ErrNotFound) {
		return nil, zstack.Errorf(zstack.CodeInvalidSession, "Session expired")
	}
	if err != nil {
		return nil, fmt.Errorf("read session: %w", err)
	}
	return sess, nil
}

// Logout ends a session; an unknown session is not an error.
func (s *Service) Logout(ctx context.Context, token string) error {
	if !zstack.IsUUID(token) {
		return nil
	}
	return s.Store.DeleteSession(ctx, token)
}

// IsAdmin reports whether a session belongs to a SystemAdmin account.
func IsAdmin(sess *store.Session) bool { return sess.AccountType == catalog.AccountSystemAdmin }

// ValidAccountName reports whether a name may be an account name: 1 to 128 letters, digits,
// '-', '_' or '.'.
func ValidAccountName(name string) bool {
	if name == "" || len(name) > 128 {
		return false
	}
	for _, c := range name {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_' || c == '.') {
			return false
		}
	}
	return true
}

// CreateAccount adds an account with a password (plain text, hashed here as a ZStack client
// would send it). It refuses a name already used.
func (s *Service) CreateAccount(ctx context.Context, name, password, typ string) (*catalog.Account, error) {
	switch {
	case !ValidAccountName(name):
		return nil, zstack.InvalidArgument("account name %q must be 1 to 128 letters, digits, '-', '_' or '.'", name)
	case len(password) < 8 || len(password) > 1024:
		return nil, zstack.InvalidArgument("the password must be 8 to 1024 characters")
	case typ != catalog.AccountNormal && typ != catalog.AccountSystemAdmin:
		return nil, zstack.InvalidArgument("type %q must be Normal or SystemAdmin", typ)
	}
	if _, err := s.Store.GetAccount(ctx, name); err == nil {
		return nil, zstack.Errorf(zstack.CodeOperation, "account %q already exists", name)
	} else if !errors.Is(err, store.ErrNotFound) {
		return nil, err
	}
	h, err := HashPassword(SHA512Hex(password))
	if err != nil {
		return nil, err
	}
	a := catalog.Account{UUID: zstack.NewUUID(), Name: name, Type: typ, PasswordHash: h}
	return &a, s.Store.PutAccount(ctx, a)
}

// SetPassword changes an account's password and ends all its sessions.
func (s *Service) SetPassword(ctx context.Context, name, password string) error {
	if len(password) < 8 || len(password) > 1024 {
		return zstack.InvalidArgument("the password must be 8 to 1024 characters")
	}
	a, err := s.Store.GetAccount(ctx, name)
	if errors.Is(err, store.ErrNotFound) {
		return zstack.Errorf(zstack.CodeNotFound, "account %q does not exist", name)
	}
	if err != nil {
		return err
	}
	if a.PasswordHash, err = HashPassword(SHA512Hex(password)); err != nil {
		return err
	}
	if err := s.Store.PutAccount(ctx, *a); err != nil {
		return err
	}
	return s.Store.RevokeSessions(ctx, a.UUID)
}

// CheckPassword reports whether password (plain text) is an account's.
func (s *Service) CheckPassword(ctx context.Context, name, password string) bool {
	a, err := s.Store.GetAccount(ctx, name)
	hash := s.dummy
	if err == nil {
		hash = a.PasswordHash
	}
	ok, _ := argon2id.ComparePasswordAndHash(SHA512Hex(password), hash)
	return ok && err == nil
}

// DeleteAccount removes an account and ends its sessions. The admin account stays.
func (s *Service) DeleteAccount(ctx context.Context, name string) error {
	if name == AdminName {
		return zstack.Errorf(zstack.CodeOperation, "the admin account cannot be deleted")
	}
	a, err := s.Store.GetAccount(ctx, name)
	if errors.Is(err, store.ErrNotFound) {
		return zstack.Errorf(zstack.CodeNotFound, "account %q does not exist", name)
	}
	if err != nil {
		return err
	}
	if err := s.Store.DeleteAccount(ctx, name); err != nil {
		return err
	}
	return s.Store.RevokeSessions(ctx, a.UUID)
}
