"""One scheduler leader across processes and machines.

- PostgreSQL: a session-level advisory lock (``pg_try_advisory_lock``) held on a dedicated
  autocommit connection for as long as the process leads. The server releases it when that
  connection ends — a killed leader loses it within moments and a follower takes over.
- SQLite: an exclusive ``fcntl.flock`` on a lock file next to the database file. The kernel releases
  it when the process dies, whatever the cause (SIGKILL included).

``LeaderLock.try_acquire()`` never blocks; ``still_held()`` is the heartbeat (a broken PostgreSQL
connection means the lock is gone: stop scheduling at once). The lock only decides who *schedules*;
every job step is still idempotent and claims its rows with conditional updates, so a brief
overlap (a leader paused past its lock) cannot double any effect.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import pathlib
import socket
import uuid
from typing import Any

from sqlalchemy.engine import make_url

from mh_platform.db.engine import normalise_url

log = logging.getLogger(__name__)

DEFAULT_NAME = "mhp-scheduler"


def lock_key(name: str) -> int:
    """A stable signed 64-bit advisory-lock key for ``name``."""
    return int.from_bytes(hashlib.sha256(name.encode()).digest()[:8], "big", signed=True)


def holder_id() -> str:
    """Who holds the lock: host, pid and a random suffix (pids are reused)."""
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"


def sqlite_lock_path(database_url: str, name: str = DEFAULT_NAME) -> pathlib.Path:
    db = make_url(normalise_url(database_url)).database
    if not db or db == ":memory:":
        raise ValueError("the scheduler needs a file database (SQLite :memory: has no other processes)")
    return pathlib.Path(db).with_name(pathlib.Path(db).name + f".{name}.lock")


class LeaderLock:
    """Leadership for one named lock on one database. Not thread-safe; one per scheduler process."""

    def __init__(self, database_url: str, name: str = DEFAULT_NAME) -> None:
        self.url = normalise_url(database_url)
        self.name = name
        self.holder = holder_id()
        self.is_pg = self.url.startswith("postgresql")
        self._conn: Any = None  # psycopg connection (PostgreSQL)
        self._fd: int | None = None  # lock file descriptor (SQLite)

    @property
    def held(self) -> bool:
        return self._conn is not None or self._fd is not None

    def try_acquire(self) -> bool:
        """Become the leader if nobody is; True when this process now leads."""
        if self.held:
            return self.still_held()
        return self._acquire_pg() if self.is_pg else self._acquire_file()

    def still_held(self) -> bool:
        """Heartbeat: True while the lock is certainly ours; on False the caller must stop scheduling."""
        if self._fd is not None:
            return True  # flock lives as long as the descriptor and the process
        if self._conn is None:
            return False
        try:
            with self._conn.cursor() as cur:
                key = lock_key(self.name) & 0xFFFFFFFFFFFFFFFF  # as the server splits it: hi, lo
                cur.execute("SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND granted "
                            "AND pid = pg_backend_pid() AND classid::bigint = %s AND objid::bigint = %s "
                            "AND objsubid = 1", (key >> 32, key & 0xFFFFFFFF))
                n = cur.fetchone()[0]
            if n >= 1:
                return True
        except Exception as exc:  # noqa: BLE001 - any connection failure means the lock is lost
            log.warning("scheduler lock connection failed: %s", exc)
        self._drop_pg()
        return False

    def release(self) -> None:
        if self._conn is not None:
            try:
                with self._conn.cursor() as cur:
                    cur.execute("SELECT pg_advisory_unlock(%s)", (lock_key(self.name),))
            except Exception:  # noqa: BLE001, S110 - closing the connection releases it anyway
                pass
            self._drop_pg()
        if self._fd is not None:
            import fcntl

            try:
                fcntl.flock(self._fd, fcntl.LOCK_UN)
            finally:
                os.close(self._fd)
                self._fd = None

    # -- PostgreSQL -------------------------------------------------------------------------
    def _acquire_pg(self) -> bool:
        import psycopg

        u = make_url(self.url)
        try:
            conn = psycopg.connect(
                host=u.host or "localhost", port=u.port or 5432, user=u.username, password=u.password,
                dbname=u.database, autocommit=True, application_name=f"mhp-scheduler {self.holder}"[:60],
                connect_timeout=10, keepalives=1, keepalives_idle=10, keepalives_interval=5, keepalives_count=3,
            )
        except Exception as exc:  # noqa: BLE001 - database down: just not the leader now
            log.warning("scheduler lock: cannot connect: %s", exc)
            return False
        try:
            with conn.cursor() as cur:
                cur.execute("SELECT pg_try_advisory_lock(%s)", (lock_key(self.name),))
                got = bool(cur.fetchone()[0])
        except Exception:  # noqa: BLE001
            conn.close()
            return False
        if not got:
            conn.close()
            return False
        self._conn = conn
        return True

    def _drop_pg(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            with contextlib.suppress(Exception):
                conn.close()

    # -- SQLite -----------------------------------------------------------------------------
    def _acquire_file(self) -> bool:
        import fcntl

        path = sqlite_lock_path(self.url, self.name)
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            return False
        os.ftruncate(fd, 0)
        os.write(fd, f"{self.holder}\n".encode())
        self._fd = fd
        return True

    def __enter__(self) -> LeaderLock:
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()
