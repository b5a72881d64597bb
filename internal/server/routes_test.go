// SPDX-License-Identifier: GPL-2.0-or-later

package server

import (
	"reflect"
	"testing"

	"github.com/btrfs-vdo/btrfs-vdo/api"
)

// Every op has a route and every route an op, and a route decodes exactly
// the op's argument type and answers exactly its result type.
func TestRoutesMatchOps(t *testing.T) {
	for op, types := range api.Ops {
		r, ok := routes[op]
		if !ok {
			t.Errorf("no route for %s", op)
			continue
		}
		args, result := r.types()
		if want := reflect.TypeOf(types.Args); args != want {
			t.Errorf("%s: route takes %v, api.Ops says %v", op, args, want)
		}
		if want := reflect.TypeOf(types.Result); result != want {
			t.Errorf("%s: route answers %v, api.Ops says %v", op, result, want)
		}
	}
	for op := range routes {
		if _, ok := api.Ops[op]; !ok {
			t.Errorf("route for unknown op %s", op)
		}
	}
}
