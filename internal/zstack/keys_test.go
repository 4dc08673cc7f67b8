package zstack_test

import (
	"testing"

	"github.com/vmrestore/vmrestore/internal/zstack"
)

func TestNearMiss(t *testing.T) {
	_, params := zstack.CreateVmFromVmBackupKeys()
	tests := []struct {
		key, want string
	}{
		{"clustreUuid", "clusterUuid"}, // two letters swapped
		{"clusterUUID", "clusterUuid"}, // another case
		{"HOSTUUID", "hostUuid"},       // another case
		{"l3NetworkUuid", "l3NetworkUuids"},
		{"vmNicParam", "vmNicParams"},
		{"instanceOferingUuid", "instanceOfferingUuid"},
		{"strategyy", "strategy"},
		{"nme", "name"},
		{"typ", "type"},
		// Not near-misses: known keys, keys the SDKs send, and keys far from every name.
		{"name", ""},
		{"sessionId", ""},
		{"requestIp", ""},
		{"imageUuid", ""},
		{"cpuNumber", ""},
		{"memory", ""},
		{"rootDiskSize", ""},
		{"x", ""},
		{"", ""},
	}
	for _, tc := range tests {
		got, ok := zstack.NearMiss(tc.key, params)
		if got != tc.want || ok != (tc.want != "") {
			t.Errorf("NearMiss(%q) = %q, %v; want %q", tc.key, got, ok, tc.want)
		}
	}
}

func TestCreateVmFromVmBackupKeys(t *testing.T) {
	top, params := zstack.CreateVmFromVmBackupKeys()
	for _, want := range []string{"params", "systemTags", "userTags", "requestIp", "groupUuid"} {
		if !contains(top, want) {
			t.Errorf("top-level keys %v lack %s", top, want)
		}
	}
	// Every key the TypeScript, Java and Python SDKs put under params for this call.
	for _, want := range []string{"name", "groupUuid", "backupStorageUuid", "instanceOfferingUuid", "l3NetworkUuids", "vmNicParams",
		"type", "zoneUuid", "clusterUuid", "hostUuid", "primaryStorageUuidForRootVolume", "primaryStorageUuidForDataVolume",
		"description", "rootVolumeSystemTags", "dataVolumeSystemTags", "diskAOs", "strategy", "cpuNum", "memorySize",
		"reservedMemorySize", "defaultL3NetworkUuid", "resourceUuid", "tagUuids", "systemTags", "userTags", "sessionId",
		"accessKeyId", "accessKeySecret", "requestIp", "timeout"} {
		if !contains(params, want) {
			t.Errorf("params keys lack %s", want)
		}
	}
	if contains(top, "Unknown") || contains(top, "-") {
		t.Errorf("top-level keys %v hold the decoder's own field", top)
	}
}

func contains(list []string, v string) bool {
	for _, x := range list {
		if x == v {
			return true
		}
	}
	return false
}
