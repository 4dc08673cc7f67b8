// Package zstack is ZStack's wire vocabulary, as ZStack's own clients (its Java, Python and
// Go SDKs, Terraform) send and read it under /zstack/v1: every ZStack type that crosses the
// wire is here, and nothing here knows Redis, HTTP servers or the restore pipeline.
//
//   - errors.go: ErrorCode, the one error type vmrestore hands to clients, and ZStack's codes;
//   - envelopes.go: the answers' envelopes ({"error"}, the 202's location) and the login body;
//   - params.go: the CreateVmFromVmBackup body and its vmNicParams;
//   - inventory.go and catalog.go: the inventories (VM, NIC, volume, session; zone, cluster,
//     host, storages, L3 network, offering, volume backup, image, free IP);
//   - schema.go: the class names ZStack adds to an answer with X-JSON-Schema;
//   - tags.go, date.go, uuid.go, keys.go: system tags, ZStack's date format, uuids, and the
//     parameter names a near-miss is checked against.
//
// What stays elsewhere, and why: the q= query language is a parser (internal/query), not a
// type; decoding a CreateVmFromVmBackup body as ZStack's RestServer does (which fields it
// refuses, how top-level and params fields merge) is the HTTP server's (internal/httpapi);
// turning the body into a validated job request is the job's (internal/job.FromZStack).
// vmrestore's own API under /api/v1 has its types in internal/apiv1.
package zstack
