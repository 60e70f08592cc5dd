from __future__ import annotations

import multiprocessing as mp
from pathlib import Path

import pytest

from core import config
from core.errors import AlreadyExists, InvalidInput, NotFound
from core.registry import MIGRATIONS, Registry, parse_model_ref
from core.types import Dataset, Job, JobState


def test_schema_is_migrated_and_versioned(tmp_path: Path) -> None:
    reg = Registry(tmp_path / "r.sqlite")
    assert reg.schema_version == len(MIGRATIONS)
    mode = reg._conn.execute("PRAGMA journal_mode").fetchone()[0]
    assert mode == "wal"
    reg.close()
    # re-opening does not re-run migrations
    assert Registry(tmp_path / "r.sqlite").schema_version == len(MIGRATIONS)


def test_a_first_schema_registry_gains_seconds_left_and_keeps_its_jobs(tmp_path: Path) -> None:
    """A workspace made by a genml before migration 2 opens in this one, its rows intact."""
    import sqlite3
    path = tmp_path / "r.sqlite"
    conn = sqlite3.connect(path)
    conn.executescript(MIGRATIONS[0] + "; PRAGMA user_version=1;")
    conn.execute("INSERT INTO jobs (id, dataset, state, created, step, max_steps, images_per_sec) "
                 "VALUES ('old', 'd', 'JOB_STATE_RUNNING', 1.0, 10, 110, 64.0)")
    conn.commit()
    conn.close()
    reg = Registry(path)
    assert reg.schema_version == len(MIGRATIONS) >= 2
    old = reg.get_job("old")
    assert old.seconds_left is None and old.step == 10
    # Without the trainer's estimate the ETA falls back to images/s and the batch (64 unnamed).
    assert old.eta_seconds == pytest.approx(100 * 64 / 64.0)
    assert reg.update_job("old", seconds_left=42.5)
    assert reg.get_job("old").eta_seconds == 42.5       # the trainer's estimate wins
    reg.update_job("old", state=JobState.SUCCEEDED)
    assert reg.get_job("old").eta_seconds is None


def test_newer_schema_is_refused(tmp_path: Path) -> None:
    reg = Registry(tmp_path / "r.sqlite")
    reg._conn.execute("PRAGMA user_version=999")
    reg.close()
    with pytest.raises(Exception, match="newer genml"):
        Registry(tmp_path / "r.sqlite")


def test_jobs_compare_and_set(tmp_path: Path) -> None:
    reg = Registry(tmp_path / "r.sqlite")
    reg.add_job(Job(id="j1", dataset="d", state=JobState.QUEUED, created=1.0))
    assert reg.update_job("j1", expect=[JobState.QUEUED], state=JobState.RUNNING)
    assert not reg.update_job("j1", expect=[JobState.QUEUED], state=JobState.RUNNING)
    assert reg.get_job("j1").state is JobState.RUNNING
    with pytest.raises(AlreadyExists):
        reg.add_job(Job(id="j1", dataset="d", state=JobState.QUEUED, created=1.0))
    with pytest.raises(NotFound):
        reg.get_job("nope")


def _deploy_many(path: str, n: int) -> None:
    reg = Registry(path)
    for _ in range(n):
        reg.add_model_version("m", "job", "/x")
        reg.list_models()


def test_two_processes_deploying_get_distinct_versions(tmp_path: Path) -> None:
    path = str(tmp_path / "r.sqlite")
    Registry(path).close()
    ctx = mp.get_context("spawn")
    procs = [ctx.Process(target=_deploy_many, args=(path, 25)) for _ in range(2)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(60)
        assert p.exitcode == 0
    versions = [m.version for m in Registry(path).list_models()]
    assert sorted(versions) == list(range(1, 51))


def test_model_refs() -> None:
    assert parse_model_ref("faces") == ("faces", None)
    assert parse_model_ref("faces@v3") == ("faces", 3)
    assert parse_model_ref("faces@3") == ("faces", 3)
    with pytest.raises(InvalidInput):
        parse_model_ref("faces@latest")


def test_dataset_roundtrip(tmp_path: Path) -> None:
    reg = Registry(tmp_path / "r.sqlite")
    reg.add_dataset(Dataset(name="d", path="/p", created=1.0, train_count=9, validation_count=1))
    assert reg.get_dataset("d").train_count == 9
    reg.remove_dataset("d")
    with pytest.raises(NotFound):
        reg.remove_dataset("d")


def test_config_roundtrip_and_errors(tmp_path: Path) -> None:
    p = tmp_path / "c.toml"
    cfg = config.load(p)
    cfg.profiles["cloud"] = {"backend": "vertex", "project": "p", "region": "us-central1", "replicas": 2}
    cfg.max_concurrent_jobs = 3
    config.save(cfg, p)
    again = config.load(p)
    assert again.max_concurrent_jobs == 3
    assert again.profile("cloud")["region"] == "us-central1"
    assert again.profile("cloud")["backend"] == "vertex"
    with pytest.raises(InvalidInput):
        again.profile("nope")
    p.write_text("backend = [", encoding="utf-8")
    with pytest.raises(InvalidInput, match="not valid TOML"):
        config.load(p)


def test_atomic_write_keeps_umask_permissions(tmp_path: Path) -> None:
    import os
    import stat

    from core import atomic
    old = os.umask(0o022)
    atomic._UMASK = 0o022
    try:
        atomic.write_bytes(tmp_path / "a.png", b"x")
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "a.png").stat().st_mode) == 0o644
    assert [p.name for p in tmp_path.iterdir()] == ["a.png"]   # no temporary left behind


def test_one_registry_shared_by_threads(tmp_path: Path) -> None:
    """The TUI's workers share one Registry: writes and reads from threads must not interleave."""
    import threading

    reg = Registry(tmp_path / "r.sqlite")
    errors: list[BaseException] = []

    def work(i: int) -> None:
        try:
            for k in range(20):
                reg.add_job(Job(id=f"j{i}-{k}", dataset="d", state=JobState.QUEUED, created=float(k)))
                reg.update_job(f"j{i}-{k}", expect=[JobState.QUEUED], state=JobState.RUNNING)
                reg.list_jobs()
                reg.add_model_version("m", f"j{i}-{k}", "/x")
        except BaseException as exc:  # noqa: BLE001 - collected and asserted below
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert len(reg.list_jobs([JobState.RUNNING])) == 120
    assert sorted(m.version for m in reg.list_models()) == list(range(1, 121))
