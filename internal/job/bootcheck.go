package job

import (
	"encoding/json"
	"fmt"
	"regexp"
	"strconv"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/vmrestore/vmrestore/internal/zstack"
)

// Boot check modes. A restore may ask the hypervisor to prove that the guest came up before
// the job succeeds.
const (
	// BootRunning passes when the hypervisor reports the domain running.
	BootRunning = "running"
	// BootGuestAgent passes when the QEMU guest agent answers guest-ping.
	BootGuestAgent = "guestAgent"
	// BootConsole passes when a line of the serial console matches Pattern.
	BootConsole = "console"
)

// Limits of a boot check.
const (
	DefaultBootCheckTimeout = 5 * time.Minute
	MaxBootCheckTimeout     = time.Hour
	MaxBootCheckPattern     = 1024
	// BootCheckTagPrefix starts the ZStack system tag bootCheck::<mode>::<timeout seconds>.
	BootCheckTagPrefix = "bootCheck::"
)

// BootCheck is how a restore proves that its VM booted. Its JSON form is
// {"mode": "running" | "guestAgent" | "console:<regex>", "timeout": <seconds>}, the same
// words as the system tag bootCheck::<mode>::<seconds>.
type BootCheck struct {
	Mode    string        // BootRunning, BootGuestAgent or BootConsole
	Pattern string        // the console regular expression (BootConsole)
	Timeout time.Duration // how long the guest has to pass
}

// Spec is the mode as written: "running", "guestAgent" or "console:<regex>".
func (b *BootCheck) Spec() string {
	if b.Mode == BootConsole {
		return BootConsole + ":" + b.Pattern
	}
	return b.Mode
}

// String describes the check for logs and errors.
func (b *BootCheck) String() string {
	return fmt.Sprintf("%s within %s", b.Spec(), b.Timeout)
}

// Regexp compiles the console pattern (validated when the check was parsed).
func (b *BootCheck) Regexp() *regexp.Regexp { return regexp.MustCompile(b.Pattern) }

// ParseBootCheck validates a mode as written and a timeout in seconds (0: the default).
func ParseBootCheck(mode string, timeoutSeconds int64) (*BootCheck, error) {
	b := &BootCheck{Timeout: DefaultBootCheckTimeout}
	switch {
	case mode == BootRunning || mode == BootGuestAgent:
		b.Mode = mode
	case strings.HasPrefix(mode, BootConsole+":"):
		b.Mode, b.Pattern = BootConsole, strings.TrimPrefix(mode, BootConsole+":")
		switch {
		case b.Pattern == "":
			return nil, fmt.Errorf("bootCheck mode %q has an empty pattern: write console:<regular expression>", mode)
		case len(b.Pattern) > MaxBootCheckPattern:
			return nil, fmt.Errorf("bootCheck console pattern is longer than %d characters", MaxBootCheckPattern)
		}
		if _, err := regexp.Compile(b.Pattern); err != nil {
			return nil, fmt.Errorf("bootCheck console pattern %q is not a valid regular expression: %v", b.Pattern, err)
		}
	default:
		return nil, fmt.Errorf("bootCheck mode %q must be running, guestAgent or console:<regular expression>", mode)
	}
	if timeoutSeconds < 0 || timeoutSeconds > int64(MaxBootCheckTimeout/time.Second) { // in seconds: a Duration overflows
		return nil, fmt.Errorf("bootCheck timeout %d must be between 1 and %d seconds", timeoutSeconds, int(MaxBootCheckTimeout/time.Second))
	}
	if timeoutSeconds > 0 {
		b.Timeout = time.Duration(timeoutSeconds) * time.Second
	}
	return b, nil
}

// ParseBootCheckTag parses the system tag bootCheck::<mode>::<timeout seconds>; the timeout
// may be left out (bootCheck::<mode>). A console pattern may itself contain "::": only a
// last segment of digits is taken as the timeout.
func ParseBootCheckTag(tag string) (*BootCheck, error) {
	rest, ok := strings.CutPrefix(tag, BootCheckTagPrefix)
	if !ok {
		return nil, fmt.Errorf("system tag[%s] is not a bootCheck tag", tag)
	}
	mode, timeout := rest, int64(0)
	if i := strings.LastIndex(rest, "::"); i >= 0 {
		if n, err := strconv.ParseInt(rest[i+2:], 10, 64); err == nil {
			mode, timeout = rest[:i], n
		}
	}
	b, err := ParseBootCheck(mode, timeout)
	if err != nil {
		return nil, fmt.Errorf("system tag[%s]: %v", tag, err)
	}
	return b, nil
}

type bootCheckJSON struct {
	Mode    string `json:"mode" yaml:"mode"`
	Timeout int64  `json:"timeout,omitempty" yaml:"timeout,omitempty"`
}

// MarshalJSON writes {"mode": ..., "timeout": seconds}.
func (b BootCheck) MarshalJSON() ([]byte, error) {
	return json.Marshal(bootCheckJSON{Mode: b.Spec(), Timeout: int64(b.Timeout / time.Second)})
}

// UnmarshalJSON reads and validates {"mode": ..., "timeout": seconds}.
func (b *BootCheck) UnmarshalJSON(data []byte) error {
	var j bootCheckJSON
	if err := json.Unmarshal(data, &j); err != nil {
		return fmt.Errorf("bootCheck must be {\"mode\": \"running|guestAgent|console:<regex>\", \"timeout\": <seconds>}: %v", err)
	}
	parsed, err := ParseBootCheck(j.Mode, j.Timeout)
	if err != nil {
		return err
	}
	*b = *parsed
	return nil
}

// UnmarshalYAML reads and validates the same shape from a plan file.
func (b *BootCheck) UnmarshalYAML(value *yaml.Node) error {
	var j bootCheckJSON
	if err := value.Decode(&j); err != nil {
		return fmt.Errorf("bootCheck must be {mode: running|guestAgent|console:<regex>, timeout: <seconds>}: %v", err)
	}
	parsed, err := ParseBootCheck(j.Mode, j.Timeout)
	if err != nil {
		return err
	}
	*b = *parsed
	return nil
}

// checkBootCheck applies the request-level rule: a boot check needs a guest that starts.
func checkBootCheck(r *Request) *zstack.ErrorCode {
	if r.BootCheck != nil && r.Strategy != zstack.StrategyInstantStart {
		return argerr("bootCheck[%s] needs strategy InstantStart, not %s: a VM that is not started cannot boot", r.BootCheck.Spec(), r.Strategy)
	}
	return nil
}
