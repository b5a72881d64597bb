# SPDX-License-Identifier: GPL-2.0-or-later
"""Client for btrfs-vdod's socket protocol (api/doc.go).

One request per connection: write one JSON line ``{"v", "op", "args"}``,
read one line back, close. Every failure comes out as a ClientError:
DaemonError when the daemon answered with an error code, DaemonUnavailable
when no usable answer arrived. Nothing else (OSError, TimeoutError, JSON
errors) leaves call().

Timeouts (TIMEOUTS below):

* connecting and sending: CONNECT_TIMEOUT for every op, so a missing or
  wedged daemon is reported quickly;
* hello, status, volume.info, volume.verify: QUERY_TIMEOUT; they only
  stat files;
* pool.setup: SETUP_TIMEOUT; it creates directories and probes reflinks;
* everything else: no limit. Commits, reverts, imports and copies take as
  long as the data needs (a non-reflink copy of a large image can take
  hours), giving up does not stop the daemon's work, and the daemon
  serializes requests per vid, so a client-side limit would only report a
  failure for an operation that still completes. file-reflink's thread
  waits just as long.
"""

import asyncio
import json
import logging
import os
import time

from qubes_btrfs_vdo import __version__
from qubes_btrfs_vdo.ops import OPS, PROTOCOL_VERSION, TYPES

LOGGER = logging.getLogger("qubes.storage.btrfs_vdo")

MAX_FRAME_BYTES = 1 << 20
DEFAULT_SOCKET = "/run/btrfs-vdo/btrfs-vdod.sock"
SOCKET_ENV = "BTRFS_VDO_SOCKET"
CLIENT_NAME = "qubesd-shim " + __version__

CONNECT_TIMEOUT = 10.0
QUERY_TIMEOUT = 30.0
SETUP_TIMEOUT = 120.0
DATA_TIMEOUT = None

TIMEOUTS = {
    "hello": QUERY_TIMEOUT,
    "status": QUERY_TIMEOUT,
    "volume.info": QUERY_TIMEOUT,
    "volume.verify": QUERY_TIMEOUT,
    "pool.setup": SETUP_TIMEOUT,
}

_JOURNAL = "journalctl -u btrfs-vdod"
_VERSIONS = (
    "install matching versions of btrfs-vdod and its qubesd driver, "
    "then restart btrfs-vdod and qubesd"
)

# Every api/codes.go code, with what to add to the daemon's message.
# The daemon's messages already read "Cannot <op>: <vid> <reason>"; the
# codes below that mean "the user can fix this" get nothing added.
CODE_HINTS = {
    "bad_request": "the daemon rejected the request; " + _VERSIONS,
    "unsupported_protocol": _VERSIONS,
    "permission_denied": "btrfs-vdod serves only root; qubesd must run "
    "as root",
    "invalid_name": "",
    "not_found": "",
    "unknown_target": "",
    "not_stopped": "",
    "read_only": "",
    "not_supported": "",
    "no_space": "",
    "busy": "",
    "io_error": "details: " + _JOURNAL,
    "internal": "a btrfs-vdod bug; details: " + _JOURNAL,
}


class ClientError(Exception):
    """Any failure to get a result from the daemon."""


class DaemonError(ClientError):
    """The daemon answered with an error code and a user-facing message."""

    def __init__(self, code, message):
        super().__init__(message)
        self.code = code
        self.message = message


class DaemonUnavailable(ClientError):
    """No usable answer: no daemon, broken connection, timeout, garbage,
    or a daemon speaking another protocol version. The message says what
    to check."""


def socket_path():
    """The daemon's socket, read from the environment at each call."""
    return os.environ.get(SOCKET_ENV) or DEFAULT_SOCKET


def timeout_for(op):
    """Reply timeout in seconds for *op*, or None for no limit."""
    return TIMEOUTS.get(op, DATA_TIMEOUT)


def user_message(context, err):
    """The StoragePoolException text for *err*; *context* is the
    "Cannot <op>: <vid>" prefix used when the daemon gave no message."""
    if isinstance(err, DaemonError):
        message = err.message or f"{context}: btrfs-vdod failed ({err.code})"
        hint = CODE_HINTS.get(err.code, f"btrfs-vdod error code {err.code!r}")
        return f"{message} ({hint})" if hint else message
    return f"{context}: {err}"


async def call(op, args, *, timeout):
    """Send *op* with *args* and return the daemon's result dict."""
    path = socket_path()
    subject = _subject(args)
    started = time.monotonic()
    outcome = "failed"
    try:
        line = _encode(op, args)
        data = await _exchange(path, op, line, timeout)
        result = _decode(path, op, data)
        outcome = "ok"
        return result
    except DaemonError as err:
        LOGGER.warning(
            "btrfs-vdod refused %s %s: %s: %s", op, subject, err.code, err
        )
        raise
    except ClientError as err:
        LOGGER.warning("btrfs-vdod %s %s failed: %s", op, subject, err)
        raise
    finally:
        LOGGER.debug(
            "btrfs-vdod %s %s: %s in %.3f s",
            op, subject, outcome, time.monotonic() - started,
        )


async def hello():
    """Check that the daemon is up and speaks our protocol; return its
    version string."""
    result = await call(
        "hello", {"client": CLIENT_NAME}, timeout=timeout_for("hello")
    )
    if result["protocol"] != PROTOCOL_VERSION:
        raise DaemonUnavailable(
            f"btrfs-vdod at {socket_path()} speaks protocol "
            f"{result['protocol']}, this driver speaks {PROTOCOL_VERSION}; "
            + _VERSIONS
        )
    return result["daemon"]


def _subject(args):
    volume = args.get("volume") if isinstance(args, dict) else None
    if isinstance(volume, dict) and "vid" in volume:
        return str(volume["vid"])
    pool = args.get("pool") if isinstance(args, dict) else None
    if isinstance(pool, dict) and "name" in pool:
        return "pool " + str(pool["name"])
    return "-"


def _encode(op, args):
    try:
        text = json.dumps(
            {"v": PROTOCOL_VERSION, "op": op, "args": args},
            separators=(",", ":"),
        )
    except (TypeError, ValueError) as err:
        raise ClientError(f"cannot encode {op} request: {err}") from err
    line = text.encode("ascii") + b"\n"
    if len(line) > MAX_FRAME_BYTES:
        raise ClientError(
            f"{op} request is larger than {MAX_FRAME_BYTES} bytes"
        )
    return line


def _unreachable(path, reason):
    return DaemonUnavailable(
        f"btrfs-vdo daemon is not reachable at {path}: {reason}; "
        "is btrfs-vdod.socket running? (systemctl status btrfs-vdod.socket)"
    )


async def _connect(path):
    try:
        return await asyncio.wait_for(
            asyncio.open_unix_connection(path, limit=MAX_FRAME_BYTES),
            CONNECT_TIMEOUT,
        )
    except TimeoutError:
        raise _unreachable(
            path, f"no connection within {CONNECT_TIMEOUT:g} s"
        ) from None
    except FileNotFoundError:
        raise _unreachable(path, "the socket does not exist") from None
    except ConnectionRefusedError:
        raise _unreachable(path, "Connection refused") from None
    except PermissionError:
        raise DaemonUnavailable(
            f"btrfs-vdo daemon at {path}: Permission denied; btrfs-vdod "
            "serves only root, and qubesd must run as root"
        ) from None
    except OSError as err:
        raise _unreachable(path, err.strerror or str(err)) from None
    except ValueError as err:  # e.g. a NUL byte in BTRFS_VDO_SOCKET
        raise _unreachable(path, str(err)) from None


async def _exchange(path, op, line, timeout):
    """Connect, send *line*, return the raw reply line (maybe empty)."""
    reader, writer = await _connect(path)
    try:
        async with asyncio.timeout(timeout):
            writer.write(line)
            await writer.drain()
            return await reader.readline()
    except TimeoutError:
        raise DaemonUnavailable(
            f"btrfs-vdod at {path} did not answer {op} within {timeout:g} s; "
            f"see {_JOURNAL} and `btrfs-vdo status`"
        ) from None
    except ValueError:
        # StreamReader's limit: the line is longer than MAX_FRAME_BYTES.
        raise DaemonUnavailable(
            f"btrfs-vdod at {path} sent a reply to {op} longer than "
            f"{MAX_FRAME_BYTES} bytes; " + _VERSIONS
        ) from None
    except OSError as err:
        raise DaemonUnavailable(
            f"connection to btrfs-vdod at {path} broke during {op}: "
            f"{err.strerror or err}; see {_JOURNAL}"
        ) from None
    finally:
        writer.close()
        try:
            await writer.wait_closed()
        except Exception:  # pylint: disable=broad-except
            pass  # the reply, if any, is already read


def _malformed(path, op, detail):
    return DaemonUnavailable(
        f"btrfs-vdod at {path} sent a malformed reply to {op} ({detail}); "
        + _VERSIONS
    )


def _decode(path, op, data):
    """Turn a reply line into a result dict, or raise a ClientError."""
    if not data:
        raise DaemonUnavailable(
            f"btrfs-vdod at {path} closed the connection without replying "
            f"to {op}; it may have crashed: see {_JOURNAL}"
        )
    if not data.endswith(b"\n"):
        raise _malformed(path, op, "the reply line is cut short")
    try:
        reply = json.loads(data)
    except ValueError:
        raise _malformed(path, op, "not JSON") from None
    if not isinstance(reply, dict):
        raise _malformed(path, op, "not a JSON object")
    if reply.get("ok") is True:
        result = reply.get("result")
        problem = _check(result, OPS[op][1], "result") if op in OPS else None
        if problem:
            raise _malformed(path, op, problem)
        return result
    if reply.get("ok") is False:
        error = reply.get("error")
        problem = _check(error, "_Error", "error")
        if problem:
            raise _malformed(path, op, problem)
        if error["code"] == "unsupported_protocol":
            raise DaemonUnavailable(
                f"btrfs-vdod at {path} does not speak protocol "
                f"{PROTOCOL_VERSION}: {error['message']}; " + _VERSIONS
            )
        raise DaemonError(error["code"], error["message"])
    raise _malformed(path, op, '"ok" is neither true nor false')


_ERROR_TYPE = {"_Error": {"code": "string", "message": "string"}}


def _check(value, type_name, where):
    """Describe the first way *value* does not fit *type_name*, or None.

    Fields the daemon adds beyond ours are tolerated; missing or mistyped
    ones are not, since the shim would misread them.
    """
    if type_name.startswith("[]"):
        if not isinstance(value, list):
            return f"{where} is not a list"
        for index, item in enumerate(value):
            problem = _check(item, type_name[2:], f"{where}[{index}]")
            if problem:
                return problem
        return None
    if type_name.startswith("map[string]"):
        if not isinstance(value, dict):
            return f"{where} is not an object"
        for key, item in value.items():
            problem = _check(item, type_name[len("map[string]"):], f"{where}[{key!r}]")
            if problem:
                return problem
        return None
    if type_name == "string":
        return None if isinstance(value, str) else f"{where} is not a string"
    if type_name == "bool":
        return None if isinstance(value, bool) else f"{where} is not a bool"
    if type_name == "int":
        ok = isinstance(value, int) and not isinstance(value, bool)
        return None if ok else f"{where} is not an integer"
    fields = {**TYPES, **_ERROR_TYPE}[type_name]
    if not isinstance(value, dict):
        return f"{where} is not an object"
    for name, field_type in fields.items():
        if name not in value:
            return f"{where}.{name} is missing"
        problem = _check(value[name], field_type, f"{where}.{name}")
        if problem:
            return problem
    return None
