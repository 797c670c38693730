"""The LightningModule: generator and sync expert trained together with one optimizer.

Each step the expert learns, on real footage, to tell in-sync sound from sound taken elsewhere; the generator
learns to inpaint the masked lower half (L1, weighted towards the mouth) and, once the expert is good enough
on real footage, to satisfy the expert. The expert judges generated frames through a detached copy of its
weights, so the generator's loss never trains the judge. A published expert (model=wav2lip) is frozen instead:
it only judges, in eval mode.
"""

from __future__ import annotations

import lightning as L
import torch
import torch.nn.functional as F
from torch.func import functional_call

from clonetrain.models.inference import masked_input
from clonetrain.core.config import TrainCfg
from clonetrain.models.lipsync import ModelSpec, build_expert, build_generator, lower_half



def sync_bce(score: torch.Tensor, target: float) -> torch.Tensor:
    """Binary cross-entropy of the expert's sync score against `target`. The score is a cosine in (0, 1), not a
    logit, so it cannot use the logits form; it is computed in float32 with autocast off, since CUDA's mixed
    precision (bf16, the GPU default) refuses binary_cross_entropy."""
    with torch.autocast(device_type=score.device.type, enabled=False):
        score = score.float()
        return F.binary_cross_entropy(score, torch.full_like(score, target))

class LipSyncModule(L.LightningModule):
    # Defaults from the one place that sets them (config.TrainCfg); stage=train and pretrain pass every value.
    def __init__(self, spec: dict, lr: float = TrainCfg.lr, expert_lr: float = TrainCfg.expert_lr,
                 lower_weight: float = TrainCfg.lower_weight, sync_weight: float = TrainCfg.sync_weight,
                 expert_ready_loss: float = TrainCfg.expert_ready_loss, freeze_expert: bool = False,
                 context_swap: float = TrainCfg.context_swap, mouth_noise: float = TrainCfg.mouth_noise,
                 audio_dropout: float = TrainCfg.audio_dropout):
        super().__init__()
        self.save_hyperparameters()
        self.generator = build_generator(ModelSpec(**spec))
        self.expert = build_expert(ModelSpec(**spec))
        self.controlled = hasattr(self.generator, "mouth")  # models.mouth_control (not the published Wav2Lip nets)
        if freeze_expert:
            self.expert.requires_grad_(False)  # also keeps DDP from waiting for gradients that never come
        self.register_buffer("expert_loss_avg", torch.tensor(0.7))  # saved in checkpoints: resume keeps it
        self.sample_batch: dict | None = None

    # -- pieces shared by training and validation
    def generate(self, batch: dict) -> torch.Tensor:
        frames, refs, mels = batch["frames"].flatten(0, 1), batch["refs"].flatten(0, 1), batch["mels"].flatten(0, 1)
        b, t = batch["frames"].shape[:2]
        context = frames
        if self.training and self.hparams.context_swap > 0:
            # Driven by someone else's speech, the clone's upper face moves with its own words, not the driver's:
            # shown another frame's upper face, the generator must take the mouth from the sound.
            # Another random frame of the same take (the next frame's reference), never this frame's own reference:
            # a model that could tell the two apart would learn to trust the upper face again when they differ.
            other = batch["refs"].roll(1, dims=1).flatten(0, 1)
            swap = torch.rand(len(frames), device=frames.device) < self.hparams.context_swap
            context = torch.where(swap[:, None, None, None], other, frames)
        control = None  # evaluation and render see the opening predicted from the sound: validate the same way
        if self.training and self.controlled and "control" in batch:
            # Training shows the real opening (a little noise: it will be shown a prediction).
            control = batch["control"].flatten()
            control = control + self.hparams.mouth_noise * torch.randn_like(control)
            if self.hparams.audio_dropout > 0:
                # Some frames are drawn from the control alone: the generator must learn to follow it, because
                # another voice will drive it, and the sound it hears then says less than the control does.
                silent = torch.rand(len(mels), device=mels.device) < self.hparams.audio_dropout
                mels = torch.where(silent[:, None, None, None], torch.zeros_like(mels), mels)
        out = self.generator(masked_input(context, refs), mels, control)
        return out.view(b, t, *out.shape[1:])

    def expert_loss(self, batch: dict) -> tuple[torch.Tensor, torch.Tensor]:
        mouths = lower_half(batch["frames"])
        frozen = self.hparams.freeze_expert
        if frozen:
            self.expert.eval()  # a frozen expert keeps its batch-norm statistics too
        with torch.set_grad_enabled(torch.is_grad_enabled() and not frozen):
            pos = self.expert(mouths, batch["sync_mel"])
            neg = self.expert(mouths, batch["neg_mel"])
        loss = sync_bce(pos, 1.0) + sync_bce(neg, 0.0)
        acc = ((pos > 0.5).float().mean() + (neg < 0.5).float().mean()) / 2
        return loss / 2, acc

    def judged_sync(self, generated: torch.Tensor, sync_mel: torch.Tensor) -> torch.Tensor:
        params = {k: v.detach() for k, v in self.expert.named_parameters()}
        buffers = dict(self.expert.named_buffers())
        was_training = self.expert.training
        self.expert.eval()  # judge with running statistics; do not update them on generated frames
        score = functional_call(self.expert, (params, buffers), (lower_half(generated), sync_mel))
        self.expert.train(was_training)
        return sync_bce(score, 1.0)

    def losses(self, batch: dict) -> dict[str, torch.Tensor]:
        e_loss, e_acc = self.expert_loss(batch)
        gen = self.generate(batch)
        real = batch["frames"]
        half = real.shape[-2] // 2
        l1 = F.l1_loss(gen, real)
        l1_lower = F.l1_loss(gen[..., half:, :], real[..., half:, :])
        sync = self.judged_sync(gen, batch["sync_mel"])
        return {"expert": e_loss, "expert_acc": e_acc, "l1": l1, "l1_lower": l1_lower, "sync": sync, "gen": gen}

    # -- Lightning hooks
    def training_step(self, batch: dict, batch_idx: int) -> torch.Tensor:
        out = self.losses(batch)
        self.expert_loss_avg.mul_(0.98).add_(0.02 * out["expert"].detach())
        use_sync = bool(self.expert_loss_avg < self.hparams.expert_ready_loss) and self.hparams.sync_weight > 0
        sw = self.hparams.sync_weight if use_sync else 0.0
        recon = out["l1"] + self.hparams.lower_weight * out["l1_lower"]
        loss = (1 - sw) * recon + sw * out["sync"] + (0 if self.hparams.freeze_expert else out["expert"])
        self.log_dict({"train/loss": loss, "train/l1": out["l1"], "train/l1_lower": out["l1_lower"],
                       "train/sync": out["sync"], "train/expert": out["expert"], "train/expert_acc": out["expert_acc"],
                       "train/sync_weight": sw}, prog_bar=False, on_step=True, on_epoch=False)
        return loss

    def validation_step(self, batch: dict, batch_idx: int) -> None:
        out = self.losses(batch)
        self.log_dict({"val/l1": out["l1"], "val/l1_lower": out["l1_lower"], "val/sync": out["sync"],
                       "val/expert": out["expert"], "val/expert_acc": out["expert_acc"]},
                      on_step=False, on_epoch=True, sync_dist=True, batch_size=batch["frames"].shape[0])
        if batch_idx == 0:
            self.sample_batch = {"frames": batch["frames"][:, 0].detach(), "refs": batch["refs"][:, 0].detach(),
                                 "gen": out["gen"][:, 0].detach()}

    def configure_optimizers(self):
        groups = [{"params": self.generator.parameters(), "lr": self.hparams.lr, "name": "generator"}]
        if not self.hparams.freeze_expert:
            groups.append({"params": self.expert.parameters(), "lr": self.hparams.expert_lr, "name": "expert"})
        return torch.optim.Adam(groups, betas=(0.5, 0.999))


def sample_grid(sample: dict, rows: int = 4) -> torch.Tensor:
    """(3, H, W) grid: reference | masked | generated | real, one example per row."""
    frames, refs, gen = (sample[k][:rows].float().cpu() for k in ("frames", "refs", "gen"))
    masked = masked_input(frames, refs)[:, 3:]  # what the generator saw
    cols = [refs, masked, gen, frames]
    return torch.cat([torch.cat([c[i] for c in cols], dim=2) for i in range(frames.shape[0])], dim=1)
