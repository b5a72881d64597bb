// SPDX-License-Identifier: GPL-2.0-or-later

package volume

import (
	"errors"
	"fmt"
)

// Sentinel errors, matched with errors.Is by callers that translate them
// into wire codes.
var (
	ErrInvalidName        = errors.New("invalid name")
	ErrNotSupported       = errors.New("not supported")
	ErrNotStopped   error = stateError("is not cleanly stopped")
	ErrReadOnly     error = stateError("is read-only")
)

// stateError describes the volume itself, so it reads as a sentence after
// the vid: "appvms/work/private is read-only".
type stateError string

func (e stateError) Error() string { return string(e) }

// OpError is the failure of one operation on one volume. Its message is
// meant for the user: "Cannot revert: appvms/work/private is not cleanly
// stopped".
type OpError struct {
	Op  string
	VID string
	Err error
}

func (e *OpError) Error() string {
	var state stateError
	switch {
	case errors.As(e.Err, &state) && errors.Is(e.Err, state):
		return fmt.Sprintf("Cannot %s: %s %s", e.Op, e.VID, e.Err)
	case errors.Is(e.Err, ErrInvalidName):
		return fmt.Sprintf("Cannot %s: %s", e.Op, e.Err)
	default:
		return fmt.Sprintf("Cannot %s: %s: %s", e.Op, e.VID, e.Err)
	}
}

func (e *OpError) Unwrap() error { return e.Err }

// opError wraps a failure of op on vid; nil stays nil.
func opError(op, vid string, err error) error {
	if err == nil {
		return nil
	}
	return &OpError{Op: op, VID: vid, Err: err}
}
