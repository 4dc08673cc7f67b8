package httpapi

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"reflect"
	"sort"
	"strings"

	"github.com/labstack/echo/v4"

	"github.com/vmrestore/vmrestore/internal/zstack"
)

// decodeJSON reads a JSON object body into v. Malformed JSON and wrong types are SYS.1007
// with the offending field and offset in details.
func decodeJSON(c echo.Context, v any) error {
	data, err := io.ReadAll(c.Request().Body)
	if err != nil {
		return err // body limit errors carry their own status
	}
	return decodeBytes(data, v)
}

func decodeBytes(data []byte, v any) error {
	if len(bytes.TrimSpace(data)) == 0 {
		return zstack.InvalidArgument("the request body is empty; it must be a JSON object")
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	if err := dec.Decode(v); err != nil {
		return jsonError(err)
	}
	if dec.More() {
		return zstack.InvalidArgument("the request body has data after its JSON object")
	}
	return nil
}

func jsonError(err error) error {
	var syn *json.SyntaxError
	var typ *json.UnmarshalTypeError
	switch {
	case errors.As(err, &syn):
		return zstack.InvalidArgument("the request body is not valid JSON: %v (at byte %d)", syn, syn.Offset)
	case errors.As(err, &typ):
		field := typ.Field
		if field == "" {
			field = "the body"
		}
		want := typ.Type.String()
		switch typ.Type.Kind() {
		case reflect.Int, reflect.Int64, reflect.Int32:
			want = "an integer between -9223372036854775808 and 9223372036854775807"
		case reflect.Slice:
			want = "a list"
		case reflect.Struct, reflect.Map, reflect.Pointer:
			want = "an object"
		}
		return zstack.InvalidArgument("field[%s] must be %s, got %s (at byte %d)", field, want, typ.Value, typ.Offset)
	case errors.Is(err, io.ErrUnexpectedEOF):
		return zstack.InvalidArgument("the request body is truncated JSON")
	}
	return zstack.InvalidArgument("the request body cannot be decoded: %v", err)
}

// checkKnownFields refuses keys of obj that t does not declare, unless their value is null
// (SDKs send unset optional fields as null). A misspelled parameter is an error, not a
// silently ignored wish. A key that differs from a parameter only in case is refused even
// when null, because encoding/json would apply it to the parameter.
func checkKnownFields(obj map[string]json.RawMessage, t reflect.Type, where string) error {
	known := map[string]bool{}
	folded := map[string]string{}
	for i := 0; i < t.NumField(); i++ {
		name := strings.Split(t.Field(i).Tag.Get("json"), ",")[0]
		known[name] = true
		folded[strings.ToLower(name)] = name
	}
	var unknown []string
	for k, v := range obj {
		if known[k] {
			continue
		}
		if real, ok := folded[strings.ToLower(k)]; ok {
			return zstack.InvalidArgument("%s has field %q; parameter names are case-sensitive, did you mean %q?", where, k, real)
		}
		if strings.TrimSpace(string(v)) != "null" {
			unknown = append(unknown, k)
		}
	}
	if len(unknown) == 0 {
		return nil
	}
	sort.Strings(unknown)
	return zstack.InvalidArgument("%s has unknown field(s) %s; see the API reference for the parameters of this call", where, strings.Join(unknown, ", "))
}

// decodeCreateVM decodes a CreateVmFromVmBackup body, refusing unknown parameters.
func decodeCreateVM(c echo.Context) (*zstack.CreateVmFromVmBackupRequest, error) {
	data, err := io.ReadAll(c.Request().Body)
	if err != nil {
		return nil, err
	}
	return DecodeCreateVM(data)
}

// DecodeCreateVM parses the body of CreateVmFromVmBackup.
func DecodeCreateVM(data []byte) (*zstack.CreateVmFromVmBackupRequest, error) {
	var top map[string]json.RawMessage
	if err := decodeBytes(data, &top); err != nil {
		return nil, err
	}
	if top == nil {
		return nil, zstack.InvalidArgument("the request body must be a JSON object with \"params\"")
	}
	if err := checkKnownFields(top, reflect.TypeOf(zstack.CreateVmFromVmBackupRequest{}), "the body"); err != nil {
		return nil, err
	}
	raw, ok := top["params"]
	if !ok || strings.TrimSpace(string(raw)) == "null" {
		return nil, zstack.InvalidArgument("the body has no \"params\" object")
	}
	var params map[string]json.RawMessage
	if err := json.Unmarshal(raw, &params); err != nil {
		return nil, zstack.InvalidArgument("field[params] must be an object: %v", err)
	}
	if err := checkKnownFields(params, reflect.TypeOf(zstack.CreateVmFromVmBackupParams{}), "params"); err != nil {
		return nil, err
	}
	var req zstack.CreateVmFromVmBackupRequest
	if err := json.Unmarshal(data, &req); err != nil {
		return nil, jsonError(fmt.Errorf("%w", err))
	}
	return &req, nil
}
