# SPDX-License-Identifier: GPL-2.0-or-later
"""The man pages under docs/man: groff and mandoc find nothing to warn
about, and man renders each one. (What they must document is checked by
the Go tests next to the code they document.)"""

import os
import subprocess
import unittest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PAGES = {"btrfs-vdo.8": "BTRFS-VDO(8)", "btrfs-vdod.8": "BTRFS-VDOD(8)", "btrfs-vdo.toml.5": "BTRFS-VDO.TOML(5)"}


def run(*args, env=None):
    return subprocess.run(args, capture_output=True, text=True, env={**os.environ, **(env or {})})


class ManPages(unittest.TestCase):
    def test_pages(self):
        self.assertEqual(sorted(os.listdir(os.path.join(ROOT, "docs", "man"))), sorted(PAGES))
        for page, title in PAGES.items():
            path = os.path.join(ROOT, "docs", "man", page)
            with self.subTest(page=page):
                groff = run("groff", "-man", "-ww", "-z", path)
                self.assertEqual((groff.returncode, groff.stderr), (0, ""), "groff")
                mandoc = run("mandoc", "-T", "lint", "-W", "all", path)
                self.assertEqual((mandoc.returncode, mandoc.stdout + mandoc.stderr), (0, ""), "mandoc")
                man = run("man", "-l", path, env={"MANWIDTH": "80", "MAN_KEEP_FORMATTING": ""})
                self.assertEqual((man.returncode, man.stderr), (0, ""), "man")
                self.assertTrue(man.stdout.startswith(title), man.stdout[:200])
                for section in ("NAME", "SYNOPSIS", "DESCRIPTION", "FILES", "SEE ALSO"):
                    self.assertIn(f"\n{section}\n", man.stdout)


if __name__ == "__main__":
    unittest.main()
