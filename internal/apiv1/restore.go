package apiv1

import "github.com/vmrestore/vmrestore/internal/zstack"

// RestoreRequest is the body of POST /api/v1/restores: ZStack's CreateVmFromVmBackup body,
// with the group in groupUuid (or params.groupUuid) instead of the path. Its 200 answer is
// ZStack's {"inventory": VmInstanceInventory}, its errors zstack.ErrorAnswer.
type RestoreRequest = zstack.CreateVmFromVmBackupRequest

// RestoreAccepted is the 202 of POST /api/v1/restores when the wait ends first: ZStack's
// poll location, and the job to follow with GET /api/v1/jobs/{uuid}.
type RestoreAccepted struct {
	zstack.AsyncAnswer
	JobUUID string `json:"jobUuid"`
}
