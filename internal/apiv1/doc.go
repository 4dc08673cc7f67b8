// Package apiv1 holds the types vmrestore's native API sends and takes under /api/v1: a
// restore plan as the operator writes it, a plan's progress and its dry run, a restore job,
// the synchronous restore, and accounts. The server (internal/httpapi) answers with them and
// the client (internal/client, restorectl) reads them, so both agree by construction; the
// OpenAPI document (openapi.yaml, embedded here as OpenAPI) describes the same JSON, and the tests
// check every exchange against it (internal/openapitest).
//
// The package holds data and its JSON form only: no Redis, queue or pipeline. It imports
// zstack for what /api/v1 shares with ZStack's API (ErrorCode, the CreateVmFromVmBackup
// body, the VM inventory), and job for BootCheck, whose JSON form is its parser: a boot
// check is validated where it is decoded, by the same rules for a plan and for a system tag.
// JSON field names are the API: never rename one.
package apiv1

import _ "embed"

// OpenAPI is the native API's OpenAPI 3 document, served at /api/v1/openapi.yaml.
//
//go:embed openapi.yaml
var OpenAPI []byte
