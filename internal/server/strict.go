// SPDX-License-Identifier: GPL-2.0-or-later

package server

import (
	"bytes"
	"encoding/json"
	"fmt"
	"reflect"
	"strings"
)

// maxNesting bounds how deeply checkKeys follows arrays and objects; a
// request is four levels deep. It keeps the recursion shallow whatever a
// frame holds.
const maxNesting = 32

var unmarshalerType = reflect.TypeFor[json.Unmarshaler]()

// checkKeys refuses the JSON value data if any object in it, at any depth,
// has a key twice, or a key that is not exactly the json name of a field
// of the struct it decodes into. encoding/json would keep the last of two
// duplicates and match keys case-insensitively, so {"op":"status",
// "op":"hello"} or {"OP":"hello"} would run something else than a reader
// of the request sees. t is the Go type data decodes into; where it does
// not say (json.RawMessage, interfaces), keys are only checked for
// duplicates. A value of the wrong kind for t is left to encoding/json.
func checkKeys(data []byte, t reflect.Type) error {
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.UseNumber()
	return checkValue(dec, t, "", 0)
}

// checkValue checks the value at dec's next token, found at path.
func checkValue(dec *json.Decoder, t reflect.Type, path string, depth int) error {
	tok, err := dec.Token()
	if err != nil {
		return err
	}
	delim, ok := tok.(json.Delim)
	if !ok {
		return nil // a scalar
	}
	if depth >= maxNesting {
		return fmt.Errorf("%s: nested deeper than %d levels", where(path), maxNesting)
	}
	t = shape(t)
	if delim == '[' {
		var elem reflect.Type
		if t != nil && (t.Kind() == reflect.Slice || t.Kind() == reflect.Array) {
			elem = t.Elem()
		}
		for i := 0; dec.More(); i++ {
			if err := checkValue(dec, elem, fmt.Sprintf("%s[%d]", path, i), depth+1); err != nil {
				return err
			}
		}
	} else if err := checkObject(dec, t, path, depth); err != nil {
		return err
	}
	_, err = dec.Token() // the closing delimiter
	return err
}

// checkObject checks the keys and values of an object whose opening brace
// dec has just read.
func checkObject(dec *json.Decoder, t reflect.Type, path string, depth int) error {
	var fields map[string]reflect.Type
	var elem reflect.Type
	switch {
	case t != nil && t.Kind() == reflect.Struct:
		fields = jsonFields(t)
	case t != nil && t.Kind() == reflect.Map:
		elem = t.Elem()
	}
	seen := make(map[string]bool)
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			return err
		}
		key := tok.(string) // the decoder only gives strings as keys
		if seen[key] {
			return fmt.Errorf("%s: duplicate key %q", where(path), key)
		}
		seen[key] = true
		child := elem
		if fields != nil {
			var known bool
			if child, known = fields[key]; !known {
				return unknownKey(path, key, fields)
			}
		}
		if err := checkValue(dec, child, path+"."+key, depth+1); err != nil {
			return err
		}
	}
	return nil
}

// shape is t without pointers, or nil where t does not say which keys an
// object may have: no type, an interface, or a type that decodes itself
// (json.RawMessage among them).
func shape(t reflect.Type) reflect.Type {
	for t != nil && t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	if t == nil || t.Kind() == reflect.Interface || reflect.PointerTo(t).Implements(unmarshalerType) {
		return nil
	}
	return t
}

// jsonFields maps the json names of struct t's fields, as encoding/json
// names them, to their types. An embedded struct without a json name
// lends its fields, unless t has a field of the same name.
func jsonFields(t reflect.Type) map[string]reflect.Type {
	fields := make(map[string]reflect.Type)
	var embedded []reflect.Type
	for i := range t.NumField() {
		f := t.Field(i)
		tag := f.Tag.Get("json")
		if tag == "-" {
			continue
		}
		name, _, _ := strings.Cut(tag, ",")
		if f.Anonymous && name == "" {
			if ft := shape(f.Type); ft != nil && ft.Kind() == reflect.Struct {
				embedded = append(embedded, ft)
				continue
			}
		}
		if !f.IsExported() {
			continue
		}
		if name == "" {
			name = f.Name
		}
		fields[name] = f.Type
	}
	for _, e := range embedded {
		for name, ft := range jsonFields(e) {
			if _, taken := fields[name]; !taken {
				fields[name] = ft
			}
		}
	}
	return fields
}

// unknownKey is the error for key, which no field of an object at path
// is named; a key that differs from a field's name only in case says so.
func unknownKey(path, key string, fields map[string]reflect.Type) error {
	for name := range fields {
		if strings.EqualFold(name, key) {
			return fmt.Errorf("%s: unknown key %q (keys are case-sensitive: the field is %q)", where(path), key, name)
		}
	}
	return fmt.Errorf("%s: unknown key %q", where(path), key)
}

// where names a place in the request for an error message.
func where(path string) string {
	if path == "" {
		return "top-level object"
	}
	return strings.TrimPrefix(path, ".")
}
