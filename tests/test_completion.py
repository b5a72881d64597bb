# SPDX-License-Identifier: GPL-2.0-or-later
"""The bash completion of btrfs-vdo, sourced in a real bash: commands and
flags, and the pools, VMs and volumes of a real daemon through the real
CLI."""

import os
import subprocess
import tempfile
import unittest

from tests import harness
from tests.base import IntegrationCase

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SCRIPT = os.path.join(ROOT, "packaging", "btrfs-vdo.bash-completion")

# Sets what bash sets for a completion of the line in $LINE with the
# cursor at its end, and calls the function registered for btrfs-vdo with
# the arguments bash passes: the command, the word and the one before.
# $BREAKS, when set, replaces COMP_WORDBREAKS.
_DRIVER = r"""
set -u
source "$SCRIPT"
[[ -n ${BREAKS:-} ]] && COMP_WORDBREAKS=$BREAKS
spec=$(complete -p btrfs-vdo) || exit 3
fn=${spec#*-F }; fn=${fn%% *}
COMP_LINE=$LINE
COMP_POINT=${#COMP_LINE}
read -ra COMP_WORDS <<<"$LINE"
[[ $LINE == *" " ]] && COMP_WORDS+=("")
COMP_CWORD=$((${#COMP_WORDS[@]} - 1))
prev=""
((COMP_CWORD > 0)) && prev=${COMP_WORDS[COMP_CWORD-1]}
"$fn" btrfs-vdo "${COMP_WORDS[COMP_CWORD]}" "$prev"
printf '%s\n' "${COMPREPLY[@]}"
"""


def complete(line, env=None):
    """The completions bash offers for line, sorted, and what went to
    stderr."""
    proc = subprocess.run(
        ["bash", "--norc", "--noprofile", "-c", _DRIVER], capture_output=True, text=True, check=True,
        env={**os.environ, "PATH": harness.BIN + os.pathsep + os.environ["PATH"],
             "SCRIPT": SCRIPT, "LINE": line, **(env or {})},
    )
    return sorted(w for w in proc.stdout.split("\n") if w), proc.stderr


COMMANDS = ["compress", "estimate", "help", "jobs", "optimize", "stats", "status", "version"]


class CommandsAndFlags(unittest.TestCase):
    """What completes without a daemon: the socket leads nowhere."""

    def setUp(self):
        self.nowhere = {"BTRFS_VDO_SOCKET": "/nonexistent/btrfs-vdod.sock"}

    def test_completions(self):
        with tempfile.TemporaryDirectory() as tmp:
            os.mkdir(os.path.join(tmp, "sockets"))
            cases = [
                ("btrfs-vdo ", COMMANDS),
                ("btrfs-vdo st", ["stats", "status"]),
                ("btrfs-vdo -", ["--help", "--socket", "--version"]),
                (f"btrfs-vdo --socket {tmp}/so", [f"{tmp}/sockets"]),
                (f"btrfs-vdo --socket={tmp}/so", [f"{tmp}/sockets"]),
                (f"btrfs-vdo --socket {tmp}/s.sock jo", ["jobs"]),
                ("btrfs-vdo optimize --full --n", ["--no-wait"]),
                ("btrfs-vdo stats --j", ["--json"]),
                (f"btrfs-vdo estimate --sample 5% {tmp}/s", [f"{tmp}/sockets"]),
                ("btrfs-vdo estimate --level 1", ["1", "10", "11", "12", "13", "14", "15"]),
                ("btrfs-vdo compress --level 1", ["1", "10", "11", "12", "13", "14", "15"]),
                (f"btrfs-vdo compress --json {tmp}/s", [f"{tmp}/sockets"]),
                ("btrfs-vdo help ", COMMANDS),
                ("btrfs-vdo help opt", ["optimize"]),
                ("btrfs-vdo help jobs ", []),
                ("btrfs-vdo status ", []),
                # No daemon: no names, and no complaint on the terminal.
                ("btrfs-vdo optimize ", []),
                ("btrfs-vdo stats vdo:", []),
            ]
            for line, want in cases:
                with self.subTest(line=line):
                    got, err = complete(line, self.nowhere)
                    self.assertEqual(got, want)
                    self.assertEqual(err, "")


    def test_flags_are_those_help_lists(self):
        """Each command's flags complete to what its --help lists."""
        for command in COMMANDS:
            if command == "help":
                continue
            with self.subTest(command=command):
                out = subprocess.run([os.path.join(harness.BIN, "btrfs-vdo"), "help", command],
                                     capture_output=True, text=True, check=True).stdout
                listed = sorted({"--" + line.split()[0].lstrip("-") for line in out.splitlines()
                                 if line.startswith("  -")} | {"--help"})
                got, err = complete(f"btrfs-vdo {command} -", self.nowhere)
                self.assertEqual(got, listed)
                self.assertEqual(err, "")


class Names(IntegrationCase):
    """Pools, VMs and volumes of a real daemon, which the completion asks
    through the CLI."""

    def test_targets(self):
        tpl = self.make_template("fedora")
        vm = self.make_appvm("work", tpl)
        self.start(vm)  # a running volume has only its dirty image
        vids = ["appvms/work/private", "appvms/work/root", "appvms/work/volatile",
                "vm-templates/fedora/private", "vm-templates/fedora/root"]
        # readline replaces only what follows the last ':' of the word (a
        # break in COMP_WORDBREAKS), so the replies hold only that.
        cases = [
            ("btrfs-vdo optimize ", sorted(["vdo", self.dir_path, "fedora", "work"])),
            ("btrfs-vdo stats w", ["work"]),
            ("btrfs-vdo optimize --full f", ["fedora"]),
            ("btrfs-vdo stats /", [self.dir_path]),
            ("btrfs-vdo optimize vdo:", vids),
            ("btrfs-vdo optimize vdo:appvms/work/p", ["appvms/work/private"]),
            (f"btrfs-vdo stats {self.dir_path}:vm", [v for v in vids if v.startswith("vm")]),
            ("btrfs-vdo optimize nopool:", []),
            ("btrfs-vdo optimize work ", []),  # one target only
            ("btrfs-vdo jobs ", []),
        ]
        for line, want in cases:
            with self.subTest(line=line):
                got, err = complete(line)
                self.assertEqual(got, want)
                self.assertEqual(err, "")
        # Without ':' among the breaks, replies are whole words.
        got, _ = complete("btrfs-vdo optimize vdo:vm-templates/fedora/r", {"BREAKS": " \t\n=;|&("})
        self.assertEqual(got, ["vdo:vm-templates/fedora/root"])
        # The socket given on the line is the one asked.
        env = {"BTRFS_VDO_SOCKET": "/nonexistent/btrfs-vdod.sock"}
        self.assertEqual(complete("btrfs-vdo optimize w", env)[0], [])
        self.assertEqual(complete(f"btrfs-vdo --socket {self.daemon.socket} optimize w", env)[0], ["work"])
        self.stop(vm)


if __name__ == "__main__":
    unittest.main()
