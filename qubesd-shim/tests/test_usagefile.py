# SPDX-License-Identifier: GPL-2.0-or-later
"""usage_details: statvfs plus the daemon's usage file, read without the
daemon and never trusted blindly."""

import json
import os
import tempfile
import threading
import unittest

from qubes_btrfs_vdo import usagefile
from qubes_btrfs_vdo.pool import BtrfsVdoPool

BASE_KEYS = {"data_size", "data_usage"}
ALL_KEYS = BASE_KEYS | {"disk_usage", "uncompressed", "referenced", "saved", "usage_time"}


class UsageDetails(unittest.TestCase):

    def setUp(self):
        tmp = tempfile.TemporaryDirectory()
        self.addCleanup(tmp.cleanup)
        self.dir_path = os.path.join(tmp.name, "pool")
        self.state_dir = os.path.join(self.dir_path, ".btrfs-vdo")
        os.makedirs(self.state_dir)
        self.file = os.path.join(self.state_dir, "usage.json")
        self.pool = BtrfsVdoPool(name="vdo", dir_path=self.dir_path)

    def record(self, **changes):
        record = {"version": 1, "dir_path": self.dir_path, "time": 1765094400,
                  "disk_usage": 10 << 20, "uncompressed": 40 << 20,
                  "referenced": 120 << 20, "saved": 30 << 20}
        record.update(changes)
        return record

    def write(self, data):
        if not isinstance(data, bytes):
            data = json.dumps(data).encode()
        with open(self.file, "wb") as f:
            f.write(data)

    def test_figures_from_the_file(self):
        self.write(self.record())
        details = self.pool.usage_details
        self.assertEqual(set(details), ALL_KEYS)
        for key, value in details.items():
            self.assertIs(type(value), int, key)
        self.assertEqual(
            {k: details[k] for k in ALL_KEYS - BASE_KEYS},
            {"disk_usage": 10 << 20, "uncompressed": 40 << 20, "referenced": 120 << 20,
             "saved": 30 << 20, "usage_time": 1765094400},
        )
        self.assertGreater(details["data_size"], 0)
        # size and usage stay the filesystem's.
        self.assertEqual(self.pool.size, details["data_size"])
        self.assertEqual(self.pool.usage, details["data_usage"])

    def test_negative_saved_is_shown(self):
        # A job can grow what it rewrites; saved is the net figure.
        self.write(self.record(saved=-4096))
        self.assertEqual(self.pool.usage_details["saved"], -4096)

    def test_missing(self):
        self.assertEqual(set(self.pool.usage_details), BASE_KEYS)
        os.rmdir(self.state_dir)
        self.assertEqual(set(self.pool.usage_details), BASE_KEYS)

    def test_rejected_files(self):
        base = self.record()
        cases = {
            "not json": b"{\"version\": 1, \"saved\":",
            "not utf-8": b"\xff\xfe{}",
            "empty": b"",
            "nested deeper than the parser goes": b"[" * 4000,
            "a list": [base],
            "another version": self.record(version=2),
            "no version": {k: v for k, v in base.items() if k != "version"},
            "another directory": self.record(dir_path="/var/lib/qubes"),
            "a figure missing": {k: v for k, v in base.items() if k != "saved"},
            "a string": self.record(disk_usage="10485760"),
            "a float": self.record(referenced=1.5),
            "a bool": self.record(uncompressed=True),
            "null": self.record(time=None),
            "never measured": self.record(time=0, disk_usage=0, uncompressed=0, referenced=0),
        }
        for name, data in cases.items():
            with self.subTest(name):
                self.write(data)
                self.assertEqual(set(self.pool.usage_details), BASE_KEYS)

    def test_size_bound(self):
        data = json.dumps(self.record()).encode()
        self.write(data + b" " * (usagefile.MAX_SIZE - len(data)))
        self.assertEqual(set(self.pool.usage_details), ALL_KEYS)
        self.write(data + b" " * (usagefile.MAX_SIZE + 1 - len(data)))
        self.assertEqual(set(self.pool.usage_details), BASE_KEYS)

    def test_symlinks_are_not_followed(self):
        elsewhere = os.path.join(os.path.dirname(self.dir_path), "elsewhere")
        os.mkdir(elsewhere)
        with open(os.path.join(elsewhere, "usage.json"), "w", encoding="utf-8") as f:
            json.dump(self.record(), f)
        os.symlink(os.path.join(elsewhere, "usage.json"), self.file)
        self.assertEqual(set(self.pool.usage_details), BASE_KEYS)
        os.remove(self.file)
        os.rmdir(self.state_dir)
        os.symlink(elsewhere, self.state_dir)
        self.assertEqual(set(self.pool.usage_details), BASE_KEYS)

    def test_fifo_does_not_block(self):
        os.mkfifo(self.file)
        result = []
        reader = threading.Thread(target=lambda: result.append(self.pool.usage_details), daemon=True)
        reader.start()
        reader.join(5)
        self.assertFalse(reader.is_alive(), "usage_details waited on a FIFO")
        self.assertEqual(set(result[0]), BASE_KEYS)


if __name__ == "__main__":
    unittest.main()
