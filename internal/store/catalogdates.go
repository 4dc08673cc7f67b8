package store

import (
	"context"
	"encoding/json"
	"fmt"
	"hash/fnv"
	"reflect"
	"strconv"
	"strings"
	"time"

	"github.com/vmrestore/vmrestore/internal/catalog"
)

// Catalog objects carry ZStack's createDate and lastOpDate: when vmrestore first saw the
// object in a loaded catalog, and when a load last changed its definition. They are kept in
// one hash, uuid → "created:lastOp:digest" (milliseconds, and an FNV-64a digest of the
// object's JSON to notice changes), written as each catalog is saved.

func keyCatalogDates() string { return prefix + "{catalog}:dates" }

// ObjectDates are a catalog object's createDate and lastOpDate.
type ObjectDates struct {
	Created time.Time
	LastOp  time.Time
}

// catalogObjects lists every object of the site that has a uuid (zones, clusters, hosts,
// storages, networks, IP ranges, offerings...) with its JSON form.
func catalogObjects(site *catalog.Site) (map[string][]byte, error) {
	out := map[string][]byte{}
	var walk func(v reflect.Value) error
	walk = func(v reflect.Value) error {
		switch v.Kind() {
		case reflect.Pointer:
			if !v.IsNil() {
				return walk(v.Elem())
			}
		case reflect.Slice:
			for i := 0; i < v.Len(); i++ {
				if err := walk(v.Index(i)); err != nil {
					return err
				}
			}
		case reflect.Struct:
			if u := v.FieldByName("UUID"); u.IsValid() && u.Kind() == reflect.String && u.String() != "" {
				b, err := json.Marshal(v.Interface())
				if err != nil {
					return err
				}
				out[u.String()] = b
			}
			for i := 0; i < v.NumField(); i++ {
				if v.Type().Field(i).IsExported() {
					if err := walk(v.Field(i)); err != nil {
						return err
					}
				}
			}
		}
		return nil
	}
	return out, walk(reflect.ValueOf(site))
}

// stampCatalogDates records the dates of the site's objects: a new object is created now,
// a changed one last operated on now. Objects that left the catalog keep their dates, so one
// that comes back keeps its createDate.
func (s *Store) stampCatalogDates(ctx context.Context, site *catalog.Site) error {
	objs, err := catalogObjects(site)
	if err != nil {
		return err
	}
	old, err := s.rdb.HGetAll(ctx, keyCatalogDates()).Result()
	if err != nil {
		return err
	}
	now := strconv.FormatInt(time.Now().UnixMilli(), 10)
	set := map[string]any{}
	for uuid, b := range objs {
		h := fnv.New64a()
		h.Write(b)
		digest := strconv.FormatUint(h.Sum64(), 16)
		created, lastOp, prevDigest := now, now, ""
		if parts := strings.SplitN(old[uuid], ":", 3); len(parts) == 3 {
			created, lastOp, prevDigest = parts[0], parts[1], parts[2]
		}
		if prevDigest == digest {
			continue
		}
		if prevDigest != "" {
			lastOp = now
		}
		set[uuid] = created + ":" + lastOp + ":" + digest
	}
	if len(set) == 0 {
		return nil
	}
	return s.rdb.HSet(ctx, keyCatalogDates(), set).Err()
}

// CatalogDates returns the createDate and lastOpDate of every catalog object seen so far.
func (s *Store) CatalogDates(ctx context.Context) (map[string]ObjectDates, error) {
	m, err := s.rdb.HGetAll(ctx, keyCatalogDates()).Result()
	if err != nil {
		return nil, fmt.Errorf("read catalog dates: %w", err)
	}
	out := make(map[string]ObjectDates, len(m))
	for uuid, v := range m {
		parts := strings.SplitN(v, ":", 3)
		if len(parts) != 3 {
			continue
		}
		out[uuid] = ObjectDates{Created: millis(parts[0]), LastOp: millis(parts[1])}
	}
	return out, nil
}
