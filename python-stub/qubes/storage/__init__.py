# SPDX-License-Identifier: GPL-2.0-or-later
"""Stand-in for qubes/storage/__init__.py at 1ad5f9b8.

BlockDevice, Volume, Pool, VolumesCollection and the module helpers keep
upstream's names, signatures and behavior. Storage is cut down to the
methods whose ordering drivers must survive (contract section 5); libvirt
attach/detach and the LVM lookup of search_pool_containing_dir are left out
because they need lxml and dm tools.
"""

import asyncio
import functools
import importlib.metadata
import inspect
import os
import os.path
import string
import subprocess
from datetime import datetime, timezone

import qubes
import qubes.config
import qubes.exc
import qubes.utils
from qubes.exc import StoragePoolException

STORAGE_ENTRY_POINT = "qubes.storage"
# Read at call time by Volume.state_file, so tests can patch it.
VOLUME_STATE_DIR = "/var/run/qubes/"
VOLUME_STATE_PREFIX = "volume-running-"
_am_root = os.getuid() == 0

# start_encrypted wipes this much of a fresh dm-crypt mapping.
BYTES_TO_ZERO = 1 << 16


class BlockDevice:
    """A disk as the libvirt template renders it."""

    # pylint: disable=too-few-public-methods
    def __init__(
        self, path, name, script=None, rw=True, domain=None, devtype="disk"
    ):
        assert name, "Missing device name"
        assert path, "Missing device path"
        assert script is None, "block scripts are obsolete"
        self.path = path
        self.name = name
        self.rw = rw
        self.domain = domain
        self.devtype = devtype


class Volume:
    """Base of every driver's volume.

    Kinds, by (snap_on_start, save_on_stop):
    volatile (F, F), snapshot (T, F), origin (F, T), origin-snapshot (T, T).
    """

    devtype = "disk"
    domain = None
    path = None
    usage = 0

    def __init__(
        self,
        name,
        pool,
        vid,
        *,
        revisions_to_keep=0,
        rw=False,
        save_on_stop=False,
        size=0,
        snap_on_start=False,
        source=None,
        ephemeral=None,
        **kwargs,
    ):
        # Unknown config keys end here and raise TypeError, as upstream.
        super().__init__(**kwargs)
        assert isinstance(pool, Pool)
        assert source is None or (
            isinstance(source, Volume) and source.pool == pool
        )
        if snap_on_start and source is None:
            raise StoragePoolException(
                f"snap_on_start specified on {name!r} but no volume source set"
            )
        if not snap_on_start and source is not None:
            raise StoragePoolException(
                f"source specified on {name!r} but no snap_on_start set"
            )
        self.name = str(name)
        self.pool = pool
        self.revisions_to_keep = int(revisions_to_keep)
        self.rw = rw
        self.save_on_stop = save_on_stop
        self._size = int(size)
        self._ephemeral = ephemeral
        self.snap_on_start = snap_on_start
        self.source = source
        self.vid = vid
        self._lock = asyncio.Lock()

    def __eq__(self, other):
        if isinstance(other, Volume):
            return other.pool == self.pool and other.vid == self.vid
        return NotImplemented

    def __hash__(self):
        return hash(f"{self.pool}:{self.vid}")

    def __repr__(self):
        return repr(str(self.pool) + ":" + self.vid)

    def __str__(self):
        return str(self.vid)

    def _ephemeral_allowed(self):
        return not (
            self.snap_on_start
            or self.save_on_stop
            or self.domain is not None
            or not self.rw
        )

    @property
    def ephemeral(self):
        """Whether to encrypt with a throw-away key (volatile volumes)."""
        if self._ephemeral is not None:
            return self._ephemeral
        if not self._ephemeral_allowed():
            return False
        return self.pool.ephemeral_volatile

    @ephemeral.setter
    def ephemeral(self, value):
        if not value:
            self._ephemeral = False
            return
        if not self._ephemeral_allowed():
            raise qubes.exc.QubesValueError(
                "Cannot enable ephemeral on snap_on_start or save_on_stop or "
                "non-dom0 or not writable volume"
            )
        self._ephemeral = bool(value)

    async def start_encrypted(self, name):
        """start(), then open a plain dm-crypt mapping *name* over it."""
        assert name.startswith("/dev/mapper/"), (
            f"Invalid path {name!r} passed to cryptsetup"
        )
        mapping = name[len("/dev/mapper/"):]
        assert "/" not in mapping, "Invalid name passed to cryptsetup"
        if os.path.exists(name):
            await qubes.utils.cryptsetup("--", "close", mapping)
        await qubes.utils.coro_maybe(self.start())
        await qubes.utils.cryptsetup(
            "--key-file=/dev/urandom",
            "--cipher=aes-xts-plain64",
            "--type=plain",
            "--",
            "open",
            self.block_device().path,
            mapping,
        )
        if _am_root:
            with open(name, "wb+") as mapped:
                mapped.write(b"\0" * BYTES_TO_ZERO)
        else:
            await qubes.utils.run_program(
                "dd",
                "if=/dev/zero",
                "of=" + name,
                "count=1",
                "bs=" + str(BYTES_TO_ZERO),
                sudo=True,
            )

    async def stop_encrypted(self, name):
        """Close mapping *name* if present, then stop(). qubesd uses it for
        every stop, encrypted or not."""
        assert name.startswith("/dev/mapper/"), (
            f"invalid encrypted volume path {name!r}"
        )
        if os.path.exists(name):
            await qubes.utils.cryptsetup("--", "close", name)
        await qubes.utils.coro_maybe(self.stop())

    @staticmethod
    def locked(method):
        """Run the decorated coroutine method under the volume's own lock."""

        @functools.wraps(method)
        async def wrapper(self, *args, **kwargs):
            async with self._lock:  # pylint: disable=protected-access
                return await method(self, *args, **kwargs)

        return wrapper

    async def create(self):
        raise self._not_implemented("create")

    async def remove(self):
        raise self._not_implemented("remove")

    async def export(self):
        raise self._not_implemented("export")

    async def export_end(self, path):
        """Optional; nothing to clean up by default."""

    async def import_data(self, size):
        raise self._not_implemented("import_data")

    async def import_data_end(self, success):
        """Optional; nothing to finish by default."""

    async def import_volume(self, src_volume):
        raise self._not_implemented("import_volume")

    def is_dirty(self):
        raise self._not_implemented("is_dirty")

    def is_outdated(self):
        raise self._not_implemented("is_outdated")

    async def resize(self, size):
        raise self._not_implemented("resize")

    async def revert(self, revision=None):
        raise self._not_implemented("revert")

    async def start(self):
        raise self._not_implemented("start")

    async def stop(self):
        raise self._not_implemented("stop")

    async def verify(self):
        raise self._not_implemented("verify")

    def block_device(self):
        return BlockDevice(
            self.path, self.name, None, self.rw, self.domain, self.devtype
        )

    @property
    def revisions(self):
        raise NotImplementedError(
            f"{self.__class__!s} has revisions not implemented"
        )

    @property
    def size(self):
        return self._size

    def encrypted_volume_path(self, qube_name, device_name):
        """/dev/mapper name of an ephemeral volume, escaped so that it can
        collide neither with LVM/LUKS names nor with another qube's."""
        escaped = qube_name.replace("_", "_u").replace("-", "_d")
        return f"/dev/mapper/vm-volatile-{escaped}-crypt@{device_name}"

    def make_encrypted_device(self, device, qube_name):
        """The BlockDevice of the dm-crypt mapping laid over *device*."""
        assert device.domain is None, "Volatile volume must be in dom0"
        assert device.devtype == "disk"
        assert device.rw, "Encrypting read-only volumes makes no sense"
        return BlockDevice(
            path=self.encrypted_volume_path(qube_name, device.name),
            name=device.name,
            rw=device.rw,
            domain=None,
            devtype="disk",
        )

    @property
    def config(self):
        """What qubes.xml stores for this volume (never a None value)."""
        result = {
            "name": self.name,
            "pool": str(self.pool),
            "vid": self.vid,
            "revisions_to_keep": self.revisions_to_keep,
            "rw": self.rw,
            "save_on_stop": self.save_on_stop,
            "snap_on_start": self.snap_on_start,
        }
        if self._ephemeral is not None:
            result["ephemeral"] = self.ephemeral
        if self.size:
            result["size"] = self.size
        if self.source:
            result["source"] = str(self.source)
        return result

    def _not_implemented(self, method_name):
        return NotImplementedError(
            f"Volume {self.__class__.__name__!s} has {method_name!s}() "
            "not implemented"
        )

    @property
    def snapshots_disabled(self) -> bool:
        return (
            self.revisions_to_keep == -1
            and not self.snap_on_start
            and self.save_on_stop
        )

    @property
    def state_file(self) -> str:
        escaped = f"{self.pool.name}:{self.vid}".replace("-", "--")
        return os.path.join(
            VOLUME_STATE_DIR, VOLUME_STATE_PREFIX + escaped.replace("/", "-")
        )

    def is_running(self) -> bool:
        return os.path.exists(self.state_file)


class Storage:
    """A VM's volumes, driven in the orders qubesd uses (cut down)."""

    def __init__(self, vm):
        self.vm = vm
        self.log = vm.log
        if hasattr(vm, "volume_config"):
            for name, conf in vm.volume_config.items():
                self.init_volume(name, conf)

    def _update_volume_config_source(self, name, volume_config):
        # Walk up the template chain to the first volume without a source:
        # a DispVM's root snapshots the TemplateVM's root, not the AppVM's.
        template = getattr(self.vm, "template", None)
        while template:
            source = template.volumes[name]
            volume_config["source"] = source
            volume_config["pool"] = source.pool
            volume_config["size"] = source.size
            if source.source is None:
                break
            template = getattr(template, "template", None)

    def init_volume(self, name, volume_config):
        """Build (or rebuild) one volume; no disk I/O by contract."""
        volume_config.setdefault("name", name)
        if "source" in volume_config:
            template = getattr(self.vm, "template", None)
            if template and template.storage is None:
                template.storage = Storage(template)
            if volume_config["source"] is None:
                self._update_volume_config_source(name, volume_config)
            else:
                pool = self.vm.app.get_pool(volume_config["pool"])
                volume_config["source"] = pool.volumes[volume_config["source"]]
        if "pool" not in volume_config:
            volume_config["pool"] = getattr(
                self.vm.app, "default_pool_" + name
            )
        pool = self.vm.app.get_pool(volume_config["pool"])
        volume_config.pop("internal", None)
        volume = pool.init_volume(self.vm, volume_config.copy())
        self.vm.volumes[name] = volume
        return volume

    def get_volume(self, volume_or_name):
        if isinstance(volume_or_name, Volume):
            return volume_or_name
        if isinstance(volume_or_name, str):
            return self.vm.volumes[volume_or_name]
        raise TypeError("You need to pass a Volume object or name")

    def get_disk_utilization(self):
        return sum(vol.usage for vol in self.vm.volumes.values())

    async def create(self):
        """Create every volume concurrently.

        Upstream's Storage.create has no rollback; QubesVM.create_on_disk
        wraps it with one (remove everything, then re-raise). It is folded
        in here so tests see the same sequence.
        """
        try:
            await qubes.utils.void_coros_maybe(
                vol.create() for vol in self.vm.volumes.values()
            )
        except BaseException:
            try:
                await self.remove()
            except Exception:  # pylint: disable=broad-except
                self.log.exception("failed to clean up after failed create")
            raise

    async def verify(self):
        if not os.path.exists(self.vm.dir_path):
            raise qubes.exc.QubesVMError(
                self.vm, f"VM directory does not exist: {self.vm.dir_path}"
            )
        await qubes.utils.void_coros_maybe(
            vol.verify() for vol in self.vm.volumes.values()
        )
        fire = getattr(self.vm, "fire_event", None)
        if fire is not None:
            fire("domain-verify-files")
        return True

    async def start(self):
        for vol in self.vm.volumes.values():
            source = vol.source
            if source and source.snapshots_disabled and source.is_running():
                raise qubes.exc.QubesVMError(
                    self.vm, f"Volume {source.vid} is running"
                )
        await qubes.utils.void_coros_maybe(
            (
                vol.start_encrypted(
                    vol.encrypted_volume_path(self.vm.name, name)
                )
                if vol.ephemeral
                else vol.start()
            )
            for name, vol in self.vm.volumes.items()
        )
        # Only once every volume has started.
        for vol in self.vm.volumes.values():
            with open(vol.state_file, "w", encoding="ascii"):
                pass

    async def stop(self):
        # stop_encrypted for everything: it copes with unencrypted volumes
        # and with ephemeral having been switched off while running.
        await qubes.utils.void_coros_maybe(
            vol.stop_encrypted(vol.encrypted_volume_path(self.vm.name, name))
            for name, vol in self.vm.volumes.items()
        )
        for vol in self.vm.volumes.values():
            qubes.utils.remove_file(vol.state_file)

    async def remove(self):
        """stop() then remove() every volume; OS errors are only logged."""
        try:
            await self.stop()
        except (IOError, OSError, subprocess.SubprocessError):
            self.vm.log.exception(
                "Failed to stop some volume, continuing anyway"
            )
        pending = []
        for vol in self.vm.volumes.values():
            self.log.info("Removing volume %s: %s", vol.name, vol.vid)
            try:
                pending.append(vol.remove())
            except (IOError, OSError):
                self.vm.log.exception("Failed to remove volume %s", vol.name)
        try:
            await qubes.utils.void_coros_maybe(pending)
        except (IOError, OSError):
            self.vm.log.exception("Failed to remove some volume")

    async def resize(self, volume, size):
        volume = self.get_volume(volume)
        await qubes.utils.coro_maybe(volume.resize(size))
        run_service = getattr(self.vm, "run_service_for_stdio", None)
        if self.vm.is_running() and run_service is not None:
            try:
                await run_service(
                    "qubes.ResizeDisk", input=volume.name.encode(), user="root"
                )
            except subprocess.CalledProcessError as err:
                detail = (err.stderr or b"").decode("ascii", errors="ignore")
                raise StoragePoolException(
                    f"Online resize of volume {volume} failed (you need to "
                    f"resize filesystem manually): {detail.replace('%', '')}"
                ) from err

    async def revert(self, volume, revision=None):
        """What admin.vm.volume.Revert does around volume.revert()."""
        volume = self.get_volume(volume)
        if revision is not None:
            allowed = string.ascii_letters + string.digits + ":-_."
            if not all(c in allowed for c in revision):
                raise qubes.exc.ProtocolError(
                    "Revision name must be in safe set: " + allowed
                )
            if revision not in volume.revisions:
                raise qubes.exc.QubesVolumeRevisionNotFoundError()
        await qubes.utils.coro_maybe(volume.revert(revision))

    async def export(self, volume):
        return await qubes.utils.coro_maybe(self.get_volume(volume).export())

    async def export_end(self, volume, export_path):
        await qubes.utils.coro_maybe(
            self.get_volume(volume).export_end(export_path)
        )

    async def import_data(self, volume, size):
        """*size* None means the volume's current size (plain Import)."""
        volume = self.get_volume(volume)
        if size is None:
            size = volume.size
        return await qubes.utils.coro_maybe(volume.import_data(size))

    async def import_data_end(self, volume, success):
        return await qubes.utils.coro_maybe(
            self.get_volume(volume).import_data_end(success=success)
        )

    async def import_volume(self, dst_volume, src_volume):
        if src_volume.is_running() and src_volume.snapshots_disabled:
            raise StoragePoolException(
                f"Volume {src_volume.vid} must be stopped before importing "
                "its data"
            )
        result = await qubes.utils.coro_maybe(
            dst_volume.import_volume(src_volume)
        )
        fire = getattr(self.vm, "fire_event_async", None)
        if fire is not None:
            await fire(
                "domain-import-volume", name=dst_volume.name, source=src_volume
            )
        return result

    def set_revisions_to_keep(self, volume, value):
        if value < -1:
            raise qubes.exc.QubesValueError(
                "Invalid value for revisions_to_keep"
            )
        current = self.vm.volumes[volume].revisions_to_keep
        toggles_snapshots = value != current and -1 in (current, value)
        if toggles_snapshots and self.vm.is_running():
            raise qubes.exc.QubesVMNotHaltedError(self.vm)
        if toggles_snapshots and getattr(self.vm, "klass", None) == "AppVM":
            for dispvm in getattr(self.vm, "dispvms", ()):
                if dispvm.is_running():
                    raise qubes.exc.QubesVMNotHaltedError(dispvm)
        self.vm.volumes[volume].revisions_to_keep = value

    def block_devices(self):
        for vol in self.vm.volumes.values():
            device = vol.block_device()
            if device is None:
                continue
            if vol.ephemeral:
                yield vol.make_encrypted_device(device, self.vm.name)
            else:
                yield device


class VolumesCollection:
    """pool.volumes: get_volume / list_volumes as a mapping."""

    def __init__(self, pool):
        self._pool = pool

    def __getitem__(self, item):
        if isinstance(item, Volume):
            if item.pool == self._pool:
                return self[item.vid]
            raise KeyError(item)
        try:
            return self._pool.get_volume(item)
        except NotImplementedError:
            # Drivers may implement only list_volumes.
            for vol in self:
                if vol.vid == item:
                    return vol
            raise KeyError(item)

    def __iter__(self):
        return iter(self._pool.list_volumes())

    def __contains__(self, item):
        try:
            return self[item] is not None
        except KeyError:
            return False

    def keys(self):
        return [vol.vid for vol in self]

    def values(self):
        return list(self)


class Pool:
    """Base of every driver's pool."""

    private_img_size = qubes.config.defaults["private_img_size"]
    root_img_size = qubes.config.defaults["root_img_size"]

    def __init__(self, *, name, revisions_to_keep=1, ephemeral_volatile=False):
        self._volumes_collection = VolumesCollection(self)
        self.name = name
        # Kept exactly as given: possibly the string "2" from qubes.xml.
        self.revisions_to_keep = revisions_to_keep
        self.ephemeral_volatile = qubes.utils.parse_bool(ephemeral_volatile)

    def __eq__(self, other):
        if isinstance(other, Pool):
            return self.name == other.name
        if isinstance(other, str):
            return self.name == other
        return NotImplemented

    def __str__(self):
        return self.name

    def __hash__(self):
        return hash(self.name)

    @property
    def config(self):
        raise self._not_implemented("config")

    async def destroy(self):
        raise self._not_implemented("destroy")

    def init_volume(self, vm, volume_config):
        raise self._not_implemented("init_volume")

    async def setup(self):
        raise self._not_implemented("setup")

    @property
    def volumes(self):
        return self._volumes_collection

    def list_volumes(self):
        raise self._not_implemented("list_volumes")

    def get_volume(self, vid):
        raise self._not_implemented("get_volume")

    def included_in(self, app):
        """Best-effort: the pool physically containing this one, or None."""

    @property
    def size(self):
        return None

    @property
    def usage(self):
        return None

    @property
    def usage_details(self):
        result = {}
        if self.usage is not None:
            result["data_usage"] = self.usage
        if self.size is not None:
            result["data_size"] = self.size
        return result

    def _not_implemented(self, method_name):
        return NotImplementedError(
            f"Pool driver {self.__class__.__name__!s} has {method_name!s}() "
            "not implemented"
        )


def _sanitize_config(config):
    """qubes.xml's attribute encoding: bools as True/False, else str()."""
    return {
        key: (("True" if value else "False")
              if isinstance(value, bool) else str(value))
        for key, value in config.items()
    }


def pool_drivers():
    """Names of every installed storage driver."""
    return [
        ep.name
        for ep in importlib.metadata.entry_points(group=STORAGE_ENTRY_POINT)
    ]


def driver_parameters(name):
    """Pool options of driver *name*: option -> True if required."""
    init = qubes.utils.get_entry_point_one(STORAGE_ENTRY_POINT, name).__init__
    params = inspect.signature(init).parameters
    return {
        p.name: p.default is inspect.Parameter.empty
        for p in params.values()
        if p.name not in ("self", "name", "kwargs")
    }


def isodate(seconds):
    """UTC ISO-8601 without an offset, e.g. 2026-11-20T09:15:02."""
    stamp = datetime.fromtimestamp(seconds, tz=timezone.utc).isoformat()
    return stamp.replace("+00:00", "")


def search_pool_containing_dir(pools, dir_path):
    """The first filesystem pool whose dir_path contains *dir_path*.

    Upstream then tries LVM thin pools; that branch is not reproduced.
    """
    real_dir_path = os.path.realpath(dir_path)
    for pool in pools:
        if hasattr(pool, "dir_path"):
            pool_path = os.path.realpath(pool.dir_path)
            if os.path.commonpath([pool_path, real_dir_path]) == pool_path:
                return pool
    return None
