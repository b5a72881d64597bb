# SPDX-License-Identifier: GPL-2.0-or-later
"""Integration tests: the real daemon on a real loop-mounted btrfs, driven
through the real shim by qubesd's own call sequences (python-stub's
Storage)."""
