"""report: the clone's verdict (once evaluated) and its footage's, for the studio, as JSON, a self-contained HTML page and a preview video.

Reads  every preprocessing stage's outputs and manifests
Writes report.json   verdict, findings, per-take table, key numbers
       report.html   the same at a glance, with plots (usable face per second, mouth opening vs speech energy,
                     head pose, offset curve) and a thumbnail strip
       footage_check.mp4  the real face crops with their landmarks, over the corrected sound: to check the
                     footage's sync by eye (the generated clone is in evaluate/heldout.mp4)

    python -m clonetrain stage=report clone=anna
"""

from __future__ import annotations

import functools
from datetime import datetime, timezone
from pathlib import Path

import cv2
import numpy as np
from omegaconf import DictConfig

from clonetrain.evaluation import verdict as verdict_mod
from clonetrain.contract import files
from clonetrain.contract import metrics as declared
from clonetrain.contract.faces import usable as usable_face
from clonetrain.evaluation import paired
from clonetrain.evaluation.metrics import HIGHER_IS_BETTER
from clonetrain.core.manifest import StageResult
from clonetrain.media.write import write_video
from clonetrain.report_page import html, mouths, svg
from clonetrain.report_page import voice as voice_report
from clonetrain.core.workspace import Workspace, write_text_atomic

# The stages whose warnings are the footage's findings.
PREPROCESSING = ("ingest", "faces", "landmarks", "audio")
# The real footage with its landmarks over the corrected sound (not the clone: that is evaluate/heldout.mp4).


def _zscore(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, float)
    m = np.isfinite(x)
    return (x - x[m].mean()) / (x[m].std() + 1e-9) if m.any() else x


def _preview_frames(crops: np.ndarray, points: np.ndarray, usable: np.ndarray, mouth: np.ndarray):
    for crop, pts, ok, mo in zip(crops, points, usable, mouth):
        img = np.ascontiguousarray(crop).copy()
        if ok and np.isfinite(pts).all():
            for x, y in pts:
                cv2.circle(img, (int(x), int(y)), 1, (0, 255, 0), -1)
            cv2.rectangle(img, (4, img.shape[0] - 10), (4 + int(min(mo, 0.4) / 0.4 * 80), img.shape[0] - 4),
                          (255, 200, 0), -1)
        else:
            cv2.putText(img, "no usable face", (8, 20), cv2.FONT_HERSHEY_SIMPLEX, 0.5, (255, 60, 60), 1)
        yield img


def _evaluation(ws: Workspace, min_margin: float) -> list[tuple[str, list[str], list[list]]]:
    """The held-out evaluation as tables, once stage=evaluate has run. min_margin: below it an offset's peak is
    not clear (audio_features.min_peak_margin)."""
    if files.manifest(ws, "evaluate") is None or not files.exists(ws, "evaluate", "metrics"):
        return []
    ev = files.read_json(ws, "evaluate", "metrics")
    keys = [m.name for m in declared.TABLE]

    def cell(m: dict, k: str) -> str:
        if k == "offset_frames":
            return verdict_mod.offset_text(m, min_margin)
        return verdict_mod.number_text(m.get(k), "g", "n/a (identical frames)" if k == "psnr_lower" else "n/a")

    rows = [[name, *[cell(m, k) for k in keys]] for name, m in ev["metrics"].items()]
    status = (verdict_mod.of_metrics(ev) or {}).get("targets") or verdict_mod.target_status(
        ev["targets"], ev["metrics"]["clone"], min_margin)
    targets = [[k, v if v == verdict_mod.MET else v.upper()] for k, v in status.items()]
    return [(f"Lip-sync on {ev['heldout_frames']} held-out frames (judge: {ev['judge']} landmarks; "
             f"{_which_is_better(declared.TABLE)}; an offset whose peak margin is below "
             f"{min_margin:g} is a guess between lags)", ["output", *keys], rows),
            *_uncertainty(ev.get("uncertainty", {})),
            ("Acceptance targets", ["target", "result"], targets)]


def _which_is_better(metrics) -> str:
    """How to read a table of declared metrics: which way each is better, from its declaration."""
    def name(m) -> str:
        return m.label.split(" (")[0]  # the heading without its note

    higher = [name(m) for m in metrics if m.higher_is_better]
    lower = [name(m) for m in metrics if m.higher_is_better is False]
    nearest = [f"{name(m)} nearest {m.best:g}" for m in metrics if m.higher_is_better is None]
    return "; ".join(part for part in (f"higher is better: {', '.join(higher)}" if higher else "",
                                       f"lower: {', '.join(lower)}" if lower else "",
                                       f"best: {', '.join(nearest)}" if nearest else "") if part)


def _uncertainty(uncertainty: dict) -> list[tuple[str, list[str], list[list]]]:
    """The clone's advantage over each baseline with its 95% interval: a win whose interval holds 0 is noise."""
    if not uncertainty:
        return []
    keys = list(HIGHER_IS_BETTER)  # the metrics the bootstrap compares

    def cell(v: dict) -> str:
        if not v or v.get("ci95") is None:
            return "n/a"
        return f"{v['advantage']:+g} [{v['ci95'][0]:+g}, {v['ci95'][1]:+g}] {paired.verdict(v)}"

    rows = [[name.removeprefix("clone_vs_"), *[cell(adv.get(k)) for k in keys]] for name, adv in uncertainty.items()]
    return [("How sure: the clone's advantage over each baseline (positive: the clone is better) with its 95% "
             "interval, from a block bootstrap over the held-out frames", ["baseline", *keys], rows)]


def _offset_cell(off: dict) -> str:
    """A take's audio-video offset as the audio stage judged it: a number only when it could be measured."""
    if not off:
        return ""
    if not off.get("reliable", True):
        return f"not measurable (best guess {off.get('offset_ms', 0):+d} ms)"
    return f"{off.get('offset_ms', 0):+d} ms" + (" corrected" if off.get("corrected_frames") else "")


def _clone_verdict(cfg: DictConfig, ws: Workspace, facts: verdict_mod.Footage) -> dict | None:
    """The evaluated clone's verdict, as stage=evaluate stored it (computed here only for a metrics.json written
    before verdicts existed)."""
    if files.manifest(ws, "evaluate") is None or not files.exists(ws, "evaluate", "metrics"):
        return None
    ev = files.read_json(ws, "evaluate", "metrics")
    stored = verdict_mod.of_metrics(ev)
    if stored is not None:
        return stored
    return verdict_mod.clone_verdict(ev["targets"], ev["metrics"]["clone"], cfg.audio_features.min_peak_margin,
                                     facts, verdict_mod.training_facts(ws), ev.get("base"))


def run(cfg: DictConfig, ws: Workspace, out_dir: Path) -> StageResult:
    m = {s: files.manifest(ws, s) for s in PREPROCESSING}
    takes = files.read_json(ws, "ingest", "takes")
    face_takes = {t["take"]: t for t in files.read_json(ws, "faces", "takes")}
    offsets = {o["take"]: o for o in files.read_json(ws, "audio", "offsets")}
    profile = files.read_json(ws, "audio", "profile")
    fps = int(files.read(ws, "ingest", "frames").fps)
    faces = files.read(ws, "faces", "faces")
    lm = files.read(ws, "landmarks", "landmarks")
    energy = files.load(ws, "audio", "energy")
    n = len(faces.flags)
    usable = usable_face(faces.flags) & lm.valid
    t = np.arange(n) / fps

    facts = verdict_mod.footage_facts(cfg, ws)
    footage = verdict_mod.footage_verdict(facts)
    ready, usable_pct = footage["ready"], facts.usable_face_pct
    findings = [w for s in PREPROCESSING for w in m[s]["warnings"]]
    # Once the clone is evaluated, its verdict (computed by stage=evaluate) leads: a clone that misses its
    # targets says so first, with what would help, and the footage's own verdict follows as a finding.
    evaluated = _clone_verdict(cfg, ws, facts)
    if evaluated is not None:
        level, verdict = evaluated["level"], verdict_mod.text(evaluated)
        findings = [*(f"target {k}: {evaluated['targets'][k]}" for k in evaluated["missed"]),
                    *(f"would help: {a}" for a in evaluated["advice"]), f"footage: {footage['headline']}", *findings]
    else:
        level, verdict = footage["level"], footage["headline"]

    rows = []
    for tk in takes:
        ft, off = face_takes.get(tk["take"], {}), offsets.get(tk["take"], {})
        if tk["status"] != "ok":
            rows.append([tk["file"], "rejected", tk["reason"], "", "", ""])
            continue
        status = "ok" if ft.get("status") == "ok" else f"left out: {ft.get('reason', '')}"
        if status == "ok" and not tk["lipsync"]:
            status = "faces only (little speech)"
        rows.append([tk["file"], status, f"{tk['duration_s']:.1f} s", f"{tk['speech_s']:.1f} s",
                     f"{ft.get('with_face', 0)}/{tk['frames']}",
                     _offset_cell(off)])

    # Plots.
    sec = np.arange(int(np.ceil(n / fps)))
    per_sec = np.array([usable[s * fps : (s + 1) * fps].mean() for s in sec])
    plots = [svg.line_plot(sec, {"usable face": per_sec}, "Usable face per second", "seconds", ylim=(0, 1))]
    mouth = lm.mouth_open.astype(float)
    mouth[~usable] = np.nan
    plots.append(svg.line_plot(t, {"mouth opening (z)": _zscore(mouth), "speech energy (z)": _zscore(energy)},
                               "Mouth opening vs speech energy", "seconds"))
    pose = lm.pose.astype(float)
    pose[~usable] = np.nan
    plots.append(svg.line_plot(t, {"yaw": pose[:, 0], "pitch": pose[:, 1], "roll": pose[:, 2]},
                               "Head pose (degrees)", "seconds"))
    for off in offsets.values():
        lags = np.array(off["lags"], float)
        corr = np.array([np.nan if v is None else v for v in off["correlation"]], float)
        plots.append(svg.line_plot(lags, {"correlation": corr}, f"Audio-video offset curve: {off['file']} "
                                   f"(peak at {off['offset_frames'] + cfg.audio_features.mouth_lead_frames:+.1f} frames = "
                                   f"{off['offset_ms']:+d} ms after the natural mouth lead)",
                                   "lag of the sound (frames)", marks=[cfg.audio_features.mouth_lead_frames]))

    crop_size = int(faces.crop_size)
    crops = files.load(ws, "faces", "crops", crop_size, mmap_mode="r")
    good = np.flatnonzero(usable)
    picks = good[np.linspace(0, len(good) - 1, min(cfg.report.thumbnails, len(good))).astype(int)] if good.size else []
    thumbs = [html.jpeg_data_uri(cv2.resize(np.asarray(crops[i]), (128, 128))) for i in picks]

    created = datetime.now(timezone.utc).isoformat(timespec="seconds")
    footer = (f"clone {ws.clone} - generated {created} by clonetrain - consent sha256 "
              f"{m['ingest']['details'].get('consent_sha256', '?')[:16]}")
    tables = [("Takes", ["file", "status", "length", "speech", "frames with face", "audio offset"], rows)]
    evaluation = _evaluation(ws, cfg.audio_features.min_peak_margin)
    if evaluation:
        tables += evaluation
    tables += voice_report.sections(ws)
    page = html.page(ws.clone, verdict, level, findings, tables, plots, thumbs, footer,
                     sections=mouths.section(files.folder(ws, "evaluate")) if evaluation else "")
    write_text_atomic(files.output(out_dir, "report", "page"), page)
    report = {
        "clone": ws.clone, "created": created, "verdict": verdict, "level": level, "ready_for_lipsync": bool(ready),
        "clone_verdict": evaluated, "footage_verdict": footage["headline"], "findings": findings, "takes": rows,
        "numbers": {"usable_s": m["ingest"]["counts"]["usable_s"], "speech_s": profile["speech_s"],
                    "usable_speech_s": profile["usable_speech_s"], "usable_face_pct": round(float(usable_pct), 1),
                    "f0_median_hz": profile["f0_median_hz"], "speaking_rate_per_s": profile["speaking_rate_per_s"]},
        "offsets": [{k: o[k] for k in ("file", "offset_frames", "offset_ms", "peak_correlation", "reliable",
                                       "corrected_frames")} for o in offsets.values()],
    }
    files.write_record(out_dir, "report", "report", report)
    write_video(_preview_frames(crops, lm.points, usable, lm.mouth_open), (crop_size, crop_size), fps,
                files.output(out_dir, "report", "footage_check"), audio=files.path(ws, "audio", "audio"),
                metadata={"comment": f"clonetrain footage preview of clone {ws.clone} (source footage, not generated)"})

    result = StageResult(counts={"level": level, "ready_for_lipsync": bool(ready), "findings": len(findings)})
    final = functools.partial(files.of_clone, ws.root, ws.clone, "report")  # where the files are once committed
    result.summary = [verdict, f"report: {final('page')}",
                      f"footage check (real footage, landmarks, sound): {final('footage_check')}"]
    if evaluated is not None:
        result.summary.append(f"the clone (real | static | AI-generated, held out): "
                              f"{files.path(ws, 'evaluate', 'heldout', required=False)}")
    return result
