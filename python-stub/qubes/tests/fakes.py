# SPDX-License-Identifier: GPL-2.0-or-later
"""Fake app and VMs for driver tests, shaped like TestApp/TestVM/
TestTemplateVM in qubes/tests/storage.py of qubes-core-admin 1ad5f9b8.

Only what Storage and a driver's init_volume read is provided: a VM has
name, dir_path_prefix, dir_path, log, an optional template, volumes,
volume_config, storage, is_running() and app; the app has pools,
get_pool() and domains.
"""

import copy
import logging
import os.path

import qubes.config
import qubes.exc
import qubes.storage

_PRIVATE = qubes.config.defaults["private_img_size"]
_ROOT = qubes.config.defaults["root_img_size"]

# Class-default volume configs from qubes/vm/*.py (kernel volume omitted:
# it always lives in the linux-kernel pool).
TEMPLATE_VOLUMES = {
    "root": {"name": "root", "snap_on_start": False, "save_on_stop": True,
             "rw": True, "size": _ROOT},
    "private": {"name": "private", "snap_on_start": False,
                "save_on_stop": True, "rw": True, "size": _PRIVATE},
    "volatile": {"name": "volatile", "snap_on_start": False,
                 "save_on_stop": False, "rw": True, "size": _ROOT},
}
STANDALONE_VOLUMES = TEMPLATE_VOLUMES
APPVM_VOLUMES = {
    "root": {"name": "root", "snap_on_start": True, "save_on_stop": False,
             "rw": True, "source": None},
    "private": TEMPLATE_VOLUMES["private"],
    "volatile": TEMPLATE_VOLUMES["volatile"],
}
DISPVM_VOLUMES = {
    "root": APPVM_VOLUMES["root"],
    "private": {"name": "private", "snap_on_start": True,
                "save_on_stop": False, "rw": True, "source": None},
    "volatile": {"name": "volatile", "snap_on_start": False,
                 "save_on_stop": False, "rw": True, "size": 12 * 1024**3},
}


class FakeApp:
    """qubes.Qubes as far as Storage needs it."""

    def __init__(self, pools=(), default_pool=None):
        self.pools = {pool.name: pool for pool in pools}
        self.domains = {}
        self.default_pool = default_pool
        for vol in ("root", "private", "volatile", "kernel"):
            setattr(self, "default_pool_" + vol, default_pool)

    def add_pool(self, pool):
        self.pools[pool.name] = pool
        return pool

    def get_pool(self, pool):
        if isinstance(pool, qubes.storage.Pool):
            return pool
        try:
            return self.pools[pool]
        except KeyError:
            raise qubes.exc.QubesException(
                "Unknown storage pool " + str(pool)
            ) from None


class FakeVM:
    """A domain with just the attributes storage code reads."""

    dir_path_prefix = qubes.config.system_path["qubes_appvms_dir"]
    klass = "AppVM"

    def __init__(self, app, name, *, template=None, volume_config=None,
                 base_dir=qubes.config.qubes_base_dir):
        self.app = app
        self.name = name
        self.dir_path = os.path.join(base_dir, self.dir_path_prefix, name)
        self.log = logging.getLogger("vm." + name)
        if template is not None:
            self.template = template
        self.volumes = {}
        self.volume_config = copy.deepcopy(volume_config or {})
        self.storage = None
        self.running = False
        self.dispvms = []
        self.events = []
        app.domains[name] = self

    def init_storage(self):
        """What the VM constructor does: build Storage from volume_config."""
        self.storage = qubes.storage.Storage(self)
        return self.storage

    def is_running(self):
        return self.running

    def is_halted(self):
        return not self.running

    def fire_event(self, event, **kwargs):
        self.events.append((event, kwargs))

    async def fire_event_async(self, event, **kwargs):
        self.events.append((event, kwargs))

    def __str__(self):
        return self.name

    def __repr__(self):
        return f"<{self.__class__.__name__} {self.name}>"


class FakeTemplateVM(FakeVM):
    dir_path_prefix = qubes.config.system_path["qubes_templates_dir"]
    klass = "TemplateVM"


class FakeStandaloneVM(FakeVM):
    klass = "StandaloneVM"


class FakeDispVM(FakeVM):
    klass = "DispVM"
