"""Entering a network namespace (setns) for the length of a block, on this thread only.

sock_diag answers for the namespace of the socket that asks, /proc/thread-self/net shows the
thread's namespace, and a packet socket captures in the namespace it was opened in: each is
asked from inside the namespace it is about.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

CLONE_NEWNET = 0x40000000
NETNS_DIR = Path("/run/netns")

_libc = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)


def entered(namespace: str) -> contextlib.AbstractContextManager[None]:
    """Run the block with this thread in the named namespace (``ip netns`` names).

    A socket belongs to the namespace it was created in, so sockets created in the block stay
    there after the thread returns to its own namespace.
    """
    return entered_path(NETNS_DIR / namespace)


@contextmanager
def entered_path(path: Path) -> Iterator[None]:
    """Run the block with this thread in the namespace ``path`` opens (/proc/PID/ns/net...)."""
    home = os.open("/proc/thread-self/ns/net", os.O_RDONLY)
    try:
        target = os.open(path, os.O_RDONLY)
    except OSError:
        os.close(home)
        raise
    try:
        if os.fstat(target).st_ino == os.fstat(home).st_ino:
            yield  # already there: setns would need CAP_SYS_ADMIN for nothing
            return
        _setns(target)
        try:
            yield
        finally:
            _setns(home)
    finally:
        os.close(target)
        os.close(home)


def _setns(fd: int) -> None:
    if _libc.setns(fd, CLONE_NEWNET) != 0:
        error = ctypes.get_errno()
        raise OSError(error, f"setns: {os.strerror(error)}")
