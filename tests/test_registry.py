"""The registry is an SQLite database: concurrent writers lose nothing, a history is kept, the JSON registry
migrates once, and a damaged or locked database is a clear error."""

import json
import multiprocessing
import sqlite3
import subprocess
import sys

import pytest

from clonetrain.product import registry
from clonetrain.product.registry import RegistryError


def _add(root, clone, n):
    for i in range(n):
        registry.add_version(root, clone, f"v{i + 1:04d}", {"path": f"clones/{clone}/v{i + 1:04d}", "metrics": {}})


def test_versions_promotion_and_history(tmp_path):
    _add(tmp_path, "anna", 2)
    registry.promote(tmp_path, "anna", "v0001", "first")
    registry.promote(tmp_path, "anna", "v0002", "better")
    data = registry.read(tmp_path)["clones"]["anna"]
    assert data["live"] == "v0002" and data["versions"]["v0001"]["status"] == "retired"
    assert [h["event"] for h in data["history"]] == ["add", "add", "promote", "promote"]
    assert data["history"][-1]["previous"] == "v0001"
    assert registry.live_path(tmp_path, "anna") == tmp_path / "clones/anna/v0002"
    assert registry.next_version(tmp_path, "anna") == "v0003"
    with pytest.raises(RegistryError, match="already has a version 'v0001'"):
        registry.add_version(tmp_path, "anna", "v0001", {})
    with pytest.raises(RegistryError, match="has no version 'v0009'"):
        registry.promote(tmp_path, "anna", "v0009", "?")
    assert registry.take_down(tmp_path, "anna", "consent revoked") == "v0002"
    assert registry.live(tmp_path, "anna") is None
    assert registry.read(tmp_path)["clones"]["anna"]["versions"]["v0002"]["status"] == "withdrawn"


def _writer(root, clone):
    _add(root, clone, 15)


def test_concurrent_writers_lose_no_entry(tmp_path):
    procs = [multiprocessing.get_context("spawn").Process(target=_writer, args=(tmp_path, f"c{i}")) for i in range(3)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(60)
    assert all(p.exitcode == 0 for p in procs)
    clones = registry.read(tmp_path)["clones"]
    assert {c: len(v["versions"]) for c, v in clones.items()} == {"c0": 15, "c1": 15, "c2": 15}


def test_json_registry_migrates_once(tmp_path):
    legacy = {"clones": {"anna": {"live": "v0001", "versions": {
        "v0001": {"created": "2026-01-01T00:00:00+00:00", "status": "live", "path": "clones/anna/v0001",
                  "package_sha256": "ab", "metrics": {"lmd_mouth": 0.02}}},
        "history": [{"time": "2026-01-01T00:00:00+00:00", "live": "v0001", "previous": None, "reason": "first"}]}}}
    (tmp_path / "registry.json").write_text(json.dumps(legacy))
    assert registry.live(tmp_path, "anna")[0] == "v0001"  # readable before any write
    registry.add_version(tmp_path, "anna", "v0002", {"path": "clones/anna/v0002"})
    assert not (tmp_path / "registry.json").exists() and (tmp_path / "registry.json.migrated").is_file()
    data = registry.read(tmp_path)["clones"]["anna"]
    assert data["live"] == "v0001" and data["versions"]["v0001"]["package_sha256"] == "ab"
    assert set(data["versions"]) == {"v0001", "v0002"}
    (tmp_path / "registry.json").write_text(json.dumps(legacy))  # a stray old file is not imported twice
    registry.add_version(tmp_path, "anna", "v0003", {"path": "clones/anna/v0003"})
    assert len(registry.read(tmp_path)["clones"]["anna"]["history"]) == 3


def test_damaged_registries_are_clear_errors(tmp_path):
    (tmp_path / "registry.json").write_text("{not json")
    with pytest.raises(RegistryError, match="damaged and cannot be migrated"):
        registry.read(tmp_path)
    (tmp_path / "registry.json").unlink()
    (tmp_path / "registry.db").write_bytes(b"garbage, not an SQLite file" * 100)
    with pytest.raises(RegistryError, match="cannot be read"):
        registry.live(tmp_path, "anna")
    proc = subprocess.run([sys.executable, "-m", "clonetrain", "registry", "--root", str(tmp_path), "list"],
                          capture_output=True, text=True)
    assert proc.returncode == 2 and "cannot be read" in proc.stderr and "Traceback" not in proc.stderr


def test_a_locked_registry_is_a_clear_error(tmp_path, monkeypatch):
    _add(tmp_path, "anna", 1)
    holder = sqlite3.connect(tmp_path / "registry.db", isolation_level=None)
    holder.execute("BEGIN EXCLUSIVE")
    monkeypatch.setattr(registry, "BUSY_TIMEOUT_S", 0.2)
    try:
        with pytest.raises(RegistryError, match="locked by another process"):
            registry.add_version(tmp_path, "anna", "v0002", {})
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    registry.add_version(tmp_path, "anna", "v0002", {})


def test_list_has_one_row_per_version_and_columns_can_be_added(tmp_path):
    _add(tmp_path, "anna", 2)
    lines = registry.table(registry.read(tmp_path)).splitlines()
    assert lines[0].split()[:3] == ["clone", "version", "status"] and len(lines) == 3
    extra = [*registry.COLUMNS, registry.Column("verdict", 8, lambda c, v, e: e.get("verdict", "-"))]
    assert registry.table(registry.read(tmp_path), columns=extra).splitlines()[0].endswith("verdict")
