"""The local registry: one SQLite file in the workspace.

WAL mode and a busy timeout let several genml processes (the TUI, a CLI in another
terminal, a detached trainer's supervisor) read and write at once without corrupting
it; every write is one short transaction. The schema carries a version number and a
list of migrations that run in order on open.
"""
from __future__ import annotations

import json
import re
import sqlite3
import threading
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

from core.errors import AlreadyExists, NotFound, StorageError
from core.types import Dataset, Job, JobState, ModelVersion

BUSY_TIMEOUT_MS = 30_000

MIGRATIONS: list[str] = [
    # 1: the first schema
    """
    CREATE TABLE datasets (
        name TEXT PRIMARY KEY,
        path TEXT NOT NULL,
        created REAL NOT NULL,
        train_count INTEGER NOT NULL DEFAULT 0,
        validation_count INTEGER NOT NULL DEFAULT 0,
        skipped_count INTEGER NOT NULL DEFAULT 0,
        duplicate_count INTEGER NOT NULL DEFAULT 0,
        crop TEXT NOT NULL DEFAULT 'random',
        image_size INTEGER NOT NULL DEFAULT 64,
        backend TEXT NOT NULL DEFAULT 'local'
    );
    CREATE TABLE jobs (
        id TEXT PRIMARY KEY,
        dataset TEXT NOT NULL,
        state TEXT NOT NULL,
        backend TEXT NOT NULL DEFAULT 'local',
        created REAL NOT NULL,
        started REAL,
        ended REAL,
        job_dir TEXT NOT NULL DEFAULT '',
        options TEXT NOT NULL DEFAULT '{}',
        error TEXT NOT NULL DEFAULT '',
        step INTEGER NOT NULL DEFAULT 0,
        max_steps INTEGER NOT NULL DEFAULT 0,
        images_per_sec REAL,
        pid INTEGER,
        remote TEXT NOT NULL DEFAULT '{}'
    );
    CREATE INDEX jobs_state ON jobs(state);
    CREATE TABLE models (
        name TEXT NOT NULL,
        version INTEGER NOT NULL,
        job_id TEXT NOT NULL,
        path TEXT NOT NULL,
        created REAL NOT NULL,
        deployed INTEGER NOT NULL DEFAULT 1,
        backend TEXT NOT NULL DEFAULT 'local',
        metrics TEXT NOT NULL DEFAULT '{}',
        info TEXT NOT NULL DEFAULT '{}',
        remote TEXT NOT NULL DEFAULT '{}',
        PRIMARY KEY (name, version)
    );
    """,
    # 2: the trainer's estimate of the training time left (status.json's seconds_left): the
    # ETA from images/s needed the batch, which a job's options do not always name
    "ALTER TABLE jobs ADD COLUMN seconds_left REAL",
]

_JSON_COLS = {"options", "remote", "metrics", "info"}
_NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")


def valid_name(name: object, max_len: int = 64) -> bool:
    """A dataset or model name: letters, digits, '.', '_', '-', starting with a letter or digit.

    `fullmatch`, not `match` with `$`: `$` also matches before a trailing newline, and a
    name ending in one could be created but never typed again to remove it.
    """
    return isinstance(name, str) and 0 < len(name) <= max_len and _NAME_RE.fullmatch(name) is not None


class Registry:
    """Typed access to the registry tables. Cheap to create; one connection per instance."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        # One connection, shared by the threads of one process (the TUI's workers): a lock
        # keeps a transaction or a read from interleaving with another thread's.
        self._lock = threading.RLock()
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._conn = sqlite3.connect(str(self.path), timeout=BUSY_TIMEOUT_MS / 1000,
                                         isolation_level=None, check_same_thread=False)
            self._conn.row_factory = sqlite3.Row
            self._conn.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")
            self._conn.execute("PRAGMA journal_mode=WAL")
            self._conn.execute("PRAGMA synchronous=NORMAL")
            self._conn.execute("PRAGMA foreign_keys=ON")
            self._migrate()
        except sqlite3.DatabaseError as exc:
            raise StorageError(f"The registry {self.path} cannot be opened: {exc}.",
                               "If the disk is full, free space. If the file is damaged, run `genml doctor --fix`: "
                               "it moves the file aside and registers the datasets and jobs again from their "
                               "folders (model names must be deployed again).") from exc

    def close(self) -> None:
        with self._lock:
            self._conn.close()

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """BEGIN IMMEDIATE: take the write lock up front so two writers queue instead of failing."""
        with self._lock:
            self._conn.execute("BEGIN IMMEDIATE")
            try:
                yield self._conn
            except BaseException:
                self._conn.execute("ROLLBACK")
                raise
            else:
                self._conn.execute("COMMIT")

    def _all(self, sql: str, args: tuple[Any, ...] | list[Any] = ()) -> list[sqlite3.Row]:
        with self._lock:
            return self._conn.execute(sql, args).fetchall()

    def _one(self, sql: str, args: tuple[Any, ...] | list[Any] = ()) -> sqlite3.Row | None:
        with self._lock:
            row: sqlite3.Row | None = self._conn.execute(sql, args).fetchone()
            return row

    @property
    def schema_version(self) -> int:
        row = self._one("PRAGMA user_version")
        return int(row[0]) if row is not None else 0

    def _migrate(self) -> None:
        with self.transaction() as c:
            version = int(c.execute("PRAGMA user_version").fetchone()[0])
            if version > len(MIGRATIONS):
                raise StorageError(f"The registry {self.path} was written by a newer genml (schema {version}).",
                                   "Upgrade genml: pip install -U genml.")
            for i in range(version, len(MIGRATIONS)):
                for stmt in MIGRATIONS[i].split(";"):
                    if stmt.strip():
                        c.execute(stmt)
                c.execute(f"PRAGMA user_version={i + 1}")

    # ---- helpers -------------------------------------------------------------------
    @staticmethod
    def _row(row: sqlite3.Row) -> dict[str, Any]:
        d = dict(row)
        for k in _JSON_COLS & d.keys():
            d[k] = json.loads(d[k] or "{}")
        return d

    @staticmethod
    def _cols(values: dict[str, Any]) -> dict[str, Any]:
        out = {}
        for k, v in values.items():
            if k in _JSON_COLS:
                v = json.dumps(v)
            elif isinstance(v, JobState):
                v = v.value
            elif isinstance(v, bool):
                v = int(v)
            out[k] = v
        return out

    @classmethod
    def _insert_row(cls, c: sqlite3.Connection, table: str, record: dict[str, Any]) -> None:
        values = cls._cols(record)
        c.execute(f"INSERT INTO {table} ({', '.join(values)}) VALUES ({', '.join(':' + k for k in values)})", values)

    def _insert(self, table: str, record: dict[str, Any], what: str) -> None:
        try:
            with self.transaction() as c:
                self._insert_row(c, table, record)
        except sqlite3.IntegrityError as exc:
            raise AlreadyExists(f"{what} already exists.", "Pick another name, or remove the old one first.") from exc

    # ---- datasets ------------------------------------------------------------------
    def add_dataset(self, ds: Dataset, replace: bool = False) -> None:
        if replace:
            with self.transaction() as c:
                c.execute("DELETE FROM datasets WHERE name = ?", (ds.name,))
                self._insert_row(c, "datasets", ds.to_dict())
        else:
            self._insert("datasets", ds.to_dict(), f"A dataset named {ds.name!r}")

    def get_dataset(self, name: str) -> Dataset:
        row = self._one("SELECT * FROM datasets WHERE name = ?", (name,))
        if row is None:
            raise NotFound(f"No dataset named {name!r}.",
                           "See `genml dataset list`, or add one with `genml dataset add PATH --name NAME`.")
        return Dataset(**self._row(row))

    def list_datasets(self) -> list[Dataset]:
        return [Dataset(**self._row(r)) for r in self._all("SELECT * FROM datasets ORDER BY created")]

    def remove_dataset(self, name: str) -> None:
        with self.transaction() as c:
            if c.execute("DELETE FROM datasets WHERE name = ?", (name,)).rowcount == 0:
                raise NotFound(f"No dataset named {name!r}.", "See `genml dataset list`.")

    # ---- jobs ----------------------------------------------------------------------
    def add_job(self, job: Job) -> None:
        self._insert("jobs", job.to_dict(), f"A job with id {job.id!r}")

    def get_job(self, job_id: str) -> Job:
        row = self._one("SELECT * FROM jobs WHERE id = ?", (job_id,))
        if row is None:
            raise NotFound(f"No job with id {job_id!r}.", "See `genml jobs list`.")
        d = self._row(row)
        d["state"] = JobState(d["state"])
        return Job(**d)

    def list_jobs(self, states: list[JobState] | None = None) -> list[Job]:
        sql, args = "SELECT * FROM jobs", []
        if states:
            sql += " WHERE state IN (" + ",".join("?" * len(states)) + ")"
            args = [s.value for s in states]
        jobs = []
        for r in self._all(sql + " ORDER BY created", args):
            d = self._row(r)
            d["state"] = JobState(d["state"])
            jobs.append(Job(**d))
        return jobs

    def update_job(self, job_id: str, expect: list[JobState] | None = None, **values: Any) -> bool:
        """Update fields of a job; with `expect`, only if its state is one of those (compare-and-set)."""
        values = self._cols(values)
        sets = ", ".join(f"{k} = :{k}" for k in values)
        sql = f"UPDATE jobs SET {sets} WHERE id = :_id"
        params = dict(values, _id=job_id)
        if expect:
            sql += " AND state IN (" + ",".join(f":_s{i}" for i in range(len(expect))) + ")"
            params.update({f"_s{i}": s.value for i, s in enumerate(expect)})
        with self.transaction() as c:
            return c.execute(sql, params).rowcount == 1

    # ---- models --------------------------------------------------------------------
    def add_model_version(self, name: str, job_id: str, path: str, backend: str = "local",
                          metrics: dict[str, Any] | None = None, info: dict[str, Any] | None = None,
                          remote: dict[str, Any] | None = None) -> ModelVersion:
        """Register the next version of `name` atomically, so two deploys never share a number."""
        with self.transaction() as c:
            v = c.execute("SELECT COALESCE(MAX(version), 0) + 1 FROM models WHERE name = ?", (name,)).fetchone()[0]
            mv = ModelVersion(name=name, version=int(v), job_id=job_id, path=path, created=time.time(),
                              deployed=True, backend=backend, metrics=metrics or {}, info=info or {},
                              remote=remote or {})
            self._insert_row(c, "models", mv.to_dict())
        return mv

    def get_model(self, name: str, version: int | None = None) -> ModelVersion:
        if version is None:
            row = self._one("SELECT * FROM models WHERE name = ? ORDER BY deployed DESC, version DESC LIMIT 1", (name,))
        else:
            row = self._one("SELECT * FROM models WHERE name = ? AND version = ?", (name, version))
        if row is None:
            which = name if version is None else f"{name}@v{version}"
            raise NotFound(f"No model named {which!r}.",
                           "See `genml models list`, or deploy one with `genml models deploy JOB`.")
        d = self._row(row)
        d["deployed"] = bool(d["deployed"])
        return ModelVersion(**d)

    def list_models(self) -> list[ModelVersion]:
        out = []
        for r in self._all("SELECT * FROM models ORDER BY name, version"):
            d = self._row(r)
            d["deployed"] = bool(d["deployed"])
            out.append(ModelVersion(**d))
        return out

    def update_model(self, name: str, version: int, **values: Any) -> None:
        values = self._cols(values)
        sets = ", ".join(f"{k} = :{k}" for k in values)
        with self.transaction() as c:
            if c.execute(f"UPDATE models SET {sets} WHERE name = :_n AND version = :_v",
                         dict(values, _n=name, _v=version)).rowcount == 0:
                raise NotFound(f"No model {name}@v{version}.", "See `genml models list`.")

    def update_model_if(self, mv: ModelVersion, **values: Any) -> bool:
        """Update a model only if its remote and deployed columns are still what `mv` holds: a
        list that read the row before asking the cloud must not undo a deploy that finished
        meanwhile. False (nothing written) when the row changed or is gone."""
        with self.transaction() as c:
            row = c.execute("SELECT remote, deployed FROM models WHERE name = ? AND version = ?",
                            (mv.name, mv.version)).fetchone()
            if row is None or json.loads(row["remote"] or "{}") != mv.remote or bool(row["deployed"]) != mv.deployed:
                return False
            values = self._cols(values)
            sets = ", ".join(f"{k} = :{k}" for k in values)
            c.execute(f"UPDATE models SET {sets} WHERE name = :_n AND version = :_v",
                      dict(values, _n=mv.name, _v=mv.version))
            return True

    def remove_model(self, name: str, version: int | None = None) -> int:
        with self.transaction() as c:
            if version is None:
                n = c.execute("DELETE FROM models WHERE name = ?", (name,)).rowcount
            else:
                n = c.execute("DELETE FROM models WHERE name = ? AND version = ?", (name, version)).rowcount
        if n == 0:
            raise NotFound(f"No model named {name!r}" + (f" with version {version}" if version else "") + ".",
                           "See `genml models list`.")
        return n


def parse_model_ref(ref: str) -> tuple[str, int | None]:
    """'faces' -> ('faces', None) meaning the newest deployed; 'faces@v3' or 'faces@3' -> ('faces', 3)."""
    if "@" in ref:
        name, _, v = ref.partition("@")
        v = v.lstrip("vV")
        if not v.isdigit():
            from core.errors import InvalidInput
            raise InvalidInput(f"{ref!r} is not a model reference.", "Use NAME or NAME@vN, e.g. faces@v2.")
        return name, int(v)
    return ref, None
