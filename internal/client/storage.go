package client

import (
	"context"
	"fmt"
	"net/http"
	"net/url"

	"github.com/vmrestore/vmrestore/internal/zstack"
)

// FindBackupStorage finds a backup storage of the site catalog by uuid, or else by name
// (GET /zstack/v1/backup-storage/{uuid}, or ?q=name=<name>). A name that matches several
// storages is an error: give the uuid.
func (c *Client) FindBackupStorage(ctx context.Context, ref string) (*zstack.BackupStorageInventory, error) {
	var out struct {
		Inventories []zstack.BackupStorageInventory `json:"inventories"`
	}
	path, q := "/zstack/v1/backup-storage", url.Values{"q": {"name=" + ref}}
	if zstack.IsUUID(ref) {
		path, q = path+"/"+ref, nil
	}
	if _, err := c.Do(ctx, http.MethodGet, path, q, nil, &out); err != nil {
		return nil, err
	}
	switch len(out.Inventories) {
	case 0:
		return nil, fmt.Errorf("the site has no backup storage with uuid or name %q", ref)
	case 1:
		if out.Inventories[0].URL == "" {
			return nil, fmt.Errorf("backup storage %q has no url in the api's answer", ref)
		}
		return &out.Inventories[0], nil
	}
	return nil, fmt.Errorf("%d backup storages are named %q: give its uuid", len(out.Inventories), ref)
}

// GroupIndexed reports whether the api lists the volume backups of a group (GET
// /zstack/v1/volume-backups?q=groupUuid=<uuid>): the workers have indexed it, and restores
// and plans can use it.
func (c *Client) GroupIndexed(ctx context.Context, groupUUID string) (bool, error) {
	var out struct {
		Total int `json:"total"`
	}
	q := url.Values{"q": {"groupUuid=" + groupUUID}, "count": {"true"}}
	if _, err := c.Do(ctx, http.MethodGet, "/zstack/v1/volume-backups", q, nil, &out); err != nil {
		return false, err
	}
	return out.Total > 0, nil
}
