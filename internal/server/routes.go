// SPDX-License-Identifier: GPL-2.0-or-later

package server

import (
	"encoding/json"
	"fmt"
	"reflect"

	"github.com/btrfs-vdo/btrfs-vdo/api"
)

// routes maps every op in api.Ops to its handler; a test checks that each
// route's argument and result types are the op's in api.Ops.
var routes = map[api.Op]endpoint{
	api.OpHello:               route(handleHello),
	api.OpStatus:              route(handleStatus),
	api.OpPoolSetup:           route(handlePoolSetup),
	api.OpVolumeCreate:        route(stateOp(VolumeStore.Create)),
	api.OpVolumeRemove:        route(stateOp(VolumeStore.Remove)),
	api.OpVolumeVerify:        route(stateOp(VolumeStore.Verify)),
	api.OpVolumeStart:         route(stateOp(VolumeStore.Start)),
	api.OpVolumeStop:          route(stateOp(VolumeStore.Stop)),
	api.OpVolumeInfo:          route(stateOp(VolumeStore.Info)),
	api.OpVolumeRevert:        route(handleRevert),
	api.OpVolumeResize:        route(handleResize),
	api.OpVolumeExport:        route(handleExport),
	api.OpVolumeExportEnd:     route(handleExportEnd),
	api.OpVolumeImportData:    route(handleImportData),
	api.OpVolumeImportDataEnd: route(handleImportDataEnd),
	api.OpVolumeImportVolume:  route(handleImportVolume),
	api.OpOptimize:            route(handleOptimize),
	api.OpJobs:                route(handleJobs),
	api.OpStats:               route(handleStats),
}

// endpoint is a route with its types erased, as routes holds it.
type endpoint interface {
	// bind decodes raw into the route's arguments, refusing unknown and
	// duplicate keys, and returns the call of the handler on them.
	bind(raw json.RawMessage) (call, error)
	// types are the route's argument and result types.
	types() (args, result reflect.Type)
}

// call runs a handler on the arguments bound to it.
type call func(*Server) (any, error)

// typedRoute is a handler of arguments A and result R.
type typedRoute[A, R any] func(*Server, A) (R, error)

// route makes handle an endpoint; its types come from its signature.
func route[A, R any](handle func(*Server, A) (R, error)) endpoint {
	return typedRoute[A, R](handle)
}

func (h typedRoute[A, R]) bind(raw json.RawMessage) (call, error) {
	var args A
	if err := decodeStrict(raw, &args); err != nil {
		return nil, &api.Error{Code: api.CodeBadRequest, Message: fmt.Sprintf("malformed arguments: %v", err)}
	}
	return func(s *Server) (any, error) {
		res, err := h(s, args)
		if err != nil {
			return nil, err
		}
		return res, nil
	}, nil
}

func (typedRoute[A, R]) types() (args, result reflect.Type) {
	return reflect.TypeFor[A](), reflect.TypeFor[R]()
}

// bindRequest finds req's route and binds its arguments ({} if absent).
func bindRequest(req api.Request) (call, error) {
	r, ok := routes[req.Op]
	if !ok {
		return nil, &api.Error{Code: api.CodeBadRequest, Message: fmt.Sprintf("unknown op %q", req.Op)}
	}
	if len(req.Args) == 0 {
		req.Args = json.RawMessage("{}")
	}
	return r.bind(req.Args)
}

func (s *Server) dispatch(req api.Request) (any, error) {
	run, err := bindRequest(req)
	if err != nil {
		return nil, err
	}
	return run(s)
}
