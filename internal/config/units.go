// SPDX-License-Identifier: GPL-2.0-or-later

package config

import (
	"fmt"
	"strconv"
	"strings"
	"time"
)

// Size is a number of bytes, written in the file as an integer or as a
// string with a binary unit: "512KiB", "128MiB", "2GiB", "1TiB".
type Size int64

var sizeUnits = []struct {
	suffix string
	shift  uint
}{{"TiB", 40}, {"GiB", 30}, {"MiB", 20}, {"KiB", 10}, {"B", 0}}

// UnmarshalTOML accepts an integer or a string with a unit.
func (s *Size) UnmarshalTOML(v any) error {
	switch v := v.(type) {
	case int64:
		if v < 0 {
			return fmt.Errorf("%d is negative", v)
		}
		*s = Size(v)
		return nil
	case string:
		n, err := parseSize(v)
		if err != nil {
			return err
		}
		*s = n
		return nil
	default:
		return fmt.Errorf("want bytes as an integer or a string such as \"128MiB\", got %T", v)
	}
}

func parseSize(text string) (Size, error) {
	for _, u := range sizeUnits {
		digits, ok := strings.CutSuffix(text, u.suffix)
		if !ok {
			continue
		}
		n, err := strconv.ParseInt(strings.TrimSpace(digits), 10, 64)
		if err != nil || n < 0 || n > (1<<62)>>u.shift {
			break
		}
		return Size(n << u.shift), nil
	}
	return 0, fmt.Errorf("%q is not a size such as \"128MiB\" (units B, KiB, MiB, GiB, TiB)", text)
}

// String writes s with the largest unit that divides it exactly, so it
// reads back to the same value.
func (s Size) String() string {
	for _, u := range sizeUnits {
		if s != 0 && s%(1<<u.shift) == 0 {
			return strconv.FormatInt(int64(s>>u.shift), 10) + u.suffix
		}
	}
	return "0B"
}

// Duration is written in the file as a Go duration string: "90s", "2m".
type Duration time.Duration

// UnmarshalText parses a Go duration string.
func (d *Duration) UnmarshalText(text []byte) error {
	v, err := time.ParseDuration(string(text))
	if err != nil {
		return fmt.Errorf("%q is not a duration such as \"2m\" or \"90s\"", text)
	}
	*d = Duration(v)
	return nil
}

func (d Duration) String() string { return time.Duration(d).String() }
