package zstack_test

import (
	"encoding/json"
	"testing"

	"github.com/vmrestore/vmrestore/internal/zstack"
)

// The schema is built as ZStack's JsonSchemaBuilder builds it: a nested object before the
// object holding it, fields in declaration order, lists indexed, empty lists and missing
// fields without entries.
func TestSchema(t *testing.T) {
	var vm any
	json.Unmarshal([]byte(`{"uuid":"v","vmNics":[{"uuid":"n0","usedIps":[{"ip":"1"}]},{"uuid":"n1","usedIps":[]}],
		"allVolumes":[{"uuid":"r"},{"uuid":"d"}],"vmCdRoms":[]}`), &vm)
	var s zstack.Schema
	s.Add("inventory", vm, zstack.ClassVmInstance)
	b, _ := json.Marshal(s)
	want := `{"inventory.vmNics[0].usedIps[0]":"org.zstack.header.network.l3.UsedIpInventory",` +
		`"inventory.vmNics[0]":"org.zstack.header.vm.VmNicInventory",` +
		`"inventory.vmNics[1]":"org.zstack.header.vm.VmNicInventory",` +
		`"inventory.allVolumes[0]":"org.zstack.header.volume.VolumeInventory",` +
		`"inventory.allVolumes[1]":"org.zstack.header.volume.VolumeInventory",` +
		`"inventory":"org.zstack.header.vm.VmInstanceInventory"}`
	if string(b) != want {
		t.Fatalf("schema\n%s\nwant\n%s", b, want)
	}

	var list any
	json.Unmarshal([]byte(`[{"uuid":"a","ipRanges":[{"uuid":"r"}]},{"uuid":"b"}]`), &list)
	s = nil
	s.Add("inventories", list, zstack.ClassL3Network)
	b, _ = json.Marshal(s)
	want = `{"inventories[0].ipRanges[0]":"org.zstack.header.network.l3.IpRangeInventory",` +
		`"inventories[0]":"org.zstack.header.network.l3.L3NetworkInventory",` +
		`"inventories[1]":"org.zstack.header.network.l3.L3NetworkInventory"}`
	if string(b) != want {
		t.Fatalf("schema\n%s\nwant\n%s", b, want)
	}

	s = zstack.Schema{}
	s.Add("total", 3, zstack.ClassZone)
	if b, _ := json.Marshal(s); string(b) != `{}` {
		t.Fatalf("a plain value got entries: %s", b)
	}
}
