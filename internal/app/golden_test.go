package app_test

import (
	"encoding/json"
	"flag"
	"os"
	"reflect"
	"regexp"
	"strings"
	"testing"

	"github.com/vmrestore/vmrestore/internal/demosite"
)

var update = flag.Bool("update", false, "rewrite golden files")

var (
	zstackDate = regexp.MustCompile(`^(Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Oct|Nov|Dec) \d{1,2}, \d{4} \d{1,2}:\d{2}:\d{2} (AM|PM)$`)
	uuidRe     = regexp.MustCompile(`^[0-9a-f]{32}$`)
)

// normalize replaces the values that differ from run to run (generated uuids, dates,
// sizes on disk) with placeholders, after checking their form.
func normalize(tb testing.TB, v any, key string, names map[string]string) any {
	tb.Helper()
	switch x := v.(type) {
	case map[string]any:
		out := map[string]any{}
		for k, val := range x {
			out[k] = normalize(tb, val, k, names)
		}
		return out
	case []any:
		out := make([]any, len(x))
		for i, val := range x {
			out[i] = normalize(tb, val, key, names)
		}
		return out
	case string:
		switch {
		case strings.HasSuffix(key, "Date"):
			mustf(tb, zstackDate.MatchString(x), "%s %q is not in ZStack's date format", key, x)
			return "<date>"
		case uuidRe.MatchString(x):
			if n, ok := names[x]; ok {
				return n
			}
			n := "<uuid-" + string(rune('A'+len(names))) + ">"
			names[x] = n
			return n
		case key == "installPath":
			for u, n := range names {
				x = strings.ReplaceAll(x, u, n)
			}
			i := strings.LastIndex(x, "/primary-")
			mustf(tb, i >= 0, "installPath %q is not under a primary storage of the site", x)
			return "<ps url>" + x[strings.Index(x[i+1:], "/")+i+1:]
		}
		return x
	case float64:
		if key == "actualSize" {
			mustf(tb, x > 0, "actualSize %v must be the bytes on disk", x)
			return "<bytes on disk>"
		}
	}
	return v
}

// TestInventoryMatchesGolden restores web01 with every choice pinned (resourceUuid, host,
// static IP, custom MAC) and compares the whole inventory, field by field, with
// testdata/web01.inventory.json (go test -run Golden -update rewrites it).
func TestInventoryMatchesGolden(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	r := e.do("POST", "/zstack/v1/vm-instances/from/vm-backups/"+demosite.GroupWeb01UUID, e.session, map[string]any{
		"params": map[string]any{
			"name": "web01-dr", "description": "golden", "instanceOfferingUuid": demosite.OfferingSmall,
			"l3NetworkUuids": []string{demosite.L3ProdUUID}, "hostUuid": "e18cf66eedb3306686a1d4685bbb63af",
			"resourceUuid": "a1c07d683f693f6e9f2d7f9a499c7840",
			"vmNicParams":  `[{"l3NetworkUuid":"` + demosite.L3ProdUUID + `","ip":"10.10.0.77","driverType":"e1000","metaData":"rack=7"}]`,
		},
		"systemTags": []string{"customMac::" + demosite.L3ProdUUID + "::FA:CE:00:12:34:00", "hostname::web01-dr"},
	}, map[string]string{"Prefer": "wait=120"})
	mustf(t, r.status == 200, "restore: %d %s", r.status, r.body)
	names := map[string]string{}
	for u, n := range map[string]string{
		"a1c07d683f693f6e9f2d7f9a499c7840": "<vm>", "e18cf66eedb3306686a1d4685bbb63af": "<host-a1>",
		demosite.ZoneUUID: "<zone>", demosite.ClusterAUUID: "<cluster-a>", demosite.NFSUUID: "<ps-nfs>",
		demosite.L3ProdUUID: "<l3-prod>", demosite.OfferingSmall: "<offering-small>", "5c07704333c532e8b402b6b3ddb89315": "<image>",
		"9a8b7c6d5e4f40312a3b4c5d6e7f8091": "<prod-range>",
	} {
		names[u] = n
	}
	inv := r.json()["inventory"]
	// Volume and NIC uuids are generated: name them in inventory order so the golden file reads well.
	m := inv.(map[string]any)
	for i, v := range m["allVolumes"].([]any) {
		names[str(v.(map[string]any), "uuid")] = []string{"<root-volume>", "<data-volume>"}[i]
	}
	nic := m["vmNics"].([]any)[0].(map[string]any)
	names[str(nic, "uuid")] = "<nic>"
	names[str(nic, "usedIpUuid")] = "<used-ip>"
	mustf(t, regexp.MustCompile(`^vnic\d+\.0$`).MatchString(str(nic, "internalName")), "internalName %q", str(nic, "internalName"))
	nic["internalName"] = "<vnicN.0>"

	got := normalize(t, inv, "", names)
	path := "testdata/web01.inventory.json"
	if *update {
		var b strings.Builder
		enc := json.NewEncoder(&b)
		enc.SetEscapeHTML(false)
		enc.SetIndent("", "  ")
		enc.Encode(got)
		if err := os.WriteFile(path, []byte(b.String()), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run with -update to create it)", err)
	}
	var want any
	if err := json.Unmarshal(b, &want); err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got, want) {
		g, _ := json.MarshalIndent(got, "", "  ")
		t.Fatalf("inventory differs from %s:\n%s", path, g)
	}
}
