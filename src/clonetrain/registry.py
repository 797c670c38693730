"""The registry of packaged clones and versions: data/registry.json (one JSON file, written atomically under
a lock). It records, per clone, every version with its metrics, source takes and time, and which one is live.

    python -m clonetrain.registry list [--root data]
    python -m clonetrain.registry show CLONE
    python -m clonetrain.registry promote CLONE VERSION
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import json
import sys
from datetime import datetime, timezone
from pathlib import Path
from typing import Iterator

from clonetrain.workspace import write_json_atomic

FILENAME = "registry.json"


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def read(root: Path) -> dict:
    p = Path(root) / FILENAME
    return json.loads(p.read_text()) if p.is_file() else {"clones": {}}


@contextlib.contextmanager
def editing(root: Path) -> Iterator[dict]:
    """Read-modify-write under an exclusive lock; the file is replaced atomically."""
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    with open(root / ".registry.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        data = read(root)
        yield data
        write_json_atomic(root / FILENAME, data)


def next_version(root: Path, clone: str) -> str:
    known = set(read(root)["clones"].get(clone, {}).get("versions", {}))
    folder = Path(root) / "clones" / clone
    known |= {p.name for p in folder.iterdir()} if folder.is_dir() else set()
    numbers = [int(v[1:]) for v in known if v.startswith("v") and v[1:].isdigit()]
    return f"v{max(numbers, default=0) + 1:04d}"


def add_version(root: Path, clone: str, version: str, entry: dict) -> None:
    with editing(root) as data:
        c = data["clones"].setdefault(clone, {"live": None, "versions": {}, "history": []})
        c["versions"][version] = {"created": _now(), "status": "candidate", **entry}


def promote(root: Path, clone: str, version: str, reason: str) -> None:
    with editing(root) as data:
        c = data["clones"].get(clone)
        if not c or version not in c["versions"]:
            raise KeyError(f"clone {clone!r} has no version {version!r}")
        previous = c["live"]
        if previous and previous in c["versions"]:
            c["versions"][previous]["status"] = "retired"
        c["live"] = version
        c["versions"][version]["status"] = "live"
        c["history"].append({"time": _now(), "live": version, "previous": previous, "reason": reason})


def mark(root: Path, clone: str, version: str, status: str, reason: str) -> None:
    with editing(root) as data:
        v = data["clones"][clone]["versions"][version]
        v["status"], v["reason"] = status, reason


def live(root: Path, clone: str) -> tuple[str, dict] | None:
    c = read(root)["clones"].get(clone)
    if not c or not c.get("live"):
        return None
    return c["live"], c["versions"][c["live"]]


def live_path(root: Path, clone: str) -> Path | None:
    entry = live(root, clone)
    return Path(root) / entry[1]["path"] if entry else None


def _verdict(root: Path | None, entry: dict) -> str:
    """The version's verdict as stage=evaluate judged it, read from its package's metrics.json."""
    from clonetrain import verdict

    return verdict.short(verdict.read(Path(root) / entry["path"])) if root and entry.get("path") else "-"


def _table(data: dict, only: str | None, root: Path | None = None) -> str:
    lines = [f"{'clone':<16} {'version':<8} {'status':<10} {'created':<26} {'mouth r':>8} {'LMD':>7} {'takes':>5}  verdict"]
    for clone, c in sorted(data["clones"].items()):
        if only and clone != only:
            continue
        for version, v in sorted(c["versions"].items()):
            m = v.get("metrics") or {}
            r = m.get("mouth_open_corr")
            lmd = m.get("lmd_mouth")
            lines.append(f"{clone:<16} {version:<8} {v['status']:<10} {v['created']:<26} "
                         f"{r if r is not None else '-':>8} {lmd if lmd is not None else '-':>7} {len(v.get('takes', [])):>5}  "
                         f"{_verdict(root, v)}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    from clonetrain.config import default_data_root

    ap = argparse.ArgumentParser(prog="python -m clonetrain.registry", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--root", type=Path, default=Path(default_data_root()))
    sub = ap.add_subparsers(dest="cmd", required=True)
    sub.add_parser("list")
    show = sub.add_parser("show")
    show.add_argument("clone")
    pr = sub.add_parser("promote")
    pr.add_argument("clone")
    pr.add_argument("version")
    args = ap.parse_args(argv)
    data = read(args.root)
    if args.cmd == "list":
        print(_table(data, None, args.root))
    elif args.cmd == "show":
        print(json.dumps(data["clones"].get(args.clone, {}), indent=2))
    else:
        try:
            promote(args.root, args.clone, args.version, "promoted by hand")
        except KeyError as err:
            print(err.args[0], file=sys.stderr)
            return 2
        print(f"{args.clone}: {args.version} is live")
    return 0


if __name__ == "__main__":
    sys.exit(main())
