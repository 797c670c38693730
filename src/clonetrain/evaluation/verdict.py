"""The clone's verdict: computed once (by stage=evaluate, stored in metrics.json as "verdict") and read by
everything that tells a person how good a clone is: the report's headline and findings, the package's model
card, the registry listing and render's log.

A verdict is a dict:
    {"level": "ok" | "warn" | "bad",            # ok only when every held-out target is met
     "headline": str,                           # one sentence; a clone that misses targets says so first
                                                # (text(verdict) adds what would help)
     "targets": {name: "met" | "missed" | "not measurable"},
     "missed": [name, ...],                     # every target not met (a not-measurable one included)
     "advice": [str, ...],                      # what would help: more footage, more speech, a base, more time
     "footage": {...}}                          # the facts about the footage the advice came from

Targets are read generically from metrics.json's "targets" (a bool or {"value", "goal", "met"} each), so a new
target flows into the verdict without touching this module. One rule is applied on top: an offset target is not
met when the offset's peak margin is below audio_features.min_peak_margin, because the offset is then a guess
between lags (the report says so), not a measurement.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path


MET, MISSED, NOT_MEASURABLE = "met", "missed", "not measurable"


@dataclass(frozen=True)
class Footage:
    """What the preprocessing found, as far as the verdict cares."""

    usable_s: float          # usable footage, seconds
    usable_speech_s: float   # speech with a usable face, seconds
    usable_face_pct: float   # frames with a usable face and landmarks, percent
    lipsync_ready: bool      # ingest found at least one take with enough speech
    min_speech_s: float      # ingest.min_speech_s: below it, no lip-sync training
    warn_duration_s: float   # ingest.warn_duration_s: below it, more footage would help

    @property
    def ready(self) -> bool:
        return self.lipsync_ready and self.usable_speech_s >= self.min_speech_s


def footage_facts(cfg, ws) -> Footage:
    """Read the facts from the preprocessing outputs (ingest, faces, landmarks, audio) of workspace `ws`."""
    from clonetrain.contract import faces, files

    ingest = files.manifest(ws, "ingest")
    profile = files.read_json(ws, "audio", "profile")
    valid = files.read(ws, "landmarks", "landmarks").valid
    usable = faces.usable(files.read(ws, "faces", "faces").flags) & valid
    return Footage(usable_s=float(ingest["counts"]["usable_s"]), usable_speech_s=float(profile["usable_speech_s"]),
                   usable_face_pct=round(100 * float(usable.mean()) if usable.size else 0.0, 1),
                   lipsync_ready=bool(ingest["counts"]["lipsync_ready"]),
                   min_speech_s=float(cfg.ingest.min_speech_s), warn_duration_s=float(cfg.ingest.warn_duration_s))


def training_facts(ws) -> dict:
    """The train stage's steps, seconds, what stopped it and its budget (from its manifest)."""
    from clonetrain.contract import files

    m = files.manifest(ws, "train") or {}
    config = m.get("config", {})
    # The settings the run read (dotted keys); a manifest written before reads were recorded has whole sections.
    budget = {k: config.get(f"train.{k}", config.get("train", {}).get(k)) for k in ("max_minutes", "max_steps")}
    return {**{k: m.get("counts", {}).get(k) for k in ("steps", "seconds", "stopped_by")}, **budget}


def footage_verdict(f: Footage) -> dict:
    """The footage alone (before or without a trained clone): {"level", "headline", "ready"}."""
    if f.ready and f.usable_face_pct >= 80:
        return {"level": "ok", "ready": True,
                "headline": f"Good footage for a clone: {f.usable_s:.0f} s of footage, {f.usable_speech_s:.0f} s of "
                            f"usable speech, a usable face in {f.usable_face_pct:.0f}% of frames."}
    if f.ready:
        return {"level": "warn", "ready": True,
                "headline": f"Usable footage, with problems: a usable face in only {f.usable_face_pct:.0f}% of "
                            "frames; see the findings."}
    return {"level": "bad", "ready": False,
            "headline": f"Not ready for lip-sync training: {f.usable_speech_s:.1f} s of usable speech, "
                        f"{max(f.min_speech_s - f.usable_speech_s, 0):.1f} s short of the {f.min_speech_s:g} s needed "
                        "(ingest.min_speech_s). Add takes of the person speaking."}


def _met(value) -> bool:
    return bool(value.get("met")) if isinstance(value, dict) else bool(value)


def target_status(targets: dict, clone: dict, min_peak_margin: float) -> dict[str, str]:
    """metrics.json's targets -> {name: met | missed | not measurable}. An offset target whose offset has no
    clear peak (margin below min_peak_margin, or none) is not measurable, so not met."""
    margin = clone.get("sync_peak_margin")
    offset_measurable = clone.get("offset_frames") is not None and margin is not None and margin >= min_peak_margin
    out = {}
    for name, value in targets.items():
        if "offset" in name and not offset_measurable:
            out[name] = NOT_MEASURABLE
        else:
            out[name] = MET if _met(value) else MISSED
    return out


def offset_text(m: dict, min_peak_margin: float) -> str:
    """An evaluated offset as a person should read it: a number only when its peak is clear."""
    off, margin = m.get("offset_frames"), m.get("sync_peak_margin")
    if off is None:
        return "not measurable (no peak)"
    if margin is None or margin < min_peak_margin:
        return f"not measurable (best guess {off:+.2f}, peak margin {margin if margin is not None else 0:.3f})"
    return f"{off:+.2f}"


def number_text(value, fmt: str = ".3f", none: str = "n/a") -> str:
    """A metric for a table cell: formatted, or a word instead of a raw None (PSNR of identical frames)."""
    return none if value is None else format(value, fmt)


def advice(f: Footage, training: dict, base: str | None) -> list[str]:
    """What would most likely help a clone that misses its targets, most useful first.
    training: the train stage's counts (steps, seconds, stopped_by) and its max_minutes / max_steps."""
    out = []
    if f.usable_s < f.warn_duration_s:
        out.append(f"more footage: {int(f.usable_s)} s now, {f.warn_duration_s:.0f} s or more trains a better clone")
    if f.usable_speech_s < 0.75 * max(f.usable_s, f.warn_duration_s):
        out.append(f"more speech: {f.usable_speech_s:.0f} s of the person talking to camera with a usable face")
    if not base:
        out.append("a base: build the studio's base once from other people's clips (python -m clonetrain corpus "
                   "ARCHIVE --consent FILE --pretrain); every clone then starts from it (model.base=auto)")
    stopped = training.get("stopped_by")
    if stopped == "time budget":
        out.append(f"more training time: stopped by the time budget after {training.get('steps')} steps in "
                   f"{training.get('seconds', 0):.0f} s (train.max_minutes={training.get('max_minutes')})")
    elif stopped == "max steps":
        out.append(f"more training steps: stopped at train.max_steps={training.get('steps')}")
    return out


def clone_verdict(targets: dict, clone: dict, min_peak_margin: float, f: Footage, training: dict,
                  base: str | None) -> dict:
    """The verdict of a trained clone on its held-out evaluation (see the module docstring)."""
    status = target_status(targets, clone, min_peak_margin)
    missed = [k for k, v in status.items() if v != MET]
    helps = advice(f, training, base) if missed else []
    if not status:
        level, headline = "warn", "The clone has no held-out targets to judge it by."
    elif not missed:
        level, headline = "ok", f"The clone meets all {len(status)} held-out targets."
    else:
        level = "bad" if 2 * len(missed) > len(status) else "warn"
        names = ", ".join(f"{k} ({status[k]})" if status[k] == NOT_MEASURABLE else k for k in missed)
        headline = f"The clone misses {len(missed)} of {len(status)} held-out targets: {names}."
    return {"level": level, "headline": headline, "targets": status, "missed": missed, "advice": helps,
            "footage": asdict(f)}


def text(v: dict) -> str:
    """The headline with what would help: the sentence a report, a log or render shows."""
    return v["headline"] + (f" What would help: {'; '.join(v['advice'])}." if v.get("advice") else "")


def of_metrics(metrics: dict) -> dict | None:
    """The verdict stored in a metrics.json (None for one written before verdicts existed)."""
    return metrics.get("verdict")


def read(folder: Path) -> dict | None:
    """The verdict of an evaluate/ folder or a package folder (the package keeps evaluate's metrics file under
    its name); None without one."""
    from clonetrain.contract.files import name_of  # here: a package's verification imports this module stdlib-only

    path = Path(folder) / name_of("evaluate", "metrics")
    if not path.is_file():
        return None
    try:
        return of_metrics(json.loads(path.read_text()))
    except (OSError, ValueError):
        return None


def short(v: dict | None) -> str:
    """A few characters for a listing: ok, or how many targets were missed."""
    if not v:
        return "-"
    if v["level"] == "ok":
        return "ok"
    return f"{v['level']}: {len(v['missed'])}/{len(v['targets'])} missed"
