"""Run leases: one writer per (output schema, run date) at a time, across processes and hosts.

PostgreSQL: a session advisory lock keyed by a hash of (schema, run date); it dies with the
session, so a killed job never leaves it held. DuckDB: an ``fcntl.flock`` on a lock file next to
the database file (``<db>.<schema>.<name>.lock``), which holds the holder's PID, host and run
start as JSON; the kernel drops it when the process dies. An in-memory DuckDB has no other
process, so a process-local lock stands in.

A second writer polls until ``timeout_seconds``, printing once ``waiting for lock on ... since
T`` with the holder, then gives up with ``run date D is being written by PID/host since T``.
"""

from __future__ import annotations

import errno
import fcntl
import hashlib
import json
import os
import socket
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol

from features.warehouse import PostgresWarehouse, Warehouse, WarehouseError, validate_ident

_POLL_SECONDS = 0.1


class LeaseBusyError(WarehouseError):
    """Another writer holds the lease and did not release it within the configured wait."""


def say(message: str) -> None:
    """A status line for the person or scheduler watching: stderr, which Prefect's
    ``log_prints`` forwards to the run log."""
    print(message, file=sys.stderr, flush=True)


def utc_now() -> datetime:
    """Naive UTC now (the convention of every timestamp churnlens writes)."""
    return datetime.now(UTC).replace(tzinfo=None)


def holder_info(started_at: datetime | None = None) -> dict[str, Any]:
    """Who is writing: this process, this host, and when its run started (naive UTC)."""
    return {
        "pid": os.getpid(),
        "host": socket.gethostname(),
        "started_at": (started_at or utc_now()).isoformat(sep=" ", timespec="seconds"),
    }


def describe(holder: dict[str, Any] | None) -> str:
    if not holder:
        return "another session (it has not said who yet)"
    if "text" in holder:
        return str(holder["text"])
    return f"PID {holder.get('pid')}/{holder.get('host')} since {holder.get('started_at')}"


class _Lock(Protocol):
    label: str

    def try_acquire(self) -> bool: ...

    def release(self) -> None: ...

    def holder(self) -> dict[str, Any] | None: ...


class _FileLock:
    """``flock`` on ``path``; the file holds the holder as JSON and is removed on release."""

    def __init__(self, path: Path, info: dict[str, Any]) -> None:
        self.path, self.info, self.label = path, info, str(path)
        self._fd: int | None = None

    def try_acquire(self) -> bool:
        while True:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError as exc:
                os.close(fd)
                if exc.errno in (errno.EAGAIN, errno.EACCES):
                    return False
                raise
            # The holder before us may have unlinked the file between our open and our lock:
            # then we hold a lock on a dead inode, and must retry on the live path.
            try:
                same = os.fstat(fd).st_ino == os.stat(self.path).st_ino
            except FileNotFoundError:
                same = False
            if same:
                break
            os.close(fd)
        os.ftruncate(fd, 0)
        os.write(fd, json.dumps(self.info).encode())
        os.fsync(fd)
        self._fd = fd
        return True

    def release(self) -> None:
        if self._fd is None:
            return
        try:
            self.path.unlink(missing_ok=True)  # unlink while still locked: see try_acquire
        finally:
            os.close(self._fd)
            self._fd = None

    def holder(self) -> dict[str, Any] | None:
        try:
            return json.loads(self.path.read_text() or "null")
        except (OSError, ValueError):
            return None


_LOCAL_LOCKS: dict[str, threading.Lock] = {}
_LOCAL_HOLDERS: dict[str, dict[str, Any]] = {}
_LOCAL_GUARD = threading.Lock()


class _LocalLock:
    """A process-local lock, for an in-memory DuckDB no other process can reach."""

    def __init__(self, name: str, info: dict[str, Any]) -> None:
        self.label, self.info = name, info
        with _LOCAL_GUARD:
            self._lock = _LOCAL_LOCKS.setdefault(name, threading.Lock())
        self._held = False

    def try_acquire(self) -> bool:
        self._held = self._lock.acquire(blocking=False)
        if self._held:
            _LOCAL_HOLDERS[self.label] = self.info
        return self._held

    def release(self) -> None:
        if self._held:
            _LOCAL_HOLDERS.pop(self.label, None)
            self._lock.release()
            self._held = False

    def holder(self) -> dict[str, Any] | None:
        return _LOCAL_HOLDERS.get(self.label)


class _AdvisoryLock:
    """A PostgreSQL session advisory lock; ``holder_of`` reads who holds it (the lease row)."""

    def __init__(
        self, wh: PostgresWarehouse, key_text: str, holder_of: Callable[[], dict[str, Any] | None]
    ) -> None:
        self.wh, self.label, self._holder_of = wh, key_text, holder_of
        self.key = advisory_key(key_text)

    def try_acquire(self) -> bool:
        row = self.wh.con.execute("SELECT pg_try_advisory_lock(%s)", [self.key]).fetchone()
        return row is not None and bool(row[0])

    def release(self) -> None:
        con = self.wh.con
        if con.closed or con.broken:
            return  # the session is gone, and its advisory locks with it
        con.execute("SELECT pg_advisory_unlock(%s)", [self.key])

    def holder(self) -> dict[str, Any] | None:
        return self._holder_of() or self._session_holding()

    def _session_holding(self) -> dict[str, Any] | None:
        """The PostgreSQL session that holds the lock, when its lease row is not there (yet,
        or any more: it is removed at commit while the lease may still be held)."""
        unsigned = self.key & 0xFFFFFFFFFFFFFFFF
        row = self.wh.con.execute(
            "SELECT l.pid, a.client_addr, a.application_name, a.backend_start FROM pg_locks l "
            "JOIN pg_stat_activity a ON a.pid = l.pid WHERE l.locktype = 'advisory' "
            "AND l.granted AND l.classid = %s::oid AND l.objid = %s::oid AND l.objsubid = 1",
            [unsigned >> 32, unsigned & 0xFFFFFFFF],
        ).fetchone()
        if row is None:
            return None
        pid, addr, app, since = row
        who = (
            f"PostgreSQL backend {pid} ({app or 'no application name'}, from {addr or 'a socket'})"
        )
        return {"text": f"{who} since {since:%Y-%m-%d %H:%M:%S}"}


def advisory_key(text: str) -> int:
    """A stable signed 64-bit key for ``pg_advisory_lock`` from a text such as ``schema/date``."""
    return int.from_bytes(hashlib.sha256(text.encode()).digest()[:8], "big", signed=True)


def lock_for(
    wh: Warehouse,
    *,
    schema: str,
    name: str,
    info: dict[str, Any],
    holder_of: Callable[[], dict[str, Any] | None] = lambda: None,
) -> _Lock:
    """The lock guarding ``name`` (a run date, or ``ddl``) in output ``schema`` of ``wh``."""
    validate_ident(schema, what="schema name")
    if isinstance(wh, PostgresWarehouse):
        return _AdvisoryLock(wh, f"churnlens/{schema}/{name}", holder_of)
    path = getattr(wh, "path", ":memory:")
    if path == ":memory:":
        return _LocalLock(f"memory:{id(wh)}/{schema}/{name}", info)
    return _FileLock(Path(f"{path}.{schema}.{name}.lock"), info)


_HELD: dict[tuple[str, str], int] = {}
_HELD_GUARD = threading.Lock()


@contextmanager
def hold(
    lock: _Lock,
    *,
    what: str,
    timeout_seconds: float,
    on_acquired: Callable[[], None] = lambda: None,
) -> Iterator[None]:
    """Hold ``lock`` for the block, waiting up to ``timeout_seconds`` for it.

    Re-entrant within one thread: a block that already holds the same lock (the flow wrapping
    write-back and risk lists in one lease) joins it."""
    token = (f"{threading.get_ident()}", lock.label)
    with _HELD_GUARD:
        depth = _HELD.get(token, 0)
        if depth:
            _HELD[token] = depth + 1
    if depth:
        try:
            yield
        finally:
            with _HELD_GUARD:
                _HELD[token] -= 1
        return
    _acquire(lock, what=what, timeout_seconds=timeout_seconds)
    with _HELD_GUARD:
        _HELD[token] = 1
    try:
        on_acquired()
        yield
    finally:
        with _HELD_GUARD:
            _HELD.pop(token, None)
        lock.release()


def _acquire(lock: _Lock, *, what: str, timeout_seconds: float) -> None:
    if lock.try_acquire():
        return
    since = utc_now()
    holder = lock.holder()
    say(
        f"waiting for lock on {what} since {since:%Y-%m-%d %H:%M:%S} UTC: it is being "
        f"written by {describe(holder)} (waiting up to {timeout_seconds:g} s, "
        "serving.lock_timeout_seconds)"
    )
    deadline = time.monotonic() + timeout_seconds
    while time.monotonic() < deadline:
        time.sleep(min(_POLL_SECONDS, max(deadline - time.monotonic(), 0)))
        if lock.try_acquire():
            say(f"got the lock on {what} after waiting since {since:%H:%M:%S} UTC")
            return
    holder = lock.holder() or holder
    raise LeaseBusyError(
        f"{what} is being written by {describe(holder)}; gave up after waiting "
        f"{timeout_seconds:g} s (serving.lock_timeout_seconds). Let that run finish, or stop it, "
        "then run again"
    )
