package client

import (
	"context"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/vmrestore/vmrestore/internal/apiv1"
	"github.com/vmrestore/vmrestore/internal/zstack"
)

// CleanupPlan asks for a plan's cleanup (the plan is cancelled if it runs; every VM it
// created is destroyed and expunged); GetPlan shows it as it goes.
func (c *Client) CleanupPlan(ctx context.Context, uuid string) (*apiv1.PlanCleanup, error) {
	out := &apiv1.PlanCleanup{}
	if _, err := c.Do(ctx, http.MethodPost, "/api/v1/plans/"+url.PathEscape(uuid)+"/cleanup", nil, nil, out); err != nil {
		return nil, err
	}
	return out, nil
}

// VM life-cycle operations, as restorectl names them, and the ZStack action key of each
// (destroy is a DELETE of the VM).
var vmActionKeys = map[string]string{
	"expunge": "expungeVmInstance", "recover": "recoverVmInstance", "stop": "stopVmInstance",
	"start": "startVmInstance", "reboot": "rebootVmInstance",
}

// VMOperation is one life-cycle call: Op is destroy, expunge, recover, stop, start or
// reboot; Params are the action's parameters (stop: type; start: hostUuid; destroy:
// deleteMode).
type VMOperation struct {
	VMUUID string
	Op     string
	Params map[string]string
}

// RunVMOperation sends a life-cycle call through the ZStack routes, as ZStack's SDK does, and
// polls its job until it ends; accepted is called with the job's uuid once the call is
// queued. It returns the VM's inventory (nil for destroy and expunge, which answer none).
func (c *Client) RunVMOperation(ctx context.Context, op VMOperation, accepted func(jobUUID string)) (*zstack.VmInstanceInventory, error) {
	path := "/zstack/v1/vm-instances/" + url.PathEscape(op.VMUUID)
	var q url.Values
	var body any
	method := http.MethodDelete
	if op.Op == "destroy" {
		if m := op.Params["deleteMode"]; m != "" {
			q = url.Values{"deleteMode": {m}}
		}
	} else {
		key, ok := vmActionKeys[op.Op]
		if !ok {
			return nil, &APIError{Method: http.MethodPut, URL: path, Status: http.StatusBadRequest, Text: "unknown VM operation " + op.Op}
		}
		params := map[string]string{}
		for k, v := range op.Params {
			params[k] = v
		}
		method, path, body = http.MethodPut, path+"/actions", map[string]any{key: params}
	}
	var async zstack.AsyncAnswer
	if _, err := c.Do(ctx, method, path, q, body, &async); err != nil {
		return nil, err
	}
	i := strings.LastIndex(async.Location, "/zstack/v1/api-jobs/")
	if i < 0 {
		return nil, &APIError{Method: method, URL: path, Status: http.StatusAccepted, Text: "the answer has no poll location"}
	}
	jobPath := async.Location[i:]
	if accepted != nil {
		accepted(jobPath[strings.LastIndex(jobPath, "/")+1:])
	}
	for {
		var out struct {
			Inventory *zstack.VmInstanceInventory `json:"inventory"`
		}
		status, err := c.Do(ctx, http.MethodGet, jobPath, nil, nil, &out)
		if err != nil {
			return nil, err
		}
		if status != http.StatusAccepted {
			return out.Inventory, nil
		}
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(300 * time.Millisecond):
		}
	}
}
