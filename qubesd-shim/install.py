#!/usr/bin/env python3
# SPDX-License-Identifier: GPL-2.0-or-later
"""Install the btrfs-vdo qubesd driver without pip (stdlib only).

    python3 install.py --target /usr/lib/python3.11/site-packages \
        [--root DESTDIR]

Copies the qubes_btrfs_vdo package into TARGET and writes a
btrfs_vdo-<version>.dist-info directory (METADATA, entry_points.txt,
top_level.txt, INSTALLER, RECORD), which is what importlib.metadata, and so
qubesd, reads to find the ``qubes.storage`` entry point ``btrfs-vdo``.
Metadata comes from pyproject.toml, the one place it is written down.

With --root, files go under DESTDIR/TARGET (for packaging) while RECORD
stays relative to TARGET. With --uninstall, the package and its dist-info
are removed from TARGET instead. Earlier installs of this distribution in TARGET
are removed first: two registrations of one driver name make qubesd fail.
The test-only qubes stand-in (python-stub) is never installed.
"""

import argparse
import base64
import glob
import hashlib
import os
import re
import shutil
import sys
import tomllib

HERE = os.path.dirname(os.path.abspath(__file__))
PACKAGE = "qubes_btrfs_vdo"


def read_project():
    with open(os.path.join(HERE, "pyproject.toml"), "rb") as fh:
        project = tomllib.load(fh)["project"]
    init = os.path.join(HERE, PACKAGE, "__init__.py")
    with open(init, encoding="utf-8") as fh:
        match = re.search(r'^__version__ = "([^"]+)"$', fh.read(), re.M)
    if not match or match.group(1) != project["version"]:
        sys.exit("install.py: __version__ and pyproject.toml disagree")
    return project


def dist_name(project):
    # The wheel convention for directory names: runs of -_. become "_".
    return re.sub(r"[-_.]+", "_", project["name"])


def metadata_text(project):
    lines = [
        "Metadata-Version: 2.4",
        f"Name: {project['name']}",
        f"Version: {project['version']}",
    ]
    if "description" in project:
        lines.append(f"Summary: {project['description']}")
    if "license" in project:
        lines.append(f"License-Expression: {project['license']}")
    if "requires-python" in project:
        lines.append(f"Requires-Python: {project['requires-python']}")
    lines.extend(f"Classifier: {c}" for c in project.get("classifiers", ()))
    return "\n".join(lines) + "\n"


def entry_points_text(project):
    out = []
    for group, entries in project.get("entry-points", {}).items():
        out.append(f"[{group}]")
        out.extend(f"{name} = {target}" for name, target in entries.items())
        out.append("")
    return "\n".join(out)


def remove_earlier(dest, dist):
    """Remove a previous copy of the package and any dist-/egg-info."""
    shutil.rmtree(os.path.join(dest, PACKAGE), ignore_errors=True)
    for pattern in (f"{dist}-*.dist-info", f"{dist}*.egg-info"):
        for path in glob.glob(os.path.join(glob.escape(dest), pattern)):
            if os.path.isdir(path) and not os.path.islink(path):
                shutil.rmtree(path)
            else:
                os.remove(path)


def write_file(dest, relpath, data, record):
    path = os.path.join(dest, relpath)
    os.makedirs(os.path.dirname(path), mode=0o755, exist_ok=True)
    with open(path, "wb") as fh:
        fh.write(data)
    os.chmod(path, 0o644)
    digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest())
    record.append(
        f"{relpath},sha256={digest.rstrip(b'=').decode()},{len(data)}"
    )


def install(target, root=None):
    project = read_project()
    dest = os.path.join(root, target.lstrip(os.sep)) if root else target
    os.makedirs(dest, mode=0o755, exist_ok=True)
    dist = dist_name(project)
    remove_earlier(dest, dist)

    record = []
    src_dir = os.path.join(HERE, PACKAGE)
    for name in sorted(os.listdir(src_dir)):
        if name.endswith(".py"):
            with open(os.path.join(src_dir, name), "rb") as fh:
                write_file(dest, f"{PACKAGE}/{name}", fh.read(), record)

    info = f"{dist}-{project['version']}.dist-info"
    texts = {
        "METADATA": metadata_text(project),
        "entry_points.txt": entry_points_text(project),
        "top_level.txt": PACKAGE + "\n",
        "INSTALLER": "btrfs-vdo-install.py\n",
    }
    for name, text in texts.items():
        write_file(dest, f"{info}/{name}", text.encode("utf-8"), record)
    record.append(f"{info}/RECORD,,")
    record_data = ("\n".join(record) + "\n").encode("utf-8")
    with open(os.path.join(dest, info, "RECORD"), "wb") as fh:
        fh.write(record_data)
    os.chmod(os.path.join(dest, info, "RECORD"), 0o644)
    return dest, info


def uninstall(target, root=None):
    project = read_project()
    dest = os.path.join(root, target.lstrip(os.sep)) if root else target
    remove_earlier(dest, dist_name(project))
    return dest


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--target", required=True,
                        help="site-packages directory qubesd imports from")
    parser.add_argument("--root", default=None,
                        help="staging root prepended to --target")
    parser.add_argument("--uninstall", action="store_true",
                        help="remove the driver from --target")
    args = parser.parse_args(argv)
    if args.uninstall:
        print(f"removed {PACKAGE} from {uninstall(args.target, args.root)}")
        return
    dest, info = install(args.target, args.root)
    print(f"installed {PACKAGE} and {info} into {dest}")


if __name__ == "__main__":
    main()
