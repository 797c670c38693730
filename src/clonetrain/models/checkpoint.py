"""Our checkpoint format: one safetensors file holding the generator and the expert, with the model spec and
provenance in its metadata. No pickle: loading a checkpoint can never run code.

Also the published Wav2Lip checkpoints (.pth), for model=wav2lip: read with torch.load(weights_only=True),
which refuses anything but tensors and plain containers."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, safe_open, save_file
from torch import nn

from clonetrain.core.errors import ClonetrainError
from clonetrain.models.lipsync import ModelSpec, build_expert, build_generator
from clonetrain.core.workspace import atomic_path

FORMAT = "clonetrain.lipsync/1"
ADDED_LATER = ("mouth.", "control.", "control_levels.")  # generator weights that older checkpoints of this format lack


class CheckpointError(ClonetrainError):
    """A checkpoint that is missing, unreadable or not ours."""


def save(path: Path, generator: nn.Module, expert: nn.Module, meta: dict | None = None) -> None:
    tensors = {f"generator.{k}": v.detach().cpu().contiguous() for k, v in generator.state_dict().items()}
    tensors |= {f"expert.{k}": v.detach().cpu().contiguous() for k, v in expert.state_dict().items()}
    header = {"format": FORMAT, "spec": json.dumps(dataclasses.asdict(generator.spec)),
              "meta": json.dumps(meta or {}, default=str)}
    with atomic_path(path) as tmp:
        save_file(tensors, str(tmp), metadata=header)


def read_header(path: Path) -> tuple[ModelSpec, dict]:
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path} does not exist",
                              "point model.base at a .safetensors file written by stage=pretrain or stage=train")
    try:
        with safe_open(str(path), framework="pt") as f:
            header = f.metadata() or {}
    except (SafetensorError, OSError, ValueError, RuntimeError) as err:
        raise CheckpointError(f"{path} is not a readable safetensors checkpoint ({err})",
                              "the file is damaged or of another kind; use one written by clonetrain") from None
    if header.get("format") != FORMAT:
        raise CheckpointError(f"{path} is not a clonetrain lip-sync checkpoint (format {header.get('format')!r})",
                              "use a checkpoint written by stage=pretrain or stage=train")
    return ModelSpec(**json.loads(header["spec"])), json.loads(header.get("meta", "{}"))


def load(path: Path, device: str = "cpu") -> tuple[nn.Module, nn.Module, dict]:
    spec, meta = read_header(path)
    try:
        tensors = load_file(str(path), device=device)
    except (SafetensorError, OSError, RuntimeError) as err:
        raise CheckpointError(f"{path} is damaged ({err})", "copy the checkpoint again") from None
    generator, expert = build_generator(spec), build_expert(spec)
    for prefix, net in (("generator.", generator), ("expert.", expert)):
        state = {k[len(prefix):]: v for k, v in tensors.items() if k.startswith(prefix)}
        # A checkpoint from before the mouth control has none of its weights: the generator's start (zero
        # control, unfitted regression) is exactly the model it was.
        state = {**{k: v for k, v in net.state_dict().items() if k.startswith(ADDED_LATER) and k not in state},
                 **state}
        try:
            net.load_state_dict(state)
        except RuntimeError as err:
            raise CheckpointError(f"{path} does not fit the model it describes: {str(err)[:300]}",
                                  "the file is damaged; copy it again") from None
    return generator.to(device).eval(), expert.to(device).eval(), meta


def load_mouth_control(path: Path):
    """The generator's mouth control alone (models.mouth_control.MouthControl), from a checkpoint; None when the
    model has none (another arch, or trained before it). For runtimes that run the TorchScript generator."""
    from clonetrain.models.mouth_control import MouthControl

    spec, _ = read_header(path)
    if not spec.mouth_control:
        return None
    tensors = load_file(str(path))
    state = {k.removeprefix("generator.mouth."): v for k, v in tensors.items() if k.startswith("generator.mouth.")}
    if not state:
        return None
    control = MouthControl(spec.n_mels)
    control.load_state_dict(state)
    return control.eval()


def spec_from_cfg(model_cfg, features=None) -> ModelSpec:
    """The model `model_cfg` describes; its audio input follows `features` (an audio_analysis.model_input.FeatureSpec:
    the features the clone was preprocessed with), mel by default."""
    fields = {f.name for f in dataclasses.fields(ModelSpec)}
    spec = ModelSpec(**{k: v for k, v in dict(model_cfg).items() if k in fields})
    if features is not None:
        spec = dataclasses.replace(spec, n_mels=features.dims, audio_input=features.signature,
                                   audio_window=features.window)
    return spec


def check_compatible(base: ModelSpec, wanted: ModelSpec, path: Path) -> None:
    if base != wanted:
        diff = {k: (getattr(base, k), getattr(wanted, k)) for k in dataclasses.asdict(base)
                if getattr(base, k) != getattr(wanted, k)}
        raise CheckpointError(f"the base checkpoint {path} has another model shape than model={wanted}: {diff}",
                              "choose the model= config the base was trained with")




def is_wav2lip_file(path: Path) -> bool:
    return Path(path).suffix in (".pth", ".pt", ".tar")


def load_wav2lip(path: Path, net: nn.Module, what: str) -> dict:
    """Load a published Wav2Lip checkpoint (wav2lip.pth, wav2lip_gan.pth: what="generator"; lipsync_expert.pth:
    what="expert") into `net`, a model=wav2lip net. Returns what the file says of itself (step, epoch)."""
    path = Path(path)
    setting, example = ("base", "wav2lip_gan.pth") if what == "generator" else ("base_expert", "lipsync_expert.pth")
    if not path.is_file():
        raise CheckpointError(f"Wav2Lip {what} checkpoint {path} does not exist",
                              f"put the published file there, or point model.{setting} at it (e.g. models/{example})")
    try:
        raw = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # pickle errors come in many types; all mean the same to the user
        raise CheckpointError(f"{path} is not a loadable PyTorch checkpoint ({type(err).__name__}: {str(err)[:200]})",
                              "use the published Wav2Lip .pth files; files that need code to unpickle are refused") from None
    state = raw.get("state_dict", raw) if isinstance(raw, dict) else None
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise CheckpointError(f"{path} holds no state dict of tensors", "use the published Wav2Lip .pth files")
    # Trained under DataParallel: names may start with "module.".
    state = {k.removeprefix("module."): v for k, v in state.items()}
    own = net.state_dict()
    missing = sorted(set(own) - set(state))
    unexpected = sorted(set(state) - set(own))
    wrong = sorted(k for k in set(own) & set(state) if own[k].shape != state[k].shape)
    if missing or unexpected or wrong:
        raise CheckpointError(
            f"{path} is not a Wav2Lip {what}: {len(missing)} parameters missing (e.g. {missing[:2]}), "
            f"{len(unexpected)} unexpected (e.g. {unexpected[:2]}), {len(wrong)} of another shape (e.g. {wrong[:2]})",
            f"model.{setting} must be the published {example} (or its kind)")
    net.load_state_dict(state)
    return {k: raw[k] for k in ("global_step", "global_epoch") if isinstance(raw, dict) and k in raw}


def load_base_generator(path: Path, spec: ModelSpec) -> nn.Module:
    """The generator of a base a clone was fine-tuned from: ours, or a published Wav2Lip one (spec: the clone's)."""
    if is_wav2lip_file(path):
        generator = build_generator(spec)
        load_wav2lip(path, generator, "generator")
        return generator.eval()
    return load(path)[0]
