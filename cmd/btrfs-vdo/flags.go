// SPDX-License-Identifier: GPL-2.0-or-later

package main

import (
	"bytes"
	"errors"
	"flag"
	"fmt"
	"io"
	"strconv"
	"strings"
)

// newFlags returns a flag set whose usage is usage followed by the flags.
// parseFlags sends it to stdout on --help; a bad flag prints only the
// error.
func newFlags(name, usage string) *flag.FlagSet {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.Usage = func() {
		fmt.Fprint(fs.Output(), usage)
		fmt.Fprintln(fs.Output(), "\nFlags:")
		fs.PrintDefaults()
	}
	return fs
}

// argCount bounds a command's positional arguments; max < 0 means any
// number.
type argCount struct {
	min, max int
	what     string // what the arguments are, for the error
}

var noArgs = argCount{0, 0, "no arguments"}

// parseFlags parses args with fs, flags and arguments in any order (up to
// a "--"), and checks the number of arguments, left in fs.Args(). --help
// prints the usage to stdout and returns flag.ErrHelp; a bad flag or
// argument count is a usageError.
func parseFlags(fs *flag.FlagSet, args []string, stdout io.Writer, count argCount) error {
	var positional []string
	for {
		if err := parseOnce(fs, args, stdout); err != nil {
			return err
		}
		rest := fs.Args()
		if len(rest) == 0 {
			break
		}
		if afterTerminator(args, rest) {
			positional = append(positional, rest...)
			break
		}
		positional, args = append(positional, rest[0]), rest[1:]
	}
	// Parse once more with nothing, so fs.Args() holds the positional
	// arguments gathered.
	if err := fs.Parse(append([]string{"--"}, positional...)); err != nil {
		return usageError{err}
	}
	return checkCount(fs.Name(), positional, count)
}

// parseOnce parses flags up to the first argument. --help prints the
// usage to stdout and returns flag.ErrHelp; a bad flag is a usageError.
func parseOnce(fs *flag.FlagSet, args []string, stdout io.Writer) error {
	var out bytes.Buffer
	fs.SetOutput(&out)
	err := fs.Parse(args)
	if errors.Is(err, flag.ErrHelp) {
		_, werr := stdout.Write(out.Bytes())
		return errors.Join(err, werr)
	}
	if err != nil {
		return usageError{err}
	}
	return nil
}

// afterTerminator reports whether fs.Parse stopped at "--", which ends
// the flags.
func afterTerminator(args, rest []string) bool {
	consumed := len(args) - len(rest)
	return consumed > 0 && args[consumed-1] == "--"
}

func checkCount(name string, positional []string, count argCount) error {
	n := len(positional)
	if n >= count.min && (count.max < 0 || n <= count.max) {
		return nil
	}
	if n > count.max && count.max >= 0 {
		return usageError{fmt.Errorf("%s takes %s; unexpected %q", name, count.what, strings.Join(positional[count.max:], " "))}
	}
	return usageError{fmt.Errorf("%s takes %s", name, count.what)}
}

// intInRange is an int flag refused outside [min, max]; 0 stays for "not
// given".
type intInRange struct {
	n        *int
	min, max int
}

func (r intInRange) String() string {
	if r.n == nil || *r.n == 0 {
		return ""
	}
	return strconv.Itoa(*r.n)
}

func (r intInRange) Set(s string) error {
	n, err := strconv.Atoi(s)
	if err != nil {
		return fmt.Errorf("%q is not a whole number", s)
	}
	if n < r.min || n > r.max {
		return fmt.Errorf("%d is not between %d and %d", n, r.min, r.max)
	}
	*r.n = n
	return nil
}

// outputFlags are the flags every command that prints a report shares.
type outputFlags struct {
	json  bool
	bytes bool
}

func (o *outputFlags) register(fs *flag.FlagSet) {
	fs.BoolVar(&o.json, "json", false, "print one JSON object (documented in the README)")
	fs.BoolVar(&o.bytes, "bytes", false, "print sizes in bytes, not in K, M, G")
}

func (o outputFlags) sizes() sizes { return sizes{raw: o.bytes} }
