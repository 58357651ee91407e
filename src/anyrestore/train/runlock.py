"""One run per folder: an exclusive lock on ``<out>/.lock`` for as long as a run writes there.

The lock is ``flock`` on the file, taken without waiting: a second run on the same folder (a second
``anyrestore train``, or ``srun`` tasks that each think they are alone) fails at once with one line
naming the live run. The kernel drops the lock when its process ends in any way, SIGKILL included, so a
lock file left by a dead run is simply taken over. The file itself stays; it holds the holder's pid and
host, for the message only.
"""

from __future__ import annotations

import os
import socket
from pathlib import Path

from anyrestore.errors import AnyRestoreError

try:
    import fcntl
except ImportError:  # pragma: no cover - Windows: no lock
    fcntl = None

LOCK_FILE = ".lock"


class RunLockedError(AnyRestoreError):
    """Another live process holds the run folder."""


class RunLock:
    """The lock of run folder ``folder`` (created when missing); :meth:`acquire`, then :meth:`release`."""

    def __init__(self, folder: str | Path) -> None:
        self.path = Path(folder) / LOCK_FILE
        self._fd: int | None = None

    @property
    def held(self) -> bool:
        return self._fd is not None

    def acquire(self) -> None:
        """Take the lock, or raise :class:`RunLockedError` when a live process holds it."""
        if self._fd is not None:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        if fcntl is not None:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                holder = os.read(fd, 200).decode(errors="replace").strip() or "unknown process"
                os.close(fd)
                raise RunLockedError(
                    f"{self.path.parent}: another run is writing into this folder ({holder}); "
                    "wait for it to end, or choose another --out"
                ) from None
            except OSError:  # a file system without flock: run unlocked
                pass
        os.ftruncate(fd, 0)
        os.write(fd, f"pid {os.getpid()} on {socket.gethostname()}\n".encode())
        self._fd = fd

    def release(self) -> None:
        """Drop the lock (the file stays: removing it would race with a process about to lock it)."""
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

    def __enter__(self) -> RunLock:
        self.acquire()
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()
