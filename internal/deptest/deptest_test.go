// SPDX-License-Identifier: GPL-2.0-or-later

// Package deptest keeps the module's imports pointing one way:
// cmd → internal/server | internal/client → pool → pool/optimizer →
// volume → internal/btrfs, with api, the wire protocol, on the standard
// library alone. internal/compress, the in-place rewrite the optimizer and
// the CLI's compress command share, sits below both and knows neither.
package deptest

import (
	"errors"
	"os/exec"
	"slices"
	"strings"
	"testing"
)

const module = "github.com/btrfs-vdo/btrfs-vdo"

// A rule holds for the package pkg and every package below it, all paths
// relative to the module.
type rule struct {
	pkg string
	// deny are packages (and those below them) pkg must not depend on,
	// directly or through another package; denyExact are such packages
	// without those below them.
	deny, denyExact []string
	// imports, when set, are the only module packages pkg may import
	// directly.
	imports []string
}

var rules = []rule{
	{pkg: "internal/btrfs", deny: []string{"volume", "pool", "api", "internal/server", "internal/client", "cmd"}},
	{pkg: "volume", deny: []string{"pool", "api", "internal/server", "internal/client", "cmd"}},
	// pool may use api's job states (api.JobState), which the wire and
	// the scheduler share; api itself depends on nothing of the module.
	{pkg: "pool", deny: []string{"internal/server", "internal/client", "cmd"}},
	{pkg: "pool/optimizer", denyExact: []string{"pool", "pool/pooltest"}},
	{pkg: "internal/compress", deny: []string{"pool", "volume", "api", "cmd"}},
	{pkg: "internal/server", deny: []string{"internal/client", "cmd"}},
	{pkg: "internal/client", deny: []string{"internal/server", "cmd"}},
	{pkg: "cmd/btrfs-vdo", deny: []string{"internal/server", "cmd/btrfs-vdod"}, imports: []string{
		"api", "internal/client", "internal/version",
		// compress works on dom0's own files in-process, through this
		// package alone.
		"internal/compress",
		// estimate reads a pool directory in-process, read-only, and
		// takes the pool's zstd level from the configuration file.
		"internal/estimate", "internal/config",
	}},
}

// pkgInfo is what go list says of one module package, module-relative.
type pkgInfo struct {
	deps    []string // every package it depends on, standard ones included
	imports []string // module packages it imports directly
}

func TestImportDirection(t *testing.T) {
	pkgs, nonStandard := listPackages(t)
	for _, r := range rules {
		matched := false
		for name, info := range pkgs {
			if !under(name, r.pkg) {
				continue
			}
			matched = true
			for _, dep := range info.deps {
				if rel, ok := strings.CutPrefix(dep, module+"/"); ok && (underAny(rel, r.deny) || slices.Contains(r.denyExact, rel)) {
					t.Errorf("%s depends on %s", name, rel)
				}
			}
			if r.imports == nil || name != r.pkg {
				continue
			}
			for _, imp := range info.imports {
				if !slices.Contains(r.imports, imp) {
					t.Errorf("%s imports %s, not among the packages it may import", name, imp)
				}
			}
		}
		if !matched {
			t.Errorf("no package %s: the rule for it is stale", r.pkg)
		}
	}
	api, ok := pkgs["api"]
	if !ok {
		t.Fatal("no package api")
	}
	for _, dep := range api.deps {
		if nonStandard[dep] {
			t.Errorf("api depends on %s, outside the standard library", dep)
		}
	}
}

// listPackages runs go list over the module: each package's dependencies
// and direct module imports, and which of all the packages met are not in
// the standard library.
func listPackages(t *testing.T) (map[string]pkgInfo, map[string]bool) {
	t.Helper()
	if _, err := exec.LookPath("go"); err != nil {
		t.Skip("no go command")
	}
	out := goList(t, "-f", "{{.ImportPath}}\t{{join .Deps \" \"}}\t{{join .Imports \" \"}}", module+"/...")
	pkgs := map[string]pkgInfo{}
	for _, line := range strings.Split(strings.TrimSpace(out), "\n") {
		fields := strings.Split(line, "\t")
		if len(fields) != 3 {
			t.Fatalf("go list: unexpected line %q", line)
		}
		var info pkgInfo
		info.deps = strings.Fields(fields[1])
		for _, imp := range strings.Fields(fields[2]) {
			if rel, ok := strings.CutPrefix(imp, module+"/"); ok {
				info.imports = append(info.imports, rel)
			}
		}
		pkgs[strings.TrimPrefix(fields[0], module+"/")] = info
	}
	nonStandard := map[string]bool{}
	for _, name := range strings.Fields(goList(t, "-deps", "-f", "{{if not .Standard}}{{.ImportPath}}{{end}}", module+"/...")) {
		nonStandard[name] = true
	}
	return pkgs, nonStandard
}

func goList(t *testing.T, args ...string) string {
	t.Helper()
	cmd := exec.Command("go", append([]string{"list"}, args...)...)
	out, err := cmd.Output()
	if err != nil {
		var exitErr *exec.ExitError
		if errors.As(err, &exitErr) {
			t.Fatalf("go list %s: %v\n%s", strings.Join(args, " "), err, exitErr.Stderr)
		}
		t.Fatalf("go list %s: %v", strings.Join(args, " "), err)
	}
	return string(out)
}

func under(pkg, dir string) bool { return pkg == dir || strings.HasPrefix(pkg, dir+"/") }

func underAny(pkg string, dirs []string) bool {
	return slices.ContainsFunc(dirs, func(dir string) bool { return under(pkg, dir) })
}
