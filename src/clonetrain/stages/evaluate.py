"""evaluate: drive the clone with the held-out audio and measure it on the held-out frames, beside baselines.

Reads  train/model.safetensors, train/split.json, the preprocessed footage; the base checkpoint the clone was
       fine-tuned from (if any)
Writes metrics.json  for the clone, a static reference frame (its mouth frozen on the real upper face) and the
                     un-tuned base: mouth LMD, mouth-opening correlation, audio-video offset of the generated
                     frames, PSNR and SSIM of the lower face; whether the clone beats each baseline, and by how
                     much with a 95% interval (uncertainty: a block bootstrap over the frames)
       frames.npz    what the judge measured on every held-out frame, per method (for paired comparisons)
       heldout.mp4   real | static | clone side by side over the held-out sound, labelled AI-generated
                     (also logged, with the metrics, to the tracker: wandb offline by default)

    python -m clonetrain stage=evaluate clone=anna
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import soundfile as sf
from omegaconf import DictConfig

from clonetrain import tracking
from clonetrain.evaluation import metrics, paired
from clonetrain.manifest import StageResult
from clonetrain.media.compare import write_comparison
from clonetrain.models import checkpoint
from clonetrain.models.inference import generate
from clonetrain.training.data import load_clip
from clonetrain.vision.landmarks import make_landmarker
from clonetrain.workspace import Workspace, write_json_atomic

# Everything the judgement is made of: the offset estimate (audio.sync) and the judge's landmarks and geometry too.
CODE = ("clonetrain.evaluation.metrics", "clonetrain.evaluation.paired", "clonetrain.audio.sync",
        "clonetrain.vision.landmarks", "clonetrain.vision.geometry", "clonetrain.models.inference",
        "clonetrain.training.data", "clonetrain.media.label")


def write_frame_series(path: Path, frames: np.ndarray, fps: int, series: dict[str, metrics.FrameSeries]) -> None:
    """frames.npz: the held-out frame numbers, the frame rate and, per method, what the judge measured on each frame."""
    arrays = {"frames": frames, "fps": np.array(fps)}
    for name, s in series.items():
        arrays.update({f"{name}/{k}": v for k, v in vars(s).items()})
    np.savez(path, **arrays)  # inside the stage's build folder, which is swapped into place whole


def read_frame_series(path: Path) -> tuple[np.ndarray, int, dict[str, metrics.FrameSeries]]:
    with np.load(path) as z:
        names = sorted({k.split("/")[0] for k in z.files if "/" in k})
        return z["frames"], int(z["fps"]), {n: metrics.FrameSeries(**{f: z[f"{n}/{f}"] for f in
                                                         ("mouth_open", "lmd", "psnr", "ssim")}) for n in names}


def run(cfg: DictConfig, ws: Workspace, out_dir: Path) -> StageResult:
    train_dir = ws.stage_dir("train")
    split = json.loads((train_dir / "split.json").read_text())
    generator, _, meta = checkpoint.load(train_dir / "model.safetensors")
    clip = load_clip(ws, generator.spec.image_size, generator.spec)
    lo = split["holdout_from_frame"]
    held = np.arange(lo, clip.n)
    usable = clip.usable[lo:]
    idx = held[usable]
    if idx.size < 25:
        from clonetrain.errors import ClonetrainError

        raise ClonetrainError(f"clone {ws.clone!r} has only {idx.size} usable held-out frames", "add footage")
    reference = np.asarray(clip.faces[split["reference_frame"]])
    real = np.asarray(clip.faces[idx])
    mels = np.stack([clip.mel_window(t + 0.5) for t in idx])
    # Runs of consecutive held-out frames (positions in idx): the judge's tracker restarts at each gap.
    runs = np.split(np.arange(len(idx)), np.flatnonzero(np.diff(idx) != 1) + 1)
    energy = clip.energy[idx]
    a = cfg.audio_features

    outputs = {"clone": generate(generator, reference, real, mels, cfg.evaluate.batch_size)}
    static = real.copy()
    static[:, real.shape[1] // 2 :] = reference[real.shape[1] // 2 :]
    outputs["static_frame"] = static
    base = split.get("base")
    if base and Path(base).is_file():
        base_gen = checkpoint.load_base_generator(Path(base), generator.spec)
        outputs["base_untuned"] = generate(base_gen, reference, real, mels, cfg.evaluate.batch_size)

    landmarker = make_landmarker(cfg.landmarks.backend, cfg.landmarks.fan_weights, cfg.landmarks.device)
    try:
        real_pts = metrics.judge_landmarks(landmarker, real, runs)
        series = {name: metrics.judge(landmarker, gen, real, real_pts, runs) for name, gen in outputs.items()}
        series["real_footage"] = metrics.judge(landmarker, real, real, real_pts, runs)
    finally:
        landmarker.close()
    mouth_real = series["real_footage"].mouth_open
    results = {name: metrics.summarise(s, mouth_real, energy, a.mouth_lead_frames, a.max_offset_frames)
               for name, s in series.items()}
    comparison = {f"clone_vs_{b}": metrics.beats(results["clone"], results[b]) for b in outputs if b != "clone"}
    # How sure: the clone's advantage over each baseline with a 95% interval (block bootstrap over the frames).
    uncertainty = {f"clone_vs_{b}": paired.paired_bootstrap(series["clone"], series[b], mouth_real,
                                                          paired.block_for(clip.fps))
                   for b in outputs if b != "clone"}
    write_frame_series(out_dir / "frames.npz", idx, clip.fps, series)
    static_lmd = results["static_frame"]["lmd_mouth"]
    targets = {
        "mouth_open_corr>=0.5": results["clone"]["mouth_open_corr"] >= 0.5,
        "lmd_mouth<=0.7*static": results["clone"]["lmd_mouth"] <= 0.7 * static_lmd,
        "offset_within_1_frame": results["clone"]["offset_frames"] is not None
        and abs(results["clone"]["offset_frames"]) <= 1,
        "beats_every_baseline": all(all(v.values()) for v in comparison.values()),
    }
    report = {"heldout_frames": int(idx.size), "heldout_from_frame": lo, "judge": cfg.landmarks.backend,
              "training_steps": meta.get("steps"), "base": base, "metrics": results, "comparison": comparison,
              "uncertainty": uncertainty, "targets": targets}
    write_json_atomic(out_dir / "metrics.json", report)

    # A side-by-side clip over the held-out sound: real | static | clone.
    sr = 16000
    wav, _ = sf.read(ws.stage_dir("audio") / "audio.wav", dtype="float32")
    spf = sr // clip.fps
    sf.write(out_dir / "heldout.wav", wav[lo * spf : clip.n * spf], sr, subtype="PCM_16")
    # Frames without a usable face are shown as they are in all three columns.
    whole = np.asarray(clip.faces[held])
    columns = [whole.copy(), whole.copy(), whole.copy()]
    for col, faces in zip(columns, (real, static, outputs["clone"])):
        col[idx - lo] = faces
    write_comparison(columns, clip.fps, out_dir / "heldout.wav", out_dir / "heldout.mp4",
                     "real | static | AI-generated clone", ws.clone)

    c = results["clone"]
    tracking.log_run(cfg, f"{ws.clone}-evaluate", {f"eval/{k}": v for k, v in c.items()},
                     summary={f"target/{k}": v for k, v in targets.items()},
                     videos={"eval/heldout_real_static_clone": out_dir / "heldout.mp4"})
    result = StageResult(counts={"heldout_frames": int(idx.size), **{f"clone_{k}": v for k, v in c.items()}})
    result.summary = [f"{idx.size} held-out frames judged by {cfg.landmarks.backend} landmarks"]
    for name, m in results.items():
        result.summary.append(f"{name:>13}: LMD {m['lmd_mouth']:.3f}  mouth r {m['mouth_open_corr']:+.3f}  offset "
                              f"{m['offset_frames']}  PSNR {m['psnr_lower']}  SSIM {m['ssim_lower']:.3f}")
    result.summary += [f"target {k}: {'met' if v else 'MISSED'}" for k, v in targets.items()]
    result.warnings = [f"target missed: {k}" for k, v in targets.items() if not v]
    return result
