// SPDX-License-Identifier: GPL-2.0-or-later

package server

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"net"
	"reflect"
	"strings"
	"testing"

	"github.com/btrfs-vdo/btrfs-vdo/api"
)

// readerConn feeds readFrame from memory: it only ever reads.
type readerConn struct {
	net.Conn
	r io.Reader
}

func (c readerConn) Read(b []byte) (int, error) { return c.r.Read(b) }

// fuzzSeeds are requests well-formed but for duplicate or case-variant
// keys at each level, and the same requests written correctly.
var fuzzSeeds = []string{
	`{"v":1,"op":"hello","args":{"client":"fuzz"}}`,
	`{"v":1,"op":"status","op":"hello","args":{}}`,
	`{"v":1,"OP":"hello","args":{}}`,
	`{"v":1,"Op":"hello","args":{}}`,
	`{"V":1,"op":"hello"}`,
	`{"v":1,"op":"hello","args":{"client":"a","client":"b"}}`,
	`{"v":1,"op":"hello","args":{"Client":"a"}}`,
	`{"v":1,"op":"volume.resize","args":{` + testPool + `,` + testVolume + `,"size":2}}`,
	`{"v":1,"op":"volume.resize","args":{"pool":{"name":"p","name":"q","dir_path":"/p"},` + testVolume + `,"size":2}}`,
	`{"v":1,"op":"volume.resize","args":{` + testPool + `,"volume":{"vid":"appvms/a/private","\u017fize":1},"size":2}}`,
	`{"v":1,"op":"volume.resize","args":{` + testPool + `,` + testVolume + `,"size":2,"Size":3}}`,
}

// FuzzDecodeRequest feeds arbitrary bytes through the daemon's framing,
// request decoding and its routes' argument decoding: nothing panics, bad input is
// always refused with an *api.Error of a request code, and what is taken
// has no duplicate key and no key that is not exactly a field's name.
func FuzzDecodeRequest(f *testing.F) {
	for _, seed := range fuzzSeeds {
		f.Add([]byte(seed + "\n"))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		frame, err := readFrame(readerConn{r: bytes.NewReader(data)})
		end := bytes.IndexByte(data, '\n') + 1
		if wantErr := end == 0 || end > api.MaxFrameBytes; (err != nil) != wantErr {
			t.Fatalf("readFrame(%q) = %q, %v", data, frame, err)
		}
		if err != nil {
			return
		}
		if !bytes.Equal(frame, data[:end]) {
			t.Fatalf("readFrame(%q) = %q, want the first line", data, frame)
		}
		req, apiErr := decodeRequest(frame)
		if apiErr != nil {
			checkRefusal(t, frame, apiErr, api.CodeBadRequest, api.CodeUnsupportedProtocol)
			return
		}
		// Bound through the routes as dispatch binds it, without running
		// the handler (which would touch the filesystem).
		if _, err := bindRequest(req); err != nil {
			checkRefusal(t, frame, err, api.CodeBadRequest)
			return
		}
		checkExactKeys(t, frame, req.Op)
	})
}

// checkExactKeys fails t unless every object in frame, a request the
// daemon took, has distinct keys, each exactly the json name of a field
// of api.Request or of op's arguments.
func checkExactKeys(t *testing.T, frame []byte, op api.Op) {
	t.Helper()
	names := make(map[string]bool)
	addJSONNames(names, reflect.TypeOf(api.Request{}))
	addJSONNames(names, reflect.TypeOf(api.Ops[op].Args))
	// One entry per open array or object: its keys so far (nil for an
	// array), and whether a key comes next.
	type open struct {
		keys    map[string]bool
		wantKey bool
	}
	var stack []*open
	dec := json.NewDecoder(bytes.NewReader(frame))
	for {
		tok, err := dec.Token()
		if errors.Is(err, io.EOF) {
			return
		}
		if err != nil {
			t.Fatalf("%q was taken but does not parse: %v", frame, err)
		}
		var top *open
		if len(stack) > 0 {
			top = stack[len(stack)-1]
		}
		if key, ok := tok.(string); ok && top != nil && top.wantKey {
			if top.keys[key] || !names[key] {
				t.Fatalf("%q was taken with key %q: a duplicate or not a field's exact name", frame, key)
			}
			top.keys[key], top.wantKey = true, false
			continue
		}
		if top != nil && top.keys != nil {
			top.wantKey = true // a value ends here or after its nested values
		}
		switch tok {
		case json.Delim('{'):
			stack = append(stack, &open{keys: make(map[string]bool), wantKey: true})
		case json.Delim('['):
			stack = append(stack, &open{})
		case json.Delim('}'), json.Delim(']'):
			stack = stack[:len(stack)-1]
		}
	}
}

// addJSONNames adds the json names of every struct field reachable from t.
func addJSONNames(names map[string]bool, t reflect.Type) {
	switch t.Kind() {
	case reflect.Pointer, reflect.Slice, reflect.Array, reflect.Map:
		addJSONNames(names, t.Elem())
	case reflect.Struct:
		for i := range t.NumField() {
			f := t.Field(i)
			if name, _, _ := strings.Cut(f.Tag.Get("json"), ","); name != "" && name != "-" {
				names[name] = true
			}
			addJSONNames(names, f.Type)
		}
	}
}

func checkRefusal(t *testing.T, frame []byte, err error, codes ...api.Code) {
	t.Helper()
	var apiErr *api.Error
	if !errors.As(err, &apiErr) {
		t.Fatalf("%q refused with %T %v, not an *api.Error", frame, err, err)
	}
	for _, code := range codes {
		if apiErr.Code == code && apiErr.Message != "" {
			return
		}
	}
	t.Fatalf("%q refused with %+v, want a message and one of %v", frame, apiErr, codes)
}
