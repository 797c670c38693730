"""The registry of packaged clones and versions: data/registry.db, an SQLite database (WAL, one transaction per
change), so concurrent nightly runs and promotions never lose an entry. It records, per clone, every version with
its metrics, source takes and time, which one is live, and a history of every change.

    python -m clonetrain registry list [--root data]
    python -m clonetrain registry show CLONE
    python -m clonetrain registry history CLONE
    python -m clonetrain registry promote CLONE VERSION

A registry.json from an older clonetrain is migrated once (and kept, renamed registry.json.migrated).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sqlite3
import sys
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable, Iterator

from clonetrain.contract import metrics as declared
from clonetrain.core.errors import ClonetrainError

FILENAME = "registry.db"
LEGACY = "registry.json"
BUSY_TIMEOUT_S = 30.0

SCHEMA = """
CREATE TABLE IF NOT EXISTS clones (clone TEXT PRIMARY KEY, live TEXT);
CREATE TABLE IF NOT EXISTS versions (
    clone TEXT NOT NULL, version TEXT NOT NULL, status TEXT NOT NULL, created TEXT NOT NULL,
    reason TEXT, entry TEXT NOT NULL, PRIMARY KEY (clone, version));
CREATE TABLE IF NOT EXISTS history (
    id INTEGER PRIMARY KEY AUTOINCREMENT, time TEXT NOT NULL, clone TEXT NOT NULL, version TEXT,
    event TEXT NOT NULL, previous TEXT, reason TEXT);
"""


class RegistryError(ClonetrainError):
    """The registry database is damaged, locked, or asked for a version it does not have."""


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def db_path(root: str | os.PathLike) -> Path:
    return Path(root) / FILENAME


def _fail(root: Path, err: sqlite3.Error) -> RegistryError:
    path = db_path(root)
    if isinstance(err, sqlite3.OperationalError) and "locked" in str(err):
        return RegistryError(f"the registry {path} is locked by another process (waited {BUSY_TIMEOUT_S:g} s)",
                             "wait for the other nightly run or promotion to finish, then try again")
    return RegistryError(f"the registry {path} cannot be read: {err}",
                         f"restore {path} from a backup, or move it away: the next run re-registers every verified "
                         f"package under {Path(root) / 'clones'} as a candidate (live versions must then be promoted again)")


@contextlib.contextmanager
def connect(root: str | os.PathLike, write: bool = False) -> Iterator[sqlite3.Connection]:
    """A connection in one transaction (committed on success, rolled back on error). Reads of a registry that does
    not exist yet see an empty one without creating it."""
    root = Path(root)
    path = db_path(root)
    con = None
    if write or path.exists():
        root.mkdir(parents=True, exist_ok=True)
        con = _open(root, write)
    if con is None:  # nothing to read yet, or a database file without our tables, only read: an empty registry
        con = _empty(root)
        try:
            yield con
        finally:
            con.close()
        return
    migrated = False
    try:
        if write:
            for stmt in filter(str.strip, SCHEMA.split(";")):
                con.execute(stmt)
            migrated = not con.execute("SELECT 1 FROM history LIMIT 1").fetchone() and _migrate_legacy(root, con)
        yield con
        con.execute("COMMIT")
        if migrated:  # only once the database holds it; the old file is kept, renamed
            os.replace(root / LEGACY, root / (LEGACY + ".migrated"))
    except sqlite3.Error as err:
        with contextlib.suppress(sqlite3.Error):
            con.execute("ROLLBACK")
        raise _fail(root, err) from None
    except BaseException:
        with contextlib.suppress(sqlite3.Error):
            con.execute("ROLLBACK")
        raise
    finally:
        con.close()


def _open(root: Path, write: bool) -> sqlite3.Connection | None:
    """A connection inside a begun transaction (a writer's IMMEDIATE: it holds the write lock before it reads, so
    two read-modify-writes never interleave). Some lock conflicts (switching to WAL, recovering the WAL index) are
    reported at once instead of waiting, so the start is retried until BUSY_TIMEOUT_S has passed."""
    deadline = time.monotonic() + BUSY_TIMEOUT_S
    while True:
        con = None
        try:
            con = sqlite3.connect(db_path(root), timeout=BUSY_TIMEOUT_S, isolation_level=None)
            con.execute("PRAGMA busy_timeout=%d" % int(BUSY_TIMEOUT_S * 1000))
            tables = {n for (n,) in con.execute("SELECT name FROM sqlite_master WHERE type='table'")}
            if not write and "versions" not in tables:
                con.close()
                return None
            if write and con.execute("PRAGMA journal_mode").fetchone()[0].lower() != "wal":
                con.execute("PRAGMA journal_mode=WAL")
            con.execute("BEGIN IMMEDIATE" if write else "BEGIN")
            return con
        except sqlite3.Error as err:
            if con is not None:
                con.close()
            if "locked" in str(err) and time.monotonic() < deadline:
                time.sleep(0.05)
                continue
            raise _fail(root, err) from None


def _empty(root: Path) -> sqlite3.Connection:
    """An in-memory registry for reads before the database exists (showing a not yet migrated registry.json)."""
    con = sqlite3.connect(":memory:")
    con.executescript(SCHEMA)
    _migrate_legacy(root, con)
    return con


def _migrate_legacy(root: Path, con: sqlite3.Connection) -> bool:
    """Copy registry.json (the format before SQLite) into the database, once."""
    legacy = root / LEGACY
    if not legacy.is_file():
        return False
    try:
        data = json.loads(legacy.read_text())
        clones = data["clones"]
    except (json.JSONDecodeError, KeyError, TypeError, UnicodeDecodeError) as err:
        raise RegistryError(f"the old registry {legacy} is damaged and cannot be migrated ({err})",
                            f"restore it from a backup, or move it away: the next run re-registers every verified "
                            f"package under {root / 'clones'}") from None
    for clone, c in clones.items():
        con.execute("INSERT OR REPLACE INTO clones (clone, live) VALUES (?, ?)", (clone, c.get("live")))
        for version, v in c.get("versions", {}).items():
            entry = {k: val for k, val in v.items() if k not in ("status", "created", "reason")}
            con.execute("INSERT OR REPLACE INTO versions VALUES (?, ?, ?, ?, ?, ?)",
                        (clone, version, v.get("status", "candidate"), v.get("created", _now()), v.get("reason"),
                         json.dumps(entry)))
        for h in c.get("history", []):
            con.execute("INSERT INTO history (time, clone, version, event, previous, reason) VALUES (?,?,?,?,?,?)",
                        (h.get("time", _now()), clone, h.get("live"), "promote", h.get("previous"), h.get("reason")))
    con.execute("INSERT INTO history (time, clone, event, reason) VALUES (?, '*', 'migrate', ?)",
                (_now(), f"imported {legacy.name}"))
    return True


def _history(con: sqlite3.Connection, clone: str, version: str | None, event: str, previous: str | None,
             reason: str) -> None:
    con.execute("INSERT INTO history (time, clone, version, event, previous, reason) VALUES (?, ?, ?, ?, ?, ?)",
                (_now(), clone, version, event, previous, reason))


def _version_row(row) -> dict:
    status, created, reason, entry = row
    return {"created": created, "status": status, **({"reason": reason} if reason else {}), **json.loads(entry)}


def read(root: str | os.PathLike) -> dict:
    """The whole registry as {"clones": {clone: {"live", "versions": {version: entry}, "history": [...]}}}."""
    data: dict = {"clones": {}}
    with connect(root) as con:
        for clone, live_v in con.execute("SELECT clone, live FROM clones ORDER BY clone"):
            data["clones"][clone] = {"live": live_v, "versions": {}, "history": []}
        for clone, version, *rest in con.execute(
                "SELECT clone, version, status, created, reason, entry FROM versions ORDER BY clone, version"):
            data["clones"].setdefault(clone, {"live": None, "versions": {}, "history": []})
            data["clones"][clone]["versions"][version] = _version_row(rest)
        for time_, clone, version, event, previous, reason in con.execute(
                "SELECT time, clone, version, event, previous, reason FROM history ORDER BY id"):
            if clone in data["clones"]:
                data["clones"][clone]["history"].append({"time": time_, "event": event, "live" if event == "promote"
                                                         else "version": version, "previous": previous,
                                                         "reason": reason})
    return data


def version(root: str | os.PathLike, clone: str, ver: str) -> dict | None:
    with connect(root) as con:
        row = con.execute("SELECT status, created, reason, entry FROM versions WHERE clone=? AND version=?",
                          (clone, ver)).fetchone()
    return _version_row(row) if row else None


def next_version(root: Path, clone: str) -> str:
    with connect(root) as con:
        known = {v for (v,) in con.execute("SELECT version FROM versions WHERE clone=?", (clone,))}
    folder = Path(root) / "clones" / clone
    known |= {p.name for p in folder.iterdir()} if folder.is_dir() else set()
    numbers = [int(v[1:]) for v in known if v.startswith("v") and v[1:].isdigit()]
    return f"v{max(numbers, default=0) + 1:04d}"


def add_version(root: Path, clone: str, version: str, entry: dict, status: str = "candidate",
                reason: str | None = None) -> None:
    with connect(root, write=True) as con:
        con.execute("INSERT OR IGNORE INTO clones (clone, live) VALUES (?, NULL)", (clone,))
        if con.execute("SELECT 1 FROM versions WHERE clone=? AND version=?", (clone, version)).fetchone():
            raise RegistryError(f"clone {clone!r} already has a version {version!r} in the registry",
                                "a version is never replaced; build a new one")
        con.execute("INSERT INTO versions VALUES (?, ?, ?, ?, ?, ?)",
                    (clone, version, status, _now(), reason, json.dumps(entry)))
        _history(con, clone, version, "add", None, reason or status)


def promote(root: Path, clone: str, version: str, reason: str) -> None:
    with connect(root, write=True) as con:
        if not con.execute("SELECT 1 FROM versions WHERE clone=? AND version=?", (clone, version)).fetchone():
            raise RegistryError(f"clone {clone!r} has no version {version!r}",
                                "list the versions: python -m clonetrain registry list")
        (previous,) = con.execute("SELECT live FROM clones WHERE clone=?", (clone,)).fetchone()
        if previous and previous != version:
            con.execute("UPDATE versions SET status='retired' WHERE clone=? AND version=?", (clone, previous))
        con.execute("UPDATE clones SET live=? WHERE clone=?", (version, clone))
        con.execute("UPDATE versions SET status='live', reason=? WHERE clone=? AND version=?", (reason, clone, version))
        _history(con, clone, version, "promote", previous, reason)


def take_down(root: Path, clone: str, reason: str) -> str | None:
    """No version is live any more (consent withdrawn); the one that was is marked withdrawn. Returns it."""
    with connect(root, write=True) as con:
        row = con.execute("SELECT live FROM clones WHERE clone=?", (clone,)).fetchone()
        previous = row[0] if row else None
        if previous:
            con.execute("UPDATE clones SET live=NULL WHERE clone=?", (clone,))
            con.execute("UPDATE versions SET status='withdrawn', reason=? WHERE clone=? AND version=?",
                        (reason, clone, previous))
            _history(con, clone, None, "take_down", previous, reason)
    return previous


def mark(root: Path, clone: str, version: str, status: str, reason: str) -> None:
    with connect(root, write=True) as con:
        cur = con.execute("UPDATE versions SET status=?, reason=? WHERE clone=? AND version=?",
                          (status, reason, clone, version))
        if cur.rowcount == 0:
            raise RegistryError(f"clone {clone!r} has no version {version!r}")
        _history(con, clone, version, status, None, reason)


def live(root: Path, clone: str) -> tuple[str, dict] | None:
    with connect(root) as con:
        row = con.execute("SELECT live FROM clones WHERE clone=?", (clone,)).fetchone()
        if not row or not row[0]:
            return None
        v = con.execute("SELECT status, created, reason, entry FROM versions WHERE clone=? AND version=?",
                        (clone, row[0])).fetchone()
    return (row[0], _version_row(v)) if v else None


def live_path(root: Path, clone: str) -> Path | None:
    entry = live(root, clone)
    return Path(root) / entry[1]["path"] if entry else None


def check_trusted(root: Path, pkg) -> str:
    """Is this package one the studio built? Every file may match its manifest and still be forged (edited, with
    the manifest's hashes recomputed), so the manifest itself must match the hash the registry stored when the
    version was published, or carry a valid signature under the studio's key. Returns how it was trusted;
    raises PackageError."""
    from clonetrain.product import clone_package

    entry = version(root, pkg.clone, pkg.version)
    key = clone_package.signing_key()
    if entry is not None:
        if entry.get("package_sha256") != pkg.manifest_sha256:
            raise clone_package.PackageError(
                f"package {pkg.path} is not the {pkg.clone} {pkg.version} this studio published: its manifest "
                f"differs from the one registered (edited after packaging); refused",
                f"use the published package {Path(root) / entry.get('path', '')}")
        if key is not None and (pkg.path / clone_package.SIGNATURE).exists() and not clone_package.signature_valid(pkg.path, key):
            raise clone_package.PackageError(f"package {pkg.path} has a signature that the studio key does not confirm; refused")
        return "registry"
    if key is not None and clone_package.signature_valid(pkg.path, key):
        return "signature"
    raise clone_package.PackageError(
        f"package {pkg.path} ({pkg.clone} {pkg.version}) is not in the registry {db_path(root)}"
        + (" and carries no valid studio signature" if key is not None else "") + "; refused",
        "render packages this studio published (python -m clonetrain registry list), or sign packages with a studio "
        f"key (${clone_package.SIGNING_KEY_ENV}) to move them between studios")


# The columns of `registry list`: (header, width, value of a version entry). Add a column by appending here; a
# metric's column comes from its declaration (contract.metrics: listed=).
@dataclass(frozen=True)
class Column:
    header: str
    width: int
    value: Callable[[str, str, dict], object]  # (clone, version, entry) -> cell
    right: bool = False


def _metric(key: str) -> Callable[[str, str, dict], object]:
    return lambda clone, version, v: (v.get("metrics") or {}).get(key)


COLUMNS: list[Column] = [
    Column("clone", 16, lambda c, ver, v: c),
    Column("version", 8, lambda c, ver, v: ver),
    Column("status", 10, lambda c, ver, v: v["status"]),
    Column("created", 26, lambda c, ver, v: v["created"]),
    *(Column(m.listed, max(7, len(m.listed) + 1), _metric(m.name), right=True) for m in declared.LISTED),
    Column("takes", 5, lambda c, ver, v: len(v.get("takes", [])), right=True),
    # evaluate's verdict (clonetrain.evaluation.verdict), recorded by the package stage: ok, or how many targets were missed.
    Column("verdict", 18, lambda c, ver, v: _verdict(v)),
]


def _verdict(entry: dict) -> str:
    from clonetrain.evaluation import verdict

    return verdict.short(entry.get("verdict"))


def _cell(value: object, col: Column) -> str:
    text = "-" if value is None else str(value)
    return f"{text:>{col.width}}" if col.right else f"{text:<{col.width}}"


def table(data: dict, only: str | None = None, columns: list[Column] | None = None) -> str:
    columns = columns or COLUMNS
    lines = [" ".join(_cell(c.header, c) for c in columns).rstrip()]
    for clone, c in sorted(data["clones"].items()):
        if only and clone != only:
            continue
        for ver, v in sorted(c["versions"].items()):
            lines.append(" ".join(_cell(col.value(clone, ver, v), col) for col in columns).rstrip())
    return "\n".join(lines)


_table = table  # the name used before


def main(argv: list[str] | None = None) -> int:
    from clonetrain.core.config import default_data_root

    ap = argparse.ArgumentParser(prog="python -m clonetrain registry", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--root", type=Path, default=Path(default_data_root()))
    sub = ap.add_subparsers(dest="cmd", required=True)
    sub.add_parser("list")
    for name in ("show", "history"):
        sub.add_parser(name).add_argument("clone")
    pr = sub.add_parser("promote")
    pr.add_argument("clone")
    pr.add_argument("version")
    args = ap.parse_args(argv)
    try:
        if args.cmd == "promote":
            promote(args.root, args.clone, args.version, "promoted by hand")
            print(f"{args.clone}: {args.version} is live")
            return 0
        data = read(args.root)
        if args.cmd == "list":
            print(table(data))
        elif args.cmd == "show":
            print(json.dumps(data["clones"].get(args.clone, {}), indent=2))
        else:
            for h in data["clones"].get(args.clone, {}).get("history", []):
                print(f"{h['time']}  {h['event']:<10} {h.get('live') or h.get('version') or '-':<8} "
                      f"(before: {h.get('previous') or '-'})  {h.get('reason') or ''}")
    except ClonetrainError as err:
        print(err, file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
