# SPDX-License-Identifier: GPL-2.0-or-later
"""File names of the file-reflink layout, derived in one place.

Pure functions, no I/O except list_revisions and VolumePaths' queries,
which stat files and read one directory. Pinned, like the daemon's Go
code, by api/testdata/paths.json.

Layout, for pool directory D and vid ``<appvms|vm-templates>/<vm>/<vol>``:

    D/<vid>.img                      clean: the committed image
    D/<vid>-dirty.img                dirty: attached to the running VM
    D/<vid>-precache.img             precache: next start's dirty, prepared
    D/<vid>-import.img               import: a pending import target
    D/<vid>.img.<N>@<timestamp>Z     revision N, timestamp YYYY-MM-DDTHH:MM:SS
"""

import os
import re
from typing import Dict, Iterable, NamedTuple, Optional, Union

VID_PREFIXES = ("appvms", "vm-templates")

# A VM or volume name. The first character keeps out "-" (option-like) and
# "." (hidden files and "..").
_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,63}", re.ASCII)
_REVISION = re.compile(r"[1-9][0-9]{0,18}", re.ASCII)
_TIMESTAMP = r"[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}"


# What the layout appends to a volume name for its other images: a volume
# named with one of these at its end would own another volume's files.
_IMAGE_SUFFIXES = ("-dirty", "-precache", "-import")


class InvalidName(ValueError):
    """A vid or revision id that could escape or confuse the layout."""


def validate_vid(vid: str) -> str:
    """Return *vid* if it is ``appvms|vm-templates/<vm>/<vol>``, else raise."""
    if not isinstance(vid, str):
        raise InvalidName(f"invalid vid {vid!r}: not a string")
    parts = vid.split("/")
    if len(parts) != 3:
        raise InvalidName(f"invalid vid {vid!r}: not <prefix>/<vm>/<volume>")
    if parts[0] not in VID_PREFIXES:
        raise InvalidName(
            f"invalid vid {vid!r}: does not start with appvms/ or "
            "vm-templates/"
        )
    for part in parts[1:]:
        if not _NAME.fullmatch(part) or ".." in part:
            raise InvalidName(f"invalid vid {vid!r}: bad component {part!r}")
    volume = parts[2]
    # "private-dirty.img" is the dirty image of "private"; revisions of
    # "private.img" match the revision glob of "private".
    if volume.endswith(_IMAGE_SUFFIXES) or ".img" in volume:
        raise InvalidName(
            f"invalid vid {vid!r}: volume name {volume!r} could name "
            "another volume's files"
        )
    return vid


def validate_revision(revision: str) -> str:
    """Return *revision* if it is a decimal revision number, else raise."""
    if not isinstance(revision, str) or not _REVISION.fullmatch(revision):
        raise InvalidName(f"invalid revision id {revision!r}")
    return revision


class VolumePaths(NamedTuple):
    """Every file name of one volume."""

    vid: str
    clean: str
    dirty: str
    precache: str
    import_: str

    @property
    def directory(self) -> str:
        return os.path.dirname(self.clean)

    def revision(self, revision: str, timestamp: str) -> str:
        return revision_path(self.clean, revision, timestamp)

    # Queries of what is on disk, as the driver's sync queries need them.

    def stat_image(self) -> Optional[os.stat_result]:
        """stat of the dirty image, else of the clean one, else None."""
        for path in (self.dirty, self.clean):
            try:
                return os.stat(path)
            except OSError:
                continue
        return None

    def stat_clean(self) -> Optional[os.stat_result]:
        """stat of the clean image, or None."""
        try:
            return os.stat(self.clean)
        except OSError:
            return None

    def dirty_exists(self) -> bool:
        return os.path.exists(self.dirty)

    def revisions(self) -> Dict[str, str]:
        """list_revisions of this volume."""
        return list_revisions(self)


class InvalidVolumePaths(NamedTuple):
    """The stand-in for VolumePaths of a vid validate_vid refuses: it
    names no file, and its queries find nothing on disk."""

    vid: object
    clean: None = None
    dirty: None = None
    precache: None = None
    import_: None = None

    def stat_image(self) -> None:
        return None

    def stat_clean(self) -> None:
        return None

    def dirty_exists(self) -> bool:
        return False

    def revisions(self) -> Dict[str, str]:
        return {}


def volume_paths(dir_path: str, vid: str) -> VolumePaths:
    """Paths of *vid* in the pool at *dir_path*; InvalidName if unsafe."""
    base = os.path.join(dir_path, validate_vid(vid))
    return VolumePaths(
        vid=vid,
        clean=base + ".img",
        dirty=base + "-dirty.img",
        precache=base + "-precache.img",
        import_=base + "-import.img",
    )


def volume_paths_or_invalid(
    dir_path: str, vid: str
) -> Union[VolumePaths, InvalidVolumePaths]:
    """volume_paths, or InvalidVolumePaths where it raises InvalidName."""
    try:
        return volume_paths(dir_path, vid)
    except InvalidName:
        return InvalidVolumePaths(vid)


def revision_path(clean: str, revision: str, timestamp: str) -> str:
    """``<clean>.<N>@<timestamp>Z``."""
    validate_revision(revision)
    if not re.fullmatch(_TIMESTAMP, timestamp, re.ASCII):
        raise InvalidName(f"invalid revision timestamp {timestamp!r}")
    return f"{clean}.{revision}@{timestamp}Z"


def parse_revisions(names: Iterable[str], volume: str) -> Dict[str, str]:
    """Revisions of *volume* among directory entries *names*.

    Returns N -> timestamp (no "Z"), ordered by int(N), oldest first, which
    is what Volume.revisions must return. Entries that are not revision
    files of this volume are ignored.
    """
    pattern = re.compile(
        re.escape(volume + ".img.")
        + f"({_REVISION.pattern})@({_TIMESTAMP})Z",
        re.ASCII,
    )
    found = []
    for name in names:
        match = pattern.fullmatch(name)
        if match:
            found.append((int(match.group(1)), match.group(1), match.group(2)))
    found.sort()
    return {revision: timestamp for _, revision, timestamp in found}


def list_revisions(paths: VolumePaths) -> Dict[str, str]:
    """parse_revisions over the volume's directory; {} if unreadable."""
    try:
        names = os.listdir(paths.directory)
    except OSError:
        return {}
    return parse_revisions(names, os.path.basename(paths.vid))
