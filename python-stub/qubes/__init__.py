# SPDX-License-Identifier: GPL-2.0-or-later
"""Test-only stand-in for the parts of qubesd's ``qubes`` package that a
storage driver touches.

It mirrors QubesOS/qubes-core-admin at 1ad5f9b8 (2026-08-18): same names,
signatures and observable behavior where drivers and their tests depend on
them, nothing else. It is never installed into dom0; the real package is
there.
"""

# Order matters: qubes.storage reads qubes.config at import time.
import qubes.config
import qubes.exc
import qubes.utils
import qubes.storage
