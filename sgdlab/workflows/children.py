"""Child processes that never outlive their parent (sweep pool workers, shard workers)."""

from __future__ import annotations

__all__ = ["die_with_parent", "name_process"]

# Seconds between checks of the parent's liveness in a child.
WATCHDOG_SECONDS = 0.5
# Linux prctl options: signal a child when its parent dies; name the calling thread (the main
# thread's name is what top, `ps -o comm` and pgrep show of the process; at most 15 bytes).
PR_SET_PDEATHSIG = 1
PR_SET_NAME = 15
NAME_BYTES = 15


def name_process(name: str) -> None:
    """Name this process (its main thread) ``name`` for top and pgrep, where Linux allows it
    (longer names are cut to :data:`NAME_BYTES`); elsewhere nothing changes."""
    try:
        import ctypes

        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_NAME, name.encode()[:NAME_BYTES], 0, 0, 0)
    except (OSError, AttributeError):
        pass


def die_with_parent(parent: int) -> None:
    """Worker initializer (sweep pools, shards): a worker never outlives the process (PID ``parent``) that started it
    (a killed driver would otherwise leave workers writing into job directories for many seconds,
    or waiting for work forever)."""
    import os
    import threading

    try:  # Linux: the kernel kills us when the parent dies
        import ctypes
        import signal

        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, int(signal.SIGKILL), 0, 0, 0)
    except (OSError, AttributeError):
        pass
    if os.getppid() != parent:  # the driver died while this worker was starting
        os._exit(1)

    def watch():  # everywhere: we are re-parented when the driver dies
        import time

        while os.getppid() == parent:
            time.sleep(WATCHDOG_SECONDS)
        os._exit(1)

    threading.Thread(target=watch, daemon=True).start()
