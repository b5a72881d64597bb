# SPDX-License-Identifier: GPL-2.0-or-later
"""BtrfsVdoVolume: qubesd's view of one volume.

Async operations: take the volume lock, make one daemon call, keep the
size the daemon reports, return self. Sync queries: stat() and listdir()
of the file-reflink layout, never the daemon (see the package docstring).
"""

import logging
import os

import qubes.exc
import qubes.storage
import qubes.utils

from qubes_btrfs_vdo import client, paths

LOGGER = logging.getLogger("qubes.storage.btrfs_vdo")


def pool_ref(pool):
    """The api.Pool naming *pool* in a request."""
    return {"name": str(pool.name), "dir_path": str(pool.dir_path)}


class BtrfsVdoVolume(qubes.storage.Volume):
    """A volume whose files btrfs-vdod manages."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        # An invalid vid is not fatal here: refusing would make the whole
        # VM fail to load. Its paths name no file, so sync queries report
        # "nothing on disk", and the daemon refuses every operation with
        # invalid_name.
        self._paths = paths.volume_paths_or_invalid(
            self.pool.dir_path, self.vid
        )
        self.path = self._paths.dirty

    # -- daemon calls ----------------------------------------------------

    def _volume_ref(self):
        # Read at every call: qubesd assigns rw and revisions_to_keep
        # directly, without telling the driver.
        return {
            "vid": str(self.vid),
            "rw": bool(self.rw),
            "save_on_stop": bool(self.save_on_stop),
            "snap_on_start": bool(self.snap_on_start),
            "revisions_to_keep": int(self.revisions_to_keep),
            "size": int(self._size),
            "source": str(self.source.vid) if self.source is not None else "",
        }

    async def _request(self, op, **extra):
        """One daemon call; every failure becomes StoragePoolException."""
        context = f"Cannot {op.split('.', 1)[1]}: {self.vid}"
        try:
            args = {
                "pool": pool_ref(self.pool),
                "volume": self._volume_ref(),
                **extra,
            }
        except (TypeError, ValueError) as err:
            raise qubes.exc.StoragePoolException(
                f"{context}: invalid volume property: {err}"
            ) from err
        try:
            return await client.call(op, args, timeout=client.timeout_for(op))
        except client.ClientError as err:
            raise qubes.exc.StoragePoolException(
                client.user_message(context, err)
            ) from err

    async def _state_op(self, op, **extra):
        """A call answered with an api.VolumeState; keeps its size."""
        state = await self._request(op, **extra)
        self._size = state["size"]
        return state

    @qubes.storage.Volume.locked
    async def create(self):
        await self._state_op("volume.create")
        return self

    @qubes.storage.Volume.locked
    async def remove(self):
        await self._state_op("volume.remove")
        # Only once the files are gone: after a failure the volume still
        # exists and must stay listed.
        self.pool.forget_volume(self.vid)
        return self

    async def verify(self):
        # Unlocked like file-reflink's: it only checks files exist.
        await self._state_op("volume.verify")
        return True

    @qubes.storage.Volume.locked
    async def start(self):
        await self._state_op("volume.start")
        return self

    @qubes.storage.Volume.locked
    async def stop(self):
        await self._state_op("volume.stop")
        return self

    @qubes.storage.Volume.locked
    async def revert(self, revision=None):
        # "" asks the daemon for the newest revision; it also refuses
        # dirty volumes, since qubesd does not check the VM is halted.
        revision = "" if revision is None else str(revision)
        await self._state_op("volume.revert", revision=revision)
        return self

    @qubes.storage.Volume.locked
    async def resize(self, size):
        try:
            size = int(size)
        except (TypeError, ValueError) as err:
            raise qubes.exc.StoragePoolException(
                f"Cannot resize: {self.vid}: invalid size {size!r}"
            ) from err
        await self._state_op("volume.resize", size=size)
        return self

    async def export(self):
        # Unlocked like file-reflink's: backup exports while the VM may
        # start or stop; the daemon serializes per vid.
        result = await self._request("volume.export")
        return result["path"]

    async def export_end(self, path):
        # Unlocked too: another volume's import_volume calls it while
        # holding its own lock, and two crossed imports must not deadlock.
        await self._state_op("volume.export_end", path=str(path))
        return self

    @qubes.storage.Volume.locked
    async def import_data(self, size):
        try:
            size = int(size)
        except (TypeError, ValueError) as err:
            raise qubes.exc.StoragePoolException(
                f"Cannot import_data: {self.vid}: invalid size {size!r}"
            ) from err
        result = await self._request("volume.import_data", size=size)
        return result["path"]

    @qubes.storage.Volume.locked
    async def import_data_end(self, success):
        await self._state_op("volume.import_data_end", success=bool(success))
        return self

    @qubes.storage.Volume.locked
    async def import_volume(self, src_volume):
        if not self.save_on_stop:
            return self  # no data survives a start anyway (as file-reflink)
        src_path = await self._export_source(src_volume)
        try:
            await self._state_op(
                "volume.import_volume", source_path=src_path
            )
        except BaseException:
            await self._end_source_export(src_volume, src_path, quiet=True)
            raise
        await self._end_source_export(src_volume, src_path)
        return self

    async def _export_source(self, src_volume):
        try:
            src_path = await qubes.utils.coro_maybe(src_volume.export())
        except OSError as err:
            raise qubes.exc.StoragePoolException(
                f"Cannot import_volume: {self.vid}: cannot export "
                f"{src_volume.vid}: {err}"
            ) from err
        if not isinstance(src_path, str) or not src_path:
            raise qubes.exc.StoragePoolException(
                f"Cannot import_volume: {self.vid}: export of "
                f"{src_volume.vid} gave no path ({src_path!r})"
            )
        return src_path

    async def _end_source_export(self, src_volume, src_path, *, quiet=False):
        try:
            await qubes.utils.coro_maybe(src_volume.export_end(src_path))
        except Exception as err:  # pylint: disable=broad-except
            if quiet:
                # The import's own error is the one to report.
                LOGGER.exception(
                    "export_end of %s failed after a failed import into %s",
                    src_volume.vid, self.vid,
                )
                return
            if isinstance(err, OSError):
                raise qubes.exc.StoragePoolException(
                    f"Cannot import_volume: {self.vid}: export_end of "
                    f"{src_volume.vid}: {err}"
                ) from err
            raise

    async def refresh(self):
        """The daemon's view of this volume (volume.info), for tools and
        diagnostics; qubesd itself never needs it."""
        return await self._state_op("volume.info")

    # -- sync queries: metadata of the layout only -------------------------

    @property
    def size(self):
        """Dirty image's size, else the clean one's, else the recorded."""
        found = self._paths.stat_image()
        return found.st_size if found else self._size

    @property
    def usage(self):
        """Allocated bytes of the dirty image, else of the clean one."""
        found = self._paths.stat_image()
        return found.st_blocks * 512 if found else 0

    @property
    def revisions(self):
        """Revision id -> UTC timestamp, oldest first; {} if none."""
        return self._paths.revisions()

    def is_dirty(self):
        return bool(self.save_on_stop and self._paths.dirty_exists())

    def is_outdated(self):
        """Whether the source committed since this snapshot started: its
        .img is then another inode than the hardlink taken at start."""
        if not self.snap_on_start:
            return False
        own_stat = self._paths.stat_clean()
        if own_stat is None:
            return False
        try:
            source = paths.volume_paths(self.pool.dir_path, self.source.vid)
            src_stat = os.stat(source.clean)
        except (OSError, paths.InvalidName, AttributeError):
            return False
        return (src_stat.st_ino, src_stat.st_dev) != (
            own_stat.st_ino,
            own_stat.st_dev,
        )

    def block_device(self):
        if self.path is None:
            raise qubes.exc.StoragePoolException(
                f"Cannot attach: {self.vid}: invalid vid"
            )
        return super().block_device()
