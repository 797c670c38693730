"""The training recipe shared by stage=pretrain and stage=train: build the Trainer from config, fit, save.

One config scales from this CPU to several GPUs and nodes: trainer.strategy=ddp (conf/trainer/ddp.yaml),
devices and num_nodes are Lightning's own settings.
"""

from __future__ import annotations

import copy

import datetime as dt
import logging
import os
import time
from collections.abc import Callable
from pathlib import Path

import cv2
import lightning as L
import numpy as np
import torch
from lightning.pytorch.callbacks import Callback, EarlyStopping, LearningRateMonitor, ModelCheckpoint, Timer
from omegaconf import DictConfig
from torch import nn
from torch.utils.data import ConcatDataset, DataLoader, Dataset, Subset

from clonetrain.core import quiet
from clonetrain.contract import files, metrics
from clonetrain.contract.build import build
from clonetrain.core.errors import ClonetrainError
from clonetrain.models import checkpoint
from clonetrain.models.checkpoint import CheckpointError
from clonetrain.models.lipsync import ModelSpec
from clonetrain.models.wav2lip import WAV2LIP_AUDIO
from clonetrain.core.progress import Progress, clock
from clonetrain.training.module import LipSyncModule, sample_grid

log = logging.getLogger(__name__)


def resolve_precision(setting: str) -> str:
    if setting != "auto":
        return setting
    if torch.cuda.is_available():
        return "bf16-mixed" if torch.cuda.is_bf16_supported() else "16-mixed"
    return "32-true"


def make_logger(cfg: DictConfig, run_name: str, save_dir: Path):
    """The Lightning logger `logger.lightning` names (conf/logger/*.yaml), or False for none. `logger.name` says
    the same for what is logged outside training (core.experiment_log): the two must agree."""
    logger = build(cfg.logger.lightning, "logger.lightning", save_dir=str(save_dir), name=run_name) or False
    built = type(logger).__name__ if logger else "no logger"
    if (cfg.logger.name == "wandb") != (built == "WandbLogger") or (cfg.logger.name == "none") != (not logger):
        raise ClonetrainError(f"logger.name={cfg.logger.name!r}, but logger.lightning builds {built}",
                              "choose both with the preset: logger=wandb, logger=csv or logger=none")
    return logger


def wandb_logger(save_dir: str, name: str, project: str, mode: str):
    """wandb, offline unless told otherwise: no account and no network needed; `wandb sync` uploads later."""
    os.environ.setdefault("WANDB_SILENT", "true")
    os.environ["WANDB_MODE"] = str(mode)
    from lightning.pytorch.loggers import WandbLogger

    Path(save_dir).mkdir(parents=True, exist_ok=True)
    logger = WandbLogger(project=project, name=name, save_dir=save_dir, offline=mode == "offline", log_model=False)
    # Lightning passes anonymous=None, which wandb now answers with "The anonymous setting has no effect".
    logger._wandb_init.pop("anonymous", None)
    return logger


class SampleGrids(Callback):
    """After each validation: a reference | masked | generated | real grid, as a PNG and to the logger."""

    def __init__(self, out_dir: Path):
        self.out_dir = out_dir

    def on_validation_epoch_end(self, trainer, module: LipSyncModule) -> None:
        if trainer.sanity_checking or module.sample_batch is None or not trainer.is_global_zero:
            return
        grid = (sample_grid(module.sample_batch).clamp(0, 1).permute(1, 2, 0).numpy() * 255).astype(np.uint8)
        path = files.output(self.out_dir, "train", "sample_grid", trainer.global_step)
        path.parent.mkdir(parents=True, exist_ok=True)
        cv2.imwrite(str(path), cv2.cvtColor(grid, cv2.COLOR_RGB2BGR))
        logger = trainer.logger
        if logger is not None and hasattr(logger, "log_image"):
            logger.log_image(key="val/samples", images=[grid], step=trainer.global_step,
                             caption=["reference | masked | generated | real"])


def best_weights(resume_dir: Path, monitor: str) -> ModelCheckpoint:
    """Keep the weights of the best validation so far (training on one minute of footage is noisy; the last
    step is not always the best); they are what gets saved. Lightning's checkpoint callback keeps its best score
    in last.ckpt, so a resumed run still knows the best from before the kill, and `mode` follows the monitor's
    direction (contract.metrics)."""
    return ModelCheckpoint(dirpath=str(resume_dir), filename="best", monitor=monitor, mode=metrics.mode(monitor),
                           save_top_k=1, save_last=False, enable_version_counter=False)


def stopped_by(trainer, max_steps: int) -> str:
    """Why the run ended. Early stopping's counter is in last.ckpt, so this holds after a resume, and it does not
    depend on the epoch the stop came in (stopped_epoch is 0 for a stop in the first epoch)."""
    early = trainer.early_stopping_callback
    # Lightning >= 2.5 says why it stopped (patience, or a monitor that is no longer finite); before, the counter.
    reason = getattr(early, "stopping_reason", None)
    if early is not None and (reason.value != 0 if reason is not None else early.wait_count >= early.patience):
        return "early stopping"
    # By steps, not by this process's seconds: a resumed run's time budget counts the time before the kill.
    return "max steps" if trainer.global_step >= max_steps else "time budget"


class TrainingProgress(Callback):
    """Progress over the time budget (what decides when a run ends here, not epochs): every `every_s` seconds a
    line with the step, time elapsed / budget, training loss, held-out score and the estimated finish, which a log
    file or a pipe shows as well as a terminal; in a terminal a bar over the budget too. Replaces Lightning's bar,
    which counts the steps of one epoch."""

    def __init__(self, every_s: float, budget_s: float, max_steps: int, monitor: str, bar: bool | None = None):
        self.every_s, self.budget_s, self.max_steps, self.monitor, self.bar = every_s, budget_s, max_steps, monitor, bar
        self.progress: Progress | None = None
        self.first_step = 0

    def _elapsed(self, trainer) -> float:
        # Lightning's Timer enforces max_time and carries the time of a resumed run over; use its clock.
        timer = next((c for c in trainer.callbacks if isinstance(c, Timer)), None)
        return timer.time_elapsed("train") if timer is not None else self.progress.elapsed()

    def line(self, trainer) -> str:
        step, elapsed = trainer.global_step, self._elapsed(trainer)
        logged = trainer.callback_metrics
        loss, held = logged.get("train/loss"), logged.get(self.monitor)
        # The finish: the time budget, or max_steps at the pace of this process so far, whichever comes first.
        left = self.budget_s - elapsed
        done_here = step - self.first_step
        if done_here > 0:
            left = min(left, (self.max_steps - step) * self.progress.elapsed() / done_here)
        parts = [f"train: step {step}/{self.max_steps}", f"{clock(elapsed)} / {clock(self.budget_s)} budget",
                 f"loss {float(loss):.4f}" if loss is not None else "loss -"]
        if held is not None:
            parts.append(f"held-out {self.monitor.split('/')[-1]} {float(held):.4f}")
        parts.append(f"done in ~{clock(left)} at the latest")
        return ", ".join(parts)

    def on_train_start(self, trainer, module) -> None:
        if not trainer.is_global_zero:
            return
        self.first_step = trainer.global_step
        self.progress = Progress("train", self.budget_s, "s", self.every_s, bar=self.bar,
                                 bar_format="{desc} {percentage:3.0f}%|{bar}| {n:.0f}/{total:.0f} s of the time budget"
                                            "{postfix}")
        self.progress.line = lambda: self.line(trainer)
        log.info("train: started at step %d, time budget %s, at most %d steps", trainer.global_step,
                 clock(self.budget_s), self.max_steps)

    def on_train_batch_end(self, trainer, module, outputs, batch, batch_idx) -> None:
        if self.progress is not None:
            loss = trainer.callback_metrics.get("train/loss")
            self.progress.note(f"step {trainer.global_step}" + (f", loss {float(loss):.4f}" if loss is not None else ""))
            self.progress.update(to=min(self._elapsed(trainer), self.budget_s))

    def on_train_end(self, trainer, module) -> None:
        if self.progress is not None:
            self.progress.close()
            log.info("%s", self.line(trainer).split(", done in")[0].replace("train: step", "train: ended at step"))
            self.progress = None


def _evenly(ds: Dataset, count: int) -> Dataset:
    if len(ds) <= count:
        return ds
    return Subset(ds, np.linspace(0, len(ds) - 1, count).astype(int).tolist())


def check_arch(cfg: DictConfig, spec: ModelSpec) -> None:
    """model=wav2lip's published nets hear Wav2Lip's mel: the audio stage must compute the same one."""
    if spec.arch == "wav2lip" and spec.audio_input != "mel":
        raise ClonetrainError(f"model=wav2lip hears log-mel only, but the clone's audio features are {spec.audio_input}",
                              "rerun: python -m clonetrain stage=audio clone=<clone> audio_features.encoder=mel "
                              "force=true (or train model=small on the Whisper features)")
    if spec.arch != "wav2lip":
        if cfg.model.base_expert:
            raise CheckpointError("model.base_expert (a published lipsync_expert.pth) needs model=wav2lip",
                                  "add model=wav2lip, or leave model.base_expert empty")
        return
    ours = {**{k: cfg.audio_features[k] for k in WAV2LIP_AUDIO if k != "sample_rate"},
            "sample_rate": cfg.ingest.sample_rate}
    differ = {k: (ours[k], v) for k, v in WAV2LIP_AUDIO.items() if float(ours[k]) != float(v)}
    if differ:
        raise ClonetrainError(f"model=wav2lip needs Wav2Lip's audio settings; these differ (ours, Wav2Lip's): {differ}",
                              "preprocess with the default audio_features and ingest.sample_rate")


def load_base(module: LipSyncModule, spec: ModelSpec, init: Path) -> None:
    """Start from a base: our safetensors (generator and expert), or with model=wav2lip a published generator."""
    if checkpoint.is_wav2lip_file(init):
        if spec.arch != "wav2lip":
            raise CheckpointError(f"{init} is a PyTorch .pth file, not a clonetrain checkpoint",
                                  "to fine-tune from the published Wav2Lip weights add model=wav2lip")
        info = checkpoint.load_wav2lip(init, module.generator, "generator")
        log.info("generator from the published Wav2Lip checkpoint %s %s", init, info)
        return
    base_spec, _ = checkpoint.read_header(init)
    checkpoint.check_compatible(base_spec, spec, init)
    gen, expert, _ = checkpoint.load(init)
    module.generator.load_state_dict(gen.state_dict())
    module.expert.load_state_dict(expert.state_dict())


def fit_mouth_control(generator: nn.Module, train_ds: Dataset, t) -> dict | None:
    """Fit the generator's mouth control (models.mouth_control) on the training frames, before training: around
    the base's regression when the base has a fitted one (so one voice does not undo many), else around 0."""
    control = getattr(generator, "mouth", None)
    if control is None:
        return None
    prior = copy.deepcopy(control) if control.fitted else None
    parts = train_ds.datasets if isinstance(train_ds, ConcatDataset) else [train_ds]
    samples = (part.control_samples() for part in parts)
    return control.fit(samples, ridge=t.mouth_prior if prior is not None else (t.mouth_ridge or None), prior=prior)


def adopt(module: LipSyncModule, init: Path | None, out_dir: Path, meta: dict | None) -> dict:
    """train.max_steps=0: the base becomes the clone's model as it is. For a model trained elsewhere (a GPU
    machine, another studio's base): the clone then evaluates, packages and renders it like one trained here."""
    if init is None:
        raise ClonetrainError("train.max_steps=0 trains nothing, and there is no model.base to adopt",
                              "give model.base=PATH/model.safetensors, or train.max_steps > 0")
    meta = {**(meta or {}), "steps": 0, "seconds": 0.0, "metrics": {}, "init": str(init), "adopted": True}
    # (pretrain names its model file as train does)
    checkpoint.save(files.output(out_dir, "train", "model"), module.generator, module.expert, meta)
    return {"steps": 0, "seconds": 0.0, "resumed_from_step": None, "best_step": None, "best_monitor": None,
            "stopped_by": "adopted model.base (train.max_steps=0)", "metrics": {}, "precision": "n/a",
            "processes": 1, "tracker_run_id": None, "device": "none", "mouth_control": None}


def fit(cfg: DictConfig, train_ds: Dataset, val_ds: Dataset, out_dir: Path, resume_dir: Path, run_name: str,
        features, init: Path | None = None, init_expert: Path | None = None, meta: dict | None = None,
        preview: Callable[[nn.Module], Path] | None = None, control_ds: Dataset | None = None) -> dict:
    """Train, then write out_dir/model.safetensors. Resumes from resume_dir/last.ckpt when it is there.
    init: a base checkpoint; init_expert: a published lipsync_expert.pth (model=wav2lip), kept frozen;
    preview: renders a clip with the final generator (logged as val/heldout_clip); features: the
    audio_analysis.model_input.FeatureSpec of the datasets' audio, which the model's audio input follows;
    control_ds: the frames the mouth control is fitted on (default: train_ds's)."""
    t, tr = cfg.train, cfg.trainer
    quiet.lightning_logging()
    L.seed_everything(t.seed, workers=True)
    spec = checkpoint.spec_from_cfg(cfg.model, features)
    check_arch(cfg, spec)
    module = LipSyncModule(spec=spec.__dict__, lr=t.lr, expert_lr=t.expert_lr, lower_weight=t.lower_weight,
                           sync_weight=t.sync_weight, expert_ready_loss=t.expert_ready_loss, context_swap=t.context_swap,
                           mouth_noise=t.mouth_noise, audio_dropout=t.audio_dropout,
                           freeze_expert=init_expert is not None)
    if init is not None:
        load_base(module, spec, init)
    if init_expert is not None:
        info = checkpoint.load_wav2lip(init_expert, module.expert, "expert")
        log.info("expert from the published checkpoint %s %s, frozen", init_expert, info)
    if t.max_steps == 0:
        return adopt(module, init, out_dir, meta)
    control_fit = fit_mouth_control(module.generator, train_ds if control_ds is None else control_ds, t)
    if tr.compile:
        module.generator = torch.compile(module.generator)

    g = torch.Generator().manual_seed(t.seed)
    train_loader = DataLoader(train_ds, batch_size=t.batch_size, shuffle=True, generator=g, drop_last=len(train_ds) > t.batch_size,
                              num_workers=t.workers, persistent_workers=t.workers > 0)
    val_loader = DataLoader(_evenly(val_ds, t.val_batches * t.batch_size), batch_size=t.batch_size,
                            num_workers=t.workers)
    resume_dir.mkdir(parents=True, exist_ok=True)
    callbacks = [
        ModelCheckpoint(dirpath=str(resume_dir), every_n_train_steps=t.checkpoint_every, save_top_k=0, save_last=True),
        EarlyStopping(monitor=t.monitor, patience=t.early_stop_patience, mode=metrics.mode(t.monitor),
                      check_on_train_epoch_end=False),
        SampleGrids(out_dir),
        best := best_weights(resume_dir, t.monitor),
        TrainingProgress(cfg.progress_every_s, t.max_minutes * 60, t.max_steps, t.monitor),
    ]
    logger = make_logger(cfg, run_name, Path(cfg.paths.root) / "logs")
    if logger:
        callbacks.append(LearningRateMonitor(logging_interval="step"))  # lr-Adam/generator, lr-Adam/expert
    trainer = L.Trainer(
        accelerator=tr.accelerator, devices=tr.devices if tr.devices == "auto" else int(tr.devices),
        strategy=tr.strategy, num_nodes=tr.num_nodes, precision=resolve_precision(tr.precision),
        max_steps=t.max_steps, max_time=dt.timedelta(minutes=t.max_minutes),
        val_check_interval=min(t.val_every, t.max_steps), check_val_every_n_epoch=None,
        num_sanity_val_steps=0, callbacks=callbacks, logger=logger,
        deterministic="warn", enable_progress_bar=False, log_every_n_steps=10,
        enable_model_summary=False, default_root_dir=str(resume_dir),
    )
    last = resume_dir / "last.ckpt"
    resumed_from = None
    if t.resume and last.is_file():
        resumed_from = int(torch.load(last, map_location="cpu", weights_only=True).get("global_step", 0))
        log.info("resuming from %s (step %d)", last, resumed_from)
    started = time.perf_counter()
    run_id = None
    try:
        with quiet.lightning_warnings():
            trainer.fit(module, train_loader, val_loader, ckpt_path=str(last) if resumed_from is not None else None)
        seconds = time.perf_counter() - started
        best_step = None
        if best.best_model_path and Path(best.best_model_path).is_file():
            kept = torch.load(best.best_model_path, map_location="cpu", weights_only=True)
            module.load_state_dict(kept["state_dict"])
            best_step = int(kept["global_step"])
        generator = getattr(module.generator, "_orig_mod", module.generator)
        if preview is not None and trainer.is_global_zero:
            clip_path = preview(generator)
            if hasattr(trainer.logger, "log_video"):
                trainer.logger.log_video(key="val/heldout_clip", videos=[str(clip_path)], step=trainer.global_step,
                                         caption=["real | generated, held-out footage"], format=["mp4"])
    finally:
        if trainer.logger:
            # The tracker's id of this run: the package stage logs the clone from it (its lineage in wandb).
            run_id = getattr(getattr(trainer.logger, "experiment", None), "id", None) if cfg.logger.name == "wandb" else None
            finish = getattr(getattr(trainer.logger, "experiment", None), "finish", None)
            if callable(finish) and cfg.logger.name == "wandb":
                finish()
    logged = {k: round(float(v), 5) for k, v in trainer.callback_metrics.items()}
    best_score = float(best.best_model_score) if best_step is not None else None
    meta = {**(meta or {}), "steps": trainer.global_step, "seconds": round(seconds, 1), "metrics": logged,
            "init": str(init) if init else None, "init_expert": str(init_expert) if init_expert else None,
            "best_step": best_step, f"best_{t.monitor}": best_score, "mouth_control": control_fit}
    checkpoint.save(files.output(out_dir, "train", "model"), generator, module.expert, meta)
    return {"steps": trainer.global_step, "seconds": round(seconds, 1), "resumed_from_step": resumed_from,
            "best_step": best_step, "best_monitor": round(best_score, 5) if best_score is not None else None,
            "stopped_by": stopped_by(trainer, t.max_steps), "metrics": logged, "precision": resolve_precision(tr.precision),
            "processes": trainer.world_size, "tracker_run_id": run_id, "mouth_control": control_fit,
            "device": "cuda" if torch.cuda.is_available() and tr.accelerator != "cpu" else "cpu"}
