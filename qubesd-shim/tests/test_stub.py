# SPDX-License-Identifier: GPL-2.0-or-later
"""Runs python-stub's own tests (qubes.tests.test_stub) with this suite,
so the one test command covers the stand-in the other tests rely on."""

import qubes.tests.test_stub


def load_tests(loader, tests, pattern):  # pylint: disable=unused-argument
    tests.addTests(loader.loadTestsFromModule(qubes.tests.test_stub))
    return tests
