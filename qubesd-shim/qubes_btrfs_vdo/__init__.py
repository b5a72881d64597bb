# SPDX-License-Identifier: GPL-2.0-or-later
"""btrfs-vdo: a qubes.storage driver for VM images on btrfs.

Design. The driver is thin; the btrfs-vdod daemon (running as root,
reached over a Unix socket, see client.py) does all file work.

* Every mutating operation (create, remove, verify, start, stop, revert,
  resize, export, export_end, import_data, import_data_end, import_volume,
  pool setup) is forwarded to the daemon as one request carrying the pool
  and the volume's current properties. Branching on volume kind and state
  happens in the daemon, not here.
* The synchronous queries (size, usage, revisions, is_dirty, is_outdated,
  block_device) are answered in-process from os.stat() and a directory
  listing of the file-reflink layout (paths.py): metadata only, image
  contents are never opened. qubesd calls them constantly on its single
  event loop (qvm-ls, the disk widget, admin.vm.volume.Info, backup
  planning), and a blocking daemon round trip there could stall every
  other qube's request.
  A volume's usage is st_blocks of its image: the logical bytes the VM
  filled, not what they take on disk once compressed or shared. qubesd
  compares it with the volume's size to warn that the VM runs out of
  space, which compression does not change.
* The pool's usage_details (qvm-pool info) are statvfs's data_size and
  data_usage plus, read from a file the daemon writes beneath the pool
  after every background job, at pool open and after removals
  (usagefile.py), the pool's disk_usage, uncompressed and referenced
  bytes as compsize counts them, the bytes the jobs saved, and
  usage_time, when the figures were measured. A missing or doubtful file
  leaves only the first two.
* Daemon and transport failures all become
  qubes.exc.StoragePoolException, the only exception qubesd shows to the
  user instead of dropping the connection.

The layout is file-reflink's, so a file-reflink pool can be switched to
this driver by changing driver= in qubes.xml.
"""

__version__ = "0.1.0"
