package zstack

import (
	"strings"

	"github.com/google/uuid"
)

// NewUUID returns a random UUID in ZStack's form: 32 lowercase hex characters, no dashes.
func NewUUID() string {
	return strings.ReplaceAll(uuid.NewString(), "-", "")
}

// IsUUID reports whether s is a UUID in ZStack's form (32 lowercase hex characters).
func IsUUID(s string) bool {
	if len(s) != 32 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if (c < '0' || c > '9') && (c < 'a' || c > 'f') {
			return false
		}
	}
	return true
}
