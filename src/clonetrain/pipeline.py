"""Ordered stage registry, fingerprints, skip/force and the per-clone lock.

A stage is skipped when its fingerprint (its config section, its inputs' hashes, the upstream outputs'
digests and its own code) matches the manifest on disk and its outputs are intact; `force=true` reruns it.
"""

from __future__ import annotations

import contextlib
import fcntl
import importlib
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

from clonetrain import consent, quiet, reconcile
from clonetrain.errors import ClonetrainError, LockedError, UpstreamMissingError
from clonetrain.manifest import StageResult, code_hash, digest, file_entry, hash_outputs, outputs_intact, versions
from clonetrain.workspace import Workspace, write_json_atomic

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Stage:
    name: str
    module: str
    config_keys: tuple[str, ...]
    upstream: tuple[str, ...]
    # Read when present (the report shows the evaluation once there is one).
    optional: tuple[str, ...] = ()


STAGES: dict[str, Stage] = {
    s.name: s
    for s in (
        Stage("ingest", "clonetrain.stages.ingest", ("ingest",), ()),
        Stage("transcribe", "clonetrain.stages.transcribe", ("transcribe",), ("ingest",)),
        Stage("faces", "clonetrain.stages.faces", ("faces",), ("ingest",)),
        Stage("landmarks", "clonetrain.stages.landmarks", ("landmarks",), ("faces",)),
        Stage("audio", "clonetrain.stages.audio", ("audio_features",), ("ingest", "landmarks")),
        Stage("voice", "clonetrain.stages.voice", ("voice_model",), ("ingest", "transcribe")),
        Stage("pretrain", "clonetrain.stages.pretrain", ("model", "train", "pretrain"), ()),
        Stage("train", "clonetrain.stages.train", ("model", "train"), ("faces", "landmarks", "audio")),
        Stage("evaluate", "clonetrain.stages.evaluate", ("evaluate", "landmarks", "audio_features"), ("train",)),
        Stage("package", "clonetrain.stages.package", ("model", "train", "render.footage_seconds", "audio_features"),
              ("ingest", "faces", "landmarks", "audio", "train", "evaluate"), optional=("voice",)),
        Stage("report", "clonetrain.stages.report", ("report",), ("ingest", "faces", "landmarks", "audio"),
              optional=("evaluate", "transcribe", "voice")),
    )
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


def first_missing(stage: Stage, ws: Workspace) -> str | None:
    """The earliest stage up the chain of `stage` whose output is missing (None when all are there)."""
    for up in stage.upstream:
        if ws.read_manifest(up) is None:
            return first_missing(STAGES[up], ws) or up
    return None


def _plain(value):
    return OmegaConf.to_container(value, resolve=True) if OmegaConf.is_config(value) else value


def fingerprint(stage: Stage, cfg: DictConfig, ws: Workspace, module) -> tuple[str, dict]:
    """The fingerprint of a stage run, and the input file entries it covers."""
    previous = ws.read_manifest(stage.name) or {}
    inputs: dict[str, dict] = {}
    if hasattr(module, "inputs"):
        known = previous.get("inputs", {})
        for path in module.inputs(cfg, ws):
            # Paths under the data root are recorded relative to it (the root can move); others as they are.
            rel = str(path.relative_to(ws.root)) if ws.root in path.resolve().parents else str(path.resolve())
            inputs[rel] = file_entry(path, known.get(rel))
    upstream = {}
    for up in stage.upstream:
        m = ws.read_manifest(up)
        if m is None:
            first = first_missing(STAGES[up], ws) or up
            chain = "" if first == up else f"; nothing from {first!r} on is there either"
            raise UpstreamMissingError(
                f"stage {stage.name!r} needs the output of {up!r} for clone {ws.clone!r}, which is not there{chain}",
                f"run: python -m clonetrain stage={first} clone={ws.clone}, then the stages after it "
                f"(stage=preprocess runs them all)",
            )
        upstream[up] = m["outputs_digest"]
    for up in stage.optional:
        if (m := ws.read_manifest(up)) is not None:
            upstream[up] = m["outputs_digest"]
    # A key may name one setting of a section (render.footage_seconds): render's other settings never shape a package.
    config = {k: _plain(OmegaConf.select(cfg, k)) for k in stage.config_keys}
    code = code_hash([stage.module, *getattr(module, "CODE", ())])
    parts = {
        "stage": stage.name,
        "config": config,
        "inputs": {k: v["sha256"] for k, v in inputs.items()},
        "upstream": upstream,
        "code": code,
    }
    return digest(parts), {"inputs": inputs, "upstream": upstream, "config": config, "code": code}


def up_to_date(stage: Stage, cfg: DictConfig, ws: Workspace, module, force: bool) -> tuple[bool, str, dict]:
    """(skip it?, fingerprint, what the fingerprint covers): skip when the manifest on disk has this fingerprint
    and the outputs it lists are intact, unless forced."""
    fp, parts = fingerprint(stage, cfg, ws, module)
    current = ws.read_manifest(stage.name)
    fresh = bool(not force and current and current.get("fingerprint") == fp
                 and outputs_intact(ws.stage_dir(stage.name), current))
    return fresh, fp, parts


def run_stage(stage: Stage, cfg: DictConfig, ws: Workspace, force: bool = False) -> str:
    """Run one stage unless it is up to date. Returns 'ran' or 'skipped'."""
    module = importlib.import_module(stage.module)
    ws.recover(stage.name)
    fresh, fp, parts = up_to_date(stage, cfg, ws, module, force)
    if fresh:
        log.info("%s: up to date (%s)", stage.name, fp[:12])
        return "skipped"

    ws.fingerprints[stage.name] = fp
    log.info("── %s: started ──", stage.name)
    out_dir = ws.begin_stage(stage.name)
    started = time.perf_counter()
    try:
        result: StageResult = module.run(cfg, ws, out_dir)
        outputs = hash_outputs(out_dir)
        manifest = {
            "stage": stage.name,
            "clone": ws.clone,
            "fingerprint": fp,
            "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "seconds": round(time.perf_counter() - started, 3),
            **parts,
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
    fresh, fp, _ = up_to_date(stage, cfg, ws, module, bool(cfg.force))
    if fresh:
        return "skipped"
    ws.fingerprints[stage.name] = fp
    with tempfile.TemporaryDirectory(prefix=f"clonetrain-{stage.name}-") as scratch:
        module.run(cfg, ws, Path(scratch))
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
