# SPDX-License-Identifier: GPL-2.0-or-later
"""The exception classes of qubes/exc.py at 1ad5f9b8 that storage code meets.

qubesd sends the class name and str() of any QubesException (and of
ProtocolError) to the client; everything else closes the connection with no
reply, which is why drivers must stay inside this hierarchy.
"""


class QubesException(Exception):
    """An error whose message is shown to the user."""


class ProtocolError(AssertionError):
    """A malformed Admin API request (bad payload, unknown pool option)."""


class PermissionDenied(PermissionError):
    """The request is refused by policy."""


class QubesVMError(QubesException):
    """A problem with a domain's state."""

    def __init__(self, vm, msg):
        super().__init__(msg)
        self.vm = vm


class QubesVMNotHaltedError(QubesVMError):
    """The domain should be halted but is running or paused."""

    def __init__(self, vm, msg=None):
        if msg is None:
            msg = f"Domain is not powered off: {vm.name!r}"
        super().__init__(vm, msg)


class QubesPoolInUseError(QubesException):
    """A pool cannot be removed because something uses it."""

    def __init__(self, pool_name, msg=None):
        super().__init__(msg or f"Storage pool is in use: {pool_name!r}")


class QubesValueError(QubesException, ValueError):
    """A value is invalid or out of bounds."""


class StoragePoolException(QubesException):
    """Any storage failure; the one exception drivers should raise."""


class QubesVolumeRevisionNotFoundError(KeyError):
    """The requested revision is not one of the volume's revisions.

    A KeyError, not a QubesException: the user sees "Got empty response".
    """
