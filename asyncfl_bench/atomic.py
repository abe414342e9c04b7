"""Files and folders that several processes share: written whole or not at all, and
read-modify-written under a lock.

Every file the product writes goes through ``atomic_write`` (or ``write_with``, for
writers that need a path, such as matplotlib and pyarrow): a fresh temporary name in the
same folder, fsync, rename over the real name, fsync the folder (so the rename itself
survives a crash), with the mode a plain ``open`` would give under the user's umask
(``mkstemp`` alone leaves 0600, unreadable to the group that shares a results folder).
``swap_folder`` puts a finished folder in place of an old one by two renames, never
deleting the old one first. ``update_lock`` serialises read-modify-write of one shared
file (the tuned file, the bring-your-own registry).
"""
from __future__ import annotations

import json
import os
import shutil
import socket
import tempfile
import threading
import time
import uuid
from contextlib import contextmanager
from pathlib import Path
from typing import Callable, Iterator

from filelock import FileLock, Timeout

from asyncfl_bench.errors import UserError

_UMASK_LOCK = threading.Lock()


def _umask() -> int:
    """The process umask, read without changing it where the OS allows."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    with _UMASK_LOCK:   # elsewhere: set and restore (never observed by other threads' writes here)
        mask = os.umask(0o022)
        os.umask(mask)
    return mask


def _sync_folder(folder: Path) -> None:
    """fsync a folder so a rename into it survives a crash (no-op where folders cannot be opened)."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def write_with(path: Path, write: Callable[[Path], None]) -> Path:
    """Create ``path`` atomically: ``write(tmp)`` fills a temporary file beside it, which
    is then synced and renamed over ``path``. Returns ``path``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp" + path.suffix)
    os.close(fd)
    try:
        write(Path(tmp))
        os.chmod(tmp, 0o666 & ~_umask())
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    _sync_folder(path.parent)
    return path


def atomic_write(path: Path, data: bytes) -> Path:
    """Write ``data`` to ``path`` whole or not at all."""
    return write_with(path, lambda tmp: tmp.write_bytes(data))


def swap_folder(new: Path, folder: Path) -> Path:
    """Put the finished folder ``new`` at ``folder``: the old copy is renamed aside, the
    new one renamed in, then the old one deleted (a reader never finds a half-deleted
    folder, and between the two renames it finds none for microseconds; readers that
    must not, wait on the writer's lock)."""
    new, folder = Path(new), Path(folder)
    aside = folder.with_name(f".{folder.name}.old-{uuid.uuid4().hex[:8]}")
    if folder.exists():
        os.replace(folder, aside)
    os.replace(new, folder)
    _sync_folder(folder.parent)
    shutil.rmtree(aside, ignore_errors=True)
    return folder


def lock_for(path: Path) -> FileLock:
    """The lock guarding ``path``: a hidden ``.<name>.lock`` file beside it."""
    path = Path(path)
    return FileLock(str(path.with_name(f".{path.name}.lock")))


@contextmanager
def update_lock(path: Path, timeout: float = 600) -> Iterator[None]:
    """Hold ``path``'s lock for a read-modify-write, so two processes finishing together
    both keep their changes."""
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    with lock_for(path).acquire(timeout=timeout):
        yield


@contextmanager
def held_alone(path: Path, what: str, fix: str) -> Iterator[None]:
    """Hold ``path``'s lock for a whole command that must not run twice on it (a tune on
    its study database); a second process exits 2 naming the holder (process, machine,
    since when) from the ``.<name>.holder`` file beside the lock."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    lock, holder = lock_for(path), path.with_name(f".{path.name}.holder")
    try:
        lock.acquire(timeout=0)
    except Timeout:
        try:
            who = json.loads(holder.read_text())
            by = f"process {who['pid']} on {who['host']} since {who['since']}"
        except (OSError, ValueError, KeyError, TypeError):
            by = "another process"
        raise UserError(f"{what} {path} is in use by {by}; fix: {fix}") from None
    try:
        atomic_write(holder, json.dumps({"pid": os.getpid(), "host": socket.gethostname(),
                                         "since": time.strftime("%Y-%m-%dT%H:%M:%S")}).encode())
        yield
    finally:
        holder.unlink(missing_ok=True)
        lock.release()
