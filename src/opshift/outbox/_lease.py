"""Who holds a lease in a shared outbox file, and whether that holder is provably gone.

An owner id is ``host:boot:pid-namespace:pid:random``. A lease whose owner shares this
host, boot and process namespace, and whose process no longer exists, can be ended at
once; any other lease (another container, another host, an unknown platform) only
expires.
"""

from __future__ import annotations

import os
import socket

__all__ = ["owner_id", "owner_parts", "process_alive"]


def owner_id() -> str:
    """This process's owner id: host, boot, process namespace, process id and a random part."""
    return ":".join(
        (socket.gethostname(), _boot_id(), _pid_namespace(), str(os.getpid()), os.urandom(4).hex())
    )


def owner_parts(owner: str) -> tuple[str, str, str, int] | None:
    """(host, boot, pid namespace, pid) of a lease owner; None if its process cannot be
    checked from here (an owner id from another platform or an older format)."""
    parts = owner.rsplit(":", 4)
    if len(parts) != 5 or not parts[1] or not parts[2] or not parts[3].isdigit():
        return None
    return parts[0], parts[1], parts[2], int(parts[3])


def process_alive(pid: int) -> bool:
    """False only when this host surely has no such process; when unsure, True."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # PermissionError: it exists, owned by someone else
        return True
    return True


def _boot_id() -> str:
    try:
        with open("/proc/sys/kernel/random/boot_id", encoding="ascii") as file:
            return file.read().strip()
    except OSError:
        return ""  # unknown: dead-owner detection stays off, leases simply expire


def _pid_namespace() -> str:
    try:
        return str(os.stat("/proc/self/ns/pid").st_ino)
    except OSError:
        return ""
