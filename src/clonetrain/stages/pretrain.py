"""pretrain: learn a base lip-sync model from many people's preprocessed footage.

The "clone" of this stage names the base (e.g. clone=base); its corpus is pretrain.corpus, a list of
preprocessed clones. Each clone's last train.holdout is held out, as in stage=train.

Writes model.safetensors and corpus.json into work/<base>/pretrain/. With model.base named outright it goes on from
that checkpoint (a base trained for longer, or on another machine) instead of starting from scratch ("auto", the
default, means none here). The base named "base" is the studio's: every clone starts from it (model.base=auto).

    python -m clonetrain stage=pretrain clone=base pretrain.corpus=[may,woman,streamer]
    python -m clonetrain stage=train clone=man          # fine-tuned from it
"""

from __future__ import annotations

from pathlib import Path

from omegaconf import DictConfig
from torch.utils.data import ConcatDataset

from clonetrain.contract import files
from clonetrain.core.errors import ClonetrainError
from clonetrain.core.manifest import StageResult
from clonetrain.audio_analysis.model_input import check_matches
from clonetrain.contract.clip import check_configured, load_clip
from clonetrain.training.data import WindowDataset
from clonetrain.core.manifest import sha256_file
from clonetrain.models import checkpoint
from clonetrain.stages import train as train_stage
from clonetrain.training.fit import fit
from clonetrain.core.workspace import Workspace


def _corpus(cfg: DictConfig, ws: Workspace) -> list[Workspace]:
    if not cfg.pretrain.corpus:
        raise ClonetrainError("pretrain.corpus is empty", "name the preprocessed clones to learn from, e.g. "
                              f"python -m clonetrain stage=pretrain clone={ws.clone} pretrain.corpus=[anna,ben]")
    from clonetrain.product.consent import require_live

    for c in cfg.pretrain.corpus:
        require_live(ws.root, c, use="train")  # a base learns from people too: each one's consent must be in force
    return [Workspace(ws.root, c) for c in cfg.pretrain.corpus]


def inputs(cfg: DictConfig, ws: Workspace) -> list[Path]:
    # The corpus clones' manifests carry the digests of their outputs: a changed clone changes them.
    paths = []
    for c in _corpus(cfg, ws):
        for stage in ("faces", "landmarks", "audio"):
            p = c.manifest_path(stage)
            if not p.is_file():
                raise ClonetrainError(f"corpus clone {c.clone!r} has not been preprocessed (no {stage} output)",
                                      f"run: python -m clonetrain stage=preprocess clone={c.clone}")
            paths.append(p)
    return paths + train_stage.inputs(cfg, ws, auto=False)  # model.base, when it goes on from one


def corpus_datasets(cfg: DictConfig, ws: Workspace):
    """The corpus as (training, held-out, mouth control) datasets, a row per clip, and the features they hear.
    The mouth control is fitted on whole clips: its ridge is chosen by leaving clips out, so it needs no held-out
    frames of its own, and the held-out 15% of every clip is 18% more data for it (measured on the studio's base: mean
    r over the six evaluation drivers 0.572 fitted on the training frames, 0.584 on whole clips). The held-out
    frames' own openings then inform the base's validation a little; the generator never trains on them."""
    T = cfg.model.sync_frames
    train_parts, val_parts, control_parts, rows, features = [], [], [], [], None
    for c in _corpus(cfg, ws):
        clip = load_clip(c, cfg.model.image_size)
        # One base hears one kind of features: every corpus clone as audio_features says.
        check_configured(clip, cfg.audio_features, cfg.ingest.sample_rate)
        features = features or clip.features
        check_matches(clip.features, features.signature, features.dims, c.clone, what="the rest of the corpus")
        split = clip.split(cfg.train.holdout)
        tr = WindowDataset(clip, 0, split, T, 0, split, augment=cfg.pretrain.augment)
        va = WindowDataset(clip, split, clip.n, T, 0, split)
        rows.append({"clone": c.clone, "frames": clip.n, "train_windows": len(tr), "heldout_windows": len(va)})
        if len(tr):
            train_parts.append(tr)
            control_parts.append(WindowDataset(clip, 0, clip.n, T, 0, split))
        if len(va):
            val_parts.append(va)
    if not train_parts or not val_parts:
        raise ClonetrainError("the pretraining corpus has no usable speech footage", "add preprocessed talking clones")
    return ConcatDataset(train_parts), ConcatDataset(val_parts), ConcatDataset(control_parts), rows, features


def run(cfg: DictConfig, ws: Workspace, out_dir: Path) -> StageResult:
    train_ds, val_ds, control_ds, rows, features = corpus_datasets(cfg, ws)
    init = train_stage.base_path(cfg, ws, auto=False)
    if init is not None:
        base_spec, _ = checkpoint.read_header(init)
        check_matches(features, base_spec.audio_input, base_spec.n_mels, ws.clone, what=f"the base {init}")
    stats = fit(cfg, train_ds, val_ds, out_dir, ws.resume_dir("pretrain"),
                f"{ws.clone}-pretrain", features=features, init=init, control_ds=control_ds,
                meta={"base": ws.clone, "corpus": list(cfg.pretrain.corpus),
                      "continued_from": str(init) if init else None,
                      "continued_from_sha256": sha256_file(init) if init else None})
    files.write_record(out_dir, "pretrain", "corpus", rows)
    result = StageResult(counts={**{k: v for k, v in stats.items() if k not in ("metrics", "mouth_control")},
                                 **stats["metrics"]})
    result.details = {"mouth_control": stats["mouth_control"]}
    result.summary = [f"base {ws.clone!r} from {len(rows)} clones: {stats['steps']} steps in {stats['seconds']:.0f} s",
                      f"model: {files.of_clone(ws.root, ws.clone, 'pretrain', 'model')}"]
    return result
