package job_test

import (
	"strings"
	"testing"

	"github.com/vmrestore/vmrestore/internal/job"
	"github.com/vmrestore/vmrestore/internal/zstack"
)

// TestInstantRequest: the system tag instantRestore::true and the native "instant": true
// ask for an instant restore; false, or neither, do not; a strategy that does not start the
// VM is refused with one; a malformed tag is refused by name.
func TestInstantRequest(t *testing.T) {
	for _, tt := range []struct {
		name    string
		edit    func(*zstack.CreateVmFromVmBackupRequest)
		instant bool
		refusal string
	}{
		{"none", func(*zstack.CreateVmFromVmBackupRequest) {}, false, ""},
		{"tag", func(b *zstack.CreateVmFromVmBackupRequest) { b.SystemTags = []string{"instantRestore::true"} }, true, ""},
		{"tag false", func(b *zstack.CreateVmFromVmBackupRequest) { b.SystemTags = []string{"instantRestore::false"} }, false, ""},
		{"native", func(b *zstack.CreateVmFromVmBackupRequest) { b.Instant = true }, true, ""},
		{"native and tag false", func(b *zstack.CreateVmFromVmBackupRequest) {
			b.Instant, b.SystemTags = true, []string{"instantRestore::false"}
		}, true, ""},
		{"bad value", func(b *zstack.CreateVmFromVmBackupRequest) { b.SystemTags = []string{"instantRestore::yes"} }, false, "instantRestore::true or instantRestore::false"},
		{"stopped", func(b *zstack.CreateVmFromVmBackupRequest) {
			b.Instant, b.Params.Strategy = true, zstack.StrategyCreateStopped
		}, false, "strategy must be InstantStart"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			body := baseBody()
			tt.edit(body)
			r, ec := job.FromZStack(group, body)
			if tt.refusal != "" {
				if ec == nil || ec.Code != zstack.CodeInvalidArgument || !strings.Contains(ec.Root().Details, tt.refusal) {
					t.Fatalf("want a refusal saying %q, got %v", tt.refusal, ec)
				}
				return
			}
			if ec != nil {
				t.Fatal(ec)
			}
			if r.Instant != tt.instant {
				t.Fatalf("instant %v, want %v", r.Instant, tt.instant)
			}
		})
	}
}

// FuzzParseInstantTag: any tag is read as true, false, or refused; only the two exact tags
// are accepted.
func FuzzParseInstantTag(f *testing.F) {
	for _, s := range []string{"instantRestore::true", "instantRestore::false", "instantRestore::", "instantRestore::TRUE", "instantRestore::true::x", "x"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, tag string) {
		v, err := job.ParseInstantTag(tag)
		switch {
		case err != nil && (tag == "instantRestore::true" || tag == "instantRestore::false"):
			t.Fatalf("%q refused: %v", tag, err)
		case err == nil && v != (tag == "instantRestore::true"):
			t.Fatalf("%q read as %v", tag, v)
		case err == nil && tag != "instantRestore::true" && tag != "instantRestore::false":
			t.Fatalf("%q accepted", tag)
		case err != nil && len(err.Error()) > 300:
			t.Fatalf("error too long for a tag of %d bytes: %d", len(tag), len(err.Error()))
		}
	})
}
