"""package: turn the trained, evaluated clone into a versioned package and an archive of it, and register it.

Reads  train/model.safetensors, evaluate/metrics.json, the preprocessed footage and the ingest consent record
Writes pkg/ (the package, see clonetrain/product/clone_package.py) in its stage folder; publishes it as
       data/clones/<clone>/<version>/ and data/clones/<clone>/<clone>-<version>.tar.gz, and registers the version
       (status candidate; nightly or `python -m clonetrain registry promote` makes it live)

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

from clonetrain import __version__
from clonetrain.product import avatar, clone_package, registry
from clonetrain.core import experiment_log
from clonetrain.evaluation import verdict
from clonetrain.core.manifest import StageResult, versions
from clonetrain.media.paste import lower_face_mask
from clonetrain.media.write import write_video
from clonetrain.models import checkpoint
from clonetrain.motion import library
from clonetrain.contract import files
from clonetrain.contract import metrics as declared
from clonetrain.contract.clip import load_clip
from clonetrain.contract.reads import unrecorded
from clonetrain.product import voice_package
from clonetrain.core.workspace import Workspace, write_json_atomic, write_text_atomic


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
    judged = verdict.of_metrics(metrics)
    targets = (judged["targets"] if judged else
               {k: verdict.MET if v else verdict.MISSED for k, v in metrics["targets"].items()})
    helps = "".join(f"\n- would help: {a}" for a in (judged or {}).get("advice", []))
    rows = "\n".join(f"| {name} | " + " | ".join(str(m[c.name]) for c in declared.CARD) + " |"
                     for name, m in metrics["metrics"].items())
    return f"""# Streamer clone `{clone}` {version}

**Everything this clone renders is AI-generated and carries a visible "AI-generated" label.**

**Verdict ({judged['level'] if judged else 'not judged'}): {judged['headline'] if judged else 'evaluated before verdicts existed; see the targets below.'}**{helps}

- Person: {consent['person']} (consent recorded by {consent['recorded_by']} on {consent['date']}, expires
  {consent['expires']}; consent sha256 `{consent['sha256']}`)
- Permitted uses: {', '.join(consent['permitted_uses'])}
- Trained from: {len(takes)} take(s): {', '.join(t['file'] for t in takes)}; frames 0-{split['holdout_from_frame'] - 1}
  trained on, the rest held out
- Fine-tuned from: {split.get('base') or 'scratch'}; {train.get('steps')} steps in {train.get('seconds')} s
- Built by clonetrain {__version__} on {datetime.now(timezone.utc).date()}

## Held-out evaluation ({metrics['heldout_frames']} frames, judged by {metrics['judge']} landmarks)

| output | {' | '.join(c.label for c in declared.CARD)} |
| --- |{' --- |' * len(declared.CARD)}
{rows}

Targets: {', '.join(f"{k}: {v}" for k, v in targets.items())}

## Intended use and limits

Lip-sync of this one person's face for the permitted uses above, on footage framed like the training takes.
Not for impersonation, for other people, or after the consent expires (renders are refused then).
Mouth shapes of sounds absent from the training footage may be wrong. Clone LMD {c['lmd_mouth']}, mouth r {c['mouth_open_corr']}.
"""


def run(cfg: DictConfig, ws: Workspace, out_dir: Path) -> StageResult:
    pkg = files.output(out_dir, "package", "staging")
    (pkg / "avatar").mkdir(parents=True)
    version = registry.next_version(ws.root, ws.clone)
    model = files.path(ws, "train", "model")
    generator, _, train_meta = checkpoint.load(model)
    shutil.copy2(model, pkg / clone_package.MODEL)
    _export_torchscript(generator, pkg / "generator.torchscript")

    clip = load_clip(ws, generator.spec.image_size, generator.spec)
    split = files.read_json(ws, "train", "split")
    fps = clip.fps
    ingest_takes = files.read_json(ws, "ingest", "takes")
    sizes = {t["take"]: (t["width"], t["height"]) for t in ingest_takes if t.get("video")}
    ids = avatar.footage_frames(clip.usable, clip.take, sizes, split["holdout_from_frame"],
                                int(cfg.render.footage_seconds * fps))
    a = pkg / "avatar"
    # The footage the clone is shown with, in the order of its motion library, at full resolution.
    with avatar.workspace_store(ws, ids) as store:
        w, h = store.size
        write_video((store.frame(i) for i in range(len(ids))), (w, h), fps, a / "footage.mp4", crf=12)
    pool = avatar.footage_pool(ws, ids, fps)
    faces = files.read(ws, "faces", "faces")
    lm = files.read(ws, "landmarks", "landmarks")
    np.savez(a / "footage.npz", **pool.arrays(), square=faces.square[ids], landmarks=lm.points_frame[ids],
             source_frame=ids)
    cv2.imwrite(str(a / "reference.png"), cv2.cvtColor(np.asarray(clip.faces[split["reference_frame"]]), cv2.COLOR_RGB2BGR))
    # The training mouths render takes fine detail from (vision.mouth_texture), as evaluate measured it.
    bank = avatar.mouth_bank(clip, split["holdout_from_frame"], cfg.mouth_texture.bank_frames,
                             avatar.full_crops(ws, cfg.mouth_texture, clip))
    bank.save(a / "mouth_bank.npz")
    cv2.imwrite(str(a / "paste_mask.png"), (lower_face_mask(generator.spec.image_size)[..., 0] * 255).astype(np.uint8))
    motion = library.segments(pool)
    write_json_atomic(a / "motion.json", {"fps": fps, "source": "avatar/footage.mp4 (footage.npz: per frame pose, "
                                          "box, talking, nodding, run, crop square, source frame)",
                                          "jump_scale": library.JumpScale.of(pool).__dict__, "segments": motion})

    shutil.copy2(files.path(ws, "audio", "profile"), pkg / "voice_profile.json")
    shutil.copy2(files.path(ws, "evaluate", "metrics"), pkg / clone_package.METRICS)
    shutil.copy2(files.path(ws, "ingest", "consent"), pkg / clone_package.CONSENT)
    write_text_atomic(pkg / "config.yaml", OmegaConf.to_yaml(unrecorded(cfg), resolve=True))
    consent = json.loads((pkg / clone_package.CONSENT).read_text())
    metrics = json.loads((pkg / clone_package.METRICS).read_text())
    takes = [{"file": t["file"], "sha256": t["sha256"], "status": t["status"]}
             for t in ingest_takes]
    write_text_atomic(pkg / clone_package.CARD, _model_card(ws.clone, version, consent, metrics,
                                                          files.manifest(ws, "train")["counts"], split,
                                                          [t for t in takes if t["status"] == "ok"])
                      + voice_package.card_section(ws))
    voice = voice_package.add(ws, pkg)
    manifest = {
        "format": clone_package.FORMAT, "clone": ws.clone, "version": version,
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "files": clone_package.file_table(pkg), "source_takes": takes,
        "consent_sha256": clone_package.sha256(pkg / clone_package.CONSENT), "consent_expires": consent["expires"],
        "model": {**generator.spec.__dict__, "trained_steps": train_meta.get("steps"), "base": split.get("base")},
        # What a runtime needs to reproduce the model's audio input (audio_analysis.model_input.FeatureSpec).
        "audio": clip.features.to_dict(),
        "avatar": {"fps": fps, "size": [w, h], "footage_frames": len(ids), "mel_window": generator.spec.audio_window,
                   "mouth_bank_frames": len(bank.lower)},
        "voice": voice, "metrics": {**metrics["metrics"]["clone"], **voice_package.gate_metrics(ws)},
        "versions": versions(),
    }
    write_json_atomic(pkg / clone_package.MANIFEST, manifest)
    clone_package.verify(pkg)
    if (key := clone_package.signing_key()) is not None:
        clone_package.sign(pkg, key)  # a studio key: the package is trusted by its signature beyond this registry

    # Publish: folder then archive, each appearing whole or not at all; then register.
    dest = ws.root / "clones" / ws.clone / version
    tmp = dest.with_name(f".{version}.tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    shutil.copytree(pkg, tmp)
    tmp.rename(dest)
    archive = dest.with_name(f"{ws.clone}-{version}.tar.gz")
    clone_package.make_archive(dest, archive)
    entry = clone_package.registry_entry(ws.root, dest, archive, metrics, files.manifest(ws, "ingest")["counts"],
                           ws.fingerprints.get("package"))
    judged = verdict.of_metrics(metrics)
    registry.add_version(ws.root, ws.clone, version, entry)
    # The clone in the tracker too, from the training run that made it (wandb, offline unless told otherwise).
    experiment_log.log_clone(cfg, dest, ws.clone, version, manifest["metrics"], judged,
                             files.manifest(ws, "train")["details"].get("tracker_run_id"),
                             copied=(clone_package.METRICS, clone_package.CARD, clone_package.MANIFEST))
    result = StageResult(counts={"version": version, "files": len(manifest["files"]),
                                 "motion_segments": len(motion)})
    result.details = {"version": version, "path": str(dest), "archive": str(archive)}
    by_label = {k: sum(s["seconds"] for s in motion if k in (s["speech"], s["head"]))
                for k in ("talking", "idle", "nodding")}
    result.summary = [f"{ws.clone} {version}: {dest}", f"archive: {archive}",
                      "motion library: " + ", ".join(f"{k} {v:.0f} s" for k, v in by_label.items()),
                      f"verdict: {verdict.text(judged) if judged else 'not evaluated'}",
                      f"a candidate: render uses it once promoted (python -m clonetrain registry promote "
                      f"{ws.clone} {version})"]
    return result
