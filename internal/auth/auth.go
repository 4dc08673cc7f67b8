// Package auth is ZStack-style login: accounts whose password is known only as a slow hash
// (argon2id) of the SHA-512 hex that ZStack clients send, sessions with an expiry and a
// per-account limit, and the admin account whose password comes from
// VMRESTORE_ADMIN_PASSWORD or is generated when Redis has no admin yet, and shown then.
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

// Login abuse limits (see docs/security.md). Failures are counted per account name and
// client address, per account name, and per client address:
//   - a name from one address gets PairFreeFailures tries, then waits 1 s, 2 s, 4 s, ... up
//     to PairMaxWait before each further try;
//   - a name gets AccountFailureLimit failures over all addresses, then addresses it has not
//     logged in from within FamiliarFor wait 1 s, 2 s, ... up to AccountMaxWait before each
//     try (its familiar addresses do not wait: no one can lock an account's owner out);
//   - an address gets AddressFailureLimit failures over all names per FailureWindow.
//
// Failures are forgotten FailureWindow after the last one (the address's at the end of its
// window). A password change with a wrong currentPassword counts as a failed login.
const (
	PairFreeFailures    = 5
	PairMaxWait         = 15 * time.Minute
	AccountFailureLimit = 10
	AccountMaxWait      = time.Minute
	AddressFailureLimit = 50
	FailureWindow       = 15 * time.Minute
	FamiliarFor         = 30 * 24 * time.Hour
)

// Limits are the login limits as the store applies them.
var Limits = store.LoginLimits{
	PairFree: PairFreeFailures, PairMaxWait: PairMaxWait,
	NameFree: AccountFailureLimit, NameMaxWait: AccountMaxWait,
	AddressLimit: AddressFailureLimit, Window: FailureWindow, BaseWait: time.Second,
	FamiliarFor: FamiliarFor, MaxFamiliar: 20,
}

// Password checks cost 19 MiB and ~30 ms of a core each (argon2id): at most the Service's
// hash concurrency (VMRESTORE_LOGIN_CONCURRENCY; DefaultHashConcurrency by default) run at
// once in a process, and a check that cannot start within HashQueueWait is refused with
// Retry-After, so that no burst of requests can take more than that many times 19 MiB.
const (
	DefaultHashConcurrency = 4
	HashQueueWait          = time.Second
)

// Throttled is a refused login (or password check) that must wait: the account or address
// is backing off, or the process is checking as many passwords as it may.
type Throttled struct {
	*zstack.ErrorCode
	RetryAfter time.Duration
}

func (t *Throttled) Unwrap() error { return t.ErrorCode }

// RetryAfterSeconds is the Retry-After header's value: whole seconds, at least 1.
func (t *Throttled) RetryAfterSeconds() int {
	return max(int((t.RetryAfter+time.Second-1)/time.Second), 1)
}

// Login attempt outcomes, as Observe receives them.
const (
	OutcomeSuccess   = "success"
	OutcomeFailure   = "failure"
	OutcomeThrottled = "throttled"
	OutcomeBusy      = "busy"
)

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
	// Observe, when set, is told the outcome of every login attempt and password check.
	Observe func(outcome string)
	// Hashing, when set, is told when a password hash starts (+1) and ends (-1).
	Hashing func(delta float64)
	// Now, when set, is the time sessions are timed by (tests age them with it); nil:
	// time.Now.
	Now   func() time.Time
	dummy string
	slots chan struct{} // one per password hash allowed to run at once
}

// New returns a Service with ZStack's defaults where ttl or max are zero, running at most
// hashes password hashes at once (DefaultHashConcurrency when zero).
func New(s *store.Store, ttl time.Duration, max, hashes int) *Service {
	if ttl <= 0 {
		ttl = DefaultSessionTTL
	}
	if max <= 0 {
		max = DefaultMaxSessions
	}
	if hashes <= 0 {
		hashes = DefaultHashConcurrency
	}
	dummy, _ := HashPassword(SHA512Hex("no account has this password"))
	return &Service{Store: s, SessionTTL: ttl, MaxSessions: max, dummy: dummy, slots: make(chan struct{}, hashes)}
}

func (s *Service) observe(outcome string) {
	if s.Observe != nil {
		s.Observe(outcome)
	}
}

// hashSlot waits (at most HashQueueWait) for one of the password hashing slots and returns
// its release; when none frees up in time the answer is a Throttled busy refusal.
func (s *Service) hashSlot(ctx context.Context) (func(), error) {
	t := time.NewTimer(HashQueueWait)
	defer t.Stop()
	select {
	case s.slots <- struct{}{}:
	case <-t.C:
		return nil, &Throttled{RetryAfter: time.Second, ErrorCode: zstack.Errorf(zstack.CodeAuthFailed,
			"the api is checking as many passwords as it may at once; retry in 1 s")}
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	if s.Hashing != nil {
		s.Hashing(1)
	}
	return func() {
		if s.Hashing != nil {
			s.Hashing(-1)
		}
		<-s.slots
	}, nil
}

// hash is HashPassword in a hashing slot.
func (s *Service) hash(ctx context.Context, sha512Hex string) (string, error) {
	release, err := s.hashSlot(ctx)
	if err != nil {
		return "", err
	}
	defer release()
	return HashPassword(sha512Hex)
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

// Verify checks an account name and SHA-512 hex password from a client address under the
// login limits, and returns the account when the password is right. The attempt is counted
// before the hash is computed, in one atomic step with the check of every limit, and the hash
// runs in one of the process's few hashing slots. Unknown names cost the same hash and count
// against the same limits as known ones, so neither answers nor timings tell which exist.
func (s *Service) Verify(ctx context.Context, name, sha512Hex, addr string) (*catalog.Account, error) {
	release, err := s.hashSlot(ctx)
	var busy *Throttled
	if errors.As(err, &busy) {
		s.observe(OutcomeBusy)
	}
	if err != nil {
		return nil, err
	}
	defer release()
	why, wait, err := s.Store.ReserveLoginAttempt(ctx, name, addr, Limits)
	if err != nil {
		return nil, err
	}
	if why != store.LoginAllowed {
		s.observe(OutcomeThrottled)
		return nil, throttled(why, wait)
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
		s.observe(OutcomeFailure)
		return nil, errBadLogin()
	}
	s.observe(OutcomeSuccess)
	if err := s.Store.LoginSucceeded(ctx, name, addr, Limits); err != nil {
		return nil, err
	}
	return a, nil
}

// throttled is the answer to an attempt the limits hold back.
func throttled(why int, wait time.Duration) *Throttled {
	t := &Throttled{RetryAfter: wait}
	whose := "from this address"
	switch why {
	case store.LoginByPair:
		whose = "for this account from this address"
	case store.LoginByName:
		whose = "for this account from addresses it has not logged in from lately"
	}
	t.ErrorCode = zstack.Errorf(zstack.CodeAuthFailed, "too many failed logins %s; retry in %d s", whose, t.RetryAfterSeconds())
	return t
}

// Login checks an account name and SHA-512 hex password, from a client address, under the
// login limits (see Verify), and opens a session.
func (s *Service) Login(ctx context.Context, name, sha512Hex, addr string) (*store.Session, error) {
	a, err := s.Verify(ctx, name, sha512Hex, addr)
	if err != nil {
		return nil, err
	}
	now := s.now()
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

// Session returns the live session of a token, or ID.1001. A session that has expired is
// gone like one that never existed, so the error does not claim to know which it was.
func (s *Service) Session(ctx context.Context, token string) (*store.Session, error) {
	if !zstack.IsUUID(token) {
		return nil, zstack.Errorf(zstack.CodeInvalidSession,
			"the session is not a session uuid (32 hex digits): log in (PUT /zstack/v1/accounts/login) and send Authorization: OAuth <the session's uuid>")
	}
	sess, err := s.Store.GetSession(ctx, token)
	expired := zstack.Errorf(zstack.CodeInvalidSession,
		"no such session: it never existed, was logged out, or has expired; log in again (PUT /zstack/v1/accounts/login)")
	if errors.Is(err, store.ErrNotFound) {
		return nil, expired
	}
	if err != nil {
		return nil, fmt.Errorf("read session: %w", err)
	}
	if s.now().After(sess.ExpiresAt) {
		return nil, expired
	}
	return sess, nil
}

func (s *Service) now() time.Time {
	if s.Now != nil {
		return s.Now()
	}
	return time.Now()
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
	h, err := s.hash(ctx, SHA512Hex(password))
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
	if a.PasswordHash, err = s.hash(ctx, SHA512Hex(password)); err != nil {
		return err
	}
	if err := s.Store.PutAccount(ctx, *a); err != nil {
		return err
	}
	return s.Store.RevokeSessions(ctx, a.UUID)
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
