package main

import (
	"bytes"
	"encoding/json"
	"regexp"
	"strings"
	"testing"
)

// Every command listed in the usage explains itself with --help and with
// help COMMAND, and both succeed.
func TestEveryCommandHasHelp(t *testing.T) {
	commands := regexp.MustCompile(`(?m)^  ([a-z]+) `).FindAllStringSubmatch(usageText, -1)
	if len(commands) < 2 {
		t.Fatalf("found %d commands in the usage text", len(commands))
	}
	for _, m := range commands {
		cmd := m[1]
		for _, args := range [][]string{{cmd, "--help"}, {"help", cmd}} {
			var out, errOut bytes.Buffer
			code := run(args, &out, &errOut)
			all := out.String() + errOut.String()
			if code != exitOK || !strings.Contains(all, "Usage: btrfs-vdo "+cmd) {
				t.Errorf("btrfs-vdo %s: exit %d, output:\n%s", strings.Join(args, " "), code, all)
			}
		}
	}
}

func TestVersionJSON(t *testing.T) {
	socket := startDaemon(t)
	var out, errOut bytes.Buffer
	if code := run([]string{"--socket", socket, "version", "--json"}, &out, &errOut); code != exitOK {
		t.Fatalf("exit %d: %s", code, errOut.String())
	}
	var v versions
	if err := json.Unmarshal(out.Bytes(), &v); err != nil || v.Daemon != "9.9.9" || v.Protocol != 1 || v.CLI == "" {
		t.Fatalf("version --json: %+v, %v in %s", v, err, out.String())
	}
}
