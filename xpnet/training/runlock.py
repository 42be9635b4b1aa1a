"""An advisory lock on a run or checkpoint folder, so that two writers cannot share one.

`FolderLock(folder)` takes an exclusive `flock` on `<folder>/.xpnet.lock` and writes who holds
it (pid, host, start time) into the file. The kernel drops the lock when the holder exits or
crashes (kill -9 included), so a stale file never blocks the next run; a clean release also
deletes it. A second writer, in this process or another, gets `FolderLockedError` naming the
holder. The lock is advisory: only xpnet's writers (`xpnet train --out`, `Checkpoint`) look at it.
Where `fcntl` is missing (Windows) the lock does nothing.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import os
import socket
from pathlib import Path
from types import TracebackType

try:
    import fcntl
except ImportError:  # pragma: no cover - not on POSIX
    fcntl = None  # type: ignore[assignment]

LOCK_NAME = ".xpnet.lock"


class FolderLockedError(RuntimeError):
    """Another writer holds the folder's lock."""


class FolderLock:
    """An exclusive advisory lock on `folder` (created if missing) for the length of a run."""

    def __init__(self, folder: str | os.PathLike[str], what: str = "run") -> None:
        self.folder, self.what = Path(folder), what
        self.path = self.folder / LOCK_NAME
        self._fd: int | None = None

    @property
    def held(self) -> bool:
        return self._fd is not None

    def acquire(self) -> FolderLock:
        """Take the lock, or raise FolderLockedError naming the holder; a no-op when already held."""
        if self._fd is not None or fcntl is None:
            return self
        self.folder.mkdir(parents=True, exist_ok=True)
        for _ in range(10):  # the holder may delete the file between our open and our flock: open again
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                what, holder = _describe(fd)
                os.close(fd)
                raise FolderLockedError(
                    f"{self.folder} is in use by another xpnet {what} ({holder}); "
                    "wait for it to finish or choose another folder"
                ) from None
            except BaseException:
                os.close(fd)
                raise
            try:
                same = os.fstat(fd).st_ino == os.stat(self.path).st_ino
            except FileNotFoundError:
                same = False
            if same:
                break
            os.close(fd)
        else:
            raise FolderLockedError(f"{self.folder}: could not lock {self.path} (it keeps being replaced)")
        started = dt.datetime.now().astimezone().isoformat(timespec="seconds")
        info = json.dumps({"pid": os.getpid(), "host": socket.gethostname(), "started": started, "what": self.what})
        os.ftruncate(fd, 0)
        os.pwrite(fd, info.encode() + b"\n", 0)
        self._fd = fd
        return self

    def release(self) -> None:
        """Drop the lock and delete the file (a crash leaves the file, unlocked, for the next run to take)."""
        fd, self._fd = self._fd, None
        if fd is None:
            return
        with contextlib.suppress(OSError):  # unlinked while still locked: nobody else can be using it
            self.path.unlink(missing_ok=True)
        os.close(fd)

    def __enter__(self) -> FolderLock:
        return self.acquire()

    def __exit__(self, kind: type[BaseException] | None, value: BaseException | None, tb: TracebackType | None) -> None:
        self.release()

    def __del__(self) -> None:
        if getattr(self, "_fd", None) is not None:
            os.close(self._fd)  # type: ignore[arg-type]

    def __repr__(self) -> str:
        return f"FolderLock({str(self.folder)!r}, {'held' if self.held else 'free'})"


def _describe(fd: int) -> tuple[str, str]:
    """What holds the lock ("training run") and who: "pid 123 on host h, since <time>", from the lock file."""
    try:
        info = json.loads(os.pread(fd, 4096, 0).decode() or "{}")
        return str(info.get("what", "writer")), f"pid {info['pid']} on host {info['host']}, since {info['started']}"
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return "writer", "holder unknown: it is still starting"
