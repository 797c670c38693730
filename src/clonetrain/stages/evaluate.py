"""evaluate: drive the clone with the held-out audio and measure it on the held-out frames, beside baselines.

Reads  train/model.safetensors, train/split.json, the preprocessed footage; the base checkpoint the clone was
       fine-tuned from (if any)
Writes metrics.json  for the clone, a static reference frame (its mouth frozen on the real upper face) and the
                     un-tuned base: mouth LMD, mouth-opening correlation, audio-video offset of the generated
                     frames, PSNR and SSIM of the lower face; whether the clone beats each baseline, and by how
                     much with a 95% interval (uncertainty: a block bootstrap over the frames).
                     Mouth realism on the held-out frames: sharpness ratio, PSNR and SSIM of the mouth box.
                     Cross-speaker (evaluation.cross_speaker): the clone driven by each of evaluate.drivers (real
                     takes of other people, each aligned at its own audio-video offset), its mouth against the
                     driver's real mouth (r, scale-normalised LMD) beside the static frame, and how shut it stays
                     in the driver's pauses. `targets` (met or not) and `target_values` ({value, goal, met}).
                     The clone's faces carry the mouth detail render adds (mouth_texture: taken from training
                     frames only); `mouth_texture` gives the held-out mouth numbers with and without it.
       frames.npz    what the judge measured on every held-out frame, per method (for paired comparisons)
       cross_speaker.npz  per driver, the clone's and the real mouth opening per frame (paired comparisons of two
                     clones on the same drivers; written when there were drivers)
       heldout.mp4   real | static | clone side by side over the held-out sound, labelled AI-generated
                     (also logged, with the metrics, to the tracker: wandb offline by default)
       mouths.png    contact sheet of mouths, real | clone | static: held-out frames and one per driver

    python -m clonetrain stage=evaluate clone=anna
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import soundfile as sf
from omegaconf import DictConfig

from clonetrain.product import avatar
from clonetrain.core import experiment_log
from clonetrain.evaluation import verdict
from clonetrain.contract import files
from clonetrain.contract import metrics as metric_decl
from clonetrain.contract.clip import load_clip
from clonetrain.contract.series import write_driver_series, write_frame_series
from clonetrain.contract.sound import frames_sound
from clonetrain.core.errors import ClonetrainError
from clonetrain.evaluation import contact_sheet, cross_speaker, drivers, metrics, mouth, paired
from clonetrain.core.manifest import StageResult, sha256_file
from clonetrain.media.compare import write_comparison
from clonetrain.models import checkpoint, mouth_control
from clonetrain.models.inference import generate
from clonetrain.vision import geometry, mouth_texture
from clonetrain.contract.build import build_landmarker
from clonetrain.contract.reads import whole
from clonetrain.vision.landmarks import Landmarker
from clonetrain.core.workspace import Workspace

log = logging.getLogger(__name__)



def driver_paths(cfg: DictConfig) -> tuple[Path, list[drivers.DriverSpec]]:
    """The drivers' folder and the drivers (evaluate.footage_dir, evaluate.drivers)."""
    footage = Path(cfg.evaluate.footage_dir).expanduser()
    return footage, drivers.parse(list(cfg.evaluate.drivers), footage)


def inputs(cfg: DictConfig, ws: Workspace) -> list[Path]:
    """The drivers' files: a changed driver reruns the evaluation."""
    _, specs = driver_paths(cfg)
    return [p for s in specs for p in (s.video, s.audio) if p is not None and p.is_file()]


def run(cfg: DictConfig, ws: Workspace, out_dir: Path) -> StageResult:
    hear = cross_speaker.hearing(cfg.evaluate.hearing, cfg.stream)  # a bad value is an error before any work
    split = files.read_json(ws, "train", "split")
    generator, _, meta = checkpoint.load(files.path(ws, "train", "model"))
    clip = load_clip(ws, generator.spec.image_size, generator.spec)
    lo = split["holdout_from_frame"]
    held = np.arange(lo, clip.n)
    usable = clip.usable[lo:]
    idx = held[usable]
    if idx.size < 25:
        raise ClonetrainError(f"clone {ws.clone!r} has only {idx.size} usable held-out frames", "add footage")
    reference = np.asarray(clip.faces[split["reference_frame"]])
    real = np.asarray(clip.faces[idx])
    mels = np.stack([clip.mel_window(t + 0.5) for t in idx])
    # Runs of consecutive held-out frames (positions in idx): the judge's tracker restarts at each gap.
    runs = np.split(np.arange(len(idx)), np.flatnonzero(np.diff(idx) != 1) + 1)
    energy = clip.energy[idx]
    a = cfg.audio_features

    # The mouth detail render adds, taken from the training frames only (never from the held-out ones).
    full = avatar.full_crops(ws, cfg.mouth_texture, clip)
    bank = avatar.mouth_bank(clip, lo, cfg.mouth_texture.bank_frames, full)
    rendered = mouth_texture.from_cfg(bank, cfg.mouth_texture,
                                      mouth_control.predictor(getattr(generator, "mouth", None)))
    # The judge compares faces at the model's size with the real crops: the same choices of source and placement,
    # painted at that size. What render pastes at full size is measured beside it (full_size below).
    texture = rendered.at_model_size() if rendered is not None else None
    untextured = generate(generator, reference, real, mels, cfg.evaluate.batch_size)
    outputs = {"clone": with_texture(texture, untextured, runs, mels)}
    static = real.copy()
    static[:, real.shape[1] // 2 :] = reference[real.shape[1] // 2 :]
    outputs["static_frame"] = static
    base = split.get("base")
    # The base the clone was fine-tuned from, only while it is still that file (the studio's base is rebuilt in place)
    if base and Path(base).is_file() and split.get("base_sha256") in (None, sha256_file(Path(base))):
        base_gen = checkpoint.load_base_generator(Path(base), generator.spec)
        base_texture = mouth_texture.from_cfg(bank, cfg.mouth_texture,
                                              mouth_control.predictor(getattr(base_gen, "mouth", None)))
        outputs["base_untuned"] = with_texture(
            base_texture and base_texture.at_model_size(),
            generate(base_gen, reference, real, mels, cfg.evaluate.batch_size), runs, mels)

    landmarker = build_landmarker(cfg.landmarks)
    try:
        real_pts = metrics.judge_landmarks(landmarker, real, runs)
        series = {name: metrics.judge(landmarker, gen, real, real_pts, runs) for name, gen in outputs.items()}
        series["real_footage"] = metrics.judge(landmarker, real, real, real_pts, runs)
        plain = metrics.judge(landmarker, untextured, real, real_pts, runs) if texture is not None else None
        xspk, xspk_rows, xspk_series = run_cross_speaker(cfg, ws, generator, clip, lo, reference, landmarker, hear,
                                                         texture)
    finally:
        landmarker.close()
    mouth_real = series["real_footage"].mouth_open
    results = {name: metrics.summarise(s, mouth_real, energy, a.mouth_lead_frames, a.max_offset_frames)
               for name, s in series.items()}
    # Does the mouth look real: sharpness, PSNR and SSIM in the mouth box of the real held-out frames.
    boxes = mouth.mouth_boxes(real_pts, real.shape[1])
    for name, faces in {**outputs, "real_footage": real}.items():
        results[name].update(mouth.quality(faces, real, boxes))
        results[name].update(mouth.flicker(faces, real, boxes, runs))
    # What the texture brings: the clone's held-out mouth without it, beside the clone as rendered.
    texture_effect = {"enabled": texture is not None, "settings": whole(cfg.mouth_texture)}
    if plain is not None:
        without = metrics.summarise(plain, mouth_real, energy, a.mouth_lead_frames, a.max_offset_frames)
        without.update(mouth.quality(untextured, real, boxes))
        without.update(mouth.flicker(untextured, real, boxes, runs))
        texture_effect["bank_frames"] = len(texture.bank.lower)
        # what steered the choice of source: the model's mouth control, or the face's looks (no control)
        texture_effect["opening_from"] = "sound" if texture.control is not None else "looks"
        # The held-out numbers declared to be shown with and without the mouth texture (texture=True).
        texture_effect["without"] = {k: without[k] for k in metric_decl.TEXTURE}
        texture_effect["with"] = {k: results["clone"][k] for k in metric_decl.TEXTURE}
        if rendered.size != texture.size:  # the mouth as render pastes it, against the real full-size crops
            real_full, boxes_full = np.asarray(full[idx]), mouth.mouth_boxes(real_pts, rendered.size)
            texture_effect["full_size"] = {
                "size": rendered.size,
                "with": mouth.quality(with_texture(rendered, untextured, runs, mels), real_full, boxes_full),
                "without": mouth.quality(mouth_texture.resize(untextured, rendered.size), real_full, boxes_full)}
    for name in ("clone", "static_frame"):
        m = xspk["mean"].get(name, {})
        results[name].update({d.heldout: m.get(d.name) for d in metric_decl.DRIVER})
    comparison = {f"clone_vs_{b}": metrics.beats(results["clone"], results[b]) for b in outputs if b != "clone"}
    # How sure: the clone's advantage over each baseline with a 95% interval (block bootstrap over the frames).
    uncertainty = {f"clone_vs_{b}": paired.paired_bootstrap(series["clone"], series[b], mouth_real,
                                                          paired.block_for(clip.fps))
                   for b in outputs if b != "clone"}
    write_frame_series(files.output(out_dir, "evaluate", "frames"), idx, clip.fps, series)
    if xspk_series:  # no drivers (evaluate.drivers=[] or no footage folder): nothing to compare later
        write_driver_series(files.output(out_dir, "evaluate", "cross_speaker"), xspk_series)
    # Every goal declared on a metric (contract.metrics); a cross-speaker one only when it was measured.
    targets, target_values = metric_decl.goal_values(results)
    targets[metric_decl.BEATS_EVERY_BASELINE] = all(all(v.values()) for v in comparison.values())
    report = {"heldout_frames": int(idx.size), "heldout_from_frame": lo, "judge": cfg.landmarks.backend,
              "training_steps": meta.get("steps"), "base": base, "metrics": results, "comparison": comparison,
              "uncertainty": uncertainty, "cross_speaker": xspk, "mouth_texture": texture_effect, "targets": targets,
              "target_values": target_values}
    # The one verdict every later reader shows (report, model card, registry, render).
    report["verdict"] = judged = verdict.clone_verdict(targets, results["clone"], a.min_peak_margin,
                                                       verdict.footage_facts(cfg, ws), verdict.training_facts(ws), base)
    files.write_record(out_dir, "evaluate", "metrics", report)

    # Contact sheet: held-out mouths at a closed, a middling and a wide-open real mouth, then one per driver.
    ranked = np.flatnonzero(np.isfinite(mouth_real))
    ranked = ranked[np.argsort(mouth_real[ranked])]
    picks = dict.fromkeys(int(ranked[int(q * (len(ranked) - 1))]) for q in (0.1, 0.5, 0.95)) if ranked.size else {}
    rows = [(f"held-out|frame {idx[p]}", [(real[p], boxes[p]), (outputs["clone"][p], boxes[p]), (static[p], boxes[p])])
            for p in picks]
    contact_sheet.write(files.output(out_dir, "evaluate", "mouths"), rows + xspk_rows)

    # A side-by-side clip over the held-out sound: real | static | clone.
    wav, sr = frames_sound(files.path(ws, "audio", "audio"), lo, clip.n, clip.fps)
    sf.write(files.output(out_dir, "evaluate", "heldout_sound"), wav, sr, subtype="PCM_16")
    # Frames without a usable face are shown as they are in all three columns.
    shown = np.asarray(clip.faces[held])
    columns = [shown.copy(), shown.copy(), shown.copy()]
    for col, faces in zip(columns, (real, static, outputs["clone"])):
        col[idx - lo] = faces
    write_comparison(columns, clip.fps, files.output(out_dir, "evaluate", "heldout_sound"), files.output(out_dir, "evaluate", "heldout"),
                     ["real", "static frame", "clone"], [False, False, True], ws.clone)

    c = results["clone"]
    experiment_log.log_run(cfg, f"{ws.clone}-evaluate", {f"eval/{k}": v for k, v in c.items()},
                     summary={f"target/{k}": v for k, v in targets.items()},
                     videos={"eval/heldout_real_static_clone": files.output(out_dir, "evaluate", "heldout")})
    result = StageResult(counts={"heldout_frames": int(idx.size), **{f"clone_{k}": v for k, v in c.items()}})
    result.summary = [f"{idx.size} held-out frames judged by {cfg.landmarks.backend} landmarks"]
    for name, m in results.items():
        result.summary.append(f"{name:>13}: LMD {m['lmd_mouth']:.3f}  mouth r {m['mouth_open_corr']:+.3f}  offset "
                              f"{verdict.offset_text(m, a.min_peak_margin)}  "
                              f"PSNR {verdict.number_text(m['psnr_lower'], '.2f', 'n/a (identical)')}  "
                              f"SSIM {m['ssim_lower']:.3f}")
    result.summary.append(f"{'mouth box':>13}: sharpness {results['clone']['mouth_sharpness_ratio']} of real "
                          f"(static {results['static_frame']['mouth_sharpness_ratio']}), PSNR "
                          f"{results['clone']['psnr_mouth']}, SSIM {results['clone']['ssim_mouth']}")
    for d in xspk["drivers"]:
        result.summary.append(f"driver {d['driver']}: offset {d['offset_applied_frames']:+d} frames applied "
                              f"(measured {d['offset_frames']}), mouth r {d['clone']['mouth_r']} (static "
                              f"{d['static_frame']['mouth_r']}), LMD {d['clone']['lmd']} (static "
                              f"{d['static_frame']['lmd']}), shut in pauses {d['clone']['silence_closed_fraction']}, "
                              f"mouth vs sound: offset {d['clone']['sync_offset_frames']}, peak r "
                              f"{d['clone']['sync_peak_corr']}")
    if xspk["drivers"]:
        m = xspk["mean"]["clone"]
        result.summary.append(f"cross-speaker over {m['drivers']} drivers: mouth r {m['mouth_r']} (static "
                              f"{xspk['mean']['static_frame']['mouth_r']}), LMD {m['lmd']}, shut in pauses "
                              f"{m['silence_closed_fraction']}")
    result.summary += [f"target {k}: {v if v == verdict.MET else v.upper()}" for k, v in judged["targets"].items()]
    result.summary.insert(0, f"verdict: {verdict.text(judged)}")
    result.warnings = [f"target {k}: {judged['targets'][k]}" for k in judged["missed"]]
    result.warnings += [f"cross-speaker: {w}" for w in xspk["warnings"]]
    return result


def with_texture(texture: mouth_texture.MouthTexture | None, faces: np.ndarray, runs: list[np.ndarray],
                 windows: np.ndarray) -> np.ndarray:
    """Generated faces with the mouth render adds (from the sound `windows` they were generated from), each run of
    consecutive frames as its own sequence, at the size the texture paints at."""
    if texture is None:
        return faces
    out = np.empty((len(faces), texture.size, texture.size, 3), np.uint8)
    for run in runs:
        texture.reset()
        out[run] = texture(faces[run], windows=windows[run])
    return out


def run_cross_speaker(cfg: DictConfig, ws: Workspace, generator, clip, lo: int, reference: np.ndarray,
                      landmarker: Landmarker, hear=cross_speaker.speech_windows,
                      texture: mouth_texture.MouthTexture | None = None) -> tuple[dict, list, dict]:
    """The clone driven by each driver: the metrics.json section, the contact sheet's rows, and per driver the
    generated and the real mouth opening per frame. `hear`: how its input is cut (cross_speaker.hearing)."""
    c = cfg.evaluate
    out = {"drivers": [], "mean": {}, "skipped": [], "warnings": [], "closed_mouth": None, "loop_frames": None,
           "hearing": c.hearing}
    footage, specs = driver_paths(cfg)
    if not specs:
        return out, [], {}
    if not footage.is_dir() and any(not s.video.is_absolute() or not s.video.is_file() for s in specs):
        out["warnings"].append(f"skipped: the drivers' folder {footage} does not exist (set evaluate.footage_dir "
                               "or $CLONETRAIN_FOOTAGE, or evaluate.drivers=[] to turn this off)")
        log.warning("cross-speaker evaluation %s", out["warnings"][-1])
        return out, [], {}
    size = generator.spec.image_size
    a = cfg.audio_features
    settings = {"fps": clip.fps, "sample_rate": cfg.ingest.sample_rate, "max_side": cfg.ingest.max_side,
                "crf": cfg.ingest.crf, "loudness_lufs": cfg.ingest.loudness_lufs,
                "detector": whole(cfg.faces.detector), "crop_scale": cfg.faces.crop_scale,
                "smooth_window": cfg.faces.smooth_window, "max_gap": cfg.faces.max_gap, "image_size": size,
                "judge": cfg.landmarks.backend, "max_offset_frames": a.max_offset_frames,
                "mouth_lead_frames": a.mouth_lead_frames, "min_sync_correlation": a.min_sync_correlation,
                "min_peak_margin": a.min_peak_margin}
    own = {e["sha256"] for e in (files.manifest(ws, "ingest") or {}).get("inputs", {}).values()}
    ready = []
    for spec in specs:
        try:
            if spec.video.is_file() and sha256_file(spec.video) in own:
                raise drivers.DriverError(f"{spec.video.name} is one of the clone's own takes")
            ready.append(drivers.prepare(spec, settings, Path(c.drivers_cache).expanduser(), landmarker))
        except ClonetrainError as err:
            out["skipped"].append({"driver": spec.name, "reason": str(err)})
            out["warnings"].append(f"driver {spec.name} left out: {err}")
    if not ready:
        return out, [], {}

    # The clone's face: its held-out footage (frames it never trained on), looped back and forth as render loops.
    try:
        loop_idx = avatar.loop_indices(clip.usable[lo:], clip.take[lo:], clip.n - lo, clip.n) + lo
    except ClonetrainError:
        loop_idx = np.array([], int)
    if loop_idx.size < 25:  # no long run of held-out frames: 8 s of the training footage
        loop_idx = avatar.loop_indices(clip.usable, clip.take, lo, 8 * clip.fps)
    loop = np.asarray(clip.faces[loop_idx])
    static_loop = cross_speaker.static_faces(loop, reference)
    landmarker.reset()
    static_loop_pts = metrics.judge_landmarks(landmarker, static_loop, [np.arange(len(loop))])
    speech = files.load(ws, "audio", "speech")
    pauses, source = cross_speaker.judge_clone_pauses(landmarker, clip.faces, clip.usable, speech, lo, c.pause_margin)
    closed_max = cross_speaker.closed_mouth_max(pauses, c.closed_percentile)
    out["closed_mouth"] = {"max_opening": round(closed_max, 4) if np.isfinite(closed_max) else None,
                           "percentile": c.closed_percentile, "frames": int(np.isfinite(pauses).sum()),
                           "from": f"the clone's training footage, {source}"}
    out["loop_frames"] = [int(loop_idx[0]), int(loop_idx[-1]) + 1]
    features = clip.features.to_dict()  # what the model was trained on (checked by load_clip), not the config
    rows, series = [], {}
    for d in ready:
        gen = cross_speaker.drive(generator, features, d, reference, loop, c.batch_size, texture, hear)
        sequence = avatar.ping_pong(d.n, len(loop))
        gen_pts = metrics.judge_landmarks(landmarker, gen, [np.arange(d.n)])
        static_pts = static_loop_pts[sequence]
        row = {"driver": d.spec.name, "video": str(d.spec.video), "audio": str(d.spec.audio) if d.spec.audio else None,
               **{k: d.info[k] for k in ("frames", "frames_judged", "speech_frames", "offset_frames",
                                         "offset_peak_corr", "offset_peak_margin", "offset_clear",
                                         "offset_applied", "offset_applied_frames")},
               **{name: cross_speaker.score(pts, d, closed_max, c.pause_margin, a.mouth_lead_frames,
                                            a.max_offset_frames)
                  for name, pts in (("clone", gen_pts), ("static_frame", static_pts))}}
        out["drivers"].append(row)
        # The sheet: the driver's widest-open real mouth in speech (a loud syllable).
        real_open = np.where(d.speech & d.valid, d.mouth_open, -np.inf)
        k = int(np.argmax(real_open))
        # The clone's mouth is shown where its own face has it (the static frame's box), whatever it generated.
        own_box = mouth.mouth_boxes(static_pts[k : k + 1], size)[0]
        rows.append((f"{d.spec.name[:26]}|frame {k}, r {row['clone']['mouth_r']}",
                     [(d.crops()[k], mouth.mouth_boxes(d.points[k : k + 1], size)[0]), (gen[k], own_box),
                      (static_loop[sequence[k]], own_box)]))
        # Per frame, for the paired bootstrap between two clones on the same drivers (evaluation.paired).
        series[d.spec.name] = (geometry.mouth_opening(gen_pts), d.mouth_open)
    out["mean"] = cross_speaker.summarise(out["drivers"])
    return out, rows, series
