"""Nightly retraining of every clone: retrain what changed, gate on held-out quality, promote or keep.

    python scripts/nightly.py [--root data] [hydra overrides...]
    python -m clonetrain nightly [--root data] [hydra overrides...]

For each clone under raw/ but the corpus's pretraining clips (or nightly.clones): run stage=all (every stage whose
inputs and config are unchanged is skipped in seconds; training resumes from its checkpoints after a kill), and
when a new package version was built, promote it only if it is at least as good as the live one on the held-out
metrics (nightly.tolerance). One clone's broken footage or crash never stops the others. A second nightly run while one is running exits at
once. Writes nightly/<time>/summary.json and summary.html (and nightly/latest.json), and logs each clone to the
configured logger (wandb offline by default).
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import logging
import math
import sys
import time
import traceback
from datetime import datetime, timezone
from html import escape
from pathlib import Path
from typing import Iterator

from omegaconf import DictConfig

from clonetrain.product import consent, corpus
from clonetrain.core import pipeline
from clonetrain.product import registry
from clonetrain.core import experiment_log
from clonetrain.contract import metrics as declared
from clonetrain.core.errors import ClonetrainError, ConsentError, LockedError
from clonetrain.core.workspace import Workspace, write_json_atomic, write_text_atomic

log = logging.getLogger(__name__)
PROJECT = Path(__file__).resolve().parents[3]


@contextlib.contextmanager
def nightly_lock(root: Path) -> Iterator[None]:
    root.mkdir(parents=True, exist_ok=True)
    with open(root / ".nightly.lock", "a+") as fh:
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise LockedError(f"another nightly run is in progress ({pipeline.lock_holder(fh)}); exiting") from None
        pipeline.write_holder(fh)
        yield


def _bad(x) -> bool:
    """A metric that cannot be judged: NaN (a mouth that never moves, frames without landmarks) or infinite."""
    return isinstance(x, float) and not math.isfinite(x)


def gate(new: dict, live: dict, tolerance: float) -> tuple[bool, list[str]]:
    """Is `new` at least as good as `live` on every held-out metric, within tolerance? Returns (ok, reasons).
    A metric that is not a number fails: NaN compares false with everything, so it would slip through."""
    worse = []
    for metric in declared.GATED:
        key, higher = metric.name, metric.higher_is_better
        n, l = new.get(key), live.get(key)
        if n is not None and _bad(n):
            worse.append(f"{key} is {n}")
            continue
        if l is None or _bad(l):
            continue
        if metric.measured_by and new.get(metric.measured_by) != live.get(metric.measured_by):
            continue  # measured another way (another TTS engine): not comparable, so not worse
        if n is None:
            # Measured only where it can be (the machine has the drivers' footage, the clone a voice): not measured
            # is not worse. A core held-out metric missing is.
            if not metric.where_possible:
                worse.append(f"{key} missing")
            continue
        slack = tolerance * abs(l)
        if higher is None:  # an offset: within its goal, or no further from 0 than live
            if not metric.holds_against(n, l):
                worse.append(f"{key} {n} vs live {l}")
        elif (higher and n < l - slack) or (not higher and n > l + slack):
            worse.append(f"{key} {n} vs live {l}")
    return not worse, worse


def floor(entry: dict, required: list[str]) -> list[str]:
    """Why a version may not go live whatever it is compared with (empty: it may). `required` names the evaluation
    targets it must meet ("*": all of them; "release": contract.metrics' release targets). A clone its own
    preprocessing found not ready for lip-sync, or with a metric that is not a number, misses the floor too."""
    if not required:
        return []
    missed = []
    if entry.get("lipsync_ready") is False:
        missed.append("preprocessing found it not ready for lip-sync training (too little usable speech)")
    missed += [f"{k} is {v}" for k, v in (entry.get("metrics") or {}).items() if _bad(v)]
    targets = entry.get("targets")
    if targets is None:
        return missed + ["its evaluation targets are unknown (packaged before the floor existed)"]
    names = list(targets) if "*" in required else list(required)
    if "release" in names:
        names[names.index("release"): names.index("release") + 1] = declared.release_targets()
    for name in names:
        if name not in targets:
            missed.append(f"target {name} was not evaluated")
        elif not targets[name]:
            missed.append(f"target {name} missed")
    return missed


def decide(version: str, entry: dict, live: tuple[str, dict] | None, cfg_nightly) -> tuple[str, str, str | None]:
    """What nightly does with a packaged version: (status, reason, registry action: promote|reject|None)."""
    if live and live[0] == version:
        return "unchanged", f"{version} is live and nothing changed", None
    if entry["status"] in ("rejected", "retired", "withdrawn"):
        return "kept", (f"{version} was already judged: {entry.get('reason', entry['status'])}; "
                        f"live stays {live[0] if live else 'none'}"), None
    missed = floor(entry, list(cfg_nightly.floor))
    if missed:
        return "kept", (f"{version} stays a candidate, below the promotion floor: " + "; ".join(missed)
                        + f"; live stays {live[0] if live else 'none'}"), None
    if live is None:
        return "promoted", "first version of this clone, above the promotion floor", "promote"
    ok, worse = gate(entry.get("metrics") or {}, live[1].get("metrics") or {}, cfg_nightly.tolerance)
    if ok:
        return "promoted", f"at least as good as {live[0]} on the held-out metrics", "promote"
    return "kept", f"worse than live {live[0]}: " + "; ".join(worse), "reject"


def compose(root: Path, clone: str, overrides: list[str]) -> DictConfig:
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir

    from clonetrain.core import config

    config.register()
    with initialize_config_dir(config_dir=str(PROJECT / "conf"), version_base="1.3"):
        return hydra_compose("config", overrides=[*overrides, f"paths.root={root}", f"clone={clone}", "stage=all"])


def _clones(root: Path, only: list[str]) -> list[str]:
    """The clones to process: `only` (nightly.clones) if given, in its order, missing ones included so that they
    are reported; else every clone folder under raw/ that holds anything, but the corpus's pretraining clips."""
    if only:
        return list(dict.fromkeys(only))
    raw = root / "raw"
    folders = sorted(p for p in raw.iterdir() if p.is_dir() and any(p.iterdir())) if raw.is_dir() else []
    clips = [p for p in folders if corpus.is_corpus_clip(p)]
    if clips:
        log.info("%d pretraining clips of a corpus (raw/*/%s) are left to `clonetrain corpus`; name them in "
                 "nightly.clones to build them as clones", len(clips), corpus.CLIP_MARKER)
    return [p.name for p in folders if p not in clips]


def _take_down_if_live(root: Path, clone: str, err: ConsentError) -> str:
    """Consent withdrawn or expired: the live version must stop being live."""
    previous = registry.take_down(root, clone, f"consent no longer in force: {err.message}")
    return f"; live version {previous} taken down" if previous else ""


def process_clone(root: Path, clone: str, overrides: list[str]) -> dict:
    started = time.perf_counter()
    row: dict = {"clone": clone}
    cfg = compose(root, clone, overrides)
    ws = Workspace(root, clone)
    if not ws.raw_dir.is_dir():
        raise ClonetrainError(f"clone {clone!r} has no folder {ws.raw_dir}",
                              "check nightly.clones, or put the clone's takes and consent.yaml there")
    try:
        consent.require_live(root, clone, use="train")
    except ConsentError as err:
        raise ConsentError(err.message + _take_down_if_live(root, clone, err), err.fix) from None
    statuses = pipeline.run(cfg)
    row["stages"] = statuses
    package = ws.read_manifest("package")
    version = package["details"]["version"]
    entry = registry.version(root, clone, version)
    if entry is None:
        raise ClonetrainError(f"{clone} {version} was packaged but is not in the registry",
                              f"rerun: python -m clonetrain stage=package clone={clone} force=true")
    live = registry.live(root, clone)
    row["version"], row["metrics"] = version, entry.get("metrics")
    status, reason, action = decide(version, entry, live, cfg.nightly)
    if action == "promote":
        registry.promote(root, clone, version, reason)
    elif action == "reject":
        registry.mark(root, clone, version, "rejected", reason)
    elif status == "kept" and entry["status"] == "candidate":
        registry.mark(root, clone, version, "candidate", reason)  # says why it stays one
    row.update(status=status, reason=reason)
    row["seconds"] = round(time.perf_counter() - started, 2)
    experiment_log.log_run(cfg, f"nightly-{clone}", {f"nightly/{k}": v for k, v in (row.get("metrics") or {}).items()},
                     summary={"status": row["status"], "reason": row["reason"], "version": version})
    return row


def _write_summary(root: Path, folder: Path, summary: dict) -> None:
    write_json_atomic(folder / "summary.json", summary)
    write_text_atomic(folder / "summary.html", _html(summary))
    write_json_atomic(root / "nightly" / "latest.json", summary)


def run_nightly(root: Path, overrides: list[str], only: list[str] | None = None) -> dict:
    """Process the clones (`only`, else nightly.clones, else all under raw/). The summary is rewritten atomically
    after every clone, so a killed run leaves one that says how far it got ("state": "running" or "interrupted")."""
    root = Path(root).resolve()
    started = datetime.now(timezone.utc)
    rows: list[dict] = []
    folder = root / "nightly" / started.strftime("%Y-%m-%dT%H-%M-%S")
    with nightly_lock(root):
        if only is None:
            only = list(compose(root, "nightly", overrides).nightly.clones)
        clones = _clones(root, only)

        def summary(state: str, current: str | None = None) -> dict:
            return {"started": started.isoformat(timespec="seconds"), "state": state,
                    "finished": datetime.now(timezone.utc).isoformat(timespec="seconds") if state == "finished" else None,
                    "updated": datetime.now(timezone.utc).isoformat(timespec="seconds"),
                    "root": str(root), "clones_planned": clones, "in_progress": current,
                    "counts": {s: sum(r["status"] == s for r in rows) for s in ("promoted", "kept", "unchanged", "failed")},
                    "clones": list(rows)}

        state = "interrupted"
        try:
            for clone in clones:
                _write_summary(root, folder, summary("running", clone))
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
            state = "finished"
        finally:
            result = summary(state)
            _write_summary(root, folder, result)
    return result


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
            f"<h1>Nightly run {escape(summary['started'])}</h1><p>{escape(summary.get('state', ''))}: "
            f"{escape(counts)}</p><table><tr><th>clone</th>"
            f"<th>status</th><th>version</th><th>seconds</th><th>why</th></tr>{rows}</table></body></html>")


def main(argv: list[str] | None = None) -> int:
    from clonetrain.core.config import default_data_root

    logging.basicConfig(level=logging.INFO, format="[%(asctime)s][%(name)s][%(levelname)s] - %(message)s")
    ap = argparse.ArgumentParser(prog="python -m clonetrain nightly", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--root", type=Path, default=Path(default_data_root()))
    ap.add_argument("overrides", nargs="*", help="Hydra overrides for every clone, e.g. train.max_minutes=30")
    args = ap.parse_args(argv)
    try:
        summary = run_nightly(args.root, args.overrides)
    except LockedError as err:
        print(err, file=sys.stderr)
        return 3
    except ClonetrainError as err:
        print(err, file=sys.stderr)
        return 2
    for r in summary["clones"]:
        print(f"{r['clone']:<20} {r['status']:<10} {r.get('reason', '')}")
    return 1 if summary["counts"]["failed"] else 0


if __name__ == "__main__":
    sys.exit(main())
