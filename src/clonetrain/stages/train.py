"""train: fine-tune the lip-sync model on one clone's preprocessed footage.

Reads  faces/crops_<train_size>.npy, the audio features (audio/features.json: mel.npy or whisper.npy), flags and
       landmarks; model.base (optional; "auto", the default: the studio's base when one was built)
Writes model.safetensors  generator + expert, with the spec and provenance in its metadata
       split.json         first held-out frame, the reference frame, sample counts
       samples/*.png      reference | masked | generated | real grids after each validation
       samples/heldout.mp4  the first train.preview_seconds of the held-out footage: real | generated
The last train.holdout of the footage is never trained on. Checkpoints every train.checkpoint_every steps
under work/<clone>/resume/; a killed run resumes from them (train.resume=true, the default).

    python -m clonetrain stage=train clone=anna                  # from the studio's base, if built (model.base=auto)
    python -m clonetrain stage=train clone=anna model.base=/elsewhere/base.safetensors   # or another; model.base= none
"""

from __future__ import annotations

import logging
from pathlib import Path

from omegaconf import DictConfig

from clonetrain.contract import files
from clonetrain.contract.clip import check_configured, load_clip
from clonetrain.core.errors import ClonetrainError
from clonetrain.core.manifest import StageResult, sha256_file
from clonetrain.audio_analysis.model_input import check_matches
from clonetrain.models import checkpoint
from clonetrain.models.checkpoint import CheckpointError
from clonetrain.training.data import WindowDataset, reference_frame
from clonetrain.training.fit import fit
from clonetrain.training.preview import heldout_preview
from clonetrain.core.workspace import Workspace


log = logging.getLogger(__name__)

AUTO = "auto"
STUDIO_BASE = "base"  # the name `python -m clonetrain corpus ... --pretrain` gives the base it builds


def studio_base(ws: Workspace) -> Path:
    """Where the studio's base lies under `ws`'s data root (present or not)."""
    return files.of_clone(ws.root, STUDIO_BASE, "pretrain", "model")


def base_path(cfg: DictConfig, ws: Workspace, auto: bool = True) -> Path | None:
    """The base to start from: model.base, or with "auto" the studio's base (None when there is none, or for the
    base itself). auto=False: only a base named outright (pretraining goes on only from one given it)."""
    if cfg.model.base == AUTO:
        if not auto or ws.clone == STUDIO_BASE or cfg.model.arch != "clonetrain":
            return None
        return studio_base(ws)
    return Path(cfg.model.base).expanduser().resolve() if cfg.model.base else None


def usable_base(cfg: DictConfig, ws: Workspace, features) -> tuple[Path | None, str]:
    """The base this run fine-tunes from, and in words why there is none. An "auto" base that is missing or
    was trained for other features or another model shape is passed over with a warning (the studio rebuilds
    it when it can); a base named outright must fit, so a mistake there is an error."""
    base = base_path(cfg, ws)
    named = cfg.model.base != AUTO
    if base is None or (not named and cfg.train.max_steps == 0):  # only a model named outright is adopted
        return None, "from scratch"
    if not named and not base.is_file():
        log.info("no studio base at %s: training from scratch (build one once with: python -m clonetrain corpus "
                 "ARCHIVE --base %s --consent FILE --pretrain)", base, STUDIO_BASE)
        return None, f"from scratch (no studio base at {base})"
    if checkpoint.is_wav2lip_file(base):
        return base, ""
    base_spec, _ = checkpoint.read_header(base)
    try:
        check_matches(features, base_spec.audio_input, base_spec.n_mels, ws.clone, what=f"the base {base}")
        checkpoint.check_compatible(base_spec, checkpoint.spec_from_cfg(cfg.model, features), base)
    except ClonetrainError as e:
        if named:
            raise
        log.warning("the studio base %s does not fit this clone, training from scratch: %s (rebuild the base with "
                    "this config, or set model.base= to say which to use)", base, e.message)
        return None, f"from scratch (the studio base {base} does not fit: {e.message})"
    return base, ""


def expert_path(cfg: DictConfig) -> Path | None:
    return Path(cfg.model.base_expert).expanduser().resolve() if cfg.model.base_expert else None


def inputs(cfg: DictConfig, ws: Workspace, auto: bool = True) -> list[Path]:
    """Input files beyond the stages' outputs: the base and expert checkpoints. An "auto" base is recorded
    present or absent, so that a clone trained before the studio's base was built retrains once it is."""
    base, expert = base_path(cfg, ws, auto), expert_path(cfg)
    if base is not None and not base.is_file() and cfg.model.base != AUTO:
        raise CheckpointError(f"base checkpoint {base} does not exist",
                              "point model.base at a .safetensors file written by stage=pretrain (or, with "
                              "model=wav2lip, at the published wav2lip_gan.pth), or give model.base= to train from scratch")
    if expert is not None and not expert.is_file():
        raise CheckpointError(f"expert checkpoint {expert} does not exist",
                              "point model.base_expert at the published lipsync_expert.pth, or leave it empty")
    return [p for p in (base, expert) if p is not None]


def run(cfg: DictConfig, ws: Workspace, out_dir: Path) -> StageResult:
    clip = load_clip(ws, cfg.model.image_size)
    check_configured(clip, cfg.audio_features, cfg.ingest.sample_rate)
    split = clip.split(cfg.train.holdout)
    T = cfg.model.sync_frames
    train_ds = WindowDataset(clip, 0, split, T, 0, split, augment=cfg.train.augment)
    val_ds = WindowDataset(clip, split, clip.n, T, 0, split)
    if len(train_ds) == 0 or len(val_ds) == 0:
        raise ClonetrainError(f"clone {ws.clone!r} has too little usable footage to train and hold out "
                              f"({len(train_ds)} training and {len(val_ds)} held-out windows)",
                              "add footage of the person speaking to camera")
    base, scratch_why = usable_base(cfg, ws, clip.features)
    expert = expert_path(cfg)
    consent = files.manifest(ws, "ingest")["details"].get("consent_sha256")
    # train.max_steps=0 adopts model.base as the clone's model: it is no base to compare the clone with then.
    adopted = base if cfg.train.max_steps == 0 else None
    meta = {"clone": ws.clone, "base": str(base) if base and not adopted else None,
            "base_sha256": sha256_file(base) if base and not adopted else None,
            "adopted": str(adopted) if adopted else None, "adopted_sha256": sha256_file(adopted) if adopted else None,
            "base_expert": str(expert) if expert else None, "base_expert_sha256": sha256_file(expert) if expert else None,
            "consent_sha256": consent,
            "holdout_from_frame": split, "reference_frame": reference_frame(clip, split)}
    preview = None
    if cfg.train.preview_seconds > 0:
        preview = heldout_preview(clip, split, meta["reference_frame"], files.path(ws, "audio", "audio"),
                                  files.output(out_dir, "train", "preview"), cfg.train.preview_seconds)
    stats = fit(cfg, train_ds, val_ds, out_dir, ws.resume_dir("train"), f"{ws.clone}-train", features=clip.features,
                init=base, init_expert=expert, meta=meta, preview=preview)
    files.write_record(out_dir, "train", "split", {
        "frames": clip.n, "holdout_from_frame": split, "reference_frame": meta["reference_frame"],
        "train_windows": len(train_ds), "heldout_windows": len(val_ds), "base": meta["base"], "adopted": meta["adopted"],
        "base_sha256": meta["base_sha256"], "base_expert": meta["base_expert"],
    })
    result = StageResult(counts={**{k: v for k, v in stats.items() if k not in ("metrics", "tracker_run_id", "mouth_control")},
                                 **stats["metrics"]})
    result.details = {**{k: meta[k] for k in ("base", "base_sha256", "base_expert", "base_expert_sha256", "adopted",
                                              "adopted_sha256")},
                      "tracker_run_id": stats["tracker_run_id"], "mouth_control": stats["mouth_control"]}
    m = stats["metrics"]
    result.summary = [
        f"{stats['steps']} steps in {stats['seconds']:.0f} s on {stats['device']} ({stats['precision']}"
        + (f", {stats['processes']} processes" if stats["processes"] > 1 else "") + "), "
        f"stopped by {stats['stopped_by']}" + (f", resumed from step {stats['resumed_from_step']}"
                                                if stats["resumed_from_step"] is not None else ""),
        f"{'adopted ' + str(adopted) if adopted else 'from base ' + str(base) if base else scratch_why}; "
        f"{len(train_ds)} training windows, "
        f"{len(val_ds)} held-out windows (frames {split}-{clip.n - 1})",
        "held-out: " + ", ".join(f"{k.split('/')[1]} {v:.4f}" for k, v in sorted(m.items()) if k.startswith("val/")),
    ]
    return result
