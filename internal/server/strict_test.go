// SPDX-License-Identifier: GPL-2.0-or-later

package server

import (
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/btrfs-vdo/btrfs-vdo/api"
)

// decodeAll decodes frame as the daemon does, the request and then its
// op's arguments, without running the op.
func decodeAll(frame []byte) (api.Request, error) {
	req, apiErr := decodeRequest(frame)
	if apiErr != nil {
		return req, apiErr
	}
	_, err := bindRequest(req)
	return req, err
}

const (
	testPool   = `"pool":{"name":"p","dir_path":"/var/lib/p"}`
	testVolume = `"volume":{"vid":"appvms/a/private","rw":true,"save_on_stop":true,"snap_on_start":false,"revisions_to_keep":1,"size":1,"source":""}`
)

func TestStrictDecodeRefuses(t *testing.T) {
	tests := []struct {
		name, frame, want string
	}{
		{"duplicate op", `{"v":1,"op":"status","op":"hello","args":{}}`, `top-level object: duplicate key "op"`},
		{"duplicate v", `{"v":2,"op":"hello","v":1,"args":{}}`, `duplicate key "v"`},
		{"duplicate args", `{"v":1,"op":"hello","args":{},"args":{"client":"x"}}`, `duplicate key "args"`},
		{"OP", `{"v":1,"OP":"hello","args":{}}`, `unknown key "OP" (keys are case-sensitive: the field is "op")`},
		{"Op", `{"v":1,"Op":"hello","args":{}}`, `unknown key "Op"`},
		{"V", `{"V":1,"op":"hello","args":{}}`, `unknown key "V"`},
		{"op beside OP", `{"v":1,"op":"status","OP":"hello","args":{}}`, `unknown key "OP"`},
		{"duplicate in args", `{"v":1,"op":"hello","args":{"client":"a","client":"b"}}`, `args: duplicate key "client"`},
		{"case variant in args", `{"v":1,"op":"hello","args":{"Client":"a"}}`, `unknown key "Client"`},
		{"unknown key in args", `{"v":1,"op":"hello","args":{"client":"a","evil":1}}`, `unknown key "evil"`},
		{"duplicate in nested pool", `{"v":1,"op":"volume.info","args":{"pool":{"name":"p","dir_path":"/a","dir_path":"/b"},` + testVolume + `}}`,
			`args.pool: duplicate key "dir_path"`},
		{"duplicate nested object", `{"v":1,"op":"volume.info","args":{` + testPool + `,` + testVolume + `,` + testPool + `}}`,
			`args: duplicate key "pool"`},
		{"case variant in nested volume", `{"v":1,"op":"volume.info","args":{` + testPool + `,"volume":{"VID":"appvms/a/private"}}}`,
			`unknown key "VID"`},
		{"unicode case fold", `{"v":1,"op":"volume.info","args":{` + testPool + `,"volume":{"vid":"appvms/a/private","\u017fize":1}}}`,
			`unknown key "ſize"`},
		{"escaped duplicate", `{"v":1,"op":"status","\u006fp":"hello","args":{}}`, `duplicate key "op"`},
		{"duplicate deep in args", `{"v":1,"op":"hello","args":{"x":[{"a":1,"a":2}]}}`, `args.x[0]: duplicate key "a"`},
		{"trailing brace", `{"v":1,"op":"stats"}}`, "trailing data"},
		{"trailing bracket in args", `{"v":1,"op":"hello","args":{"client":"a"}]}`, "invalid character"},
		{"too deep", `{"v":1,"op":"hello","args":` + strings.Repeat("[", 100) + strings.Repeat("]", 100) + `}`, "nested deeper than"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := decodeAll([]byte(tt.frame + "\n"))
			var apiErr *api.Error
			if !errors.As(err, &apiErr) || apiErr.Code != api.CodeBadRequest {
				t.Fatalf("decode %s: %v, want %s", tt.frame, err, api.CodeBadRequest)
			}
			if !strings.Contains(apiErr.Message, tt.want) {
				t.Fatalf("decode %s: %q, want it to say %q", tt.frame, apiErr.Message, tt.want)
			}
		})
	}
}

// TestStrictDecodeAccepts checks that well-formed requests decode as
// encoding/json alone decodes them: the golden request of every op, and
// keys written with escapes.
func TestStrictDecodeAccepts(t *testing.T) {
	files, err := filepath.Glob("../../api/testdata/ops/*.request.json")
	if err != nil || len(files) < len(api.Ops) {
		t.Fatalf("golden requests: %d files, %v; want one per op (%d)", len(files), err, len(api.Ops))
	}
	frames := map[string][]byte{
		"escaped key":             []byte(`{"v":1,"\u006fp":"hello","args":{"client":"x"}}`),
		"no args":                 []byte(`{"v":1,"op":"status"}`),
		"null args":               []byte(`{"v":1,"op":"jobs","args":null}`),
		"same key in two objects": []byte(`{"v":1,"op":"volume.resize","args":{` + testPool + `,` + testVolume + `,"size":2}}`),
	}
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		frames[filepath.Base(f)] = data
	}
	for name, frame := range frames {
		t.Run(name, func(t *testing.T) {
			got, err := decodeAll(frame)
			if err != nil {
				t.Fatalf("decode %s: %v", frame, err)
			}
			var want api.Request
			if err := json.Unmarshal(frame, &want); err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got, want) {
				t.Fatalf("decoded %+v, encoding/json gives %+v", got, want)
			}
		})
	}
}

// TestCheckKeysNames checks that checkKeys knows a struct's keys as
// encoding/json names them: tags, untagged names, fields left out, and
// the fields an embedded struct lends.
func TestCheckKeysNames(t *testing.T) {
	type inner struct {
		Shared string `json:"shared"`
		Lent   int    `json:"lent"`
	}
	type outer struct {
		inner
		Shared  int `json:"shared"`
		Plain   int
		Skipped int `json:"-"`
		hidden  int
	}
	_ = outer{}.hidden
	tests := []struct {
		json string
		ok   bool
	}{
		{`{"shared":1,"lent":2,"Plain":3}`, true},
		{`{"plain":3}`, false},
		{`{"Skipped":1}`, false},
		{`{"-":1}`, false},
		{`{"hidden":1}`, false},
		{`{"inner":{}}`, false},
		{`{"lent":1,"lent":2}`, false},
	}
	for _, tt := range tests {
		err := checkKeys([]byte(tt.json), reflect.TypeFor[outer]())
		if (err == nil) != tt.ok {
			t.Errorf("checkKeys(%s) = %v, want ok %v", tt.json, err, tt.ok)
		}
		var v outer
		if jerr := decodeStrict([]byte(tt.json), &v); (jerr == nil) != tt.ok {
			t.Errorf("decodeStrict(%s) = %v, want ok %v", tt.json, jerr, tt.ok)
		}
	}
}
