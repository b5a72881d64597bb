# SPDX-License-Identifier: GPL-2.0-or-later
"""Constants from qubes/config.py at 1ad5f9b8 that drivers and Pool read."""

import os.path

qubes_base_dir = "/var/lib/qubes"

system_path = {
    # Relative to qubes_base_dir.
    "qubes_appvms_dir": "appvms",
    "qubes_templates_dir": "vm-templates",
    "qubes_store_filename": "qubes.xml",
    "qubes_kernels_base_dir": "vm-kernels",
}

defaults = {
    "private_img_size": 2 * 1024**3,
    "root_img_size": 10 * 1024**3,
    "pool_configs": {
        "varlibqubes": {"dir_path": qubes_base_dir, "name": "varlibqubes"},
        "linux-kernel": {
            "dir_path": os.path.join(
                qubes_base_dir, system_path["qubes_kernels_base_dir"]
            ),
            "driver": "linux-kernel",
            "name": "linux-kernel",
        },
    },
}
