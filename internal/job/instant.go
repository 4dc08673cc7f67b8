package job

import (
	"fmt"
	"strings"
	"time"

	"github.com/vmrestore/vmrestore/internal/overlay"
	"github.com/vmrestore/vmrestore/internal/zstack"
)

// InstantTagPrefix starts the ZStack system tag instantRestore::true|false.
const InstantTagPrefix = "instantRestore::"

// ParseInstantTag reads the system tag instantRestore::true or instantRestore::false.
func ParseInstantTag(tag string) (bool, error) {
	v, ok := strings.CutPrefix(tag, InstantTagPrefix)
	if !ok {
		return false, fmt.Errorf("system tag[%q] is not an %s<true|false> tag", shortTag(tag), InstantTagPrefix)
	}
	switch v {
	case "true":
		return true, nil
	case "false":
		return false, nil
	}
	return false, fmt.Errorf("system tag[%q] must be instantRestore::true or instantRestore::false", shortTag(tag))
}

// shortTag is at most the first 32 bytes of a tag, for an error: quoted, a byte can take 4
// characters, and an error stays short whatever the tag.
func shortTag(tag string) string {
	if len(tag) > 32 {
		return tag[:32] + "…"
	}
	return tag
}

// checkInstant: an instant restore runs its VM, so it is an InstantStart restore.
func checkInstant(r *Request) *zstack.ErrorCode {
	if r.Instant && r.Strategy != zstack.StrategyInstantStart {
		return argerr("an instant restore (instantRestore::true) runs the VM from its backup at once, so its strategy must be %s, not %s",
			zstack.StrategyInstantStart, r.Strategy)
	}
	return nil
}

// The course of an instant restore (Record.Instant.State).
const (
	// InstantRunning: the VM runs from overlays over its backups; the data is being pulled.
	InstantRunning = "Running"
	// InstantHydrated: every overlay holds all its data and stands alone.
	InstantHydrated = "Hydrated"
	// InstantFailed: the hydration failed (the job failed with it).
	InstantFailed = "Failed"
)

// Instant is the course of an instant restore: when its VM ran and when its volumes were
// hydrated.
type Instant struct {
	State      string    `json:"state"`
	RunningAt  time.Time `json:"runningAt,omitzero"`
	HydratedAt time.Time `json:"hydratedAt,omitzero"`
}

// Backing is the backup an instant restore's overlay runs over, and the backup file's
// identity when the overlay was made: the hydrate stage checks it before and after the copy.
type Backing struct {
	Path     string           `json:"path"`
	Format   string           `json:"format"`
	Identity overlay.Identity `json:"identity"`
}
