// SPDX-License-Identifier: GPL-2.0-or-later

package api_test

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/btrfs-vdo/btrfs-vdo/api"
)

// The schema's admin ops are ops, each once.
func TestAdminOpsAreOps(t *testing.T) {
	seen := map[api.Op]bool{}
	for _, op := range api.AdminOps {
		if _, ok := api.Ops[op]; !ok || seen[op] {
			t.Errorf("admin op %q is unknown or listed twice", op)
		}
		seen[op] = true
	}
}

// decodeStrict decodes data into a new value of v's type, refusing unknown
// fields, and returns it.
func decodeStrict(t *testing.T, data []byte, v any) any {
	t.Helper()
	ptr := reflect.New(reflect.TypeOf(v))
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(ptr.Interface()); err != nil {
		t.Fatalf("decode as %T: %v", v, err)
	}
	return ptr.Elem().Interface()
}

// assertRoundTrip checks that re-encoding the decoded value gives back the
// golden JSON: every field in the file is known and nothing is dropped.
func assertRoundTrip(t *testing.T, golden []byte, decoded any) {
	t.Helper()
	again, err := json.Marshal(decoded)
	if err != nil {
		t.Fatal(err)
	}
	var a, b any
	if err := json.Unmarshal(golden, &a); err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(again, &b); err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(a, b) {
		t.Fatalf("round trip differs:\n golden %s\n again  %s", golden, again)
	}
}

func TestGoldenExchanges(t *testing.T) {
	for _, op := range api.OpNames() {
		t.Run(string(op), func(t *testing.T) {
			types := api.Ops[op]
			reqData := readGolden(t, string(op)+".request.json")
			req := decodeStrict(t, reqData, api.Request{}).(api.Request)
			if req.V != api.ProtocolVersion || req.Op != op {
				t.Fatalf("request header = v%d %q", req.V, req.Op)
			}
			assertRoundTrip(t, req.Args, decodeStrict(t, req.Args, types.Args))

			respData := readGolden(t, string(op)+".response.json")
			resp := decodeStrict(t, respData, api.Response{}).(api.Response)
			if !resp.OK || resp.Error != nil {
				t.Fatalf("response is not a success: %s", respData)
			}
			assertRoundTrip(t, resp.Result, decodeStrict(t, resp.Result, types.Result))
		})
	}
}

func TestGoldenErrors(t *testing.T) {
	files, err := filepath.Glob("testdata/ops/*.error-*.json")
	if err != nil || len(files) == 0 {
		t.Fatalf("no error golden files: %v", err)
	}
	for _, file := range files {
		t.Run(filepath.Base(file), func(t *testing.T) {
			data := readGolden(t, filepath.Base(file))
			resp := decodeStrict(t, data, api.Response{}).(api.Response)
			if resp.OK || resp.Error == nil || resp.Result != nil {
				t.Fatalf("not an error response: %s", data)
			}
			if !strings.HasSuffix(file, "error-"+string(resp.Error.Code)+".json") {
				t.Fatalf("file name does not match code %q", resp.Error.Code)
			}
			if !knownCode(resp.Error.Code) {
				t.Fatalf("unknown code %q", resp.Error.Code)
			}
		})
	}
}

func TestEveryOpHasGoldenFiles(t *testing.T) {
	files, _ := filepath.Glob("testdata/ops/*.request.json")
	if len(files) != len(api.Ops) {
		t.Fatalf("%d request golden files for %d ops", len(files), len(api.Ops))
	}
}

func knownCode(code api.Code) bool {
	for _, c := range api.Codes {
		if c == code {
			return true
		}
	}
	return false
}

func readGolden(t *testing.T, name string) []byte {
	t.Helper()
	data, err := os.ReadFile(filepath.Join("testdata", "ops", name))
	if err != nil {
		t.Fatal(err)
	}
	return data
}
