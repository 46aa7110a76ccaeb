"""The local job store: one SQLite row per job, per batch, and per serverless job of a batch, in
``$XDG_STATE_HOME/runpod-hybrid/jobs.db``.

Several processes (the CLI, the MCP server, a crashed ``map``) share it: WAL mode, a busy timeout and one
short transaction per call. Rows hold the last known state; readers reconcile with the backend. A job's
state changes only through :meth:`JobStore.transition`. The store is also the ledger batches record their
submissions in (:class:`~runpod_hybrid.serverless.BatchLedger`).
"""

from __future__ import annotations

import contextlib
import json
import sqlite3
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from runpod_hybrid.errors import JOB_STATES, JobState
from runpod_hybrid.serverless import BatchInfo, Submission

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

# States written by earlier versions (RunPod's serverless statuses, our old STARTING), read as today's.
_OLD_STATES: Mapping[str, JobState] = {
    "STARTING": "PENDING",
    "IN_QUEUE": "PENDING",
    "IN_PROGRESS": "RUNNING",
    "COMPLETED": "SUCCEEDED",
}


def _state(value: str) -> JobState:
    if value in JOB_STATES:
        return value
    return _OLD_STATES.get(value, "FAILED")


@dataclass
class JobRecord:
    """One job as the store keeps it. ``spec`` holds what its backend needs to find it again."""

    id: str
    backend: str
    state: JobState
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


_JSON_COLUMNS = {"spec", "result"}
# The Python field and the SQL column differ only here (the column predates the state vocabulary).
_COLUMN = {"state": "status"}


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
        data["state"] = _state(data.pop("status"))
        return JobRecord(**data)

    @staticmethod
    def _values(changes: Mapping[str, Any]) -> dict[str, Any]:
        return {
            _COLUMN.get(k, k): json.dumps(v) if k in _JSON_COLUMNS and v is not None else v
            for k, v in changes.items()
        }

    # --- jobs ---

    def put(self, record: JobRecord) -> JobRecord:
        """Insert (or replace) a whole record."""
        now = self._now()
        record.created_at = record.created_at or now
        record.updated_at = now
        values = self._values({f.name: getattr(record, f.name) for f in fields(JobRecord)})
        names = ", ".join(values)
        marks = ", ".join(f":{n}" for n in values)
        with self._connect() as db:
            db.execute(f"INSERT OR REPLACE INTO jobs ({names}) VALUES ({marks})", values)  # noqa: S608 - fixed names
        return record

    def update(self, job_id: str, **changes: Any) -> None:
        """Change facts of a job other than its state (its pod, its spec details)."""
        allowed = {f.name for f in fields(JobRecord)} - {"id", "created_at", "state"}
        unknown = set(changes) - allowed
        if unknown:
            raise ValueError(f"unknown or state fields (use transition for the state): {sorted(unknown)}")
        self._write(job_id, changes)

    def transition(self, job_id: str, state: JobState, **facts: Any) -> None:
        """The one way a job's state changes, with the facts that came with it (error, result, attempt)."""
        if state not in JOB_STATES:
            raise ValueError(f"unknown job state {state!r}")
        self._write(job_id, {"state": state, **facts})

    def _write(self, job_id: str, changes: Mapping[str, Any]) -> None:
        values = self._values({**changes, "updated_at": self._now()})
        assignments = ", ".join(f"{k} = :{k}" for k in values)
        with self._connect() as db:
            db.execute(f"UPDATE jobs SET {assignments} WHERE id = :job_id", {**values, "job_id": job_id})  # noqa: S608

    def get(self, job_id: str) -> JobRecord | None:
        with self._connect() as db:
            row = db.execute("SELECT * FROM jobs WHERE id = ?", (job_id,)).fetchone()
        return self._row(row) if row else None

    def recent(self, *, limit: int = 50) -> list[JobRecord]:
        """The newest jobs first; a batch's own serverless jobs are not counted (they belong to their job)."""
        with self._connect() as db:
            rows = db.execute(
                "SELECT * FROM jobs WHERE batch_id IS NULL ORDER BY created_at DESC LIMIT ?", (limit,)
            ).fetchall()
        return [self._row(r) for r in rows]

    # --- the batch ledger ---

    def open_batch(
        self,
        batch_id: str,
        endpoint_id: str,
        base_url: str,
        task: str,
        inputs: list[Any],
        options: Mapping[str, Any],
    ) -> None:
        with self._connect() as db:
            db.execute(
                "INSERT OR IGNORE INTO batches VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    batch_id,
                    endpoint_id,
                    base_url,
                    task,
                    json.dumps(inputs),
                    json.dumps(dict(options)),
                    self._now(),
                    "RUNNING",
                ),
            )

    def get_batch(self, batch_id: str) -> BatchInfo | None:
        with self._connect() as db:
            row = db.execute("SELECT * FROM batches WHERE id = ?", (batch_id,)).fetchone()
        if row is None:
            return None
        return BatchInfo(
            row["id"],
            row["endpoint_id"],
            row["base_url"],
            row["task"],
            json.loads(row["inputs"]),
            json.loads(row["options"]),
            _state(row["status"]),
        )

    def close_batch(self, batch_id: str, state: JobState) -> None:
        with self._connect() as db:
            db.execute("UPDATE batches SET status = ? WHERE id = ?", (state, batch_id))

    def submitted(
        self, batch_id: str, index: int, job_id: str, attempt: int, task: str, task_input: Any
    ) -> None:
        self.put(
            JobRecord(
                job_id,
                "serverless",
                "PENDING",
                name=task,
                batch_id=batch_id,
                batch_index=index,
                attempt=attempt,
                spec={"task": task, "input": task_input},
            )
        )

    def settled(self, job_id: str, state: JobState, *, output: Any = None, error: str | None = None) -> None:
        self.transition(job_id, state, result=output, error=error)

    def submissions(self, batch_id: str) -> list[Submission]:
        """The latest job of each input of a batch."""
        with self._connect() as db:
            rows = db.execute(
                "SELECT * FROM jobs WHERE batch_id = ? ORDER BY batch_index, attempt, created_at", (batch_id,)
            ).fetchall()
        latest: dict[int, Submission] = {}
        for row in rows:
            record = self._row(row)
            if record.batch_index is not None:
                latest[record.batch_index] = Submission(
                    record.batch_index, record.id, record.attempt, record.state, record.result
                )
        return [latest[i] for i in sorted(latest)]
