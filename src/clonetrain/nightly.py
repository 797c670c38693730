"""Nightly retraining of every clone: retrain what changed, gate on held-out quality, promote or keep.

    python scripts/nightly.py [--root data] [hydra overrides...]
    python -m clonetrain.nightly [--root data] [hydra overrides...]

For each clone under raw/ (or nightly.clones): run stage=all (every stage whose inputs and config are unchanged
is skipped in seconds; training resumes from its checkpoints after a kill), and when a new package version was
built, promote it only if it is at least as good as the live one on the held-out metrics (nightly.tolerance).
One clone's broken footage or crash never stops the others. A second nightly run while one is running exits at
once. Writes nightly/<time>/summary.json and summary.html (and nightly/latest.json), and logs each clone to the
configured logger (wandb offline by default).
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import logging
import os
import sys
import time
import traceback
from datetime import datetime, timezone
from html import escape
from pathlib import Path
from typing import Iterator

from omegaconf import DictConfig

from clonetrain import pipeline, registry, tracking
from clonetrain.errors import ClonetrainError, LockedError
from clonetrain.evaluation.metrics import HIGHER_IS_BETTER
from clonetrain.voice import package as voice_package
from clonetrain.workspace import Workspace, write_json_atomic, write_text_atomic

log = logging.getLogger(__name__)
PROJECT = Path(__file__).resolve().parents[2]


@contextlib.contextmanager
def nightly_lock(root: Path) -> Iterator[None]:
    root.mkdir(parents=True, exist_ok=True)
    with open(root / ".nightly.lock", "a+") as fh:
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            fh.seek(0)
            raise LockedError(f"another nightly run is in progress (pid {fh.read().strip() or '?'}); exiting") from None
        fh.seek(0)
        fh.truncate()
        fh.write(str(os.getpid()))
        fh.flush()
        yield


def gate(new: dict, live: dict, tolerance: float) -> tuple[bool, list[str]]:
    """Is `new` at least as good as `live` on every held-out metric, within tolerance? Returns (ok, reasons)."""
    worse = []
    for key, higher in {**HIGHER_IS_BETTER, **voice_package.HIGHER_IS_BETTER}.items():
        n, l = new.get(key), live.get(key)
        if l is None:
            continue
        if n is None:
            worse.append(f"{key} missing")
            continue
        slack = tolerance * abs(l)
        if (higher and n < l - slack) or (not higher and n > l + slack):
            worse.append(f"{key} {n} vs live {l}")
    no, lo = new.get("offset_frames"), live.get("offset_frames")
    if lo is not None and (no is None or (abs(no) > 1 and abs(no) > abs(lo))):
        worse.append(f"offset_frames {no} vs live {lo}")
    return not worse, worse


def compose(root: Path, clone: str, overrides: list[str]) -> DictConfig:
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir

    from clonetrain import config

    config.register()
    with initialize_config_dir(config_dir=str(PROJECT / "conf"), version_base="1.3"):
        return hydra_compose("config", overrides=[*overrides, f"paths.root={root}", f"clone={clone}", "stage=all"])


def _clones(root: Path, only: list[str]) -> list[str]:
    raw = root / "raw"
    found = sorted(p.name for p in raw.iterdir() if p.is_dir() and any(p.iterdir())) if raw.is_dir() else []
    return [c for c in found if not only or c in only]


def process_clone(root: Path, clone: str, overrides: list[str]) -> dict:
    started = time.perf_counter()
    row: dict = {"clone": clone}
    cfg = compose(root, clone, overrides)
    ws = Workspace(root, clone)
    statuses = pipeline.run(cfg)
    row["stages"] = statuses
    package = ws.read_manifest("package")
    version = package["details"]["version"]
    entry = registry.read(root)["clones"][clone]["versions"][version]
    live = registry.live(root, clone)
    row["version"], row["metrics"] = version, entry.get("metrics")
    if live and live[0] == version:
        row.update(status="unchanged", reason=f"{version} is live and nothing changed")
    elif entry["status"] in ("rejected", "retired"):
        row.update(status="kept", reason=f"{version} was already judged: {entry.get('reason', entry['status'])}; "
                                          f"live stays {live[0] if live else 'none'}")
    elif live is None:
        registry.promote(root, clone, version, "first version")
        row.update(status="promoted", reason="first version of this clone")
    else:
        ok, worse = gate(entry.get("metrics") or {}, live[1].get("metrics") or {}, cfg.nightly.tolerance)
        if ok:
            registry.promote(root, clone, version, f"not worse than {live[0]}")
            row.update(status="promoted", reason=f"at least as good as {live[0]} on the held-out metrics")
        else:
            reason = f"worse than live {live[0]}: " + "; ".join(worse)
            registry.mark(root, clone, version, "rejected", reason)
            row.update(status="kept", reason=reason)
    row["seconds"] = round(time.perf_counter() - started, 2)
    tracking.log_run(cfg, f"nightly-{clone}", {f"nightly/{k}": v for k, v in (row.get("metrics") or {}).items()},
                     summary={"status": row["status"], "reason": row["reason"], "version": version})
    return row


def run_nightly(root: Path, overrides: list[str], only: list[str] | None = None) -> dict:
    root = Path(root).resolve()
    started = datetime.now(timezone.utc)
    rows = []
    with nightly_lock(root):
        for clone in _clones(root, only or []):
            t0 = time.perf_counter()
            try:
                rows.append(process_clone(root, clone, overrides))
            except ClonetrainError as err:
                rows.append({"clone": clone, "status": "failed", "reason": str(err),
                             "seconds": round(time.perf_counter() - t0, 2)})
            except Exception as err:  # noqa: BLE001 - one clone's crash must not stop the others
                log.error("clone %s crashed:\n%s", clone, traceback.format_exc())
                rows.append({"clone": clone, "status": "failed", "reason": f"crash: {type(err).__name__}: {err}",
                             "seconds": round(time.perf_counter() - t0, 2)})
            log.info("nightly %s: %s - %s", clone, rows[-1]["status"], rows[-1].get("reason", ""))
    summary = {"started": started.isoformat(timespec="seconds"),
               "finished": datetime.now(timezone.utc).isoformat(timespec="seconds"), "root": str(root),
               "counts": {s: sum(r["status"] == s for r in rows) for s in ("promoted", "kept", "unchanged", "failed")},
               "clones": rows}
    folder = root / "nightly" / started.strftime("%Y-%m-%dT%H-%M-%S")
    write_json_atomic(folder / "summary.json", summary)
    write_text_atomic(folder / "summary.html", _html(summary))
    write_json_atomic(root / "nightly" / "latest.json", summary)
    return summary


def _html(summary: dict) -> str:
    colors = {"promoted": "#e7f6e7", "kept": "#fff6e0", "unchanged": "#f2f2f2", "failed": "#fde8e8"}
    rows = "".join(f"<tr style='background:{colors.get(r['status'], '#fff')}'><td>{escape(r['clone'])}</td>"
                   f"<td>{escape(r['status'])}</td><td>{escape(str(r.get('version', '')))}</td>"
                   f"<td>{r.get('seconds', '')}</td><td>{escape(str(r.get('reason', '')))}</td></tr>"
                   for r in summary["clones"])
    counts = ", ".join(f"{v} {k}" for k, v in summary["counts"].items())
    return (f"<!doctype html><html><head><meta charset='utf-8'><title>clonetrain nightly {summary['started']}</title>"
            "<style>body{font-family:sans-serif;margin:24px}td,th{border:1px solid #ccc;padding:4px 8px}"
            "table{border-collapse:collapse}</style></head><body>"
            f"<h1>Nightly run {escape(summary['started'])}</h1><p>{escape(counts)}</p><table><tr><th>clone</th>"
            f"<th>status</th><th>version</th><th>seconds</th><th>why</th></tr>{rows}</table></body></html>")


def main(argv: list[str] | None = None) -> int:
    from clonetrain.config import default_data_root

    logging.basicConfig(level=logging.INFO, format="[%(asctime)s][%(name)s][%(levelname)s] - %(message)s")
    ap = argparse.ArgumentParser(prog="nightly", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--root", type=Path, default=Path(default_data_root()))
    ap.add_argument("overrides", nargs="*", help="Hydra overrides for every clone, e.g. train.max_minutes=30")
    args = ap.parse_args(argv)
    try:
        summary = run_nightly(args.root, args.overrides)
    except LockedError as err:
        print(err, file=sys.stderr)
        return 3
    for r in summary["clones"]:
        print(f"{r['clone']:<20} {r['status']:<10} {r.get('reason', '')}")
    return 1 if summary["counts"]["failed"] else 0


if __name__ == "__main__":
    sys.exit(main())
