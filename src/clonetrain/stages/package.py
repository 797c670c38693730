"""package: turn the trained, evaluated clone into a versioned package and an archive of it, and register it.

Reads  train/model.safetensors, evaluate/metrics.json, the preprocessed footage and the ingest consent record
Writes pkg/ (the package, see clonetrain/package.py) in its stage folder; publishes it as
       data/clones/<clone>/<version>/ and data/clones/<clone>/<clone>-<version>.tar.gz, and registers the version
       (status candidate; nightly or `python -m clonetrain.registry promote` makes it live)

    python -m clonetrain stage=package clone=anna
"""

from __future__ import annotations

import json
import shutil
from datetime import datetime, timezone
from pathlib import Path

import cv2
import numpy as np
import torch
from omegaconf import DictConfig, OmegaConf

from clonetrain import __version__, avatar, package, registry
from clonetrain.manifest import StageResult, versions
from clonetrain.media.paste import lower_face_mask
from clonetrain.media.write import write_video
from clonetrain.models import checkpoint
from clonetrain.training.data import load_clip
from clonetrain.voice import package as voice_package
from clonetrain.vision.motion import label_windows
from clonetrain.workspace import Workspace, write_json_atomic, write_text_atomic

CODE = ("clonetrain.package", "clonetrain.avatar", "clonetrain.vision.motion", "clonetrain.registry",
        "clonetrain.voice.package")


def _export_torchscript(generator, path: Path) -> None:
    s = generator.spec
    example = (torch.rand(1, 6, s.image_size, s.image_size), torch.rand(1, 1, s.n_mels, s.audio_window))
    with torch.no_grad():
        traced = torch.jit.trace(generator.eval(), example)
        # The exported graph must compute what the model does, on another input than the one traced with.
        check = (torch.rand(2, 6, s.image_size, s.image_size), torch.rand(2, 1, s.n_mels, s.audio_window))
        if not torch.allclose(traced(*check), generator(*check), atol=1e-5):
            raise RuntimeError("the TorchScript export does not reproduce the model")
    traced.save(str(path))


def _model_card(clone: str, version: str, consent: dict, metrics: dict, train: dict, split: dict, takes: list) -> str:
    c = metrics["metrics"]["clone"]
    rows = "\n".join(f"| {name} | {m['lmd_mouth']} | {m['mouth_open_corr']} | {m['offset_frames']} | "
                     f"{m['psnr_lower']} | {m['ssim_lower']} |" for name, m in metrics["metrics"].items())
    return f"""# Streamer clone `{clone}` {version}

**Everything this clone renders is AI-generated and carries a visible "AI-generated" label.**

- Person: {consent['person']} (consent recorded by {consent['recorded_by']} on {consent['date']}, expires
  {consent['expires']}; consent sha256 `{consent['sha256']}`)
- Permitted uses: {', '.join(consent['permitted_uses'])}
- Trained from: {len(takes)} take(s): {', '.join(t['file'] for t in takes)}; frames 0-{split['holdout_from_frame'] - 1}
  trained on, the rest held out
- Fine-tuned from: {split.get('base') or 'scratch'}; {train.get('steps')} steps in {train.get('seconds')} s
- Built by clonetrain {__version__} on {datetime.now(timezone.utc).date()}

## Held-out evaluation ({metrics['heldout_frames']} frames, judged by {metrics['judge']} landmarks)

| output | mouth LMD (lower is better) | mouth-opening r | offset (frames) | PSNR lower face | SSIM lower face |
| --- | --- | --- | --- | --- | --- |
{rows}

Targets: {', '.join(f"{k}: {'met' if v else 'missed'}" for k, v in metrics['targets'].items())}

## Intended use and limits

Lip-sync of this one person's face for the permitted uses above, on footage framed like the training takes.
Not for impersonation, for other people, or after the consent expires (renders are refused then).
Mouth shapes of sounds absent from the training footage may be wrong. Clone LMD {c['lmd_mouth']}, mouth r {c['mouth_open_corr']}.
"""


def run(cfg: DictConfig, ws: Workspace, out_dir: Path) -> StageResult:
    pkg = out_dir / "pkg"
    (pkg / "avatar").mkdir(parents=True)
    train_dir, eval_dir = ws.stage_dir("train"), ws.stage_dir("evaluate")
    version = registry.next_version(ws.root, ws.clone)
    generator, _, train_meta = checkpoint.load(train_dir / "model.safetensors")
    shutil.copy2(train_dir / "model.safetensors", pkg / "model.safetensors")
    _export_torchscript(generator, pkg / "generator.torchscript")

    clip = load_clip(ws, generator.spec.image_size, generator.spec)
    split = json.loads((train_dir / "split.json").read_text())
    fps = clip.fps
    loop = avatar.loop_indices(clip.usable, clip.take, split["holdout_from_frame"], int(cfg.render.loop_seconds * fps))
    frames = avatar.decode_frames(ws, loop)
    h, w = frames.shape[1:3]
    faces = np.load(ws.stage_dir("faces") / "faces.npz")
    lm = np.load(ws.stage_dir("landmarks") / "landmarks.npz")
    a = pkg / "avatar"
    write_video(iter(frames), (w, h), fps, a / "idle_loop.mp4", crf=12)
    np.save(a / "idle_crops.npy", np.asarray(clip.faces[loop]))
    np.save(a / "idle_squares.npy", faces["square"][loop])
    np.save(a / "idle_boxes.npy", faces["box"][loop])
    np.save(a / "idle_landmarks.npy", lm["points_frame"][loop])
    cv2.imwrite(str(a / "reference.png"), cv2.cvtColor(np.asarray(clip.faces[split["reference_frame"]]), cv2.COLOR_RGB2BGR))
    cv2.imwrite(str(a / "paste_mask.png"), (lower_face_mask(generator.spec.image_size)[..., 0] * 255).astype(np.uint8))
    speech = np.load(ws.stage_dir("audio") / "speech.npy")
    motion = label_windows(speech, lm["pose"][:, 1], lm["pose"][:, 0], clip.usable, clip.take, fps)
    write_json_atomic(a / "motion.json", {"fps": fps, "source": "the clone's footage, frame indices of the ingest "
                                          "timeline", "segments": motion})

    shutil.copy2(ws.stage_dir("audio") / "profile.json", pkg / "voice_profile.json")
    shutil.copy2(eval_dir / "metrics.json", pkg / "metrics.json")
    shutil.copy2(ws.stage_dir("ingest") / "consent.json", pkg / "consent.json")
    write_text_atomic(pkg / "config.yaml", OmegaConf.to_yaml(cfg, resolve=True))
    consent = json.loads((pkg / "consent.json").read_text())
    metrics = json.loads((pkg / "metrics.json").read_text())
    takes = [{"file": t["file"], "sha256": t["sha256"], "status": t["status"]}
             for t in json.loads((ws.stage_dir("ingest") / "takes.json").read_text())]
    write_text_atomic(pkg / "model_card.md", _model_card(ws.clone, version, consent, metrics,
                                                          ws.read_manifest("train")["counts"], split,
                                                          [t for t in takes if t["status"] == "ok"])
                      + voice_package.card_section(ws))
    voice = voice_package.add(ws, pkg)
    manifest = {
        "format": package.FORMAT, "clone": ws.clone, "version": version,
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "files": package.file_table(pkg), "source_takes": takes,
        "consent_sha256": package.sha256(pkg / "consent.json"), "consent_expires": consent["expires"],
        "model": {**generator.spec.__dict__, "trained_steps": train_meta.get("steps"), "base": split.get("base")},
        # What a runtime needs to reproduce the model's audio input (audio.model_input.FeatureSpec).
        "audio": clip.features.to_dict(),
        "avatar": {"fps": fps, "size": [w, h], "loop_frames": len(loop), "loop_from_frame": int(loop[0]),
                   "mel_window": generator.spec.audio_window},
        "voice": voice, "metrics": {**metrics["metrics"]["clone"], **voice_package.gate_metrics(ws)},
        "versions": versions(),
    }
    write_json_atomic(pkg / package.MANIFEST, manifest)
    package.verify(pkg)

    # Publish: folder then archive, each appearing whole or not at all; then register.
    dest = ws.root / "clones" / ws.clone / version
    tmp = dest.with_name(f".{version}.tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    shutil.copytree(pkg, tmp)
    tmp.rename(dest)
    archive = dest.with_name(f"{ws.clone}-{version}.tar.gz")
    package.make_archive(dest, archive)
    registry.add_version(ws.root, ws.clone, version, {
        "path": str(dest.relative_to(ws.root)), "archive": str(archive.relative_to(ws.root)),
        "package_sha256": package.sha256(pkg / package.MANIFEST), "metrics": manifest["metrics"],
        "takes": [t["sha256"] for t in takes if t["status"] == "ok"], "config_digest": ws.fingerprints.get("package"),
    })
    result = StageResult(counts={"version": version, "files": len(manifest["files"]),
                                 "motion_segments": len(motion)})
    result.details = {"version": version, "path": str(dest), "archive": str(archive)}
    by_label = {k: sum(s["seconds"] for s in motion if s["label"] == k) for k in ("idle", "talking", "nodding")}
    result.summary = [f"{ws.clone} {version}: {dest}", f"archive: {archive}",
                      "motion library: " + ", ".join(f"{k} {v:.0f} s" for k, v in by_label.items())]
    return result
