"""One writer per directory: an advisory lock file naming its owner.

``DIR/.lock`` holds the owner's PID, host, start time and command (JSON) and is held with
``fcntl.flock`` while the owner writes. The kernel releases a flock when its process dies
(``kill -9`` included), so a lock left behind by a dead process is *stale*: the next writer takes
it over and says so. A live owner makes every other writer fail with a message naming it.

Where ``flock`` is not available (or the file system ignores it, as some network file systems
do) the recorded PID is the fallback: on the same host a dead PID means a stale lock. A process
on another host (a cluster node) cannot be probed, so a holder touches its lock file every
``HEARTBEAT_SECONDS``; a lock of another host whose heartbeat is older than ``STALE_SECONDS`` is
stale (its owner died or lost the file system) and is taken over. A fresh one is refused, or
waited for (``acquire(wait=...)``: a requeued cluster task waits for its killed predecessor's
lock to go stale).
"""

from __future__ import annotations

import datetime as _dt
import json
import os
import socket
import sys
import threading
import time
from pathlib import Path
from typing import Self

from sgdlab.core.errors import CheckpointError

try:
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None

LOCK = ".lock"
# A holder refreshes its lock file's mtime this often; a lock of another host not refreshed for
# STALE_SECONDS (ten missed heartbeats) belongs to a process that is gone.
HEARTBEAT_SECONDS = 30.0
STALE_SECONDS = 10 * HEARTBEAT_SECONDS
# Seconds between retries while waiting for a lock.
RETRY_SECONDS = 5.0


def pid_alive(pid: int) -> bool:
    """True if a process with this PID exists on this host."""
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by someone else
        return True
    return True


def read_owner(path: str | Path) -> dict | None:
    """The owner recorded in ``path/.lock`` (None if there is none or it is unreadable)."""
    try:
        return json.loads((Path(path) / LOCK).read_text())
    except (OSError, ValueError):
        return None


def describe(owner: dict | None) -> str:
    if not owner:
        return "another process"
    return (f"PID {owner.get('pid')} on host {owner.get('host')!r} since {owner.get('started', '?')} "
            f"({' '.join(map(str, owner.get('command', [])))[:120]})")


class DirLock:
    """Exclusive writer lock of one directory; a context manager.

    ``acquire()`` raises :class:`CheckpointError` if a live process holds it; it takes over a
    stale lock (its owner died) and reports that through ``self.took_over``.
    """

    def __init__(self, path: str | Path, what: str = "run directory"):
        self.path = Path(path)
        self.what = what
        self._fd: int | None = None
        self._stop: threading.Event | None = None
        self.took_over: dict | None = None

    @property
    def file(self) -> Path:
        return self.path / LOCK

    @property
    def fd(self) -> int | None:
        """The locked file descriptor while held (a forked worker closes its copy of it)."""
        return self._fd

    @property
    def held(self) -> bool:
        return self._fd is not None

    def acquire(self, wait: float = 0.0) -> Self:
        """Take the lock; while a live holder has it, retry for up to ``wait`` seconds."""
        deadline = time.monotonic() + wait
        while True:
            try:
                return self._acquire()
            except CheckpointError:
                if time.monotonic() >= deadline:
                    raise
                time.sleep(min(RETRY_SECONDS, max(0.0, deadline - time.monotonic())))

    def _acquire(self) -> Self:
        if self._fd is not None:
            return self
        previous = read_owner(self.path)
        fd = self._open_locked()
        try:
            host = socket.gethostname()
            if previous and previous.get("pid") != os.getpid():
                same_host = previous.get("host") == host
                if same_host and pid_alive(int(previous.get("pid", -1))) and fcntl is None:
                    raise CheckpointError(self._busy(previous))
                age = time.time() - os.fstat(fd).st_mtime
                if not same_host and age < STALE_SECONDS:
                    raise CheckpointError(
                        f"{self.what} {str(self.path)!r} is locked by {describe(previous)}, whose heartbeat "
                        f"is {age:.0f} s old (stale after {STALE_SECONDS:.0f} s). If that process has "
                        f"stopped, wait, or delete {str(self.file)!r}")
                self.took_over = previous
            info = {"pid": os.getpid(), "host": host,
                    "started": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"), "command": sys.argv}
            os.ftruncate(fd, 0)
            os.write(fd, json.dumps(info).encode())
            os.fsync(fd)
        except BaseException:
            os.close(fd)
            raise
        self._fd = fd
        self._stop = threading.Event()
        threading.Thread(target=self._heartbeat, args=(self._stop,), daemon=True).start()
        return self

    def _heartbeat(self, stop: threading.Event) -> None:
        while not stop.wait(HEARTBEAT_SECONDS):
            try:
                os.utime(self.file)
            except OSError:  # the directory was moved (overwrite) or removed: nothing to refresh
                return

    def _open_locked(self) -> int:
        """Open (create) the lock file and flock it; retry if a releasing owner unlinked the file
        between our open and our flock (we would hold a lock on a file nobody else sees)."""
        for _ in range(100):
            fd = os.open(self.file, os.O_RDWR | os.O_CREAT, 0o644)
            if fcntl is None:
                return fd
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                os.close(fd)
                raise CheckpointError(self._busy(read_owner(self.path))) from None
            try:
                if os.fstat(fd).st_ino == os.stat(self.file).st_ino:
                    return fd
            except FileNotFoundError:
                pass
            os.close(fd)
        raise CheckpointError(f"could not lock {str(self.file)!r}: it keeps being replaced")

    def _busy(self, owner: dict | None) -> str:
        return (f"{self.what} {str(self.path)!r} is in use by {describe(owner)}: one writer at a time. "
                f"Wait for it to finish, or stop it (kill {owner.get('pid') if owner else 'PID'}) and retry")

    def release(self) -> None:
        if self._fd is None:
            return
        if self._stop is not None:
            self._stop.set()
        try:
            self.file.unlink(missing_ok=True)
        except OSError:  # the directory itself may be gone (overwrite moved it away)
            pass
        os.close(self._fd)  # closing drops the flock
        self._fd = None

    def __enter__(self) -> Self:
        return self.acquire()

    def __exit__(self, *exc) -> None:
        self.release()


def check_unlocked(path: str | Path, what: str = "run directory") -> None:
    """Raise CheckpointError if a live writer holds ``path``'s lock (does not take it)."""
    path = Path(path)
    if not (path / LOCK).exists():
        return
    probe = DirLock(path, what)
    try:
        probe.acquire()
    finally:
        # acquire() rewrote the file with our PID; put nothing back: a stale lock is simply gone.
        probe.release()
