// SPDX-License-Identifier: GPL-2.0-or-later

// Package bus connects btrfs-vdod to the D-Bus system bus:
//
//   - an Inhibitor holds a logind delay lock on shutdown and sleep while
//     image files are being written, so the machine does not power off in
//     the middle of a commit;
//   - WatchBattery pauses background jobs while UPower reports the machine
//     on battery;
//   - a Service owns the name org.qubes_os.BtrfsVdo1 and publishes the
//     daemon's status as read-only properties, with a JobFinished signal
//     and PropertiesChanged when they change.
//
// Nothing here is needed to serve qubesd: the daemon runs without a bus,
// and each part fails on its own without stopping the others.
package bus
