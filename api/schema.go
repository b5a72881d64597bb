// SPDX-License-Identifier: GPL-2.0-or-later

package api

import (
	"encoding/json"
	"fmt"
	"reflect"
	"sort"
	"strings"
)

//go:generate go run ./internal/gen

// schemaDoc is the machine-readable description of the protocol, from
// which go generate also writes the Python driver's tables, so the shim
// cannot drift from these types.
type schemaDoc struct {
	Protocol int                     `json:"protocol"`
	Ops      map[Op]schemaOp         `json:"ops"`
	AdminOps []Op                    `json:"admin_ops"`
	Types    map[string]schemaStruct `json:"types"`
	Codes    []Code                  `json:"codes"`
}

type schemaOp struct {
	Args   string `json:"args"`
	Result string `json:"result"`
}

type schemaStruct map[string]string

// Schema renders the protocol's schema as indented JSON.
func Schema() ([]byte, error) {
	doc := schemaDoc{
		Protocol: ProtocolVersion,
		Ops:      map[Op]schemaOp{},
		AdminOps: sortedOps(AdminOps),
		Types:    map[string]schemaStruct{},
		Codes:    Codes,
	}
	for op, types := range Ops {
		doc.Ops[op] = schemaOp{
			Args:   describe(reflect.TypeOf(types.Args), doc.Types),
			Result: describe(reflect.TypeOf(types.Result), doc.Types),
		}
	}
	out, err := json.MarshalIndent(doc, "", "  ")
	if err != nil {
		return nil, fmt.Errorf("render schema: %w", err)
	}
	return append(out, '\n'), nil
}

// describe names t in JSON terms and records every struct it reaches.
func describe(t reflect.Type, types map[string]schemaStruct) string {
	switch t.Kind() {
	case reflect.Struct:
		if _, seen := types[t.Name()]; !seen {
			fields := schemaStruct{}
			types[t.Name()] = fields
			describeFields(t, fields, types)
		}
		return t.Name()
	case reflect.Slice:
		return "[]" + describe(t.Elem(), types)
	case reflect.Map:
		return "map[" + describe(t.Key(), types) + "]" + describe(t.Elem(), types)
	case reflect.Pointer:
		return describe(t.Elem(), types)
	case reflect.Bool:
		return "bool"
	case reflect.String:
		return "string"
	case reflect.Int, reflect.Int64, reflect.Uint64:
		return "int"
	default:
		panic(fmt.Sprintf("api schema: unsupported kind %s", t.Kind()))
	}
}

// describeFields records the fields of struct t in fields. Those of an
// embedded struct without a json name are t's own, as encoding/json
// writes them.
func describeFields(t reflect.Type, fields schemaStruct, types map[string]schemaStruct) {
	for i := range t.NumField() {
		f := t.Field(i)
		name, _, _ := strings.Cut(f.Tag.Get("json"), ",")
		if f.Anonymous && name == "" && f.Type.Kind() == reflect.Struct {
			describeFields(f.Type, fields, types)
			continue
		}
		fields[name] = describe(f.Type, types)
	}
}

// OpNames returns every op, sorted.
func OpNames() []Op {
	ops := make([]Op, 0, len(Ops))
	for op := range Ops {
		ops = append(ops, op)
	}
	return sortedOps(ops)
}

func sortedOps(ops []Op) []Op {
	ops = append([]Op(nil), ops...)
	sort.Slice(ops, func(i, j int) bool { return ops[i] < ops[j] })
	return ops
}
