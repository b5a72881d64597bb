// SPDX-License-Identifier: GPL-2.0-or-later

package config

import (
	"reflect"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/btrfs-vdo/btrfs-vdo/internal/mantest"
)

// tomlKeys lists the keys of a configuration struct by their toml tags.
func tomlKeys(t reflect.Type) map[string]reflect.StructField {
	keys := map[string]reflect.StructField{}
	for i := range t.NumField() {
		f := t.Field(i)
		if key := f.Tag.Get("toml"); key != "" {
			keys[key] = f
		}
	}
	return keys
}

// documentedDefault matches an item's tag: "key (type, default VALUE)".
var documentedDefault = regexp.MustCompile(`^(\w+) \((\w+), default (.+)\)$`)

// btrfs-vdo.toml(5) has an item for every key, whose stated default is
// the default, and an item for every key of the per-pool tables.
func TestManPageCoversKeys(t *testing.T) {
	page := mantest.Load(t, "btrfs-vdo.toml.5")
	keys := page.Section("KEYS")
	defaults := reflect.ValueOf(Default())
	for key, field := range tomlKeys(reflect.TypeFor[Config]()) {
		if key == "pool" {
			continue // the tables, below
		}
		if !mantest.HasTag(keys, key) {
			t.Errorf("btrfs-vdo.toml.5: KEYS has no item for %s", key)
			continue
		}
		want := defaults.FieldByIndex(field.Index)
		for _, tag := range mantest.Tags(keys) {
			m := documentedDefault.FindStringSubmatch(tag)
			if m == nil || m[1] != key {
				continue
			}
			if want.Kind() == reflect.Pointer && want.IsNil() {
				break // sized at run time: the default is said in words
			}
			cfg, err := Parse("btrfs-vdo.toml.5", []byte(key+" = "+m[3]))
			if err != nil {
				t.Errorf("btrfs-vdo.toml.5: %s: default %s: %v", key, m[3], err)
			} else if got := reflect.ValueOf(cfg).FieldByIndex(field.Index); !reflect.DeepEqual(got.Interface(), want.Interface()) {
				t.Errorf("btrfs-vdo.toml.5: %s: documented default %s is %v, the default is %v", key, m[3], got, want)
			}
		}
		if !slices.ContainsFunc(mantest.Tags(keys), func(tag string) bool { return strings.HasPrefix(tag, key+" (") }) {
			t.Errorf("btrfs-vdo.toml.5: item %s does not give its type and default", key)
		}
	}
	overrides := page.Section("PER-POOL OVERRIDES")
	if overrides == nil {
		t.Fatal("btrfs-vdo.toml.5: no section PER-POOL OVERRIDES")
	}
	for key := range tomlKeys(reflect.TypeFor[PoolOverride]()) {
		if !mantest.HasTag(overrides, key) {
			t.Errorf("btrfs-vdo.toml.5: PER-POOL OVERRIDES has no item for %s", key)
		}
	}
}
