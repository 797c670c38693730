"""The audit log: every action on the page, who did it and when, one JSON line each in <root>/studio/audit.jsonl.

Each line is written with one write() on a file opened O_APPEND, so lines from concurrent requests never
interleave and a crash leaves whole lines only; it is fsynced before the action's answer goes out.
"""

from __future__ import annotations

import json
import os
from datetime import datetime, timezone
from pathlib import Path

FILENAME = "audit.jsonl"


def record(studio_dir: Path, user: str | None, action: str, clone: str | None = None, outcome: str = "ok",
           **details) -> None:
    studio_dir.mkdir(parents=True, exist_ok=True)
    line = json.dumps({"time": datetime.now(timezone.utc).isoformat(timespec="seconds"), "user": user,
                       "action": action, "clone": clone, "outcome": outcome, **details}, default=str) + "\n"
    fd = os.open(studio_dir / FILENAME, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o640)
    try:
        os.write(fd, line.encode())
        os.fsync(fd)
    finally:
        os.close(fd)


def read(studio_dir: Path, clone: str | None = None, last: int = 200) -> list[dict]:
    path = studio_dir / FILENAME
    if not path.is_file():
        return []
    rows = []
    for line in path.read_text().splitlines():
        try:
            row = json.loads(line)
        except json.JSONDecodeError:
            continue
        if clone is None or row.get("clone") == clone:
            rows.append(row)
    return rows[-last:]
