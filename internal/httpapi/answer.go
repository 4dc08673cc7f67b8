package httpapi

import (
	"encoding/json"
	"net/http"

	"github.com/labstack/echo/v4"

	"github.com/vmrestore/vmrestore/internal/zstack"
)

// field is one field of a successful ZStack answer and the class of the inventories it holds
// (nil for a plain value such as a count).
type field struct {
	key   string
	value any
	class *zstack.Class
}

// wantsSchema reports whether the request carries X-JSON-Schema. ZStack's RestServer looks
// only at the header's presence, whatever its value; the SDKs send "true".
func wantsSchema(c echo.Context) bool {
	return len(c.Request().Header.Values("X-JSON-Schema")) > 0
}

// writeAnswer writes a successful ZStack answer (200) with its fields and, when the client
// sent X-JSON-Schema (always for a query reply), the schema of the inventories in them, as
// ZStack's RestServer.writeResponse does.
func writeAnswer(c echo.Context, query bool, fields ...field) error {
	body := make(map[string]any, len(fields)+1)
	withSchema := query || wantsSchema(c)
	schema := zstack.Schema{}
	for _, f := range fields {
		body[f.key] = f.value
		if withSchema && f.class != nil {
			v, err := decoded(f.value)
			if err != nil {
				return err
			}
			schema.Add(f.key, v, f.class)
		}
	}
	if withSchema {
		body["schema"] = schema
	}
	return writeJSON(c, http.StatusOK, body)
}

// decoded returns v as decoded JSON (objects as map[string]any), re-encoding typed values.
func decoded(v any) (any, error) {
	switch x := v.(type) {
	case map[string]any, []any, []map[string]any:
		return x, nil
	case json.RawMessage:
		var out any
		err := json.Unmarshal(x, &out)
		return out, err
	}
	b, err := json.Marshal(v)
	if err != nil {
		return nil, err
	}
	var out any
	err = json.Unmarshal(b, &out)
	return out, err
}
