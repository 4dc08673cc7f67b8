package job_test

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/vmrestore/vmrestore/internal/job"
	"github.com/vmrestore/vmrestore/internal/zstack"
)

func TestBootCheckTag(t *testing.T) {
	tests := []struct {
		tag, mode, pattern string
		timeout            time.Duration
	}{
		{"bootCheck::running", job.BootRunning, "", job.DefaultBootCheckTimeout},
		{"bootCheck::running::30", job.BootRunning, "", 30 * time.Second},
		{"bootCheck::guestAgent::600", job.BootGuestAgent, "", 10 * time.Minute},
		{"bootCheck::console:login: $::120", job.BootConsole, "login: $", 2 * time.Minute},
		// A pattern with "::" in it: only a last segment of digits is the timeout.
		{"bootCheck::console:a::b", job.BootConsole, "a::b", job.DefaultBootCheckTimeout},
		{"bootCheck::console:a::b::7", job.BootConsole, "a::b", 7 * time.Second},
	}
	for _, tt := range tests {
		b, err := job.ParseBootCheckTag(tt.tag)
		if err != nil {
			t.Fatalf("%s: %v", tt.tag, err)
		}
		if b.Mode != tt.mode || b.Pattern != tt.pattern || b.Timeout != tt.timeout {
			t.Fatalf("%s: got %+v", tt.tag, b)
		}
	}
	for _, bad := range []string{
		"bootCheck::", "bootCheck::sshd", "bootCheck::console:", "bootCheck::console:(::10",
		"bootCheck::running::-1", "bootCheck::running::3601", "bootCheck::console:" + strings.Repeat("x", 1025),
	} {
		if _, err := job.ParseBootCheckTag(bad); err == nil {
			t.Fatalf("%q accepted", bad)
		}
	}
}

func TestBootCheckJSONRoundTrip(t *testing.T) {
	var b job.BootCheck
	if err := json.Unmarshal([]byte(`{"mode":"console:ready","timeout":90}`), &b); err != nil {
		t.Fatal(err)
	}
	if b.Mode != job.BootConsole || b.Pattern != "ready" || b.Timeout != 90*time.Second {
		t.Fatalf("%+v", b)
	}
	out, _ := json.Marshal(b)
	if string(out) != `{"mode":"console:ready","timeout":90}` {
		t.Fatalf("%s", out)
	}
	if err := json.Unmarshal([]byte(`{"mode":"console:["}`), &b); err == nil {
		t.Fatal("an invalid pattern was accepted")
	}
}

func TestFromZStackBootCheck(t *testing.T) {
	b := baseBody()
	b.SystemTags = []string{"bootCheck::console:ready::60"}
	r := accept(t, b)
	if r.BootCheck == nil || r.BootCheck.Spec() != "console:ready" || r.BootCheck.Timeout != time.Minute {
		t.Fatalf("bootCheck %+v", r.BootCheck)
	}

	for name, mod := range map[string]func(*zstack.CreateVmFromVmBackupRequest){
		"two tags": func(b *zstack.CreateVmFromVmBackupRequest) {
			b.SystemTags = []string{"bootCheck::running", "bootCheck::running"}
		},
		"bad mode": func(b *zstack.CreateVmFromVmBackupRequest) { b.SystemTags = []string{"bootCheck::ping"} },
		"stopped strategy": func(b *zstack.CreateVmFromVmBackupRequest) {
			b.SystemTags = []string{"bootCheck::running"}
			b.Params.Strategy = "CreateStopped"
		},
	} {
		b := baseBody()
		mod(b)
		if _, ec := job.FromZStack(group, b); ec == nil || ec.Code != zstack.CodeInvalidArgument {
			t.Fatalf("%s: got %v", name, ec)
		}
	}
}

// FuzzParseBootCheckTag: any tag either parses into a valid check whose JSON round-trips, or
// is refused with an error; it never panics.
func FuzzParseBootCheckTag(f *testing.F) {
	for _, s := range []string{"bootCheck::running", "bootCheck::guestAgent::60", "bootCheck::console:login: $::120",
		"bootCheck::console:a::b::7", "bootCheck::console:(", "bootCheck::::::", "bootCheck::running::99999999999999999999"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, tag string) {
		b, err := job.ParseBootCheckTag(tag)
		if err != nil {
			return
		}
		if b.Timeout <= 0 || b.Timeout > job.MaxBootCheckTimeout {
			t.Fatalf("%q: timeout %s", tag, b.Timeout)
		}
		out, err := json.Marshal(b)
		if err != nil {
			t.Fatal(err)
		}
		var back job.BootCheck
		if err := json.Unmarshal(out, &back); err != nil || back != *b {
			t.Fatalf("%q: %s does not round-trip: %+v %v", tag, out, back, err)
		}
		_ = b.Regexp()
	})
}

func TestBootCheckYAML(t *testing.T) {
	var v struct {
		BootCheck *job.BootCheck `yaml:"bootCheck"`
	}
	if err := yaml.Unmarshal([]byte("bootCheck: {mode: 'console:login: $', timeout: 600}\n"), &v); err != nil {
		t.Fatal(err)
	}
	if v.BootCheck == nil || v.BootCheck.Pattern != "login: $" || v.BootCheck.Timeout != 10*time.Minute {
		t.Fatalf("%+v", v.BootCheck)
	}
	if err := yaml.Unmarshal([]byte("bootCheck: {mode: ping}\n"), &v); err == nil {
		t.Fatal("mode ping accepted")
	}
}
