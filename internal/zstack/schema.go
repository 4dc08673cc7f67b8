package zstack

import (
	"bytes"
	"encoding/json"
	"strconv"
)

// The "schema" of an answer, as ZStack's JsonSchemaBuilder builds it: one entry per nested
// ZStack object of the answer, keyed by its JSON path (inventory, inventory.vmNics[0],
// inventories[3].ipRanges[0]) and valued with the server-side class name, which the SDKs map
// to their own classes (the Java SDK through SourceClassMap). Entries come in the builder's
// order: a nested object before the object holding it, fields in declaration order.

// Class is a ZStack inventory class: its server-side name and the fields that hold nested
// inventories (an object or a list of them), in declaration order.
type Class struct {
	Name   string
	Nested []Nested
}

// Nested is a field of a class that holds inventories of another class.
type Nested struct {
	Field string
	Class *Class
}

// The server-side classes of the inventories vmrestore answers with.
var (
	ClassUsedIP           = &Class{Name: "org.zstack.header.network.l3.UsedIpInventory"}
	ClassVmNic            = &Class{Name: "org.zstack.header.vm.VmNicInventory", Nested: []Nested{{"usedIps", ClassUsedIP}}}
	ClassVolume           = &Class{Name: "org.zstack.header.volume.VolumeInventory"}
	ClassVmCdRom          = &Class{Name: "org.zstack.header.vm.cdrom.VmCdRomInventory"}
	ClassVmInstance       = &Class{Name: "org.zstack.header.vm.VmInstanceInventory", Nested: []Nested{{"vmNics", ClassVmNic}, {"allVolumes", ClassVolume}, {"vmCdRoms", ClassVmCdRom}}}
	ClassSession          = &Class{Name: "org.zstack.header.identity.SessionInventory"}
	ClassZone             = &Class{Name: "org.zstack.header.zone.ZoneInventory"}
	ClassCluster          = &Class{Name: "org.zstack.header.cluster.ClusterInventory"}
	ClassHost             = &Class{Name: "org.zstack.header.host.HostInventory"}
	ClassPrimaryStorage   = &Class{Name: "org.zstack.header.storage.primary.PrimaryStorageInventory"}
	ClassBackupStorage    = &Class{Name: "org.zstack.header.storage.backup.BackupStorageInventory"}
	ClassIPRange          = &Class{Name: "org.zstack.header.network.l3.IpRangeInventory"}
	ClassL3Network        = &Class{Name: "org.zstack.header.network.l3.L3NetworkInventory", Nested: []Nested{{"ipRanges", ClassIPRange}}}
	ClassInstanceOffering = &Class{Name: "org.zstack.header.configuration.InstanceOfferingInventory"}
	ClassVolumeBackupRef  = &Class{Name: "org.zstack.header.storage.backup.VolumeBackupStorageRefInventory"}
	ClassVolumeBackup     = &Class{Name: "org.zstack.header.storage.backup.VolumeBackupInventory", Nested: []Nested{{"backupStorageRefs", ClassVolumeBackupRef}}}
	ClassImageBackupRef   = &Class{Name: "org.zstack.header.image.ImageBackupStorageRefInventory"}
	ClassImage            = &Class{Name: "org.zstack.header.image.ImageInventory", Nested: []Nested{{"backupStorageRefs", ClassImageBackupRef}}}
	ClassFreeIP           = &Class{Name: "org.zstack.header.network.l3.FreeIpInventory"}
)

// SchemaEntry is one entry of a schema.
type SchemaEntry struct {
	Path  string
	Class string
}

// Schema is an answer's schema, in ZStack's order. It is written as a JSON object.
type Schema []SchemaEntry

// MarshalJSON writes the entries as one object, keeping their order.
func (s Schema) MarshalJSON() ([]byte, error) {
	var b bytes.Buffer
	b.WriteByte('{')
	for i, e := range s {
		if i > 0 {
			b.WriteByte(',')
		}
		k, _ := json.Marshal(e.Path)
		v, _ := json.Marshal(e.Class)
		b.Write(k)
		b.WriteByte(':')
		b.Write(v)
	}
	b.WriteByte('}')
	return b.Bytes(), nil
}

// Add appends the entries of the answer field key, whose value (decoded JSON: an object or a
// list of objects) holds inventories of class c.
func (s *Schema) Add(key string, value any, c *Class) {
	switch v := value.(type) {
	case map[string]any:
		s.walk(v, c, key)
	case []any:
		for i, it := range v {
			if m, ok := it.(map[string]any); ok {
				s.walk(m, c, key+"["+strconv.Itoa(i)+"]")
			}
		}
	case []map[string]any:
		for i, m := range v {
			s.walk(m, c, key+"["+strconv.Itoa(i)+"]")
		}
	}
}

func (s *Schema) walk(obj map[string]any, c *Class, path string) {
	for _, n := range c.Nested {
		s.Add(path+"."+n.Field, obj[n.Field], n.Class)
	}
	*s = append(*s, SchemaEntry{Path: path, Class: c.Name})
}
