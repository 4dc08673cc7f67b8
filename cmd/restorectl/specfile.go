package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"sort"
	"strings"

	"go.yaml.in/yaml/v3"

	"github.com/vmrestore/vmrestore/internal/apiv1"
)

// readSpec reads a plan file (YAML or JSON; "-" is stdin) into a apiv1.PlanSpec, refusing
// fields the spec does not have, so that a misspelled key is not silently ignored.
func readSpec(path string, stdin io.Reader) (*apiv1.PlanSpec, error) {
	var data []byte
	var err error
	name := path
	if path == "-" {
		name = "stdin"
		data, err = io.ReadAll(stdin)
	} else {
		data, err = os.ReadFile(path)
	}
	if err != nil {
		return nil, fmt.Errorf("read the plan: %w", err)
	}
	if len(bytes.TrimSpace(data)) == 0 {
		return nil, fmt.Errorf("%s: the plan file is empty", name)
	}
	isJSON := strings.EqualFold(filepath.Ext(path), ".json") ||
		(path == "-" || !isYAMLName(path)) && bytes.HasPrefix(bytes.TrimSpace(data), []byte("{"))
	spec := &apiv1.PlanSpec{}
	if isJSON {
		err = decodeJSONSpec(data, spec)
	} else {
		err = decodeYAMLSpec(data, spec)
	}
	if err != nil {
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	return spec, nil
}

func isYAMLName(path string) bool {
	ext := strings.ToLower(filepath.Ext(path))
	return ext == ".yaml" || ext == ".yml"
}

var jsonUnknown = regexp.MustCompile(`^json: unknown field "(.*)"$`)

func decodeJSONSpec(data []byte, spec *apiv1.PlanSpec) error {
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(spec); err != nil {
		if m := jsonUnknown.FindStringSubmatch(err.Error()); m != nil {
			return fmt.Errorf("unknown field %q: a plan has no such field%s (see the plan spec: GET /api/v1/openapi.yaml, PlanSpec)", m[1], suggest(m[1], allFieldNames()))
		}
		var se *json.SyntaxError
		if errors.As(err, &se) {
			line, col := position(data, se.Offset)
			return fmt.Errorf("line %d column %d: not valid JSON: %v", line, col, err)
		}
		var te *json.UnmarshalTypeError
		if errors.As(err, &te) {
			return fmt.Errorf("field %q: a %s cannot be a %s", te.Field, jsonKind(te.Type), te.Value)
		}
		return fmt.Errorf("not a valid plan: %v", err)
	}
	if dec.More() {
		return errors.New("more than one JSON value: a plan file holds one plan")
	}
	return nil
}

func jsonKind(t reflect.Type) string {
	switch t.Kind() {
	case reflect.String:
		return "string"
	case reflect.Bool:
		return "boolean"
	case reflect.Int, reflect.Int64, reflect.Int32:
		return "integer"
	case reflect.Slice:
		return "list"
	case reflect.Map, reflect.Struct:
		return "object"
	}
	return t.String()
}

var yamlUnknown = regexp.MustCompile(`line (\d+): field (\S+) not found in type (\S+)`)

func decodeYAMLSpec(data []byte, spec *apiv1.PlanSpec) error {
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	if err := dec.Decode(spec); err != nil {
		var te *yaml.TypeError
		if errors.As(err, &te) {
			var msgs []string
			for _, e := range te.Errors {
				if m := yamlUnknown.FindStringSubmatch(e); m != nil {
					known := fieldsOf(m[3])
					msgs = append(msgs, fmt.Sprintf("line %s: unknown field %q in %s%s", m[1], m[2], where(m[3]), suggest(m[2], known)))
					continue
				}
				msgs = append(msgs, strings.TrimPrefix(e, "yaml: "))
			}
			if len(msgs) == 1 {
				return fmt.Errorf("not a valid plan: %s", msgs[0])
			}
			return fmt.Errorf("not a valid plan:\n  %s", strings.Join(msgs, "\n  "))
		}
		return fmt.Errorf("not valid YAML: %v", strings.TrimPrefix(err.Error(), "yaml: "))
	}
	var extra yaml.Node
	if err := dec.Decode(&extra); err == nil {
		return errors.New("more than one YAML document: a plan file holds one plan")
	}
	return nil
}

// position turns a byte offset into a line and column.
func position(data []byte, off int64) (int, int) {
	if off > int64(len(data)) {
		off = int64(len(data))
	}
	before := data[:off]
	line := bytes.Count(before, []byte("\n")) + 1
	col := int(off) - bytes.LastIndexByte(before, '\n')
	return line, col
}

// specTypes are the struct types of a plan spec, by Go type name as yaml errors give it.
var specTypes = map[string]reflect.Type{}

func init() {
	var walk func(t reflect.Type)
	walk = func(t reflect.Type) {
		for t.Kind() == reflect.Pointer || t.Kind() == reflect.Slice || t.Kind() == reflect.Map {
			t = t.Elem()
		}
		if t.Kind() != reflect.Struct || specTypes[t.String()] != nil {
			return
		}
		specTypes[t.String()] = t
		for i := 0; i < t.NumField(); i++ {
			walk(t.Field(i).Type)
		}
	}
	walk(reflect.TypeOf(apiv1.PlanSpec{}))
}

// fieldsOf lists the YAML field names of a spec type.
func fieldsOf(typeName string) []string {
	t := specTypes[typeName]
	if t == nil {
		return nil
	}
	var out []string
	for i := 0; i < t.NumField(); i++ {
		name, _, _ := strings.Cut(t.Field(i).Tag.Get("yaml"), ",")
		if name != "" && name != "-" {
			out = append(out, name)
		}
	}
	return out
}

func allFieldNames() []string {
	seen := map[string]bool{}
	var out []string
	for name := range specTypes {
		for _, f := range fieldsOf(name) {
			if !seen[f] {
				seen[f] = true
				out = append(out, f)
			}
		}
	}
	sort.Strings(out)
	return out
}

// where names a spec type as the plan file's author knows it.
func where(typeName string) string {
	switch typeName {
	case "apiv1.PlanSpec":
		return "the plan"
	case "apiv1.PlanSelector":
		return "selector"
	case "apiv1.PlanDefaults":
		return "defaults"
	case "apiv1.NetworkMap":
		return "a networkMapping entry"
	case "apiv1.TierRule":
		return "a tiers entry"
	case "apiv1.PlanOverride":
		return "an override"
	}
	return typeName
}

// suggest proposes the known field closest to a misspelled one, and lists them all.
func suggest(field string, known []string) string {
	if len(known) == 0 {
		return ""
	}
	best, bestDist := "", 3
	for _, k := range known {
		if strings.EqualFold(k, field) {
			best, bestDist = k, 0
			break
		}
		if d := editDistance(strings.ToLower(k), strings.ToLower(field)); d < bestDist {
			best, bestDist = k, d
		}
	}
	s := ""
	if best != "" {
		s = fmt.Sprintf(" (did you mean %q?)", best)
	}
	if len(known) <= 15 {
		s += "; known fields: " + strings.Join(known, ", ")
	}
	return s
}

func editDistance(a, b string) int {
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}
