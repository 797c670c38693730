"""Our checkpoint format: one safetensors file holding the generator and the expert, with the model spec and
provenance in its metadata. No pickle: loading a checkpoint can never run code."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

from safetensors import SafetensorError
from safetensors.torch import load_file, save_file, safe_open

from clonetrain.errors import ClonetrainError
from clonetrain.models.lipsync import Generator, ModelSpec, SyncExpert
from clonetrain.workspace import atomic_path

FORMAT = "clonetrain.lipsync/1"


class CheckpointError(ClonetrainError):
    """A checkpoint that is missing, unreadable or not ours."""


def save(path: Path, generator: Generator, expert: SyncExpert, meta: dict | None = None) -> None:
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


def load(path: Path, device: str = "cpu") -> tuple[Generator, SyncExpert, dict]:
    spec, meta = read_header(path)
    try:
        tensors = load_file(str(path), device=device)
    except (SafetensorError, OSError, RuntimeError) as err:
        raise CheckpointError(f"{path} is damaged ({err})", "copy the checkpoint again") from None
    generator, expert = Generator(spec), SyncExpert(spec)
    for prefix, net in (("generator.", generator), ("expert.", expert)):
        state = {k[len(prefix):]: v for k, v in tensors.items() if k.startswith(prefix)}
        try:
            net.load_state_dict(state)
        except RuntimeError as err:
            raise CheckpointError(f"{path} does not fit the model it describes: {str(err)[:300]}",
                                  "the file is damaged; copy it again") from None
    return generator.to(device).eval(), expert.to(device).eval(), meta


def spec_from_cfg(model_cfg) -> ModelSpec:
    fields = {f.name for f in dataclasses.fields(ModelSpec)}
    return ModelSpec(**{k: v for k, v in dict(model_cfg).items() if k in fields})


def check_compatible(base: ModelSpec, wanted: ModelSpec, path: Path) -> None:
    if base != wanted:
        diff = {k: (getattr(base, k), getattr(wanted, k)) for k in dataclasses.asdict(base)
                if getattr(base, k) != getattr(wanted, k)}
        raise CheckpointError(f"the base checkpoint {path} has another model shape than model={wanted}: {diff}",
                              "choose the model= config the base was trained with")


