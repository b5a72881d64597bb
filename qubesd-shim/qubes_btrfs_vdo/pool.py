# SPDX-License-Identifier: GPL-2.0-or-later
"""BtrfsVdoPool: the class qubesd loads through the ``qubes.storage`` entry
point ``btrfs-vdo``.

The constructor runs at every qubesd start while qubes.xml loads, so it
only parses options: no I/O and no daemon contact (a failure there would
drop the pool and every VM using it). Its keyword parameters are the pool
options qvm-pool accepts; they are file-reflink's, so converting a
file-reflink pool is a driver= change in qubes.xml.
"""

import logging
import os

import qubes.exc
import qubes.storage
import qubes.utils

from qubes_btrfs_vdo import client, usagefile
from qubes_btrfs_vdo.volume import BtrfsVdoVolume, pool_ref

LOGGER = logging.getLogger("qubes.storage.btrfs_vdo")


class BtrfsVdoPool(qubes.storage.Pool):
    """A directory of VM images on btrfs, managed by btrfs-vdod."""

    driver = "btrfs-vdo"
    # Fail closed on any other VM directory: dom0's udev rule hides only
    # loop devices backed by */appvms/*/*.img* and */vm-templates/*/*.img*.
    _known_dir_path_prefixes = ("appvms", "vm-templates")

    def __init__(
        self,
        *,
        name,
        dir_path,
        revisions_to_keep=1,
        setup_check=True,
        ephemeral_volatile=False,
    ):
        # Values arrive as strings ("2", "False") from qvm-pool and
        # qubes.xml. Bad ones become QubesValueError: qubesd reports that
        # to the user instead of dropping the connection.
        try:
            super().__init__(
                name=name,
                revisions_to_keep=revisions_to_keep,
                ephemeral_volatile=ephemeral_volatile,
            )
            self._setup_check = qubes.utils.parse_bool(setup_check)
        except ValueError as err:
            raise qubes.exc.QubesValueError(
                f"Invalid option for storage pool {name!r}: {err}"
            ) from err
        _check_revisions_to_keep(name, revisions_to_keep)
        if not dir_path:
            raise qubes.exc.QubesValueError(
                f"Storage pool {name!r} needs a dir_path"
            )
        self.dir_path = os.path.abspath(dir_path)
        self._volumes = {}

    @property
    def config(self):
        return {
            "name": self.name,
            "dir_path": self.dir_path,
            "driver": BtrfsVdoPool.driver,
            "revisions_to_keep": self.revisions_to_keep,
            "ephemeral_volatile": self.ephemeral_volatile,
        }

    async def setup(self):
        """Have the daemon create the pool directories and check the
        filesystem (reflinks, unless setup_check=False)."""
        context = f"Cannot set up pool {self.name}"
        try:
            daemon = await client.hello()
            found = await client.call(
                "pool.setup",
                {"pool": pool_ref(self), "setup_check": self._setup_check},
                timeout=client.timeout_for("pool.setup"),
            )
        except client.ClientError as err:
            raise qubes.exc.StoragePoolException(
                client.user_message(context, err)
            ) from err
        LOGGER.info(
            "Set up pool %r at %r with btrfs-vdod %s (btrfs=%s, reflinks=%s)",
            self.name, self.dir_path, daemon, found["btrfs"],
            found["reflinks"],
        )
        return self

    async def destroy(self):
        """Never called by qubesd; removing a pool must not touch data."""

    def init_volume(self, vm, volume_config):
        assert (
            vm.dir_path_prefix in self._known_dir_path_prefixes
        ), f"Unknown dir_path_prefix {vm.dir_path_prefix!r}"
        if volume_config.get("save_on_stop") and volume_config.get(
            "snap_on_start"
        ):
            raise NotImplementedError(
                f"btrfs-vdo does not support volumes that are both "
                f"save_on_stop and snap_on_start "
                f"({vm.name}:{volume_config.get('name')})"
            )
        if "revisions_to_keep" not in volume_config:
            volume_config["revisions_to_keep"] = self.revisions_to_keep
        if "vid" not in volume_config:
            volume_config["vid"] = os.path.join(
                vm.dir_path_prefix, vm.name, volume_config["name"]
            )
        volume_config["pool"] = self
        volume = BtrfsVdoVolume(**volume_config)
        # Replaces an earlier object for the vid (template change, reload).
        self._volumes[volume.vid] = volume
        return volume

    def forget_volume(self, vid):
        """Drop *vid* from the registry once its files are removed."""
        self._volumes.pop(vid, None)

    def list_volumes(self):
        return list(self._volumes.values())

    def get_volume(self, vid):
        return self._volumes[vid]

    @property
    def usage_details(self):
        """The filesystem's size and use (statvfs, as file-reflink), plus
        the daemon's figures for the pool's files when it has written
        them (usagefile.py): disk_usage, uncompressed and referenced as
        compsize counts them, saved (bytes the background jobs freed since
        the pool's first job), and usage_time, when they were measured
        (seconds since the epoch). No daemon round trip: qubesd calls this
        on its event loop."""
        try:
            stat = os.statvfs(self.dir_path)
        except OSError:
            return {}
        details = {
            "data_size": stat.f_frsize * stat.f_blocks,
            "data_usage": stat.f_frsize * (stat.f_blocks - stat.f_bfree),
        }
        details.update(usagefile.read(self.dir_path))
        return details

    @property
    def size(self):
        return self.usage_details.get("data_size")

    @property
    def usage(self):
        return self.usage_details.get("data_usage")

    def included_in(self, app):
        return qubes.storage.search_pool_containing_dir(
            [pool for pool in app.pools.values() if pool is not self],
            self.dir_path,
        )


def _check_revisions_to_keep(name, value):
    """Refuse what Volume's int() would choke on later, or below -1."""
    try:
        number = int(value)
    except (TypeError, ValueError):
        number = None
    if number is None or number < -1:
        raise qubes.exc.QubesValueError(
            f"Invalid revisions_to_keep {value!r} for storage pool "
            f"{name!r}: must be an integer of at least -1"
        )
