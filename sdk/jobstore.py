"""The local job store: one SQLite row per job (and per batch), in ``$XDG_STATE_HOME/runpod-hybrid/``.

Several processes (the CLI, the MCP server, a crashed ``map``) share it: WAL mode, a busy timeout and one
short transaction per call. Rows hold the last known status; readers reconcile with the backend.
"""

from __future__ import annotations

import contextlib
import json
import sqlite3
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

SCHEMA = """
CREATE TABLE IF NOT EXISTS jobs (
    id TEXT PRIMARY KEY,
    backend TEXT NOT NULL,
    status TEXT NOT NULL,
    created_at REAL NOT NULL,
    updated_at REAL NOT NULL,
    name TEXT NOT NULL DEFAULT '',
    endpoint_id TEXT,
    pod_id TEXT,
    batch_id TEXT,
    batch_index INTEGER,
    attempt INTEGER NOT NULL DEFAULT 0,
    spec TEXT NOT NULL DEFAULT '{}',
    result TEXT,
    error TEXT
);
CREATE INDEX IF NOT EXISTS jobs_batch ON jobs(batch_id, batch_index);
CREATE TABLE IF NOT EXISTS batches (
    id TEXT PRIMARY KEY,
    endpoint_id TEXT NOT NULL,
    base_url TEXT NOT NULL,
    task TEXT NOT NULL,
    inputs TEXT NOT NULL,
    options TEXT NOT NULL,
    created_at REAL NOT NULL,
    status TEXT NOT NULL
);
"""


@dataclass
class JobRecord:
    id: str
    backend: str
    status: str
    name: str = ""
    endpoint_id: str | None = None
    pod_id: str | None = None
    batch_id: str | None = None
    batch_index: int | None = None
    attempt: int = 0
    spec: dict[str, Any] = field(default_factory=dict)
    result: Any = None
    error: str | None = None
    created_at: float = 0.0
    updated_at: float = 0.0


@dataclass
class BatchRecord:
    id: str
    endpoint_id: str
    base_url: str
    task: str
    inputs: list[Any]
    options: dict[str, Any]
    created_at: float
    status: str


_JSON_COLUMNS = {"spec", "result"}


class JobStore:
    def __init__(self, path: Path, *, now: Callable[[], float] = time.time) -> None:
        self.path = path
        self._now = now
        path.parent.mkdir(parents=True, exist_ok=True)
        db = sqlite3.connect(self.path, timeout=30)
        try:
            db.execute("PRAGMA busy_timeout=30000")
            # Switching to WAL needs a moment alone with the file; another process doing the same (or
            # already writing) makes it fail at once rather than wait, and then WAL is on anyway.
            if db.execute("PRAGMA journal_mode").fetchone()[0] != "wal":
                with contextlib.suppress(sqlite3.OperationalError):
                    db.execute("PRAGMA journal_mode=WAL")
            db.executescript(SCHEMA)
        finally:
            db.close()

    @contextmanager
    def _connect(self) -> Iterator[sqlite3.Connection]:
        db = sqlite3.connect(self.path, timeout=30, isolation_level=None)
        db.row_factory = sqlite3.Row
        try:
            db.execute("PRAGMA busy_timeout=30000")
            db.execute("BEGIN IMMEDIATE")
            yield db
            db.execute("COMMIT")
        except BaseException:
            if db.in_transaction:
                db.execute("ROLLBACK")
            raise
        finally:
            db.close()

    @staticmethod
    def _row(row: sqlite3.Row) -> JobRecord:
        data = dict(row)
        for column in _JSON_COLUMNS:
            data[column] = json.loads(data[column]) if data[column] is not None else None
        data["spec"] = data["spec"] or {}
        return JobRecord(**data)

    def put(self, record: JobRecord) -> JobRecord:
        now = self._now()
        record.created_at = record.created_at or now
        record.updated_at = now
        values = {f.name: getattr(record, f.name) for f in fields(JobRecord)}
        for column in _JSON_COLUMNS:
            values[column] = json.dumps(values[column]) if values[column] is not None else None
        names = ", ".join(values)
        marks = ", ".join(f":{n}" for n in values)
        with self._connect() as db:
            db.execute(f"INSERT OR REPLACE INTO jobs ({names}) VALUES ({marks})", values)  # noqa: S608 - fixed names
        return record

    def update(self, job_id: str, **changes: Any) -> None:
        allowed = {f.name for f in fields(JobRecord)} - {"id", "created_at"}
        unknown = set(changes) - allowed
        if unknown:
            raise ValueError(f"unknown job fields: {sorted(unknown)}")
        values = {k: json.dumps(v) if k in _JSON_COLUMNS and v is not None else v for k, v in changes.items()}
        values["updated_at"] = self._now()
        assignments = ", ".join(f"{k} = :{k}" for k in values)
        with self._connect() as db:
            db.execute(f"UPDATE jobs SET {assignments} WHERE id = :job_id", {**values, "job_id": job_id})  # noqa: S608

    def get(self, job_id: str) -> JobRecord | None:
        with self._connect() as db:
            row = db.execute("SELECT * FROM jobs WHERE id = ?", (job_id,)).fetchone()
        return self._row(row) if row else None

    def recent(self, *, backend: str | None = None, limit: int = 50) -> list[JobRecord]:
        with self._connect() as db:
            if backend:
                rows = db.execute(
                    "SELECT * FROM jobs WHERE backend = ? ORDER BY created_at DESC LIMIT ?", (backend, limit)
                ).fetchall()
            else:
                rows = db.execute("SELECT * FROM jobs ORDER BY created_at DESC LIMIT ?", (limit,)).fetchall()
        return [self._row(r) for r in rows]

    def create_batch(self, batch: BatchRecord) -> None:
        with self._connect() as db:
            db.execute(
                "INSERT INTO batches VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    batch.id,
                    batch.endpoint_id,
                    batch.base_url,
                    batch.task,
                    json.dumps(batch.inputs),
                    json.dumps(batch.options),
                    batch.created_at or self._now(),
                    batch.status,
                ),
            )

    def get_batch(self, batch_id: str) -> BatchRecord | None:
        with self._connect() as db:
            row = db.execute("SELECT * FROM batches WHERE id = ?", (batch_id,)).fetchone()
        if row is None:
            return None
        data = dict(row)
        data["inputs"] = json.loads(data["inputs"])
        data["options"] = json.loads(data["options"])
        return BatchRecord(**data)

    def set_batch_status(self, batch_id: str, status: str) -> None:
        with self._connect() as db:
            db.execute("UPDATE batches SET status = ? WHERE id = ?", (status, batch_id))

    def batch_jobs(self, batch_id: str) -> list[JobRecord]:
        with self._connect() as db:
            rows = db.execute(
                "SELECT * FROM jobs WHERE batch_id = ? ORDER BY batch_index, created_at", (batch_id,)
            ).fetchall()
        return [self._row(r) for r in rows]
