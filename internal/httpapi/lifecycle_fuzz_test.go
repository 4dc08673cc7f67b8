package httpapi_test

import (
	"testing"

	"github.com/vmrestore/vmrestore/internal/httpapi"
	"github.com/vmrestore/vmrestore/internal/job"
)

func FuzzDecodeVMAction(f *testing.F) {
	for _, s := range []string{
		``, `null`, `{}`, `[]`, `"x"`, `{"stopVmInstance":{}}`, `{"stopVmInstance":{"type":"cold"}}`,
		`{"stopVmInstance":{"type":1}}`, `{"stopVmInstance":"now"}`, `{"startVmInstance":{"hostUuid":"e18cf66eedb3306686a1d4685bbb63af"}}`,
		`{"rebootVmInstance":null,"systemTags":[]}`, `{"rebootVmInstance":{"hostUuid":"e18cf66eedb3306686a1d4685bbb63af"}}`,
		`{"expungeVmInstance":{"type":"cold"}}`, `{"expungeVmInstance":{},"recoverVmInstance":{}}`, `{"renameVm":{}}`,
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, body string) {
		op, err := httpapi.DecodeVMAction(fuzzGroup, []byte(body))
		if err != nil {
			if op != nil {
				t.Fatal("operation and error")
			}
			status, text, ok := httpapi.Refusal(err)
			if !ok || status != 400 || text == "" {
				t.Fatalf("error %v (%T) is not a 400 refusal", err, err)
			}
			return
		}
		switch op.Name {
		case job.OpExpunge, job.OpRecover, job.OpStop, job.OpStart, job.OpReboot:
		default:
			t.Fatalf("decoded an unknown operation %q", op.Name)
		}
		// Each action keeps only its own parameters (a reboot with a hostUuid once stopped
		// the VM before refusing the host).
		if (op.HostUUID != "" && op.Name != job.OpStart) || (op.StopType != "" && op.Name != job.OpStop) {
			t.Fatalf("%s kept another action's parameter: %+v", op.Name, op)
		}
		if ec := op.Validate(); ec != nil {
			mustInvalidArgument(t, ec)
		}
	})
}
