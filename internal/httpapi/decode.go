package httpapi

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"net/http"
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

// decodeCreateVM reads and decodes a CreateVmFromVmBackup body (see DecodeCreateVM).
func decodeCreateVM(c echo.Context) (*zstack.CreateVmFromVmBackupRequest, error) {
	data, err := io.ReadAll(c.Request().Body)
	if err != nil {
		return nil, err
	}
	return DecodeCreateVM(data)
}

// DecodeCreateVM parses the body of CreateVmFromVmBackup as ZStack's RestServer does before it
// queues the call: what it refuses (a body that is not a JSON object, params that is not an
// object, a value of the wrong JSON type for a known field) is a plain-text 400 answered on
// the POST (see Refusal). Everything else is the API's validation, done later on the
// request (job.FromZStack) and reported through the job, as ZStack's interceptors do. An
// empty body is an empty call, as for ZStack.
//
// Keys match case-sensitively, as gson maps them. Keys the call does not define are listed
// in the request's Unknown field and otherwise ignored, as ZStack ignores them. Like gson, a
// number field also takes a string holding an integer, and a string field a number.
// systemTags, userTags and requestIp are read at the top level and inside params; the top
// level wins.
func DecodeCreateVM(data []byte) (*zstack.CreateVmFromVmBackupRequest, error) {
	var top map[string]json.RawMessage
	if body := bytes.TrimSpace(data); len(body) > 0 {
		if !json.Valid(body) {
			return nil, malformed(body)
		}
		switch body[0] {
		case '{':
			if err := json.Unmarshal(body, &top); err != nil {
				return nil, refusal(jsonError(err))
			}
		case 'n': // null: a call without parameters
		default:
			return nil, plain(http.StatusBadRequest, "the request body must be a JSON object like {\"params\": {...}}, got %s", rawKind(body))
		}
	}
	req := &zstack.CreateVmFromVmBackupRequest{}
	unknown, err := decodeFields(top, req, "", map[string]bool{"params": true})
	if err != nil {
		return nil, err
	}
	if raw, ok := top["params"]; ok && !isNull(raw) {
		var params map[string]json.RawMessage
		if err := json.Unmarshal(raw, &params); err != nil || params == nil {
			return nil, plain(http.StatusBadRequest, "field[params] must be an object, got %s", rawKind(raw))
		}
		ignored := map[string]bool{}
		for _, k := range zstack.SDKOnlyParams {
			ignored[k] = true
		}
		u, err := decodeFields(params, &req.Params, "params.", ignored)
		if err != nil {
			return nil, err
		}
		unknown = append(unknown, u...)
	}
	sort.Strings(unknown)
	req.Unknown = unknown
	p := &req.Params
	if req.SystemTags == nil {
		req.SystemTags = p.SystemTags
	}
	if req.UserTags == nil {
		req.UserTags = p.UserTags
	}
	if req.RequestIP == "" {
		req.RequestIP = p.RequestIP
	}
	return req, nil
}

// malformed says what is wrong with a body that is not one JSON value.
func malformed(body []byte) error {
	dec := json.NewDecoder(bytes.NewReader(body))
	var v any
	if err := dec.Decode(&v); err != nil {
		return refusal(jsonError(err))
	}
	if dec.More() {
		return plain(http.StatusBadRequest, "the request body has data after its JSON object")
	}
	return refusal(jsonError(json.Unmarshal(body, &v)))
}

// decodeFields sets the fields of the struct dst points to from obj's keys, by exact JSON
// name; null leaves a field unset. It returns the keys dst does not have (prefix before
// each), except those in skip and those whose value is null.
func decodeFields(obj map[string]json.RawMessage, dst any, prefix string, skip map[string]bool) ([]string, error) {
	v := reflect.ValueOf(dst).Elem()
	t := v.Type()
	known := map[string]bool{}
	for i := 0; i < t.NumField(); i++ {
		name := strings.Split(t.Field(i).Tag.Get("json"), ",")[0]
		if name == "" || name == "-" {
			continue
		}
		known[name] = true
		raw, ok := obj[name]
		if !ok || isNull(raw) || skip[name] {
			continue
		}
		if err := decodeField(raw, v.Field(i), prefix+name); err != nil {
			return nil, err
		}
	}
	var unknown []string
	for k, raw := range obj {
		if !known[k] && !skip[k] && !isNull(raw) {
			unknown = append(unknown, prefix+k)
		}
	}
	return unknown, nil
}

// decodeField decodes one value into a field of the kinds CreateVmFromVmBackup uses, with
// gson's leniency for numbers and strings.
func decodeField(raw json.RawMessage, f reflect.Value, name string) error {
	switch f.Interface().(type) {
	case string:
		var s string
		if err := json.Unmarshal(raw, &s); err == nil {
			f.SetString(s)
			return nil
		}
		var n json.Number
		if err := json.Unmarshal(raw, &n); err == nil {
			f.SetString(n.String())
			return nil
		}
		return plain(http.StatusBadRequest, "field[%s] must be a string, got %s", name, rawKind(raw))
	case *int64:
		n, ok := integer(raw)
		if !ok {
			return plain(http.StatusBadRequest, "field[%s] must be an integer between %d and %d, got %s", name, int64(math.MinInt64), int64(math.MaxInt64), rawText(raw))
		}
		f.Set(reflect.ValueOf(&n))
		return nil
	case []string:
		var items []json.RawMessage
		if err := json.Unmarshal(raw, &items); err != nil {
			return plain(http.StatusBadRequest, "field[%s] must be a list, got %s", name, rawKind(raw))
		}
		out := make([]string, len(items))
		for i, it := range items {
			if err := json.Unmarshal(it, &out[i]); err != nil || isNull(it) {
				return plain(http.StatusBadRequest, "field[%s][%d] must be a string, got %s", name, i, rawKind(it))
			}
		}
		f.Set(reflect.ValueOf(out))
		return nil
	case bool:
		var b bool
		if err := json.Unmarshal(raw, &b); err != nil {
			return plain(http.StatusBadRequest, "field[%s] must be true or false, got %s", name, rawKind(raw))
		}
		f.SetBool(b)
		return nil
	case []json.RawMessage:
		var items []json.RawMessage
		if err := json.Unmarshal(raw, &items); err != nil {
			return plain(http.StatusBadRequest, "field[%s] must be a list, got %s", name, rawKind(raw))
		}
		f.Set(reflect.ValueOf(items))
		return nil
	}
	return fmt.Errorf("decode %s: unsupported field type %s", name, f.Type())
}

// integer reads an integer the way gson's nextLong does: a number whose value is a whole
// int64 (4, 4.0, 8e9), or a string holding one.
func integer(raw json.RawMessage) (int64, bool) {
	var s string
	if err := json.Unmarshal(raw, &s); err == nil {
		raw = json.RawMessage(strings.TrimSpace(s))
	}
	var n json.Number
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.UseNumber()
	if err := dec.Decode(&n); err != nil || dec.More() {
		return 0, false
	}
	if i, err := n.Int64(); err == nil {
		return i, true
	}
	f, err := n.Float64()
	if err != nil || f != math.Trunc(f) || f < math.MinInt64 || f >= math.MaxInt64 {
		return 0, false
	}
	return int64(f), true
}

func isNull(raw json.RawMessage) bool { return strings.TrimSpace(string(raw)) == "null" }

// rawKind names the JSON kind of a value for an error message.
func rawKind(raw json.RawMessage) string {
	var v any
	if err := json.Unmarshal(raw, &v); err != nil {
		return "malformed JSON"
	}
	return jsonKind(v)
}

// rawText is a value's kind and, for short numbers and strings, the value itself.
func rawText(raw json.RawMessage) string {
	k := rawKind(raw)
	if (k == "number" || k == "string") && len(raw) <= 40 {
		return k + " " + string(bytes.TrimSpace(raw))
	}
	return k
}

func jsonKind(v any) string {
	switch v.(type) {
	case nil:
		return "null"
	case bool:
		return "boolean"
	case float64, json.Number:
		return "number"
	case string:
		return "string"
	case []any:
		return "array"
	}
	return "object"
}

// refusal turns a decoding ErrorCode into the plain-text 400 RestServer answers.
func refusal(err error) error {
	if ec, ok := zstack.AsErrorCode(err); ok {
		return plain(http.StatusBadRequest, "%s", ec.Details)
	}
	return err
}

// Refusal reports whether err is what the API refuses on the request itself, before any
// job exists (a plain-text answer with the given HTTP status), and its text.
func Refusal(err error) (status int, text string, ok bool) {
	var pe *plainError
	if errors.As(err, &pe) {
		return pe.status, pe.text, true
	}
	return 0, "", false
}
