package zstack_test

import (
	"strings"
	"testing"

	"github.com/vmrestore/vmrestore/internal/zstack"
)

func TestIsUUID(t *testing.T) {
	tests := []struct {
		in   string
		want bool
	}{
		{"1e48b41ec4b63660b38a72d271c0164b", true},
		{"00000000000000000000000000000000", true},
		{"ffffffffffffffffffffffffffffffff", true},
		{"0123456789abcdef0123456789abcdef", true},
		{"", false},
		{"1e48b41ec4b63660b38a72d271c0164", false},   // 31
		{"1e48b41ec4b63660b38a72d271c0164bb", false}, // 33
		{"1E48B41EC4B63660B38A72D271C0164B", false},  // upper case
		{"1e48b41e-c4b6-3660-b38a-72d271c0164b", false},
		{"1e48b41ec4b63660b38a72d271c0164g", false},
		{"1e48b41ec4b63660b38a72d271c0164 ", false},
		{" e48b41ec4b63660b38a72d271c0164b", false},
		{"1e48b41ec4b63660b38a72d271c016\x00b", false},
		{"1e48b41ec4b63660b38a72d271c01é", false}, // 32 bytes, not hex
	}
	for _, tc := range tests {
		if got := zstack.IsUUID(tc.in); got != tc.want {
			t.Errorf("IsUUID(%q) = %v, want %v", tc.in, got, tc.want)
		}
	}
}

func TestNewUUIDIsZStackFormAndUnique(t *testing.T) {
	seen := map[string]bool{}
	for i := 0; i < 2000; i++ {
		u := zstack.NewUUID()
		if !zstack.IsUUID(u) || strings.Contains(u, "-") {
			t.Fatalf("NewUUID() = %q is not 32 lowercase hex characters", u)
		}
		if seen[u] {
			t.Fatalf("NewUUID() repeated %s", u)
		}
		seen[u] = true
	}
}
