package zstack_test

import (
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/vmrestore/vmrestore/internal/zstack"
)

func TestDescriptionKnownAndUnknownCodes(t *testing.T) {
	tests := []struct {
		code string
		want string
	}{
		{zstack.CodeInternal, "An internal error happened in system"},
		{zstack.CodeTimeout, "Operation timeout"},
		{zstack.CodeNotFound, "Resource not found"},
		{zstack.CodeOperation, "An operation failed"},
		{zstack.CodeInvalidArgument, "One or more API argument is invalid"},
		{zstack.CodeCancelled, "The operation is cancelled"},
		{zstack.CodeAuthFailed, "Authentication failed, wrong account name or password"},
		{zstack.CodeHostAllocation, "No available host"},
		{zstack.CodeVolumeBackup, "Volume backup error"},
		{"NO.SUCH.CODE", "An error occurred"},
		{"", "An error occurred"},
	}
	for _, tc := range tests {
		t.Run(tc.code, func(t *testing.T) {
			if got := zstack.Description(tc.code); got != tc.want {
				t.Fatalf("Description(%q) = %q, want %q", tc.code, got, tc.want)
			}
		})
	}
}

func TestEveryContractCodeHasItsOwnDescription(t *testing.T) {
	codes := []string{
		zstack.CodeInternal, zstack.CodeTimeout, zstack.CodeNotFound, zstack.CodeOperation,
		zstack.CodeInvalidArgument, zstack.CodeCancelled, zstack.CodeAuthFailed, zstack.CodeInvalidSession,
		zstack.CodePermission, zstack.CodeTooManySessions, zstack.CodeHostAllocation, zstack.CodePrimaryStorage,
		zstack.CodeIPAllocation, zstack.CodeMACAllocation, zstack.CodeBackupStorage, zstack.CodeVolumeBackup,
	}
	wantCodes := []string{"SYS.1000", "SYS.1001", "SYS.1003", "SYS.1006", "SYS.1007", "SYS.1017",
		"ID.1000", "ID.1001", "ID.1002", "ID.1006", "HOST_ALLOCATION.1000", "PS.1000", "L3.1000",
		"VM.1009", "BS.1000", "VOL_BACKUP.1000"}
	for i, c := range codes {
		if c != wantCodes[i] {
			t.Errorf("code constant %d is %q, the contract says %q", i, c, wantCodes[i])
		}
		if d := zstack.Description(c); d == "" || d == "An error occurred" {
			t.Errorf("code %s has no specific description (%q)", c, d)
		}
	}
}

func TestErrorfFormatsAndTruncatesDetails(t *testing.T) {
	tests := []struct {
		name       string
		details    string
		wantLen    int
		wantSuffix string
	}{
		{"short", "no host found", len("no host found"), "found"},
		{"empty", "", 0, ""},
		{"exactly 4096", strings.Repeat("a", 4096), 4096, "aaa"},
		{"4097 is cut", strings.Repeat("a", 4097), 4096, "a..."},
		{"very long", strings.Repeat("b", 100000), 4096, "b..."},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			e := zstack.Errorf(zstack.CodeHostAllocation, "%s", tc.details)
			if e.Code != zstack.CodeHostAllocation || e.Description != "No available host" {
				t.Fatalf("code/description = %q/%q", e.Code, e.Description)
			}
			if len(e.Details) != tc.wantLen {
				t.Fatalf("len(details) = %d, want %d", len(e.Details), tc.wantLen)
			}
			if !strings.HasSuffix(e.Details, tc.wantSuffix) {
				t.Fatalf("details end %q, want suffix %q", e.Details[max(0, len(e.Details)-8):], tc.wantSuffix)
			}
			if e.Cause != nil || e.Elaboration != nil || e.Opaque != nil {
				t.Fatalf("a fresh error must not carry cause/elaboration/opaque: %+v", e)
			}
		})
	}
	e := zstack.Errorf(zstack.CodeIPAllocation, "IP[%s] is not available in l3[%d]", "10.0.0.5", 7)
	if e.Details != "IP[10.0.0.5] is not available in l3[7]" {
		t.Fatalf("details = %q", e.Details)
	}
}

func TestErrorfTruncationKeepsValidUTF8(t *testing.T) {
	for _, s := range []string{strings.Repeat("é", 3000), strings.Repeat("主机", 2000), "x" + strings.Repeat("€", 2000)} {
		e := zstack.Errorf(zstack.CodeOperation, "%s", s)
		if !utf8.ValidString(e.Details) {
			t.Fatalf("details of %d bytes truncated to invalid UTF-8 (ends %q)", len(s), e.Details[len(e.Details)-6:])
		}
		if len(e.Details) > 4096 || !strings.HasSuffix(e.Details, "...") {
			t.Fatalf("details len %d, suffix %q", len(e.Details), e.Details[len(e.Details)-3:])
		}
	}
}

func TestWrapAndOperation(t *testing.T) {
	cause := zstack.Errorf(zstack.CodeHostAllocation, "no host having cpu[4], memory[8589934592 bytes] found")
	w := zstack.Operation(cause)
	if w.Code != zstack.CodeOperation || w.Description != "An operation failed" {
		t.Fatalf("outer = %s/%s", w.Code, w.Description)
	}
	if w.Details != cause.Details {
		t.Fatalf("outer details %q must repeat the cause's %q", w.Details, cause.Details)
	}
	if w.Cause != cause {
		t.Fatal("outer does not point to the cause")
	}
	if w.Root() != cause || cause.Root() != cause {
		t.Fatal("Root must return the innermost cause")
	}
	want := "SYS.1006: no host having cpu[4], memory[8589934592 bytes] found (cause: HOST_ALLOCATION.1000: no host having cpu[4], memory[8589934592 bytes] found)"
	if w.Error() != want {
		t.Fatalf("Error() = %q\nwant      %q", w.Error(), want)
	}

	deep := zstack.Wrap(zstack.CodeTimeout, zstack.Wrap(zstack.CodeOperation, zstack.Errorf(zstack.CodeIPAllocation, "ip gone")))
	if deep.Root().Code != zstack.CodeIPAllocation || deep.Cause.Code != zstack.CodeOperation {
		t.Fatalf("chain = %s", deep.Error())
	}
	if strings.Count(deep.Error(), "(cause: ") != 2 {
		t.Fatalf("Error() should name every cause: %q", deep.Error())
	}
}

func TestInvalidArgumentIsSYS1007(t *testing.T) {
	e := zstack.InvalidArgument("field[%s] is bad", "name")
	if e.Code != "SYS.1007" || e.Details != "field[name] is bad" || e.Description != "One or more API argument is invalid" {
		t.Fatalf("got %+v", e)
	}
}

func TestAsErrorCode(t *testing.T) {
	base := zstack.Errorf(zstack.CodeNotFound, "No volume backups found with group uuid: %s", "abc")
	tests := []struct {
		name string
		err  error
		want *zstack.ErrorCode
	}{
		{"direct", base, base},
		{"wrapped once", fmt.Errorf("reading: %w", base), base},
		{"wrapped twice", fmt.Errorf("a: %w", fmt.Errorf("b: %w", base)), base},
		{"joined", errors.Join(errors.New("x"), base), base},
		{"plain", errors.New("plain"), nil},
		{"nil", nil, nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, ok := zstack.AsErrorCode(tc.err)
			if ok != (tc.want != nil) || got != tc.want {
				t.Fatalf("AsErrorCode = %v, %v; want %v", got, ok, tc.want)
			}
		})
	}
}

func TestErrorCodeJSONShape(t *testing.T) {
	e := zstack.Operation(zstack.Errorf(zstack.CodeHostAllocation, "no host"))
	b, err := json.Marshal(map[string]any{"error": e})
	if err != nil {
		t.Fatal(err)
	}
	var got map[string]map[string]any
	if err := json.Unmarshal(b, &got); err != nil {
		t.Fatal(err)
	}
	outer := got["error"]
	for _, k := range []string{"code", "description", "details", "elaboration", "opaque", "cause"} {
		if _, ok := outer[k]; !ok {
			t.Errorf("key %q missing from %s", k, b)
		}
	}
	if outer["code"] != "SYS.1006" || outer["elaboration"] != nil || outer["opaque"] != nil {
		t.Fatalf("outer = %v", outer)
	}
	cause, ok := outer["cause"].(map[string]any)
	if !ok || cause["code"] != "HOST_ALLOCATION.1000" || cause["details"] != "no host" || cause["cause"] != nil {
		t.Fatalf("cause = %v", outer["cause"])
	}
	// And back: the JSON form decodes into the same chain.
	var back struct{ Error zstack.ErrorCode }
	if err := json.Unmarshal(b, &back); err != nil {
		t.Fatal(err)
	}
	if back.Error.Error() != e.Error() {
		t.Fatalf("round trip: %q != %q", back.Error.Error(), e.Error())
	}
}
