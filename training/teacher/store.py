"""The teacher store: one SQLite file (WAL mode) that holds every answer the teacher gave.

A result is committed, together with the record of the call that produced it, before the
runner counts it as done; a process killed at any moment loses at most the calls that were in
flight. Tables:

- ``meta``: the task the store belongs to, learnt facts (does the endpoint honour ``n``?
  tokens per character of its tokenizer).
- ``examples``: the task examples (so ``export`` needs nothing but the store).
- ``runs`` / ``run_examples``: each distinct run configuration (teacher, N, M, sampling
  parameters, prompt shots) and its examples in order. The run id is a hash of the config,
  so rerunning the same command continues the same run.
- ``results``: one row per filled slot (key = sha256 of model, messages, params, index).
- ``calls``: one row per attempt at a teacher call (success, retry, failure) with tokens and
  cost: the source of every count ``status`` prints.
- ``batches`` / ``batch_items``: OpenAI Batch API jobs, recorded before they are relied on so a
  restart finds an in-flight batch instead of paying for it twice.
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
import time
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mindmirror.student.errors import MindmirrorError
from mindmirror.student.tasks import Example

__all__ = ["BatchRecord", "CallRecord", "Result", "Store", "StoreError"]

SCHEMA_VERSION = "1"

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (name TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS examples (
    id TEXT PRIMARY KEY,
    question TEXT NOT NULL,
    label TEXT,
    fields TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS runs (
    id TEXT PRIMARY KEY,
    kind TEXT NOT NULL,
    config TEXT NOT NULL,
    created_at REAL NOT NULL,
    last_used_at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS run_examples (
    run_id TEXT NOT NULL,
    position INTEGER NOT NULL,
    example_id TEXT NOT NULL,
    PRIMARY KEY (run_id, position)
);
CREATE TABLE IF NOT EXISTS calls (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    run_id TEXT,
    at REAL NOT NULL,
    model TEXT,
    kind TEXT NOT NULL,
    outcome TEXT NOT NULL,
    samples_requested INTEGER NOT NULL,
    samples_returned INTEGER NOT NULL DEFAULT 0,
    status INTEGER,
    error TEXT,
    prompt_tokens INTEGER NOT NULL DEFAULT 0,
    completion_tokens INTEGER NOT NULL DEFAULT 0,
    cost REAL NOT NULL DEFAULT 0,
    latency REAL,
    source TEXT NOT NULL,
    batch_id TEXT
);
CREATE TABLE IF NOT EXISTS results (
    key TEXT PRIMARY KEY,
    kind TEXT NOT NULL,
    example_id TEXT NOT NULL,
    parent TEXT,
    sample_index INTEGER NOT NULL,
    model TEXT NOT NULL,
    text TEXT NOT NULL,
    finish_reason TEXT,
    call_id INTEGER,
    source TEXT NOT NULL,
    created_at REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS results_by_example ON results (example_id, kind);
CREATE TABLE IF NOT EXISTS batches (
    input_file_id TEXT PRIMARY KEY,
    batch_id TEXT UNIQUE,
    run_id TEXT NOT NULL,
    status TEXT NOT NULL,
    requests INTEGER NOT NULL,
    created_at REAL NOT NULL,
    updated_at REAL NOT NULL,
    output_file_id TEXT,
    error_file_id TEXT,
    processed INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE IF NOT EXISTS batch_items (
    input_file_id TEXT NOT NULL,
    custom_id TEXT NOT NULL,
    request TEXT NOT NULL,
    PRIMARY KEY (input_file_id, custom_id)
);
"""


class StoreError(MindmirrorError):
    """The store file is not usable for this command (other task, other schema, unreadable)."""


@dataclass(frozen=True)
class Result:
    """One filled slot, as the runner writes it."""

    key: str
    kind: str
    example_id: str
    sample_index: int
    model: str
    text: str
    parent: str | None = None
    finish_reason: str | None = None
    source: str = "api"


@dataclass(frozen=True)
class CallRecord:
    """One attempt at a teacher call."""

    kind: str
    outcome: str  # ok | retry | failed | fatal
    samples_requested: int
    model: str | None = None
    samples_returned: int = 0
    status: int | None = None
    error: str | None = None
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cost: float = 0.0
    latency: float | None = None
    source: str = "api"
    batch_id: str | None = None


@dataclass(frozen=True)
class BatchRecord:
    input_file_id: str
    batch_id: str | None
    run_id: str
    status: str
    requests: int
    output_file_id: str | None
    error_file_id: str | None
    processed: bool


def config_id(kind: str, config: dict[str, Any], example_ids: Sequence[str]) -> str:
    digest = hashlib.sha256()
    digest.update(json.dumps({"kind": kind, "config": config}, sort_keys=True).encode())
    for example_id in example_ids:
        digest.update(b"\0" + example_id.encode())
    return digest.hexdigest()[:16]


class Store:
    """The SQLite store. One connection, used from one thread (the runner's event loop)."""

    def __init__(self, path: str | Path, create: bool = True) -> None:
        self.path = Path(path)
        if not create and not self.path.is_file():
            raise StoreError(f"store not found: {self.path} (run `mindmirror teach run` first)")
        self.path.parent.mkdir(parents=True, exist_ok=True)
        try:
            self._db = sqlite3.connect(self.path, isolation_level=None, timeout=30)
            self._db.row_factory = sqlite3.Row
            mode = self._db.execute("PRAGMA journal_mode=WAL").fetchone()[0]
            # FULL: a committed answer survives a power cut too, not only a killed process;
            # one fsync per call is nothing next to a network round trip.
            self._db.execute("PRAGMA synchronous=FULL")
            self._db.executescript(_SCHEMA)
        except sqlite3.DatabaseError as error:
            raise StoreError(f"{self.path} is not a usable SQLite store: {error}") from None
        if mode.lower() != "wal":
            raise StoreError(f"{self.path}: cannot switch to WAL mode (got {mode!r})")
        version = self.get_meta("schema_version")
        if version is None:
            self.set_meta("schema_version", SCHEMA_VERSION)
        elif version != SCHEMA_VERSION:
            raise StoreError(
                f"{self.path} has store schema {version}, this mindmirror reads {SCHEMA_VERSION}"
            )

    def close(self) -> None:
        self._db.close()

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        self._db.execute("BEGIN IMMEDIATE")
        try:
            yield self._db
        except BaseException:
            self._db.execute("ROLLBACK")
            raise
        self._db.execute("COMMIT")

    # ----- meta ---------------------------------------------------------------------------
    def get_meta(self, name: str) -> str | None:
        row = self._db.execute("SELECT value FROM meta WHERE name = ?", (name,)).fetchone()
        return None if row is None else str(row[0])

    def set_meta(self, name: str, value: str) -> None:
        with self.transaction() as db:
            db.execute(
                "INSERT INTO meta (name, value) VALUES (?, ?) "
                "ON CONFLICT (name) DO UPDATE SET value = excluded.value",
                (name, value),
            )

    def bind_task(self, task_name: str) -> None:
        """A store holds one task's examples; refuse to mix tasks."""
        current = self.get_meta("task")
        if current is None:
            self.set_meta("task", task_name)
        elif current != task_name:
            raise StoreError(
                f"{self.path} holds task {current!r}, not {task_name!r}; use another --store"
            )

    # ----- examples and runs -----------------------------------------------------------------
    def add_examples(self, examples: Iterable[Example]) -> None:
        """Insert examples; an id already stored must have the same content."""
        with self.transaction() as db:
            for example in examples:
                fields = json.dumps(example.fields, sort_keys=True, ensure_ascii=False)
                row = db.execute(
                    "SELECT question, label, fields FROM examples WHERE id = ?", (example.id,)
                ).fetchone()
                if row is None:
                    db.execute(
                        "INSERT INTO examples (id, question, label, fields) VALUES (?, ?, ?, ?)",
                        (example.id, example.question, example.label, fields),
                    )
                elif (row["question"], row["label"], row["fields"]) != (
                    example.question,
                    example.label,
                    fields,
                ):
                    raise StoreError(
                        f"{self.path} already has a different example with id {example.id!r}; "
                        "give examples unique ids or use another --store"
                    )

    def examples(self, ids: Sequence[str]) -> list[Example]:
        out = []
        for example_id in ids:
            row = self._db.execute("SELECT * FROM examples WHERE id = ?", (example_id,)).fetchone()
            if row is None:
                raise StoreError(f"{self.path}: example {example_id!r} is missing")
            out.append(
                Example(
                    id=row["id"],
                    question=row["question"],
                    label=row["label"],
                    fields=json.loads(row["fields"]),
                )
            )
        return out

    def register_run(self, kind: str, config: dict[str, Any], example_ids: Sequence[str]) -> str:
        run_id = config_id(kind, config, example_ids)
        now = time.time()
        with self.transaction() as db:
            inserted = db.execute(
                "INSERT INTO runs (id, kind, config, created_at, last_used_at) "
                "VALUES (?, ?, ?, ?, ?) ON CONFLICT (id) DO UPDATE SET last_used_at = ?",
                (run_id, kind, json.dumps(config, sort_keys=True), now, now, now),
            ).rowcount
            if inserted:
                db.execute("DELETE FROM run_examples WHERE run_id = ?", (run_id,))
                db.executemany(
                    "INSERT INTO run_examples (run_id, position, example_id) VALUES (?, ?, ?)",
                    [(run_id, i, example_id) for i, example_id in enumerate(example_ids)],
                )
        return run_id

    def runs(self) -> list[dict[str, Any]]:
        rows = self._db.execute(
            "SELECT r.*, (SELECT COUNT(*) FROM run_examples e WHERE e.run_id = r.id) AS n "
            "FROM runs r ORDER BY last_used_at DESC"
        ).fetchall()
        return [
            {
                "id": row["id"],
                "kind": row["kind"],
                "config": json.loads(row["config"]),
                "examples": row["n"],
                "created_at": row["created_at"],
                "last_used_at": row["last_used_at"],
            }
            for row in rows
        ]

    def run(self, run_id: str | None = None) -> dict[str, Any]:
        """A run by id (or unique id prefix); the most recently used one by default."""
        runs = self.runs()
        if not runs:
            raise StoreError(f"{self.path} has no runs yet (run `mindmirror teach run` first)")
        if run_id is None:
            return runs[0]
        matches = [run for run in runs if run["id"].startswith(run_id)]
        if len(matches) != 1:
            known = ", ".join(run["id"] for run in runs)
            raise StoreError(f"no single run matches {run_id!r} in {self.path} (runs: {known})")
        return matches[0]

    def run_example_ids(self, run_id: str) -> list[str]:
        rows = self._db.execute(
            "SELECT example_id FROM run_examples WHERE run_id = ? ORDER BY position", (run_id,)
        ).fetchall()
        return [row[0] for row in rows]

    # ----- results and calls -------------------------------------------------------------
    def get_results(self, keys: Sequence[str]) -> dict[str, sqlite3.Row]:
        found: dict[str, sqlite3.Row] = {}
        for start in range(0, len(keys), 500):
            chunk = list(keys[start : start + 500])
            marks = ",".join("?" * len(chunk))
            for row in self._db.execute(f"SELECT * FROM results WHERE key IN ({marks})", chunk):  # noqa: S608 - placeholders only
                found[row["key"]] = row
        return found

    def record_call(
        self, run_id: str | None, call: CallRecord, results: Sequence[Result] = ()
    ) -> int:
        """Commit one call and the results it produced, atomically; return the call id.

        A slot already filled keeps its first answer (``INSERT OR IGNORE``): results are
        immutable once stored, so an export never changes under a rerun.
        """
        with self.transaction() as db:
            return self._insert_call(db, run_id, call, results)

    def record_batch_output(
        self,
        input_file_id: str,
        run_id: str,
        entries: Sequence[tuple[CallRecord, Sequence[Result]]],
    ) -> None:
        """Commit every result line of a finished batch and mark it processed, all at once, so a
        crash while joining results neither loses them nor counts them twice."""
        with self.transaction() as db:
            for call, results in entries:
                self._insert_call(db, run_id, call, results)
            db.execute(
                "UPDATE batches SET processed = 1, updated_at = ? WHERE input_file_id = ?",
                (time.time(), input_file_id),
            )

    @staticmethod
    def _insert_call(
        db: sqlite3.Connection, run_id: str | None, call: CallRecord, results: Sequence[Result]
    ) -> int:
        now = time.time()
        cursor = db.execute(
            "INSERT INTO calls (run_id, at, model, kind, outcome, samples_requested, "
            "samples_returned, status, error, prompt_tokens, completion_tokens, cost, "
            "latency, source, batch_id) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                run_id,
                now,
                call.model,
                call.kind,
                call.outcome,
                call.samples_requested,
                call.samples_returned,
                call.status,
                call.error,
                call.prompt_tokens,
                call.completion_tokens,
                call.cost,
                call.latency,
                call.source,
                call.batch_id,
            ),
        )
        call_id = int(cursor.lastrowid or 0)
        db.executemany(
            "INSERT OR IGNORE INTO results (key, kind, example_id, parent, sample_index, "
            "model, text, finish_reason, call_id, source, created_at) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            [
                (
                    r.key,
                    r.kind,
                    r.example_id,
                    r.parent,
                    r.sample_index,
                    r.model,
                    r.text,
                    r.finish_reason,
                    call_id,
                    r.source,
                    now,
                )
                for r in results
            ],
        )
        return call_id

    def call_totals(self, run_id: str | None = None) -> dict[str, Any]:
        where, args = ("WHERE run_id = ?", (run_id,)) if run_id else ("", ())
        rows = self._db.execute(
            f"SELECT outcome, source, COUNT(*) AS calls, SUM(prompt_tokens) AS p, "  # noqa: S608
            f"SUM(completion_tokens) AS c, SUM(cost) AS cost, SUM(samples_returned) AS s "
            f"FROM calls {where} GROUP BY outcome, source",
            args,
        ).fetchall()
        totals: dict[str, Any] = {
            "calls": {},
            "prompt_tokens": 0,
            "completion_tokens": 0,
            "cost": 0.0,
            "samples": 0,
        }
        for row in rows:
            outcome, source = row["outcome"], row["source"]
            name = outcome if source == "api" else f"{outcome} ({source})"
            totals["calls"][name] = totals["calls"].get(name, 0) + row["calls"]
            totals["prompt_tokens"] += row["p"] or 0
            totals["completion_tokens"] += row["c"] or 0
            totals["cost"] += row["cost"] or 0.0
            totals["samples"] += row["s"] or 0
        return totals

    def failures(self, run_id: str | None = None, limit: int = 5) -> list[tuple[int, str, str]]:
        """The most frequent error messages: (count, outcome, message)."""
        where = "AND run_id = ?" if run_id else ""
        args: tuple[Any, ...] = (run_id, limit) if run_id else (limit,)
        rows = self._db.execute(
            f"SELECT COUNT(*), outcome, error FROM calls WHERE outcome != 'ok' {where} "  # noqa: S608
            "GROUP BY outcome, error ORDER BY COUNT(*) DESC LIMIT ?",
            args,
        ).fetchall()
        return [(row[0], row[1], row[2] or "") for row in rows]

    def usage_stats(self, model: str) -> tuple[float | None, float | None]:
        """(max prompt tokens per prompt character, mean completion tokens per sample) seen
        for ``model``, from the calls the runner recorded; ``None`` before any."""
        ratio = self.get_meta(f"tokens_per_char:{model}")
        row = self._db.execute(
            "SELECT SUM(completion_tokens), SUM(samples_returned) FROM calls "
            "WHERE outcome = 'ok' AND model = ? AND samples_returned > 0",
            (model,),
        ).fetchone()
        mean = row[0] / row[1] if row and row[1] else None
        return (float(ratio) if ratio else None), mean

    # ----- batches -------------------------------------------------------------------------
    def add_batch_upload(
        self, input_file_id: str, run_id: str, items: Sequence[tuple[str, dict[str, Any]]]
    ) -> None:
        """Record an uploaded batch input file and what each custom_id stands for, before the
        batch is created: a crash after creation can then find the batch by its input file."""
        now = time.time()
        with self.transaction() as db:
            db.execute(
                "INSERT INTO batches (input_file_id, batch_id, run_id, status, requests, "
                "created_at, updated_at) VALUES (?, NULL, ?, 'uploaded', ?, ?, ?)",
                (input_file_id, run_id, len(items), now, now),
            )
            db.executemany(
                "INSERT INTO batch_items (input_file_id, custom_id, request) VALUES (?, ?, ?)",
                [(input_file_id, cid, json.dumps(item)) for cid, item in items],
            )

    def update_batch(self, input_file_id: str, **fields: Any) -> None:
        allowed = {"batch_id", "status", "output_file_id", "error_file_id", "processed"}
        unknown = set(fields) - allowed
        if unknown:
            raise ValueError(f"unknown batch fields {sorted(unknown)}")
        assignments = ", ".join(f"{name} = ?" for name in fields)
        with self.transaction() as db:
            db.execute(
                f"UPDATE batches SET {assignments}, updated_at = ? WHERE input_file_id = ?",  # noqa: S608
                (*fields.values(), time.time(), input_file_id),
            )

    def batches(self, run_id: str | None = None, open_only: bool = False) -> list[BatchRecord]:
        query = "SELECT * FROM batches WHERE 1 = 1"
        args: list[Any] = []
        if run_id:
            query += " AND run_id = ?"
            args.append(run_id)
        if open_only:
            query += " AND processed = 0"
        rows = self._db.execute(query + " ORDER BY created_at", args).fetchall()
        return [
            BatchRecord(
                input_file_id=row["input_file_id"],
                batch_id=row["batch_id"],
                run_id=row["run_id"],
                status=row["status"],
                requests=row["requests"],
                output_file_id=row["output_file_id"],
                error_file_id=row["error_file_id"],
                processed=bool(row["processed"]),
            )
            for row in rows
        ]

    def batch_items(self, input_file_id: str) -> dict[str, dict[str, Any]]:
        rows = self._db.execute(
            "SELECT custom_id, request FROM batch_items WHERE input_file_id = ?", (input_file_id,)
        ).fetchall()
        return {row[0]: json.loads(row[1]) for row in rows}
