"""One process per run directory: an flock'd `RUN_DIR/lock` file that names its holder.

The lock is `fcntl.flock` on an open descriptor, so the OS releases it when the holder dies (kill -9
included); the file's text (pid, host, start time) only serves the messages. A lock file whose flock is
free is stale: on the same host it is taken over with a note on stderr; from another host (a shared file
system, where the flock may not reach across machines) it is refused, since that process cannot be checked.
"""
from __future__ import annotations

import fcntl
import json
import os
import socket
import sys
import time

LOCK_FILE = "lock"


class RunDirBusy(RuntimeError):
  """Another process holds the run directory (or a lock from another host is left behind)."""


def _alive(pid: int) -> bool:
  try:
    os.kill(pid, 0)
  except ProcessLookupError:
    return False
  except PermissionError:  # exists, owned by someone else
    return True
  return True


def _describe(info: dict) -> str:
  since = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(info.get("since", 0)))
  return f"pid {info.get('pid')} on host {info.get('host')} since {since}"


class RunDirLock:
  """Hold with `with RunDirLock(run_dir):` (creates run_dir); raises RunDirBusy when another process has it."""

  def __init__(self, run_dir: str):
    self.run_dir = os.fspath(run_dir)
    self.path = os.path.join(self.run_dir, LOCK_FILE)
    self._fd: int | None = None

  def _read(self, fd: int) -> dict:
    os.lseek(fd, 0, os.SEEK_SET)
    try:
      info = json.loads(os.read(fd, 4096).decode() or "{}")
    except (UnicodeDecodeError, ValueError):
      return {}
    return info if isinstance(info, dict) else {}

  def acquire(self) -> "RunDirLock":
    os.makedirs(self.run_dir, exist_ok=True)
    fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
      fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
      info = self._read(fd)
      os.close(fd)
      raise RunDirBusy(f"run dir {self.run_dir} is in use by {_describe(info)} ({self.path}); "
                       "wait for it to finish or stop it (touch STOP)") from None
    host = socket.gethostname()
    old = self._read(fd)
    if old.get("pid") not in (None, os.getpid()):
      if old.get("host") != host:
        fcntl.flock(fd, fcntl.LOCK_UN)
        os.close(fd)
        raise RunDirBusy(f"{self.path} was left by {_describe(old)}, which cannot be checked from {host}; "
                         "delete that file if the process is gone")
      state = "not running" if not isinstance(old["pid"], int) or not _alive(old["pid"]) else "no longer holding it"
      print(f"note: taking over the stale lock {self.path} of {_describe(old)} ({state})", file=sys.stderr)
    os.ftruncate(fd, 0)
    os.lseek(fd, 0, os.SEEK_SET)
    os.write(fd, json.dumps({"pid": os.getpid(), "host": host, "since": time.time()}).encode())
    os.fsync(fd)
    self._fd = fd
    return self

  def release(self) -> None:
    """Empties the file (a clean exit leaves no stale holder to report) and drops the flock."""
    if self._fd is None:
      return
    os.ftruncate(self._fd, 0)
    fcntl.flock(self._fd, fcntl.LOCK_UN)
    os.close(self._fd)
    self._fd = None

  def __enter__(self) -> "RunDirLock":
    return self.acquire()

  def __exit__(self, *exc: object) -> None:
    self.release()
