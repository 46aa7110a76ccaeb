"""The local job store: one SQLite row per job, and a batch's ledger, in ``$XDG_STATE_HOME/runpod-hybrid/jobs.db``.

Several processes (the CLI, the MCP server, a crashed ``map``) share it: WAL mode, a busy timeout and one
short transaction per call. Rows hold the last known state; readers reconcile with the backend. A job's
state changes only through :meth:`JobStore.transition`.

The store is also the ledger batches record themselves in (:class:`~runpod_hybrid.serverless.BatchLedger`):
a row per batch (task, endpoint, the fingerprint and count of its inputs, its inputs file), a row per pack of
inputs sent as one job (its inputs kept only until it ends), a row per input with its latest outcome, and for
batches not read from a file a row per input value. No row grows with the batch.
"""

from __future__ import annotations

import contextlib
import json
import sqlite3
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from runpod_hybrid.errors import JOB_STATES, ConfigError, JobState
from runpod_hybrid.serverless import BatchInfo, ItemRecord, Pack

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
    inputs TEXT NOT NULL,  -- unused since batch fingerprints (it held every input in one value)
    options TEXT NOT NULL,
    created_at REAL NOT NULL,
    status TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS batch_inputs (
    batch_id TEXT NOT NULL,
    idx INTEGER NOT NULL,
    value TEXT NOT NULL,
    PRIMARY KEY (batch_id, idx)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS batch_packs (
    id TEXT PRIMARY KEY,
    batch_id TEXT NOT NULL,
    job_id TEXT,
    state TEXT NOT NULL,
    packed INTEGER NOT NULL,
    indexes TEXT NOT NULL,
    attempts TEXT NOT NULL,
    payload TEXT,
    created_at REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS batch_packs_open ON batch_packs(batch_id, state);
CREATE TABLE IF NOT EXISTS batch_items (
    batch_id TEXT NOT NULL,
    idx INTEGER NOT NULL,
    state TEXT NOT NULL,
    attempts INTEGER NOT NULL,
    pack_id TEXT,
    output TEXT,
    error TEXT,
    PRIMARY KEY (batch_id, idx)
) WITHOUT ROWID;
"""
# Columns added to `batches` after its first release (ALTER TABLE for stores made before).
BATCH_COLUMNS = {
    "fingerprint": "TEXT",
    "inputs_count": "INTEGER",
    "inputs_file": "TEXT",
    "possibly_twice": "INTEGER NOT NULL DEFAULT 0",
}
OPEN_PACK = ("PENDING", "RUNNING")

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
        db = sqlite3.connect(self.path, timeout=30, isolation_level=None)
        try:
            db.execute("PRAGMA busy_timeout=30000")
            # Switching to WAL needs a moment alone with the file; another process doing the same (or
            # already writing) makes it fail at once rather than wait, and then WAL is on anyway.
            if db.execute("PRAGMA journal_mode").fetchone()[0] != "wal":
                with contextlib.suppress(sqlite3.OperationalError):
                    db.execute("PRAGMA journal_mode=WAL")
            db.executescript(SCHEMA)
            # Two processes opening a store made by an older version must not both add a column: the
            # write lock makes the check and the change one step.
            db.execute("BEGIN IMMEDIATE")
            present = {row[1] for row in db.execute("PRAGMA table_info(batches)")}
            for column, kind in BATCH_COLUMNS.items():
                if column not in present:
                    db.execute(f"ALTER TABLE batches ADD COLUMN {column} {kind}")
            db.execute("COMMIT")
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

    @staticmethod
    def _batch(row: sqlite3.Row) -> BatchInfo:
        if row["fingerprint"] is None:
            raise ConfigError(
                f"Batch {row['id']} was recorded by an earlier version of runpod-hybrid, without a fingerprint "
                "of its inputs: it cannot be resumed. Submit it again under a new batch id."
            )
        return BatchInfo(
            row["id"],
            row["endpoint_id"],
            row["base_url"],
            row["task"],
            row["fingerprint"],
            row["inputs_count"],
            row["inputs_file"],
            json.loads(row["options"]),
            _state(row["status"]),
            row["possibly_twice"],
        )

    def open_batch(self, batch: BatchInfo) -> tuple[BatchInfo, bool]:
        with self._connect() as db:
            row = db.execute("SELECT * FROM batches WHERE id = ?", (batch.id,)).fetchone()
            if row is None:
                db.execute(
                    "INSERT INTO batches (id, endpoint_id, base_url, task, inputs, options, created_at, status, "
                    "fingerprint, inputs_count, inputs_file) VALUES (?, ?, ?, ?, '', ?, ?, ?, ?, ?, ?)",
                    (
                        batch.id,
                        batch.endpoint_id,
                        batch.base_url,
                        batch.task,
                        json.dumps(dict(batch.options)),
                        self._now(),
                        batch.state,
                        batch.fingerprint,
                        batch.inputs_count,
                        batch.inputs_file,
                    ),
                )
                return batch, True
        existing = self._batch(row)
        if (existing.task, existing.endpoint_id, existing.fingerprint) != (
            batch.task,
            batch.endpoint_id,
            batch.fingerprint,
        ):
            raise ConfigError(
                f"Batch id {batch.id!r} is taken by another batch: {_describe(existing)}; this one is "
                f"{_describe(batch)}. Choose another --batch-id, or `rph batch resume {batch.id}` to finish the "
                "first."
            )
        return existing, False

    def get_batch(self, batch_id: str) -> BatchInfo | None:
        with self._connect() as db:
            row = db.execute("SELECT * FROM batches WHERE id = ?", (batch_id,)).fetchone()
        return None if row is None else self._batch(row)

    def set_batch_state(self, batch_id: str, state: JobState) -> None:
        with self._connect() as db:
            db.execute("UPDATE batches SET status = ? WHERE id = ?", (state, batch_id))

    def note_possibly_twice(self, batch_id: str, inputs: int) -> None:
        with self._connect() as db:
            db.execute(
                "UPDATE batches SET possibly_twice = possibly_twice + ? WHERE id = ?", (inputs, batch_id)
            )

    def store_inputs(self, batch_id: str, first_index: int, values: Sequence[Any]) -> None:
        with self._connect() as db:
            db.executemany(
                "INSERT OR REPLACE INTO batch_inputs VALUES (?, ?, ?)",
                ((batch_id, first_index + i, json.dumps(v)) for i, v in enumerate(values)),
            )

    def stored_inputs(self, batch_id: str, first_index: int, limit: int) -> list[Any]:
        with self._connect() as db:
            rows = db.execute(
                "SELECT value FROM batch_inputs WHERE batch_id = ? AND idx >= ? ORDER BY idx LIMIT ?",
                (batch_id, first_index, limit),
            ).fetchall()
        return [json.loads(row["value"]) for row in rows]

    def intend(self, batch_id: str, pack: Pack) -> None:
        with self._connect() as db:
            db.execute(
                "INSERT INTO batch_packs VALUES (?, ?, NULL, 'PENDING', ?, ?, ?, ?, ?)",
                (
                    pack.id,
                    batch_id,
                    int(pack.packed),
                    json.dumps(pack.indexes),
                    json.dumps(pack.attempts),
                    json.dumps(pack.values),
                    self._now(),
                ),
            )
            db.executemany(
                "INSERT OR REPLACE INTO batch_items VALUES (?, ?, 'PENDING', ?, ?, NULL, NULL)",
                ((batch_id, i, a, pack.id) for i, a in zip(pack.indexes, pack.attempts, strict=True)),
            )

    def sent(self, pack_id: str, job_id: str) -> None:
        with self._connect() as db:
            db.execute("UPDATE batch_packs SET job_id = ?, state = 'RUNNING' WHERE id = ?", (job_id, pack_id))
            db.execute("UPDATE batch_items SET state = 'RUNNING' WHERE pack_id = ?", (pack_id,))

    def settle(self, batch_id: str, pack_id: str | None, items: Sequence[ItemRecord]) -> None:
        with self._connect() as db:
            if pack_id is not None:
                # Its inputs are no longer needed once it ended: the ledger stays as small as the batch's outcomes.
                db.execute("UPDATE batch_packs SET state = 'ENDED', payload = NULL WHERE id = ?", (pack_id,))
            db.executemany(
                "INSERT OR REPLACE INTO batch_items VALUES (?, ?, ?, ?, ?, ?, ?)",
                (
                    (
                        batch_id,
                        item.index,
                        item.state,
                        item.attempts,
                        pack_id,
                        None if item.output is None else json.dumps(item.output),
                        item.error,
                    )
                    for item in items
                ),
            )

    def open_packs(self, batch_id: str) -> list[Pack]:
        with self._connect() as db:
            rows = db.execute(
                "SELECT * FROM batch_packs WHERE batch_id = ? AND state IN (?, ?) ORDER BY created_at",
                (batch_id, *OPEN_PACK),
            ).fetchall()
        return [
            Pack(
                row["id"],
                json.loads(row["indexes"]),
                json.loads(row["payload"]),
                json.loads(row["attempts"]),
                bool(row["packed"]),
                row["job_id"],
            )
            for row in rows
        ]

    def items_between(self, batch_id: str, start: int, stop: int) -> dict[int, ItemRecord]:
        with self._connect() as db:
            rows = db.execute(
                "SELECT * FROM batch_items WHERE batch_id = ? AND idx >= ? AND idx < ?",
                (batch_id, start, stop),
            ).fetchall()
        return {
            row["idx"]: ItemRecord(
                row["idx"],
                _state(row["state"]),
                row["attempts"],
                None if row["output"] is None else json.loads(row["output"]),
                row["error"],
                row["pack_id"],
            )
            for row in rows
        }

    def count_items(self, batch_id: str) -> dict[str, int]:
        with self._connect() as db:
            rows = db.execute(
                "SELECT state, count(*) AS n FROM batch_items WHERE batch_id = ? GROUP BY state", (batch_id,)
            ).fetchall()
        return {str(_state(row["state"])): int(row["n"]) for row in rows}


def _describe(batch: BatchInfo) -> str:
    source = f"from {batch.inputs_file}" if batch.inputs_file else "given in memory"
    return (
        f"task {batch.task} on endpoint {batch.endpoint_id}, {batch.inputs_count} inputs {source} "
        f"(fingerprint {batch.fingerprint})"
    )
