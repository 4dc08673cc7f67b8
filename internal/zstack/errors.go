package zstack

import (
	"errors"
	"fmt"
	"unicode/utf8"
)

// Error codes used by vmrestore, with ZStack's meanings.
const (
	CodeInternal        = "SYS.1000"
	CodeTimeout         = "SYS.1001"
	CodeNotFound        = "SYS.1003"
	CodeOperation       = "SYS.1006"
	CodeInvalidArgument = "SYS.1007"
	CodeCancelled       = "SYS.1017"

	CodeAuthFailed      = "ID.1000"
	CodeInvalidSession  = "ID.1001"
	CodePermission      = "ID.1002"
	CodeTooManySessions = "ID.1006"
	CodeHostAllocation  = "HOST_ALLOCATION.1000"
	CodePrimaryStorage  = "PS.1000"
	CodeIPAllocation    = "L3.1000"
	CodeMACAllocation   = "VM.1009"
	CodeBackupStorage   = "BS.1000"
	CodeVolumeBackup    = "VOL_BACKUP.1000"
	// VmErrors of ZStack's VM life cycle.
	CodeVMStart          = "VM.1001"
	CodeVMStop           = "VM.1002"
	CodeVMReboot         = "VM.1003"
	CodeVMDestroy        = "VM.1004"
	CodeVMWrongState     = "VM.1010"
	maxDetailsLen        = 4096
	detailsEllipsis      = "..."
	descriptionUnknownFn = "An error occurred"
)

var descriptions = map[string]string{
	CodeInternal:        "An internal error happened in system",
	CodeTimeout:         "Operation timeout",
	CodeNotFound:        "Resource not found",
	CodeOperation:       "An operation failed",
	CodeInvalidArgument: "One or more API argument is invalid",
	CodeCancelled:       "The operation is cancelled",
	CodeAuthFailed:      "Authentication failed, wrong account name or password",
	CodeInvalidSession:  "The session is invalid, either wrong session id or the session has been expired",
	CodePermission:      "Permission denied",
	CodeTooManySessions: "Too many sessions",
	CodeHostAllocation:  "No available host",
	CodePrimaryStorage:  "Primary storage allocation failed",
	CodeIPAllocation:    "IP allocation failed",
	CodeMACAllocation:   "MAC allocation failed",
	CodeBackupStorage:   "Backup storage error",
	CodeVolumeBackup:    "Volume backup error",
	CodeVMStart:         "Failed to start vm",
	CodeVMStop:          "Failed to stop vm",
	CodeVMReboot:        "Failed to reboot vm",
	CodeVMDestroy:       "Failed to destroy vm",
	CodeVMWrongState:    "Vm is not in correct state",
}

// Description returns ZStack's short description for a code.
func Description(code string) string {
	if d, ok := descriptions[code]; ok {
		return d
	}
	return descriptionUnknownFn
}

// ErrorCode is ZStack's error object. It is the one error type vmrestore hands to clients:
// the HTTP layer writes it as {"error": ErrorCode}, the worker stores it in the job record.
type ErrorCode struct {
	Code        string         `json:"code"`
	Description string         `json:"description"`
	Details     string         `json:"details"`
	Elaboration *string        `json:"elaboration"`
	Opaque      map[string]any `json:"opaque"`
	Cause       *ErrorCode     `json:"cause"`
}

// Error makes ErrorCode an error; the text names the code and the details of every cause.
func (e *ErrorCode) Error() string {
	s := e.Code + ": " + e.Details
	if e.Cause != nil {
		s += " (cause: " + e.Cause.Error() + ")"
	}
	return s
}

// Errorf builds an ErrorCode with ZStack's description for the code and formatted details
// (cut to the 4096 characters ZStack allows).
func Errorf(code, format string, args ...any) *ErrorCode {
	details := fmt.Sprintf(format, args...)
	if len(details) > maxDetailsLen {
		// Cut on a character boundary: at most 4096 bytes, so at most 4096 characters too.
		cut := maxDetailsLen - len(detailsEllipsis)
		for cut > 0 && !utf8.RuneStart(details[cut]) {
			cut--
		}
		details = details[:cut] + detailsEllipsis
	}
	return &ErrorCode{Code: code, Description: Description(code), Details: details}
}

// Wrap puts cause inside an outer error, the way ZStack wraps a specific failure in SYS.1006.
// The outer details repeat the cause's so that a client reading only the outer error still
// learns what happened.
func Wrap(outer string, cause *ErrorCode) *ErrorCode {
	e := Errorf(outer, "%s", cause.Details)
	e.Cause = cause
	return e
}

// Operation wraps a specific failure in SYS.1006, ZStack's usual outer error.
func Operation(cause *ErrorCode) *ErrorCode { return Wrap(CodeOperation, cause) }

// InvalidArgument is SYS.1007 with the given details.
func InvalidArgument(format string, args ...any) *ErrorCode {
	return Errorf(CodeInvalidArgument, format, args...)
}

// AsErrorCode finds an ErrorCode in err's chain.
func AsErrorCode(err error) (*ErrorCode, bool) {
	var e *ErrorCode
	if errors.As(err, &e) {
		return e, true
	}
	return nil, false
}

// Root returns the innermost cause.
func (e *ErrorCode) Root() *ErrorCode {
	for e.Cause != nil {
		e = e.Cause
	}
	return e
}
