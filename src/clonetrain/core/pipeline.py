"""Ordered stage registry, fingerprints, skip/force and the per-clone lock.

A stage's dependencies are recorded while it runs, never declared: the contract readers note which upstream files
it read (contract.files), a view over the config notes which settings it read (contract.reads.SettingsView), and
its code is the source of every clonetrain module it imports, directly or not (manifest.import_closure). The
manifest stores all three with the stage's own inputs (raw takes, a base checkpoint). A stage is skipped when none
of what it read last time changed and its outputs are intact; `force=true` reruns it.
"""

from __future__ import annotations

import contextlib
import fcntl
import importlib
import importlib.util
import json
import logging
import os
import socket
import sys
import tempfile
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Iterator

from omegaconf import DictConfig, OmegaConf

from clonetrain.product import consent
from clonetrain.core import quiet
from clonetrain.product import reconcile
from clonetrain.contract.reads import RUN_CONTROL, Reads, SettingsView, plain, recording
from clonetrain.core.errors import ClonetrainError, LockedError
from clonetrain.core.manifest import (StageResult, code_hash, digest, file_entry, hash_outputs, import_closure,
                                      is_module, outputs_intact, versions)
from clonetrain.core.workspace import Workspace, write_json_atomic

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Stage:
    name: str
    module: str


STAGES: dict[str, Stage] = {
    name: Stage(name, f"clonetrain.stages.{name}")
    for name in ("ingest", "transcribe", "faces", "landmarks", "audio", "voice", "pretrain", "train", "evaluate",
                 "package", "report")
}

GROUPS: dict[str, list[str]] = {
    "preprocess": ["ingest", "transcribe", "faces", "landmarks", "audio", "report"],
    "all": ["ingest", "transcribe", "faces", "landmarks", "audio", "voice", "train", "evaluate", "report", "package"],
}


# Actions run every time they are asked for and write outside the stage folders (no skip, no manifest).
ACTIONS = {"render": "clonetrain.stages.render", "stream": "clonetrain.runtime.stream"}

# The stages the extra processes of a distributed (DDP) run take part in; every other stage is the first
# process's alone.
DISTRIBUTED_STAGES = ("pretrain", "train")
# Set by the launchers: Lightning re-runs the command line for each extra device (LOCAL_RANK), torchrun and SLURM
# start one process per device (RANK, SLURM_PROCID), and each further node has NODE_RANK / GROUP_RANK.
RANK_VARIABLES = ("RANK", "LOCAL_RANK", "NODE_RANK", "GROUP_RANK", "SLURM_PROCID")


def is_extra_process() -> bool:
    """Is this process one of a distributed run's others, not the first (global rank 0)?"""
    for name in RANK_VARIABLES:
        with contextlib.suppress(ValueError):
            if int(os.environ.get(name, "0") or 0) > 0:
                return True
    return False


def resolve_stages(name: str) -> list[str]:
    if name in GROUPS:
        return GROUPS[name]
    if name in STAGES:
        return [name]
    raise ClonetrainError(f"unknown stage {name!r}", f"choose one of: {', '.join([*GROUPS, *STAGES, *ACTIONS])}")


def lock_holder(fh) -> str:
    """Who holds a lock file: its pid, host, start time and command, as the holder wrote them."""
    fh.seek(0)
    text = fh.read().strip()
    try:
        h = json.loads(text)
        return (f"pid {h.get('pid')} on {h.get('host')}, started {h.get('started')}"
                + (f": {h['command']}" if h.get("command") else ""))
    except (json.JSONDecodeError, AttributeError):
        return f"pid {text}" if text else "an unknown process"


def write_holder(fh) -> None:
    """Record who holds the lock, for the error a second run gets."""
    fh.seek(0)
    fh.truncate()
    fh.write(json.dumps({"pid": os.getpid(), "host": socket.gethostname(),
                         "started": datetime.now(timezone.utc).isoformat(timespec="seconds"),
                         "command": " ".join(sys.argv)[:300]}))
    fh.flush()


@contextlib.contextmanager
def clone_lock(ws: Workspace) -> Iterator[None]:
    """One run per clone at a time; a second one fails at once instead of corrupting the first."""
    ws.work_dir.mkdir(parents=True, exist_ok=True)
    with open(ws.work_dir / ".lock", "a+") as fh:  # a+: the holder's record is read before anything is written
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise LockedError(f"clone {ws.clone!r} is being processed by another run ({lock_holder(fh)})",
                              "wait for it to finish") from None
        write_holder(fh)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def _setting(cfg: DictConfig, key: str):
    """The current value of a recorded setting (None when the key is gone: a change, so a rerun)."""
    return plain(OmegaConf.select(cfg, key, default=None))


def _inputs(module, cfg, ws: Workspace, previous: dict) -> dict[str, dict]:
    """The stage's own input files (raw takes, a base checkpoint; module.inputs), hashed; recorded relative to
    the data root when under it (the root can move). A file a stage looks for and does not find (the studio's
    base before it is built) is recorded as absent: its arrival reruns the stage."""
    if not hasattr(module, "inputs"):
        return {}
    known = previous.get("inputs", {})
    out = {}
    for path in module.inputs(cfg, ws):
        rel = str(path.relative_to(ws.root)) if ws.root in path.resolve().parents else str(path.resolve())
        out[rel] = file_entry(path, known.get(rel)) if path.exists() else {"sha256": None, "size": None}
    return out


def _upstream(ws: Workspace, stages) -> dict[str, str | None]:
    """The outputs digest of each stage, now (None: not there; a stage that read its absence reruns when it
    appears, as the report does once the clone is evaluated)."""
    digests = {}
    for s in stages:
        m = ws.read_manifest(s)
        digests[s] = m.get("outputs_digest") if m else None
    return digests


def fingerprint(name: str, config: dict, inputs: dict, upstream: dict, code: str) -> str:
    return digest({"stage": name, "config": config, "inputs": {k: v["sha256"] for k, v in inputs.items()},
                   "upstream": upstream, "code": code})


def stage_code(stage: Stage, config: dict | None = None) -> str:
    """The hash of the stage's code: its import closure, and the closure of every class it built from a setting's
    `_target_` (contract.build: a landmark model, a detector), which no import names."""
    modules = import_closure(stage.module)
    for module in built_modules(config or {}):
        # Ours, and a studio's class's own package's modules (it may build on clonetrain's and on its own).
        modules += import_closure(module)
        if (top := module.split(".")[0]) != "clonetrain":
            modules += import_closure(module, top)
    return code_hash(modules)


def built_modules(config: dict) -> list[str]:
    """The modules of the `_target_` classes in recorded settings: ours and a studio's own code. Not an installed
    library's (its version is recorded apart, and its package is no code of ours to read), nor a module that
    cannot be found (the stage's own build fails on it, with its error)."""
    found = set()

    def ours(module: str) -> bool:
        if module.split(".")[0] == "clonetrain":
            return True
        origin = importlib.util.find_spec(module).origin or ""
        return not any(part in ("site-packages", "dist-packages") for part in Path(origin).parts)

    def walk(value) -> None:
        if isinstance(value, dict):
            target = value.get("_target_")
            module = target.rsplit(".", 1)[0] if isinstance(target, str) and "." in target else None
            if module and is_module(module) and ours(module):
                found.add(module)
            for v in value.values():
                walk(v)
        elif isinstance(value, list):
            for v in value:
                walk(v)

    walk(config)
    return sorted(found)


def up_to_date(stage: Stage, cfg: DictConfig, ws: Workspace, module, force: bool) -> tuple[bool, str]:
    """(skip it?, why not): skip when the stage ran before and everything it read then (settings, upstream
    outputs, inputs, code) is unchanged and its outputs are intact, unless forced."""
    previous = ws.read_manifest(stage.name)
    if force:
        return False, "forced"
    if not previous or "fingerprint" not in previous:
        return False, "never ran"
    config = {k: _setting(cfg, k) for k in previous.get("config", {})}
    upstream = _upstream(ws, previous.get("upstream", {}))
    fp = fingerprint(stage.name, config, _inputs(module, cfg, ws, previous), upstream, stage_code(stage, config))
    if fp != previous["fingerprint"]:
        return False, "what it read changed"
    if not outputs_intact(ws.stage_dir(stage.name), previous):
        return False, "an output is missing or changed"
    return True, fp


def resume_key(stage: Stage, cfg: DictConfig, ws: Workspace) -> str:
    """What a long stage's checkpoints are kept under across a kill (Workspace.resume_dir), known before it runs:
    every setting that can shape an output, the clone's stage outputs and the stage's code. Coarser than the
    recorded reads (any such change starts afresh), never finer: a run never resumes another run's work."""
    settings = {k: plain(v) for k, v in cfg.items() if k not in RUN_CONTROL}
    return digest({"stage": stage.name, "settings": settings, "code": stage_code(stage, settings),
                   "upstream": _upstream(ws, [s for s in STAGES if s != stage.name])})


def _run_module(stage: Stage, module, cfg: DictConfig, ws: Workspace, out_dir: Path) -> tuple[StageResult, Reads, dict]:
    """Run the stage with its reads recorded; returns its result, the reads and its hashed inputs."""
    with recording(ws.clone) as reads:
        view = SettingsView(cfg, reads)
        inputs = _inputs(module, view, ws, ws.read_manifest(stage.name) or {})
        result = module.run(view, ws, out_dir)
    return result, reads, inputs


def run_stage(stage: Stage, cfg: DictConfig, ws: Workspace, force: bool = False) -> str:
    """Run one stage unless it is up to date. Returns 'ran' or 'skipped'."""
    module = importlib.import_module(stage.module)
    ws.recover(stage.name)
    fresh, why = up_to_date(stage, cfg, ws, module, force)
    if fresh:
        log.info("%s: up to date (%s)", stage.name, why[:12])
        return "skipped"

    ws.fingerprints[stage.name] = resume_key(stage, cfg, ws)
    log.info("── %s: started ── (%s)", stage.name, why)
    out_dir = ws.begin_stage(stage.name)
    started = time.perf_counter()
    try:
        result, reads, inputs = _run_module(stage, module, cfg, ws, out_dir)
        code, upstream = stage_code(stage, reads.config), _upstream(ws, reads.files)
        outputs = hash_outputs(out_dir)
        manifest = {
            "stage": stage.name,
            "clone": ws.clone,
            "fingerprint": fingerprint(stage.name, reads.config, inputs, upstream, code),
            "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "seconds": round(time.perf_counter() - started, 3),
            # What the run read: its inputs, the upstream stages (their outputs digest) and which of their files,
            # the settings (dotted keys) and the code of its import closure.
            "inputs": inputs,
            "upstream": upstream,
            "read": reads.files,
            "config": reads.config,
            "code": code,
            "outputs": outputs,
            "outputs_digest": digest({k: v["sha256"] for k, v in outputs.items()}),
            "counts": result.counts,
            "warnings": result.warnings,
            "summary": result.summary,
            "details": result.details,
            "versions": versions(),
        }
        write_json_atomic(out_dir / "manifest.json", manifest)
        ws.commit_stage(stage.name)
        ws.clear_resume(stage.name)
    except BaseException:
        ws.abort_stage(stage.name)
        raise
    _print_summary(stage.name, manifest)
    return "ran"


def join_stage(stage: Stage, cfg: DictConfig, ws: Workspace) -> str:
    """An extra process of a distributed run trains alongside the first, which alone writes the outputs, the
    manifest and the checkpoints (to the same resume folder: both resume from the same step). It decides to
    skip exactly as the first process does, or the first would wait for it forever."""
    module = importlib.import_module(stage.module)
    fresh, _ = up_to_date(stage, cfg, ws, module, bool(cfg.force))
    if fresh:
        return "skipped"
    ws.fingerprints[stage.name] = resume_key(stage, cfg, ws)
    with tempfile.TemporaryDirectory(prefix=f"clonetrain-{stage.name}-") as scratch:
        _run_module(stage, module, cfg, ws, Path(scratch))
    return "joined"


def _print_summary(name: str, manifest: dict) -> None:
    log.info("── %s: done in %.1f s ──", name, manifest["seconds"])
    for line in manifest["summary"]:
        log.info("  %s", line)
    for w in manifest["warnings"]:
        log.warning("  ! %s", w)


def run(cfg: DictConfig) -> dict[str, str]:
    """Run `cfg.stage` (a stage or a group) for `cfg.clone`. Returns {stage: 'ran'|'skipped'}."""
    quiet.third_party_loggers()
    ws = Workspace(cfg.paths.root, cfg.clone)
    if cfg.stage in ACTIONS:
        importlib.import_module(ACTIONS[cfg.stage]).run(cfg, ws)
        return {cfg.stage: "ran"}
    names = resolve_stages(cfg.stage)
    if any(n != "pretrain" for n in names):
        # The live record, every run: an expired or revoked consent stops even stages that are up to date.
        consent.require_live(ws.root, ws.clone, use="train")
    if is_extra_process():
        # No lock: the first process holds it for the whole run.
        return {n: join_stage(STAGES[n], cfg, ws) if n in DISTRIBUTED_STAGES else "left to rank 0" for n in names}
    statuses: dict[str, str] = {}
    timings: dict[str, float] = {}
    with clone_lock(ws):
        reconcile.reconcile(ws.root, ws.clone)  # leftovers of a killed run: adopted or removed, logged
        for name in names:
            t0 = time.perf_counter()
            statuses[name] = run_stage(STAGES[name], cfg, ws, force=bool(cfg.force))
            timings[name] = time.perf_counter() - t0
    log.info("clone %s: %s", ws.clone, ", ".join(f"{n} {s} ({timings[n]:.1f} s)" for n, s in statuses.items()))
    return statuses
