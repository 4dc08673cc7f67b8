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
		// ZStack treats an absent or null body as a call with no parameters; its rules then refuse it.
		{"empty body", ``, func(t *testing.T, r *zstack.CreateVmFromVmBackupRequest) {}},
		{"blank body", " \r\n\t", func(t *testing.T, r *zstack.CreateVmFromVmBackupRequest) {}},
		{"JSON null", `null`, func(t *testing.T, r *zstack.CreateVmFromVmBackupRequest) {}},
		{"no params", `{}`, func(t *testing.T, r *zstack.CreateVmFromVmBackupRequest) {}},
		{"params null", `{"params":null}`, func(t *testing.T, r *zstack.CreateVmFromVmBackupRequest) {}},
		{"unknown fields set to null are ignored", `{"params":{"name":"a","imageUuid":null,"foo": null },"session":null,"requestIp":null}`,
			func(t *testing.T, r *zstack.CreateVmFromVmBackupRequest) {
				if r.Params.Name != "a" || len(r.Unknown) != 0 {
					t.Fatalf("%+v", r)
				}
			}},
		{"unknown fields are listed, sorted, and otherwise ignored", `{"zeta":1,"params":{"name":"a","imageUuid":"x","clustreUuid":"c"},"alpha":false}`,
			func(t *testing.T, r *zstack.CreateVmFromVmBackupRequest) {
				if strings.Join(r.Unknown, " ") != "alpha params.clustreUuid params.imageUuid zeta" || r.Params.ClusterUUID != "" {
					t.Fatalf("unknown %v, params %+v", r.Unknown, r.Params)
				}
			}},
		{"keys match case-sensitively, as gson's do", `{"params":{"Name":"a","l3NetworkUUIDs":["x"],"cpuNum":4,"CPUNUM":8}}`,
			func(t *testing.T, r *zstack.CreateVmFromVmBackupRequest) {
				if r.Params.Name != "" || r.Params.L3NetworkUUIDs != nil || *r.Params.CPUNum != 4 ||
					strings.Join(r.Unknown, " ") != "params.CPUNUM params.Name params.l3NetworkUUIDs" {
					t.Fatalf("unknown %v, params %+v", r.Unknown, r.Params)
				}
			}},
		{"known fields set to null", `{"params":{"name":"a","cpuNum":null,"l3NetworkUuids":null},"systemTags":null,"userTags":null}`,
			func(t *testing.T, r *zstack.CreateVmFromVmBackupRequest) {
				if r.Params.CPUNum != nil || r.Params.L3NetworkUUIDs != nil {
					t.Fatalf("%+v", r.Params)
				}
			}},
		{"the Java and Python SDKs' body: every field under params", `{"params":{"name":"a","groupUuid":"` + fuzzGroup + `",
			"systemTags":["hostname::a"],"userTags":["u"],"requestIp":"10.0.0.9","sessionId":"0123456789abcdef0123456789abcdef",
			"accessKeyId":null,"timeout":30000,"pollingInterval":1000}}`,
			func(t *testing.T, r *zstack.CreateVmFromVmBackupRequest) {
				if r.Params.GroupUUID != fuzzGroup || strings.Join(r.SystemTags, ",") != "hostname::a" || strings.Join(r.UserTags, ",") != "u" ||
					r.RequestIP != "10.0.0.9" || len(r.Unknown) != 0 {
					t.Fatalf("%+v", r)
				}
			}},
		{"the top level wins over params, as in ZStack's RestServer", `{"params":{"name":"a","systemTags":["hostname::p"],"userTags":["p"]},
			"systemTags":["hostname::t"],"requestIp":"10.0.0.1"}`,
			func(t *testing.T, r *zstack.CreateVmFromVmBackupRequest) {
				if strings.Join(r.SystemTags, ",") != "hostname::t" || strings.Join(r.UserTags, ",") != "p" || r.RequestIP != "10.0.0.1" {
					t.Fatalf("%+v", r)
				}
			}},
		{"the Go SDK's zeros decode as zeros (FromZStack reads them as unset)", `{"params":{"name":"a","cpuNum":0,"memorySize":0,"reservedMemorySize":0,"type":"","strategy":""}}`,
			func(t *testing.T, r *zstack.CreateVmFromVmBackupRequest) {
				if *r.Params.CPUNum != 0 || *r.Params.MemorySize != 0 || *r.Params.ReservedMemorySize != 0 {
					t.Fatalf("%+v", r.Params)
				}
			}},
		{"integers as gson reads them", `{"params":{"name":5,"cpuNum":"4","memorySize":8e9,"reservedMemorySize":1.0}}`,
			func(t *testing.T, r *zstack.CreateVmFromVmBackupRequest) {
				if r.Params.Name != "5" || *r.Params.CPUNum != 4 || *r.Params.MemorySize != 8e9 || *r.Params.ReservedMemorySize != 1 {
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
		{"diskAOs decode (FromZStack refuses a non-empty list)", `{"params":{"name":"a","diskAOs":[{"size":1}]}}`, func(t *testing.T, r *zstack.CreateVmFromVmBackupRequest) {
			if len(r.Params.DiskAOs) != 1 {
				t.Fatalf("%+v", r.Params)
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

// What ZStack's RestServer refuses before it queues a call is answered on the POST as
// plain text: a body that is not a JSON object, and values of the wrong JSON type.
func TestDecodeCreateVMRejects(t *testing.T) {
	tests := []struct {
		name, body, want string
	}{
		{"not JSON", `name=web`, "the request body is not valid JSON: invalid character 'a' in literal null (expecting 'u') (at byte 2)"},
		{"single quotes", `{'params':{}}`, "the request body is not valid JSON"},
		{"trailing comma", `{"params":{"name":"a",}}`, "the request body is not valid JSON"},
		{"truncated", `{"params":{"name":"a"`, "the request body is truncated JSON"},
		{"unterminated string", `{"params":{"name":"a`, "the request body is truncated JSON"},
		{"second object", `{"params":{"name":"a"}} {"params":{}}`, "the request body has data after its JSON object"},
		{"trailing garbage", `{"params":{"name":"a"}} x`, "the request body has data after its JSON object"},
		{"trailing brace", `{"params":{"name":"a"}}}`, "the request body is not valid JSON"},
		{"trailing bracket", `{"params":{"name":"a"}}]`, "the request body is not valid JSON"},
		{"a list", `[{"params":{}}]`, "the request body must be a JSON object like {\"params\": {...}}, got array"},
		{"a string", `"params"`, "the request body must be a JSON object like {\"params\": {...}}, got string"},
		{"a number", `42`, "got number"},
		{"params a string", `{"params":"name=a"}`, "field[params] must be an object, got string"},
		{"params a list", `{"params":[]}`, "field[params] must be an object, got array"},
		{"params a number", `{"params":1}`, "field[params] must be an object, got number"},
		{"name a list", `{"params":{"name":["a"]}}`, "field[params.name] must be a string, got array"},
		{"name a bool", `{"params":{"name":true}}`, "field[params.name] must be a string, got boolean"},
		{"cpuNum a word", `{"params":{"name":"a","cpuNum":"four"}}`,
			`field[params.cpuNum] must be an integer between -9223372036854775808 and 9223372036854775807, got string "four"`},
		{"cpuNum a fraction", `{"params":{"name":"a","cpuNum":1.5}}`, "field[params.cpuNum] must be an integer between"},
		{"cpuNum a bool", `{"params":{"name":"a","cpuNum":true}}`, "field[params.cpuNum] must be an integer between"},
		{"cpuNum an object", `{"params":{"name":"a","cpuNum":{}}}`, "field[params.cpuNum] must be an integer between"},
		{"memorySize 1e30", `{"params":{"name":"a","memorySize":1e30}}`,
			"field[params.memorySize] must be an integer between -9223372036854775808 and 9223372036854775807, got number 1e30"},
		{"memorySize just past int64", `{"params":{"name":"a","memorySize":9223372036854775808}}`,
			"field[params.memorySize] must be an integer between -9223372036854775808 and 9223372036854775807, got number 9223372036854775808"},
		{"memorySize with a unit", `{"params":{"name":"a","memorySize":"8GiB"}}`, "field[params.memorySize] must be an integer"},
		{"memorySize two numbers in a string", `{"params":{"name":"a","memorySize":"4 5"}}`, "field[params.memorySize] must be an integer"},
		{"reservedMemorySize huge negative", `{"params":{"name":"a","reservedMemorySize":-1e30}}`, "field[params.reservedMemorySize] must be an integer"},
		{"l3NetworkUuids a string", `{"params":{"name":"a","l3NetworkUuids":"` + decodeL3 + `"}}`, "field[params.l3NetworkUuids] must be a list, got string"},
		{"l3NetworkUuids of numbers", `{"params":{"name":"a","l3NetworkUuids":[1]}}`, "field[params.l3NetworkUuids][0] must be a string, got number"},
		{"l3NetworkUuids with null", `{"params":{"name":"a","l3NetworkUuids":[null]}}`, "field[params.l3NetworkUuids][0] must be a string, got null"},
		{"vmNicParams a list instead of a string", `{"params":{"name":"a","vmNicParams":[{"l3NetworkUuid":"x"}]}}`,
			"field[params.vmNicParams] must be a string, got array"},
		{"systemTags a string", `{"params":{"name":"a"},"systemTags":"hostname::a"}`, "field[systemTags] must be a list, got string"},
		{"systemTags of objects", `{"params":{"name":"a"},"systemTags":[{}]}`, "field[systemTags][0] must be a string, got object"},
		{"systemTags in params a string", `{"params":{"name":"a","systemTags":"x"}}`, "field[params.systemTags] must be a list, got string"},
		{"userTags a number", `{"params":{"name":"a"},"userTags":3}`, "field[userTags] must be a list, got number"},
		{"diskAOs an object", `{"params":{"name":"a","diskAOs":{}}}`, "field[params.diskAOs] must be a list, got object"},
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
			status, text, ok := httpapi.Refusal(err)
			if !ok || status != 400 {
				t.Fatalf("error %v (%T) is not a 400 refusal", err, err)
			}
			if !strings.Contains(text, tc.want) {
				t.Fatalf("text %q\ndo not contain %q", text, tc.want)
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
