package store

import (
	"context"
	"encoding/json"
	"errors"
	"time"

	"github.com/redis/go-redis/v9"
)

func keyVerifyClaim(bs, group string) string { return prefix + "verify:claim:" + bs + ":" + group }

// The two result hashes share a hash slot ({verify}): they are written in one transaction.
func keyVerifyResults() string { return prefix + "{verify}:results" }
func keyVerifyFailed() string  { return prefix + "{verify}:failed" }

// Verification is the last scheduled verification of a group on one backup storage.
type Verification struct {
	BackupStorageUUID string    `json:"backupStorageUuid"`
	GroupUUID         string    `json:"groupUuid"`
	At                time.Time `json:"at"`
	OK                bool      `json:"ok"`
	// Problem says what failed (the volume, its file and why).
	Problem string `json:"problem,omitempty"`
	// Worker names the process that verified it.
	Worker string `json:"worker"`
}

func verificationField(bs, group string) string { return bs + "/" + group }

// ClaimVerification gives holder the right to verify a group on a backup storage now:
// among every worker asking, exactly one gets it until it is released or ttl passes (a
// worker that died verifying).
func (s *Store) ClaimVerification(ctx context.Context, bs, group, holder string, ttl time.Duration) (bool, error) {
	return s.rdb.SetNX(ctx, keyVerifyClaim(bs, group), holder, ttl).Result()
}

// ReleaseVerification gives a claim back when holder still has it (its verification ended
// or stopped).
func (s *Store) ReleaseVerification(ctx context.Context, bs, group, holder string) error {
	return unlockScript.Run(ctx, s.rdb, []string{keyVerifyClaim(bs, group)}, holder).Err()
}

// SaveVerification records the result of a verification, replacing the previous one. A
// failure is also kept among the failures (VerificationFailures) until the group verifies
// again or leaves the index.
func (s *Store) SaveVerification(ctx context.Context, v Verification) error {
	b, err := json.Marshal(v)
	if err != nil {
		return err
	}
	field := verificationField(v.BackupStorageUUID, v.GroupUUID)
	pipe := s.rdb.TxPipeline()
	pipe.HSet(ctx, keyVerifyResults(), field, b)
	if v.OK {
		pipe.HDel(ctx, keyVerifyFailed(), field)
	} else {
		pipe.HSet(ctx, keyVerifyFailed(), field, b)
	}
	_, err = pipe.Exec(ctx)
	return err
}

// VerificationFailures returns the groups whose last verification failed.
func (s *Store) VerificationFailures(ctx context.Context) ([]Verification, error) {
	return s.verifications(ctx, keyVerifyFailed())
}

// KeepVerificationFailures drops the failures of groups that are not in indexed (keys
// "<backup storage uuid>/<group uuid>"): deleted groups are no longer reported.
func (s *Store) KeepVerificationFailures(ctx context.Context, indexed map[string]bool) error {
	fails, err := s.VerificationFailures(ctx)
	if err != nil {
		return err
	}
	var gone []string
	for _, f := range fails {
		if k := verificationField(f.BackupStorageUUID, f.GroupUUID); !indexed[k] {
			gone = append(gone, k)
		}
	}
	if len(gone) == 0 {
		return nil
	}
	return s.rdb.HDel(ctx, keyVerifyFailed(), gone...).Err()
}

// LastVerification returns the last result of a group on a storage; ok is false when it
// was never verified.
func (s *Store) LastVerification(ctx context.Context, bs, group string) (v Verification, ok bool, err error) {
	raw, err := s.rdb.HGet(ctx, keyVerifyResults(), verificationField(bs, group)).Result()
	if errors.Is(err, redis.Nil) {
		return v, false, nil
	}
	if err != nil {
		return v, false, err
	}
	return v, json.Unmarshal([]byte(raw), &v) == nil, nil
}

// Verifications returns the last result of every verified group and storage.
func (s *Store) Verifications(ctx context.Context) ([]Verification, error) {
	return s.verifications(ctx, keyVerifyResults())
}

func (s *Store) verifications(ctx context.Context, key string) ([]Verification, error) {
	m, err := s.rdb.HGetAll(ctx, key).Result()
	if err != nil {
		return nil, err
	}
	out := make([]Verification, 0, len(m))
	for _, raw := range m {
		var v Verification
		if json.Unmarshal([]byte(raw), &v) == nil {
			out = append(out, v)
		}
	}
	return out, nil
}

// ForgetVerifications removes the results of groups no longer on their storage.
func (s *Store) ForgetVerifications(ctx context.Context, vs []Verification) error {
	if len(vs) == 0 {
		return nil
	}
	fields := make([]string, len(vs))
	for i, v := range vs {
		fields[i] = verificationField(v.BackupStorageUUID, v.GroupUUID)
	}
	pipe := s.rdb.TxPipeline()
	pipe.HDel(ctx, keyVerifyResults(), fields...)
	pipe.HDel(ctx, keyVerifyFailed(), fields...)
	_, err := pipe.Exec(ctx)
	return err
}
