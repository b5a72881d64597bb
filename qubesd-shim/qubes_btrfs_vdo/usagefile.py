# SPDX-License-Identifier: GPL-2.0-or-later
"""The pool's space figures as btrfs-vdod last wrote them.

The daemon measures the pool's image files after every background job,
when it opens the pool and after removals, and writes
``<dir_path>/.btrfs-vdo/usage.json`` atomically (pool/optimizer/usagefile.go):

    {"version":1,"dir_path":"/var/lib/qubes-vdo","time":1765094400,
     "disk_usage":…,"uncompressed":…,"referenced":…,"saved":…}

Reading it costs three opens and one read of a few hundred bytes, so
usage_details, which qubesd calls on its event loop, answers without a
round trip to the daemon. Nothing here raises: a file that is missing,
unreadable, larger than MAX_SIZE, not JSON, of another version, written
for another directory (a copied or moved pool), with a figure that is
not an integer, or before the pool was first measured (time 0) gives no
figures at all.
"""

import json
import os
import stat

STATE_DIR = ".btrfs-vdo"
FILE_NAME = "usage.json"
VERSION = 1
# The file holds a few numbers; anything larger is not the daemon's.
MAX_SIZE = 4096

# The file's keys and the usage_details keys they become.
FIGURES = (
    ("disk_usage", "disk_usage"),
    ("uncompressed", "uncompressed"),
    ("referenced", "referenced"),
    ("saved", "saved"),
    ("time", "usage_time"),
)


def read(dir_path):
    """The figures for the pool at *dir_path* as a dict of ints, or {}."""
    try:
        data = _read_bounded(dir_path)
    except OSError:
        return {}
    if data is None:
        return {}
    try:
        record = json.loads(data)
    except (ValueError, RecursionError):  # also UnicodeDecodeError; deep nesting
        return {}
    if (
        not isinstance(record, dict)
        or record.get("version") != VERSION
        or record.get("dir_path") != dir_path
    ):
        return {}
    figures = {}
    for key, name in FIGURES:
        value = record.get(key)
        # bool is an int subclass; true is no byte count.
        if type(value) is not int:  # pylint: disable=unidiomatic-typecheck
            return {}
        figures[name] = value
    if figures["usage_time"] <= 0:
        return {}  # the daemon has not measured the pool yet
    return figures


def _read_bounded(dir_path):
    """The file's bytes, or None if it is not a regular file of at most
    MAX_SIZE bytes. Neither the state directory nor the file is followed
    if it is a symlink, and a FIFO planted there is not waited on."""
    pool_fd = os.open(dir_path, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        state_fd = os.open(
            STATE_DIR,
            os.O_PATH | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC,
            dir_fd=pool_fd,
        )
    finally:
        os.close(pool_fd)
    try:
        fd = os.open(
            FILE_NAME,
            os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC,
            dir_fd=state_fd,
        )
    finally:
        os.close(state_fd)
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode) or info.st_size > MAX_SIZE:
            return None
        data = os.read(fd, MAX_SIZE + 1)
    finally:
        os.close(fd)
    if len(data) > MAX_SIZE:
        return None
    return data
