package httpapi_test

import (
	"encoding/json"
	"slices"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/vmrestore/vmrestore/internal/httpapi"
	"github.com/vmrestore/vmrestore/internal/job"
	"github.com/vmrestore/vmrestore/internal/zstack"
)

const fuzzGroup = "6e0c3b6a1f2d4c5b8a9e7d6c5b4a3f21"

func FuzzDecodeCreateVM(f *testing.F) {
	l3b := "e61665a5a4264cf89a7851f29f6a9157"
	for _, s := range []string{
		``, `null`, `{}`, `[]`, `{"params":null}`, `{"params":{}}`,
		`{"params":{"name":"a","cpuNum":1,"memorySize":1,"l3NetworkUuids":["` + decodeL3 + `"]}}`,
		`{"params":{"name":"a","instanceOfferingUuid":"f53ad9f147203b499dfbd93ce41b7a8e","zoneUuid":"1e48b41ec4b63660b38a72d271c0164b","strategy":"JustCreate"}}`,
		`{"params":{"name":"a","cpuNum":2,"memorySize":1073741824,"l3NetworkUuids":["` + decodeL3 + `","` + l3b + `"],"vmNicParams":"[{\"l3NetworkUuid\":\"` + l3b + `\",\"isDefaultNic\":true,\"mac\":\"FA:16:3E:00:00:01\"}]"},"systemTags":["staticIp::` + decodeL3 + `::10.0.0.5","hostname::web"]}`,
		`{"params":{"name":"a","memorySize":1e30}}`,
		`{"params":{"name":"a","foo":1}}`,
		`{"params":{"name":"a"},"x":null}`,
		`{"instant":true,"params":{"name":"a","cpuNum":1,"memorySize":1,"l3NetworkUuids":["` + decodeL3 + `"]}}`,
		`{"instant":"yes","params":{"name":"a"}}`,
		`{"params":{"name":"a","cpuNum":1,"memorySize":1,"hostUuid":"e18cf66eedb3306686a1d4685bbb63af","reservedMemorySize":2}}`,
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, body string) {
		req, err := httpapi.DecodeCreateVM([]byte(body))
		if err != nil {
			if req != nil {
				t.Fatal("request and error")
			}
			// Refused on the POST, as ZStack's RestServer refuses it: a plain-text 400.
			status, text, ok := httpapi.Refusal(err)
			if !ok || status != 400 || text == "" || len(text) > 4096 {
				t.Fatalf("error %v (%T) is not a 400 refusal", err, err)
			}
			return
		}
		if strings.TrimSpace(body) != "" && !json.Valid([]byte(body)) {
			t.Fatalf("DecodeCreateVM accepted %q, which is not one JSON value", body)
		}
		r, ec := job.FromZStack(fuzzGroup, req)
		if ec != nil {
			if r != nil {
				t.Fatal("request and error")
			}
			mustInvalidArgument(t, ec)
			return
		}
		checkRequest(t, req, r)
	})
}

func mustInvalidArgument(t *testing.T, err error) {
	t.Helper()
	e, ok := zstack.AsErrorCode(err)
	if !ok {
		t.Fatalf("error %v is %T, not an ErrorCode", err, err)
	}
	if e.Code != zstack.CodeInvalidArgument || e.Description != zstack.Description(zstack.CodeInvalidArgument) {
		t.Fatalf("error code %s (%q), want SYS.1007", e.Code, e.Description)
	}
	if e.Details == "" || len(e.Details) > 4096 {
		t.Fatalf("details of %d bytes", len(e.Details))
	}
	if e.Cause != nil {
		t.Fatalf("an argument error carries a cause: %v", e)
	}
}

func checkRequest(t *testing.T, body *zstack.CreateVmFromVmBackupRequest, r *job.Request) {
	t.Helper()
	p := body.Params
	if r.GroupUUID != fuzzGroup || strings.TrimSpace(r.Name) == "" || utf8.RuneCountInString(r.Name) > 255 || strings.ContainsRune(r.Name, 0) {
		t.Fatalf("group %q name %q", r.GroupUUID, r.Name)
	}
	if r.Type != "UserVm" && r.Type != "ApplianceVm" {
		t.Fatalf("type %q", r.Type)
	}
	if r.Strategy != "InstantStart" && r.Strategy != "JustCreate" && r.Strategy != "CreateStopped" {
		t.Fatalf("strategy %q", r.Strategy)
	}
	if p.Strategy == "" && r.Strategy != "InstantStart" || p.Type == "" && r.Type != "UserVm" {
		t.Fatalf("defaults: strategy %q type %q", r.Strategy, r.Type)
	}
	if r.InstanceOfferingUUID == "" && (r.CPUNum < 1 || r.CPUNum > 1024 || r.MemorySize <= 0 || r.ReservedMemorySize > r.MemorySize) {
		t.Fatalf("cpu %d memory %d reserved %d without an offering", r.CPUNum, r.MemorySize, r.ReservedMemorySize)
	}
	if r.ReservedMemorySize < 0 {
		t.Fatalf("reserved %d", r.ReservedMemorySize)
	}
	if len(p.L3NetworkUUIDs) == 0 && r.ZoneUUID == "" && r.ClusterUUID == "" && r.HostUUID == "" {
		t.Fatal("no scope at all accepted")
	}
	for _, u := range []string{r.InstanceOfferingUUID, r.BackupStorageUUID, r.ZoneUUID, r.ClusterUUID, r.HostUUID,
		r.RootPrimaryStorage, r.DataPrimaryStorage, r.DefaultL3NetworkUUID, r.ResourceUUID} {
		if u != "" && !zstack.IsUUID(u) {
			t.Fatalf("uuid %q accepted", u)
		}
	}
	if len(r.NICs) != len(p.L3NetworkUUIDs) {
		t.Fatalf("%d NICs for %d L3 networks", len(r.NICs), len(p.L3NetworkUUIDs))
	}
	for i, n := range r.NICs {
		if n.L3NetworkUUID != p.L3NetworkUUIDs[i] || !zstack.IsUUID(n.L3NetworkUUID) {
			t.Fatalf("NIC %d on %q, want %q", i, n.L3NetworkUUID, p.L3NetworkUUIDs[i])
		}
		if !slices.Contains(zstack.DriverTypes, n.DriverType) || (n.State != "enable" && n.State != "disable") {
			t.Fatalf("NIC %d driver %q state %q", i, n.DriverType, n.State)
		}
		if n.Mac != "" {
			if m, err := zstack.NormalizeMac(n.Mac); err != nil || m != n.Mac {
				t.Fatalf("NIC %d mac %q", i, n.Mac)
			}
		}
	}
	switch {
	case len(p.L3NetworkUUIDs) == 0 && r.DefaultL3NetworkUUID != "":
		t.Fatalf("default L3 %q without L3 networks", r.DefaultL3NetworkUUID)
	case len(p.L3NetworkUUIDs) > 0 && !slices.Contains(p.L3NetworkUUIDs, r.DefaultL3NetworkUUID):
		t.Fatalf("default L3 %q not among %v", r.DefaultL3NetworkUUID, p.L3NetworkUUIDs)
	}
	for _, tag := range r.SystemTags {
		if tag == "" || len(tag) > 4096 || strings.ContainsRune(tag, 0) {
			t.Fatalf("system tag %q accepted", tag)
		}
	}
	if r.Hostname != "" && !slices.Contains(body.SystemTags, "hostname::"+r.Hostname) {
		t.Fatalf("hostname %q not from a tag", r.Hostname)
	}
	// The request is stored as JSON with the job.
	b, err := json.Marshal(r)
	if err != nil {
		t.Fatal(err)
	}
	var back job.Request
	if err := json.Unmarshal(b, &back); err != nil {
		t.Fatalf("stored request does not read back: %v", err)
	}
}
