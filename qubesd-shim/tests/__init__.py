# SPDX-License-Identifier: GPL-2.0-or-later
"""Tests of the btrfs-vdo qubesd driver; run from the repository root:

    PYTHONPATH=python-stub:qubesd-shim python3 -m unittest discover \\
        -s qubesd-shim/tests -t qubesd-shim -v
"""
