# SPDX-License-Identifier: GPL-2.0-or-later
"""paths.py agrees with api/testdata/paths.json, which pins the Go side too."""

import os
import tempfile
import unittest

from qubes_btrfs_vdo import paths
from tests import support


class TestPathsJson(unittest.TestCase):

    @classmethod
    def setUpClass(cls):
        cls.table = support.load_json(support.PATHS_JSON)

    def test_valid_derivations(self):
        self.assertTrue(self.table["valid"])
        for case in self.table["valid"]:
            with self.subTest(vid=case["vid"]):
                got = paths.volume_paths(case["dir_path"], case["vid"])
                self.assertEqual(got.clean, case["clean"])
                self.assertEqual(got.dirty, case["dirty"])
                self.assertEqual(got.precache, case["precache"])
                self.assertEqual(got.import_, case["import"])
                for rev in case["revisions"]:
                    self.assertEqual(
                        got.revision(rev["id"], rev["timestamp"]), rev["path"]
                    )

    def test_revisions_parse_back(self):
        for case in self.table["valid"]:
            with self.subTest(vid=case["vid"]):
                names = [
                    os.path.basename(r["path"]) for r in case["revisions"]
                ]
                volume = os.path.basename(case["vid"])
                got = paths.parse_revisions(reversed(names), volume)
                want = [(r["id"], r["timestamp"]) for r in case["revisions"]]
                self.assertEqual(list(got.items()), want)

    def test_invalid_vids(self):
        self.assertTrue(self.table["invalid_vids"])
        for vid in self.table["invalid_vids"]:
            with self.subTest(vid=vid):
                with self.assertRaises(paths.InvalidName):
                    paths.validate_vid(vid)
                with self.assertRaises(paths.InvalidName):
                    paths.volume_paths("/pool", vid)

    def test_invalid_vids_get_paths_that_name_nothing(self):
        for vid in self.table["invalid_vids"]:
            with self.subTest(vid=vid):
                got = paths.volume_paths_or_invalid("/pool", vid)
                self.assertIsInstance(got, paths.InvalidVolumePaths)
                self.assertEqual(got.vid, vid)
                self.assertEqual(
                    (got.clean, got.dirty, got.precache, got.import_),
                    (None, None, None, None),
                )
                self.assertIsNone(got.stat_image())
                self.assertIsNone(got.stat_clean())
                self.assertIs(got.dirty_exists(), False)
                self.assertEqual(got.revisions(), {})
        for case in self.table["valid"]:
            with self.subTest(vid=case["vid"]):
                self.assertEqual(
                    paths.volume_paths_or_invalid(
                        case["dir_path"], case["vid"]),
                    paths.volume_paths(case["dir_path"], case["vid"]),
                )

    def test_invalid_revisions(self):
        self.assertTrue(self.table["invalid_revisions"])
        for revision in self.table["invalid_revisions"]:
            with self.subTest(revision=revision):
                with self.assertRaises(paths.InvalidName):
                    paths.validate_revision(revision)
                with self.assertRaises(paths.InvalidName):
                    paths.revision_path("/p/v.img", revision,
                                        "2026-11-20T09:15:02")

    def test_rules_edges(self):
        ok = ["appvms/a/b", "vm-templates/fedora-42/root",
              "appvms/_x/y.z", "appvms/" + "w" * 64 + "/private",
              "appvms/x-dirty/private", "appvms/a.img/b", "appvms/a/dirty",
              "appvms/a/b-dirtyx", "appvms/a/b.im"]
        for vid in ok:
            self.assertEqual(paths.validate_vid(vid), vid)
        bad = ["appvms/a/b\n", "appvms/a/b/", "/appvms/a/b", "appvms/a/é",
               "appvms/a/b-dirty", "appvms/a/b-precache", "appvms/a/b-import",
               "appvms/a/b.img", "appvms/a/b.img2", "appvms/a/.img",
               "appvms/" + "w" * 65 + "/private", 7, None]
        for vid in bad:
            with self.subTest(vid=vid), self.assertRaises(paths.InvalidName):
                paths.validate_vid(vid)
        self.assertEqual(paths.validate_revision("9" * 19), "9" * 19)
        for revision in ("9" * 20, "1\n", "١", 1):
            with self.subTest(revision=revision):
                with self.assertRaises(paths.InvalidName):
                    paths.validate_revision(revision)


class TestParseRevisions(unittest.TestCase):

    def test_order_is_numeric_and_noise_is_ignored(self):
        names = [
            "private.img.12@2026-11-25T18:40:11Z",
            "private.img.2@2026-11-21T00:00:00Z",
            "private.img.1@2026-11-20T09:15:02Z",
            "private.img",
            "private-dirty.img",
            "private-precache.img",
            "private.img.3@2026-11-22T00:00:00Z~tmp123",  # a temp file
            "private.img.01@2026-11-20T09:15:02Z",  # not a revision id
            "private.img.x@2026-11-20T09:15:02Z",
            "private.img.4@2026-11-2xT00:00:00Z",
            "private.img.5@2026-11-22T00:00:00",  # no Z
            "root.img.7@2026-11-22T00:00:00Z",  # another volume
            "xprivate.img.8@2026-11-22T00:00:00Z",
        ]
        got = paths.parse_revisions(names, "private")
        self.assertEqual(
            list(got.items()),
            [("1", "2026-11-20T09:15:02"), ("2", "2026-11-21T00:00:00"),
             ("12", "2026-11-25T18:40:11")],
        )

    def test_list_revisions(self):
        with tempfile.TemporaryDirectory() as pool_dir:
            vp = paths.volume_paths(pool_dir, "appvms/work/private")
            self.assertEqual(paths.list_revisions(vp), {})  # no directory
            os.makedirs(vp.directory)
            for rev, stamp in (("10", "2026-01-10T00:00:00"),
                               ("9", "2026-01-09T00:00:00")):
                open(vp.revision(rev, stamp), "w").close()
            self.assertEqual(list(paths.list_revisions(vp)), ["9", "10"])
