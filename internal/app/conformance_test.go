package app_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math"
	"os"
	"regexp"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/vmrestore/vmrestore/internal/auth"
	"github.com/vmrestore/vmrestore/internal/catalog"
	"github.com/vmrestore/vmrestore/internal/demosite"
)

// sdkSpec is testdata/zstack-sdk.json: the SDK classes' fields and JSON types, and the
// SourceClassMap entries of the server classes vmrestore names in its schemas.
type sdkSpec struct {
	SourceClassMap map[string]string            `json:"sourceClassMap"`
	Classes        map[string]map[string]string `json:"classes"`
}

// vmrestore's choices against the SDK classes. Additions are fields vmrestore writes beyond
// the SDK's (ZStack's clients ignore fields they do not know); each is documented in
// docs/api.md. neverWritten are the SDK's fields vmrestore has no value for: like ZStack's
// serializer it leaves them out rather than writing null.
var (
	sdkAdditions = map[string][]string{
		"org.zstack.sdk.VmNicInventory":            {"usedIpUuid", "ipVersion"},
		"org.zstack.sdk.SessionInventory":          {"userType"},
		"org.zstack.sdk.ClusterInventory":          {"architecture", "attachedL2NetworkUuids", "attachedPrimaryStorageUuids"},
		"org.zstack.sdk.HostInventory":             {"vmCount"},
		"org.zstack.sdk.PrimaryStorageInventory":   {"reservedCapacity", "volumeCount", "statusReason"},
		"org.zstack.sdk.BackupStorageInventory":    {"maxConcurrentClones", "bandwidthBytesPerSecond"},
		"org.zstack.sdk.L3NetworkInventory":        {"ipAllocatorStrategy", "totalIpCount", "usedIpCount"},
		"org.zstack.sdk.IpRangeInventory":          {"ipVersion"},
		"org.zstack.sdk.InstanceOfferingInventory": {"reservedMemorySize", "primaryStorageAllocatorStrategy"},
		"org.zstack.sdk.VolumeBackupInventory":     {"format", "actualSize", "deviceId", "vmName", "accountUuid"},
		"org.zstack.sdk.ImageInventory":            {"architecture"},
	}
	sdkNeverWritten = map[string][]string{
		"org.zstack.sdk.VmInstanceInventory": {"ip"},
		"org.zstack.sdk.UsedIpInventory":     {"usedFor", "ipInBinary"},
		"org.zstack.sdk.VolumeInventory": {"description", "diskOfferingUuid", "volumeQos", "lastDetachDate", "lastVmInstanceUuid",
			"protocol", "localVolumeCache"},
		"org.zstack.sdk.HostInventory": {"ipmiAddress", "ipmiUsername", "ipmiPort", "ipmiPowerStatus", "cpuStatus", "memoryStatus",
			"diskStatus", "nicStatus", "gpuStatus", "powerSupplyStatus", "fanStatus", "raidStatus", "temperatureStatus"},
		"org.zstack.sdk.PrimaryStorageInventory": {"totalPhysicalCapacity", "availablePhysicalCapacity", "systemUsedCapacity", "mountPath"},
		"org.zstack.sdk.L3NetworkInventory":      {"dnsDomain", "system", "enableIPAM", "networkServices", "hostRoute"},
		"org.zstack.sdk.IpRangeInventory":        {"description"},
		"org.zstack.sdk.VolumeBackupInventory":   {"description", "metadata", "encrypted", "keyLastOpDate"},
		"org.zstack.sdk.ImageInventory":          {"exportUrl", "exportMd5Sum", "actualSize", "md5Sum", "url"},
		"org.zstack.sdk.ImageBackupStorageRefInventory": {"imageUuid", "backupStorageUuid", "installPath", "status", "createDate",
			"lastOpDate"},
	}
	// sdkNeverAnswered are SDK classes no answer of the suite holds an object of: a restored
	// VM has no CD-ROM, and vmrestore holds no copy of an image.
	sdkNeverAnswered = map[string]bool{"org.zstack.sdk.VmCdRomInventory": true, "org.zstack.sdk.ImageBackupStorageRefInventory": true}
)

// sdkDate is Java's US default date-time form, which the SDK's gson reads.
var sdkDate = regexp.MustCompile(`^(Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Oct|Nov|Dec) [1-9][0-9]?, [0-9]{4} (1[0-2]|[1-9]):[0-5][0-9]:[0-5][0-9] (AM|PM)$`)

// conformance checks answers against the SDK classes and accumulates what it saw.
type conformance struct {
	t    *testing.T
	spec sdkSpec
	seen map[string]map[string]bool // SDK class → fields seen
}

func newConformance(t *testing.T) *conformance {
	b, err := os.ReadFile("testdata/zstack-sdk.json")
	mustf(t, err == nil, "%v", err)
	c := &conformance{t: t, seen: map[string]map[string]bool{}}
	mustf(t, json.Unmarshal(b, &c.spec) == nil, "testdata/zstack-sdk.json is not valid")
	return c
}

// answer checks a successful answer (200): each root key holds an inventory, or a list of
// them, of the given SDK class; every inventory's fields match its class; and the schema
// (required when schema is true, refused otherwise) has one entry per inventory, keyed by its
// path and valued with a server class that SourceClassMap maps to the inventory's SDK class.
func (c *conformance) answer(what string, r response, roots map[string]string, schema bool) {
	c.t.Helper()
	mustf(c.t, r.status == 200, "%s: %d %s", what, r.status, r.body)
	dec := json.NewDecoder(bytes.NewReader(r.body))
	dec.UseNumber()
	var m map[string]any
	mustf(c.t, dec.Decode(&m) == nil, "%s: not a JSON object: %s", what, r.body)
	expected := map[string]string{}
	for key, class := range roots {
		switch v := m[key].(type) {
		case map[string]any:
			c.object(what, key, v, class, expected)
		case []any:
			for i, it := range v {
				obj, ok := it.(map[string]any)
				mustf(c.t, ok, "%s: %s[%d] is not an object", what, key, i)
				c.object(what, fmt.Sprintf("%s[%d]", key, i), obj, class, expected)
			}
		default:
			c.t.Fatalf("%s: no %s in %s", what, key, r.body)
		}
	}
	got, has := m["schema"].(map[string]any)
	if !schema {
		mustf(c.t, !has, "%s: a schema the client did not ask for: %s", what, r.body)
		return
	}
	mustf(c.t, has, "%s: no schema: %s", what, r.body)
	for path, sdk := range expected {
		server, ok := got[path].(string)
		if !ok {
			c.t.Errorf("%s: schema has no entry for %s (%s)", what, path, sdk)
			continue
		}
		mapped, known := c.spec.SourceClassMap[server]
		if !known || mapped != sdk {
			c.t.Errorf("%s: schema names %s for %s; SourceClassMap maps it to %q, the inventory is a %s", what, server, path, mapped, sdk)
		}
	}
	for path := range got {
		if _, ok := expected[path]; !ok {
			c.t.Errorf("%s: schema entry %s names no inventory of the answer", what, path)
		}
	}
}

// failure checks an error answer (503, or a native status): its ErrorCode against the SDK's.
func (c *conformance) failure(what string, r response, status int) {
	c.t.Helper()
	mustf(c.t, r.status == status, "%s: %d %s", what, r.status, r.body)
	dec := json.NewDecoder(bytes.NewReader(r.body))
	dec.UseNumber()
	var m map[string]any
	mustf(c.t, dec.Decode(&m) == nil, "%s: not a JSON object: %s", what, r.body)
	e, ok := m["error"].(map[string]any)
	mustf(c.t, ok, "%s: no error object: %s", what, r.body)
	c.object(what, "error", e, "org.zstack.sdk.ErrorCode", map[string]string{})
	if cause, ok := e["cause"].(map[string]any); ok {
		c.object(what, "error.cause", cause, "org.zstack.sdk.ErrorCode", map[string]string{})
	}
}

// object checks one object against an SDK class, recording the schema entries it needs.
func (c *conformance) object(what, path string, obj map[string]any, class string, expected map[string]string) {
	c.t.Helper()
	fields, ok := c.spec.Classes[class]
	mustf(c.t, ok, "%s: no SDK class %s in the test data", what, class)
	expected[path] = class
	if c.seen[class] == nil {
		c.seen[class] = map[string]bool{}
	}
	added := map[string]bool{}
	for _, f := range sdkAdditions[class] {
		added[f] = true
	}
	keys := make([]string, 0, len(obj))
	for k := range obj {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		v := obj[k]
		typ, ok := fields[k]
		if !ok {
			if !added[k] {
				c.t.Errorf("%s: %s.%s is not a field of %s (renamed, or an addition docs/api.md does not list?)", what, path, k, class)
			}
			continue
		}
		c.seen[class][k] = true
		if !typeMatches(v, typ) {
			c.t.Errorf("%s: %s.%s = %v, but %s declares it %s", what, path, k, v, class, typ)
			continue
		}
		if elem, ok := strings.CutPrefix(typ, "list<"); ok && v != nil {
			elem = strings.TrimSuffix(elem, ">")
			for i, it := range v.([]any) {
				o, ok := it.(map[string]any)
				if !ok {
					c.t.Errorf("%s: %s.%s[%d] is not an object", what, path, k, i)
					continue
				}
				c.object(what, fmt.Sprintf("%s.%s[%d]", path, k, i), o, elem, expected)
			}
		}
	}
}

// typeMatches reports whether a JSON value (decoded with UseNumber) is what gson reads into
// a field of the type; null fits every type, as gson reads it as null.
func typeMatches(v any, typ string) bool {
	if v == nil {
		return true
	}
	switch {
	case typ == "string":
		_, ok := v.(string)
		return ok
	case typ == "integer", typ == "long":
		n, ok := v.(json.Number)
		if !ok {
			return false
		}
		i, err := n.Int64()
		return err == nil && (typ == "long" || i >= math.MinInt32 && i <= math.MaxInt32)
	case typ == "boolean":
		_, ok := v.(bool)
		return ok
	case typ == "date":
		s, ok := v.(string)
		return ok && sdkDate.MatchString(s)
	case typ == "list", strings.HasPrefix(typ, "list<"):
		_, ok := v.([]any)
		return ok
	case typ == "object":
		_, ok := v.(map[string]any)
		return ok
	case strings.HasPrefix(typ, "enum:"):
		s, ok := v.(string)
		for _, e := range strings.Split(strings.TrimPrefix(typ, "enum:"), "|") {
			if ok && s == e {
				return true
			}
		}
	}
	return false
}

// finish checks, over every answer seen, that each SDK class answered had each of its
// fields written at least once, except those vmrestore never writes, which must never appear.
func (c *conformance) finish() {
	c.t.Helper()
	for class, fields := range c.spec.Classes {
		seen, answered := c.seen[class]
		if !answered {
			if !sdkNeverAnswered[class] {
				c.t.Errorf("no answer of the suite held a %s", class)
			}
			continue
		}
		never := map[string]bool{}
		for _, f := range sdkNeverWritten[class] {
			never[f] = true
		}
		for f := range fields {
			switch {
			case never[f] && seen[f]:
				c.t.Errorf("%s.%s is written after all: drop it from sdkNeverWritten", class, f)
			case !never[f] && !seen[f]:
				c.t.Errorf("%s.%s was never written (a renamed or dropped field?)", class, f)
			}
		}
	}
}

// TestInventoriesAndSchemasMatchTheZStackSDK holds every inventory vmrestore answers with
// (restore results, polls, every query route, GetFreeIp, login, errors) against the SDK
// classes' field names and JSON types, and every schema against SourceClassMap.
func TestInventoriesAndSchemasMatchTheZStackSDK(t *testing.T) {
	t.Parallel()
	// Every catalog object gets a description, so that the field is answered.
	e := newEnv(t, envOptions{site: func(s *catalog.Site) {
		for i := range s.Zones {
			s.Zones[i].Description = "zone " + s.Zones[i].Name
		}
		for i := range s.Clusters {
			s.Clusters[i].Description = "cluster " + s.Clusters[i].Name
		}
		for i := range s.Hosts {
			s.Hosts[i].Description = "host " + s.Hosts[i].Name
		}
		for i := range s.PrimaryStorages {
			s.PrimaryStorages[i].Description = "primary storage " + s.PrimaryStorages[i].Name
		}
		for i := range s.BackupStorages {
			s.BackupStorages[i].Description = "backup storage " + s.BackupStorages[i].Name
		}
		for i := range s.L3Networks {
			s.L3Networks[i].Description = "l3 " + s.L3Networks[i].Name
		}
		for i := range s.InstanceOfferings {
			s.InstanceOfferings[i].Description = "offering " + s.InstanceOfferings[i].Name
		}
	}})
	c := newConformance(t)
	schemaHdr := map[string]string{"X-JSON-Schema": "true"}
	login := map[string]any{"logInByAccount": map[string]string{"accountName": "admin", "password": auth.SHA512Hex(adminPassword)}}
	c.answer("login with X-JSON-Schema", e.do("PUT", "/zstack/v1/accounts/login", "", login, schemaHdr),
		map[string]string{"inventory": "org.zstack.sdk.SessionInventory"}, true)
	c.answer("login", e.do("PUT", "/zstack/v1/accounts/login", "", login, nil),
		map[string]string{"inventory": "org.zstack.sdk.SessionInventory"}, false)

	// Restores that fill every field vmrestore writes: a static IP, custom MAC and NIC
	// metadata, data volumes, two NICs, and the strategies that leave a VM without a host.
	vm := map[string]string{"inventory": "org.zstack.sdk.VmInstanceInventory"}
	rich := map[string]any{"name": "conf-web", "description": "conformance", "instanceOfferingUuid": demosite.OfferingSmall,
		"l3NetworkUuids": []string{demosite.L3ProdUUID},
		"vmNicParams":    `[{"l3NetworkUuid":"` + demosite.L3ProdUUID + `","ip":"10.10.0.90","metaData":"rack=9"}]`,
		"systemTags":     []string{"customMac::" + demosite.L3ProdUUID + "::fa:ce:00:00:00:90"}}
	post := e.submit(demosite.GroupWeb01UUID, rich, schemaHdr)
	mustf(t, post.status == 202, "POST: %d %s", post.status, post.body)
	loc := str(post.json(), "location")
	done := e.poll(loc, 2*time.Minute)
	mustf(t, done.status == 200, "poll: %d %s", done.status, done.body)
	path := loc[strings.Index(loc, "/zstack/v1/api-jobs/"):]
	c.answer("poll with X-JSON-Schema", e.do("GET", path, e.session, nil, schemaHdr), vm, true)
	c.answer("poll", e.do("GET", path, e.session, nil, nil), vm, false)
	db := map[string]any{"name": "conf-db", "instanceOfferingUuid": demosite.OfferingLarge,
		"l3NetworkUuids": []string{demosite.L3ProdUUID, demosite.L3MgmtUUID}, "defaultL3NetworkUuid": demosite.L3ProdUUID}
	c.answer("restore waited for, with X-JSON-Schema",
		e.submit(demosite.GroupDB01UUID, db, map[string]string{"X-JSON-Schema": "true", "Prefer": "wait=120"}), vm, true)
	for _, strategy := range []string{"JustCreate", "CreateStopped"} {
		p := webParams("conf-" + strategy)
		p["strategy"] = strategy
		c.answer(strategy, e.submit(demosite.GroupApp01UUID, p, map[string]string{"X-JSON-Schema": "true", "Prefer": "wait=120"}), vm, true)
	}
	c.answer("native restore", e.do("POST", "/api/v1/restores", e.session,
		map[string]any{"groupUuid": demosite.GroupWeb01UUID, "params": webParams("conf-native")}, nil), vm, false)

	// Every query route answers with its schema, asked for or not.
	queries := map[string]string{
		"/zstack/v1/vm-instances":       "org.zstack.sdk.VmInstanceInventory",
		"/zstack/v1/volume-backups":     "org.zstack.sdk.VolumeBackupInventory",
		"/zstack/v1/images":             "org.zstack.sdk.ImageInventory",
		"/zstack/v1/zones":              "org.zstack.sdk.ZoneInventory",
		"/zstack/v1/clusters":           "org.zstack.sdk.ClusterInventory",
		"/zstack/v1/hosts":              "org.zstack.sdk.HostInventory",
		"/zstack/v1/primary-storage":    "org.zstack.sdk.PrimaryStorageInventory",
		"/zstack/v1/backup-storage":     "org.zstack.sdk.BackupStorageInventory",
		"/zstack/v1/l3-networks":        "org.zstack.sdk.L3NetworkInventory",
		"/zstack/v1/instance-offerings": "org.zstack.sdk.InstanceOfferingInventory",
	}
	for _, rt := range registeredRoutes(t) {
		if rt.Method == "GET" && strings.HasPrefix(rt.Path, "/zstack/v1/") && !strings.Contains(rt.Path, ":") && !strings.HasSuffix(rt.Path, "/ip/free") {
			_, covered := queries[rt.Path]
			mustf(t, covered, "query route %s has no conformance check", rt.Path)
		}
	}
	for route, class := range queries {
		list := e.do("GET", route, e.session, nil, nil)
		c.answer(route, list, map[string]string{"inventories": class}, true)
		c.answer(route+" with X-JSON-Schema and replyWithCount", e.do("GET", route+"?replyWithCount=true", e.session, nil, schemaHdr),
			map[string]string{"inventories": class}, true)
		invs := list.json()["inventories"].([]any)
		mustf(t, len(invs) > 0, "%s lists nothing", route)
		one := e.do("GET", route+"/"+str(invs[0].(map[string]any), "uuid"), e.session, nil, nil)
		c.answer(route+"/{uuid}", one, map[string]string{"inventories": class}, true)
		mustf(t, len(one.json()["inventories"].([]any)) == 1, "%s/{uuid}: %s", route, one.body)
		// Parallel tests add backups to the shared backup storage: the count lies between
		// the listings made before and after it.
		count := e.do("GET", route+"?count=true", e.session, nil, nil)
		after := len(e.do("GET", route, e.session, nil, nil).json()["inventories"].([]any))
		var total int
		_, err := fmt.Sscanf(string(count.body), `{"schema":{},"total":%d}`+"\n", &total)
		mustf(t, count.status == 200 && err == nil && string(count.body) == fmt.Sprintf(`{"schema":{},"total":%d}`+"\n", total) && total >= len(invs) && total <= after,
			"%s?count=true: %s (listed %d before it, %d after)", route, count.body, len(invs), after)
		fields := e.do("GET", route+"?fields=uuid", e.session, nil, nil)
		c.answer(route+"?fields=uuid", fields, map[string]string{"inventories": class}, true)
		for _, it := range fields.json()["inventories"].([]any) {
			mustf(t, len(it.(map[string]any)) == 1, "%s?fields=uuid answered %v", route, it)
		}
	}

	free := "/zstack/v1/l3-networks/" + demosite.L3ProdUUID + "/ip/free?limit=5"
	c.answer("GetFreeIp with X-JSON-Schema", e.do("GET", free, e.session, nil, schemaHdr), map[string]string{"inventories": "org.zstack.sdk.FreeIpInventory"}, true)
	c.answer("GetFreeIp", e.do("GET", free, e.session, nil, nil), map[string]string{"inventories": "org.zstack.sdk.FreeIpInventory"}, false)

	// Errors: a failed job on the poll, and a refused call.
	ghost := e.restore("0123456789abcdef0123456789abcdef", webParams("conf-ghost"), nil)
	c.failure("failed restore", ghost, 503)
	c.failure("invalid restore", e.restore(demosite.GroupWeb01UUID, map[string]any{"name": "x"}, nil), 503)
	c.failure("invalid query", e.do("GET", "/zstack/v1/zones?q=nmae=x", e.session, nil, nil), 503)
	c.finish()
}
