# SPDX-License-Identifier: GPL-2.0-or-later
"""Helpers from qubes/utils.py at 1ad5f9b8 that storage drivers use.

The durability helpers follow the same recipe as upstream: write next to
the target, fsync, rename, then fsync the directory, so a crash leaves
either the old file or the new one.
"""

import asyncio
import importlib.metadata
import logging
import os
import subprocess
import tempfile
from contextlib import contextmanager


LOGGER = logging.getLogger("qubes.utils")

_am_root = os.getuid() == 0


def parse_bool(value):
    """Turn a bool or one of qubes.xml's string encodings into a bool."""
    if isinstance(value, bool):
        return value
    if value in ("True", "1", "on"):
        return True
    if value in ("False", "0", "off", ""):
        return False
    raise ValueError(f"invalid bool: {value}")


def get_entry_point_one(group, name):
    """Load the single entry point *name* of *group*.

    KeyError when none is installed. When several distributions claim the
    name, qubesd means to raise TypeError, but the message it builds reads
    ``module_name`` and ``attrs``, which importlib.metadata's EntryPoint
    lacks: what escapes is that AttributeError, which qubesd's loading of
    qubes.xml does not catch.
    """
    found = tuple(importlib.metadata.entry_points(group=group, name=name))
    if not found:
        raise KeyError(name)
    if len(found) > 1:
        targets = ", ".join(
            "{}.{}".format(ep.module_name, ".".join(ep.attrs)) for ep in found
        )
        raise TypeError(
            "more than 1 implementation of {!r} found: {}".format(
                name, targets
            )
        )
    return found[0].load()


def fsync_path(path):
    """fsync a file or a directory by path."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def rename_file(src, dst, *, logger=LOGGER, log_level=logging.DEBUG):
    """Rename durably; raises (FileNotFoundError) when src is missing."""
    os.rename(src, dst)
    src_dir, dst_dir = os.path.dirname(src), os.path.dirname(dst)
    fsync_path(dst_dir)
    if src_dir != dst_dir:
        fsync_path(src_dir)
    logger.log(log_level, "Renamed file: %r -> %r", src, dst)


def remove_file(path, *, logger=LOGGER, log_level=logging.DEBUG):
    """Remove durably if present; return whether anything was removed."""
    try:
        os.remove(path)
    except FileNotFoundError:
        return False
    fsync_path(os.path.dirname(path))
    logger.log(log_level, "Removed file: %r", path)
    return True


@contextmanager
def replace_file(
    dst,
    *,
    permissions,
    close_on_success=True,
    logger=LOGGER,
    log_level=logging.DEBUG,
):
    """Yield a temp file named ``dst~XXXX`` in dst's directory.

    If the block completes, chmod, fsync and rename it over dst (which may
    exist). If it raises, the temp file is removed and dst is untouched.
    """
    tmp_dir, prefix = os.path.split(dst + "~")
    tmp = tempfile.NamedTemporaryFile(dir=tmp_dir, prefix=prefix, delete=False)
    try:
        yield tmp
        tmp.flush()
        os.fchmod(tmp.fileno(), permissions)
        os.fsync(tmp.fileno())
        if close_on_success:
            tmp.close()
        rename_file(tmp.name, dst, logger=logger, log_level=log_level)
    except BaseException:
        try:
            tmp.close()
        finally:
            remove_file(tmp.name, logger=logger, log_level=log_level)
        raise


async def coro_maybe(value):
    """Await *value* if it is a coroutine, else return it as is."""
    if asyncio.iscoroutine(value):
        return await value
    return value


async def void_coros_maybe(values):
    """Run every coroutine in *values* concurrently; ignore other items.

    All of them run to completion even if some fail; then the exception of
    the leftmost failed one (in completion-set order, as upstream) is raised.
    Returns None.
    """
    tasks = [
        asyncio.create_task(value)
        for value in values
        if asyncio.iscoroutine(value)
    ]
    if not tasks:
        return
    done, _ = await asyncio.wait(tasks)
    for task in done:
        task.result()


# pylint: disable=redefined-builtin
async def run_program(*args, check=True, input=None, sudo=False, **kwargs):
    """Asynchronous subprocess.run(); CalledProcessError when check fails."""
    if sudo and not _am_root:
        args = ("sudo",) + tuple(args)
    proc = await asyncio.create_subprocess_exec(*args, **kwargs)
    out, err = await proc.communicate(input=input)
    if check and proc.returncode:
        raise subprocess.CalledProcessError(proc.returncode, args[0], out, err)
    return proc


def cryptsetup(*args):
    """Run cryptsetup as upstream does; returns an awaitable."""
    return run_program(
        "/usr/sbin/cryptsetup",
        *args,
        env={"LC_ALL": "C", **os.environ},
        cwd="/",
        stdin=subprocess.DEVNULL,
        check=True,
        sudo=True,
    )

