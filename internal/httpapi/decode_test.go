package httpapi_test

import (
	"strings"
	"testing"

	"github.com/vmrestore/vmrestore/internal/httpapi"
	"github.com/vmrestore/vmrestore/internal/zstack"
)

const decodeL3 = "d50554f493153be78f6740e18e598046"

func TestDecodeCreateVMAccepts(t *testing.T) {
	full := `{"params":{"name":"web-01","instanceOfferingUuid":"f53ad9f147203b499dfbd93ce41b7a8e","backupStorageUuid":null,
		"cpuNum":4,"memorySize":8589934592,"reservedMemorySize":0,"l3NetworkUuids":["` + decodeL3 + `"],
		"vmNicParams":"[{\"l3NetworkUuid\":\"` + decodeL3 + `\"}]","type":"UserVm","zoneUuid":"z","clusterUuid":"c","hostUuid":"h",
		"primaryStorageUuidForRootVolume":"r","primaryStorageUuidForDataVolume":"d","description":"desc",
		"rootVolumeSystemTags":["a"],"dataVolumeSystemTags":["b"],"defaultL3NetworkUuid":"` + decodeL3 + `",
		"resourceUuid":"res","tagUuids":["t"],"strategy":"JustCreate"},
		"systemTags":["hostname::web"],"userTags":["u"]}`
	req, err := httpapi.DecodeCreateVM([]byte(full))
	if err != nil {
		t.Fatalf("DecodeCreateVM: %v", err)
	}
	p := req.Params
	if p.Name != "web-01" || *p.CPUNum != 4 || *p.MemorySize != 8589934592 || p.ReservedMemorySize == nil || *p.ReservedMemorySize != 0 ||
		p.VMNicParams != `[{"l3NetworkUuid":"`+decodeL3+`"}]` || p.Strategy != "JustCreate" || p.BackupStorageUUID != "" ||
		len(p.L3NetworkUUIDs) != 1 || p.ZoneUUID != "z" || p.TagUUIDs[0] != "t" || p.RootVolumeSystemTags[0] != "a" {
		t.Fatalf("params = %+v", p)
	}
	if len(req.SystemTags) != 1 || req.SystemTags[0] != "hostname::web" || req.UserTags[0] != "u" {
		t.Fatalf("tags = %v %v", req.SystemTags, req.UserTags)
	}

	tests := []struct {
		name  string
		body  string
		check func(t *testing.T, r *zstack.CreateVmFromVmBackupRequest)
	}{
		{"minimal", `{"params":{"name":"a"}}`, func(t *testing.T, r *zstack.CreateVmFromVmBackupRequest) {
			if r.Params.Name != "a" || r.Params.CPUNum != nil || r.Params.MemorySize != nil || r.SystemTags != nil {
				t.Fatalf("%+v", r)
			}
		}},
		{"empty params", `{"params":{}}`, func(t *testing.T, r *zstack.CreateVmFromVmBackupRequest) {
			if r.Params.Name != "" {
				t.Fatalf("%+v", r.Params)
			}
		}},
		{"unknown fields set to null are ignored", `{"params":{"name":"a","imageUuid":null,"foo": null },"session":null,"requestIp":null}`,
			func(t *testing.T, r *zstack.CreateVmFromVmBackupRequest) {
				if r.Params.Name != "a" {
					t.Fatalf("%+v", r.Params)
				}
			}},
		{"known fields set to null", `{"params":{"name":"a","cpuNum":null,"l3NetworkUuids":null},"systemTags":null,"userTags":null}`,
			func(t *testing.T, r *zstack.CreateVmFromVmBackupRequest) {
				if r.Params.CPUNum != nil || r.Params.L3NetworkUUIDs != nil {
					t.Fatalf("%+v", r.Params)
				}
			}},
		{"whitespace around the body", " \n\t{\"params\":{\"name\":\"a\"}}\n ", func(t *testing.T, r *zstack.CreateVmFromVmBackupRequest) {}},
		{"largest int64 memory", `{"params":{"name":"a","memorySize":9223372036854775807}}`, func(t *testing.T, r *zstack.CreateVmFromVmBackupRequest) {
			if *r.Params.MemorySize != 9223372036854775807 {
				t.Fatalf("memorySize %d", *r.Params.MemorySize)
			}
		}},
		{"negative numbers decode (validation is FromZStack's job)", `{"params":{"name":"a","cpuNum":-1}}`, func(t *testing.T, r *zstack.CreateVmFromVmBackupRequest) {
			if *r.Params.CPUNum != -1 {
				t.Fatalf("cpuNum %d", *r.Params.CPUNum)
			}
		}},
		{"unicode escapes", `{"params":{"name":"\u540d\u524d"}}`, func(t *testing.T, r *zstack.CreateVmFromVmBackupRequest) {
			if r.Params.Name != "名前" {
				t.Fatalf("name %q", r.Params.Name)
			}
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r, err := httpapi.DecodeCreateVM([]byte(tc.body))
			if err != nil {
				t.Fatalf("DecodeCreateVM(%s): %v", tc.body, err)
			}
			tc.check(t, r)
		})
	}
}

func TestDecodeCreateVMRejects(t *testing.T) {
	tests := []struct {
		name, body, want string
	}{
		{"empty body", ``, "the request body is empty; it must be a JSON object"},
		{"blank body", " \r\n\t", "the request body is empty"},
		{"not JSON", `name=web`, "the request body is not valid JSON: invalid character 'a' in literal null (expecting 'u') (at byte 2)"},
		{"single quotes", `{'params':{}}`, "the request body is not valid JSON"},
		{"trailing comma", `{"params":{"name":"a",}}`, "the request body is not valid JSON"},
		{"truncated", `{"params":{"name":"a"`, "the request body is truncated JSON"},
		{"unterminated string", `{"params":{"name":"a`, "the request body is truncated JSON"},
		{"second object", `{"params":{"name":"a"}} {"params":{}}`, "the request body has data after its JSON object"},
		{"trailing garbage", `{"params":{"name":"a"}} x`, "the request body has data after its JSON object"},
		{"trailing brace", `{"params":{"name":"a"}}}`, "the request body is not valid JSON"},
		{"trailing bracket", `{"params":{"name":"a"}}]`, "the request body is not valid JSON"},
		{"JSON null", `null`, `the request body must be a JSON object with "params"`},
		{"a list", `[{"params":{}}]`, "field[the body] must be an object, got array"},
		{"a string", `"params"`, "field[the body] must be an object, got string"},
		{"a number", `42`, "field[the body] must be an object, got number"},
		{"no params", `{}`, `the body has no "params" object`},
		{"params null", `{"params":null}`, `the body has no "params" object`},
		{"params a string", `{"params":"name=a"}`, "field[params] must be an object"},
		{"params a list", `{"params":[]}`, "field[params] must be an object"},
		{"params a number", `{"params":1}`, "field[params] must be an object"},
		{"unknown top-level field", `{"params":{"name":"a"},"systemTag":["x"]}`,
			"the body has unknown field(s) systemTag; see the API reference for the parameters of this call"},
		{"unknown top-level fields are listed sorted", `{"zeta":1,"params":{"name":"a"},"alpha":false}`, "the body has unknown field(s) alpha, zeta;"},
		{"unknown param", `{"params":{"name":"a","imageUuid":"x"}}`, "params has unknown field(s) imageUuid; see the API reference"},
		{"unknown params are listed sorted", `{"params":{"name":"a","vmNicParam":"[]","cpuNumber":4,"memory":"8G"}}`,
			"params has unknown field(s) cpuNumber, memory, vmNicParam;"},
		{"unknown param set to an empty value", `{"params":{"name":"a","x":""}}`, "params has unknown field(s) x;"},
		{"unknown param set to false", `{"params":{"name":"a","x":false}}`, "params has unknown field(s) x;"},
		{"case matters", `{"params":{"Name":"a"}}`, `params has field "Name"; parameter names are case-sensitive, did you mean "name"?`},
		{"camel case of a known field", `{"params":{"name":"a","l3NetworkUUIDs":["x"]}}`, `did you mean "l3NetworkUuids"?`},
		{"case variant even when null", `{"params":{"name":"a","cpuNum":4,"CPUNUM":null}}`, `did you mean "cpuNum"?`},
		{"name a number", `{"params":{"name":5}}`, "field[params.name] must be string, got number"},
		{"name a list", `{"params":{"name":["a"]}}`, "field[params.name] must be string, got array"},
		{"cpuNum a string", `{"params":{"name":"a","cpuNum":"4"}}`,
			"field[params.cpuNum] must be an integer between -9223372036854775808 and 9223372036854775807, got string"},
		{"cpuNum a fraction", `{"params":{"name":"a","cpuNum":1.5}}`, "field[params.cpuNum] must be an integer between"},
		{"cpuNum a bool", `{"params":{"name":"a","cpuNum":true}}`, "field[params.cpuNum] must be an integer between"},
		{"memorySize 1e30", `{"params":{"name":"a","memorySize":1e30}}`,
			"field[params.memorySize] must be an integer between -9223372036854775808 and 9223372036854775807, got number 1e30"},
		{"memorySize just past int64", `{"params":{"name":"a","memorySize":9223372036854775808}}`,
			"field[params.memorySize] must be an integer between -9223372036854775808 and 9223372036854775807, got number 9223372036854775808"},
		{"memorySize in exponent form", `{"params":{"name":"a","memorySize":8e9}}`, "field[params.memorySize] must be an integer"},
		{"memorySize with a unit", `{"params":{"name":"a","memorySize":"8GiB"}}`, "field[params.memorySize] must be an integer"},
		{"reservedMemorySize huge negative", `{"params":{"name":"a","reservedMemorySize":-1e30}}`, "field[params.reservedMemorySize] must be an integer"},
		{"l3NetworkUuids a string", `{"params":{"name":"a","l3NetworkUuids":"` + decodeL3 + `"}}`, "field[params.l3NetworkUuids] must be a list, got string"},
		{"l3NetworkUuids of numbers", `{"params":{"name":"a","l3NetworkUuids":[1]}}`, "field[params.l3NetworkUuids"},
		{"vmNicParams a list instead of a string", `{"params":{"name":"a","vmNicParams":[{"l3NetworkUuid":"x"}]}}`,
			"field[params.vmNicParams] must be string, got array"},
		{"systemTags a string", `{"params":{"name":"a"},"systemTags":"hostname::a"}`, "field[systemTags] must be a list, got string"},
		{"systemTags of objects", `{"params":{"name":"a"},"systemTags":[{}]}`, "field[systemTags"},
		{"userTags a number", `{"params":{"name":"a"},"userTags":3}`, "field[userTags] must be a list, got number"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r, err := httpapi.DecodeCreateVM([]byte(tc.body))
			if err == nil {
				t.Fatalf("DecodeCreateVM(%s) = %+v, want an error", tc.body, r)
			}
			if r != nil {
				t.Fatal("a request returned with an error")
			}
			e, ok := zstack.AsErrorCode(err)
			if !ok || e.Code != zstack.CodeInvalidArgument {
				t.Fatalf("error %v (%T) is not SYS.1007", err, err)
			}
			if !strings.Contains(e.Details, tc.want) {
				t.Fatalf("details %q\ndo not contain %q", e.Details, tc.want)
			}
		})
	}
}

func TestDecodeCreateVMIgnoredNullFieldDoesNotClearAKnownOne(t *testing.T) {
	tests := []struct {
		body  string
		check func(r *zstack.CreateVmFromVmBackupRequest) bool
	}{
		{`{"params":{"name":"a","cpuNum":4,"CPUNUM":null}}`, func(r *zstack.CreateVmFromVmBackupRequest) bool {
			return r.Params.CPUNum != nil && *r.Params.CPUNum == 4
		}},
		{`{"params":{"name":"a","l3NetworkUuids":["` + decodeL3 + `"],"L3NetworkUuids":null}}`, func(r *zstack.CreateVmFromVmBackupRequest) bool {
			return len(r.Params.L3NetworkUUIDs) == 1
		}},
	}
	for _, tc := range tests {
		r, err := httpapi.DecodeCreateVM([]byte(tc.body))
		if err == nil && !tc.check(r) {
			t.Errorf("%s: a field the decoder reports as ignored changed a known parameter: %+v", tc.body, r.Params)
		}
	}
}
