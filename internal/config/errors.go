// SPDX-License-Identifier: GPL-2.0-or-later

package config

import (
	"errors"
	"reflect"
	"regexp"
	"slices"
	"strconv"

	"github.com/BurntSushi/toml"
)

// Error is one problem in a configuration file. Line is 0 when the
// position is not known.
type Error struct {
	Path string
	Line int
	Key  string
	Msg  string
}

func (e *Error) Error() string {
	where := e.Path
	if e.Line > 0 {
		where += ":" + strconv.Itoa(e.Line)
	}
	if e.Key == "" {
		return where + ": " + e.Msg
	}
	return where + ": " + e.Key + ": " + e.Msg
}

// joinErrors orders errs by line and joins them; nil when there are none.
func joinErrors(errs []*Error) error {
	slices.SortStableFunc(errs, func(a, b *Error) int { return a.Line - b.Line })
	joined := make([]error, len(errs))
	for i, e := range errs {
		joined[i] = e
	}
	return errors.Join(joined...)
}

// decodeError turns the library's errors into an *Error. Syntax errors and
// values refused by an UnmarshalTOML/UnmarshalText method come as
// toml.ParseError with a position; a type mismatch comes as a plain error
// whose text names the line and the key (typeMismatch).
func decodeError(path string, err error) *Error {
	var pe toml.ParseError
	if errors.As(err, &pe) {
		return &Error{Path: path, Line: pe.Position.Line, Key: pe.LastKey, Msg: pe.Message}
	}
	if m := typeMismatch.FindStringSubmatch(err.Error()); m != nil {
		line, _ := strconv.Atoi(m[1])
		return &Error{Path: path, Line: line, Key: m[2], Msg: m[3]}
	}
	return &Error{Path: path, Msg: err.Error()}
}

// typeMismatch is the text of the library's type mismatch error.
var typeMismatch = regexp.MustCompile(`^toml: line (\d+) \(last key "(.*)"\): (.*)$`)

// unknownKeys drops the keys below another unknown key: an unknown table
// is reported once, not once per key in it.
func unknownKeys(undecoded []toml.Key) []toml.Key {
	var out []toml.Key
	for _, k := range undecoded {
		if !slices.ContainsFunc(out, func(parent toml.Key) bool { return isPrefix(parent, k) }) {
			out = append(out, k)
		}
	}
	return out
}

func isPrefix(parent, k toml.Key) bool {
	return len(parent) < len(k) && slices.Equal(parent, k[:len(parent)])
}

// keyLine returns the line on which key is set in data, or 0.
//
// The library records every key's position but exposes it only in a
// ParseError. So data is decoded again into a struct built for this one
// key whose innermost value always refuses to decode: the ParseError that
// results carries the key's line.
func keyLine(data []byte, key toml.Key) int {
	t := reflect.TypeFor[refuse]()
	for i := len(key) - 1; i >= 0; i-- {
		tag := reflect.StructTag("toml:" + strconv.Quote(key[i]))
		t = reflect.StructOf([]reflect.StructField{{Name: "K", Type: t, Tag: tag}})
	}
	_, err := toml.Decode(string(data), reflect.New(t).Interface())
	var pe toml.ParseError
	if errors.As(err, &pe) { // data parsed before: the error is refuse's
		return pe.Position.Line
	}
	return 0
}

// refuse is keyLine's innermost value.
type refuse struct{}

func (refuse) UnmarshalTOML(any) error { return errors.New("refused") }
