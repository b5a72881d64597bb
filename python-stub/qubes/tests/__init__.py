# SPDX-License-Identifier: GPL-2.0-or-later
"""Test helpers of the qubes stand-in (upstream's qubes.tests is larger)."""
