"""Every stage's files by name, and the one way to reach another stage's file.

A stage writes its own files at `output(out_dir, stage, name)`, and reads an upstream file only through `path` (or the readers built on it: `read_json`, `load`), never by
joining a stage folder and a file name itself. Each read is noted in the recorder the pipeline opens around a
stage run (contract.reads), so the manifest says which upstream files a stage actually used, instead of a list
kept by hand that drifts from the code.

    frames = files.read(ws, "ingest", "frames")        # work/<clone>/ingest/frames.npz as a contents.FrameIndex
    energy = files.load(ws, "audio", "energy")         # np.load of work/<clone>/audio/energy.npy
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from clonetrain.contract import contents, reads
from clonetrain.core.errors import UpstreamMissingError

# stage -> {name: file inside its folder}. A name with {} is a pattern (crops_{}.npy at a size).
FILES: dict[str, dict[str, str]] = {
    "ingest": {"frames": "frames.npz", "audio": "audio.wav", "takes": "takes.json", "consent": "consent.json",
               "vad": "vad.json", "take_video": "{}", "take_file": "takes/{:03d}.mp4"},
    "transcribe": {"transcript": "transcript.json"},
    "faces": {"faces": "faces.npz", "takes": "takes.json", "crops": "crops_{}.npy"},
    "landmarks": {"landmarks": "landmarks.npz"},
    "audio": {"features": "features.json", "feature_array": "{}", "audio": "audio.wav", "energy": "energy.npy",
              "speech": "speech.npy", "profile": "profile.json", "offsets": "offsets.json", "vad": "vad.json",
              "mel": "mel.npy", "whisper": "whisper.npy"},
    "voice": {"record": "voice.json", "model": "voice.npz", "sample": "samples/{}.wav"},
    "pretrain": {"corpus": "corpus.json", "model": "model.safetensors"},
    "train": {"model": "model.safetensors", "split": "split.json", "preview": "samples/heldout.mp4",
              "sample_grid": "samples/step{:06d}.png"},
    "evaluate": {"metrics": "metrics.json", "frames": "frames.npz", "cross_speaker": "cross_speaker.npz",
                 "heldout": "heldout.mp4", "heldout_sound": "heldout.wav", "mouths": "mouths.png"},
    "report": {"report": "report.json", "page": "report.html", "footage_check": "footage_check.mp4"},
    "package": {"staging": "pkg"},
    # Not a stage: `python -m clonetrain corpus` writes its verdict on every clip beside the base's stages.
    "corpus": {"report": "corpus.json"},
}


def name_of(stage: str, name: str, *args: Any) -> str:
    """The file name of `name` in `stage`'s folder (args fill a pattern: name_of("faces", "crops", 96))."""
    try:
        pattern = FILES[stage][name]
    except KeyError:
        raise KeyError(f"no file {name!r} in stage {stage!r}'s contract (contract.files.FILES)") from None
    return pattern.format(*args) if args else pattern


def output(out_dir: Path, stage: str, name: str, *args: Any) -> Path:
    """Where `stage` writes its file `name` inside the folder it is building (a stage names its files here, in
    FILES, so its readers and it cannot disagree)."""
    return Path(out_dir) / name_of(stage, name, *args)


def of_clone(root: Path, clone: str, stage: str, name: str, *args: Any) -> Path:
    """Another clone's file (the studio's base a clone starts from): a stage lists it among its input files
    (module.inputs), which the pipeline records by content hash, present or absent; it is no upstream read.
    Also where a command outside the pipeline writes into a clone's work folder (the corpus report)."""
    from clonetrain.core.workspace import Workspace

    return Workspace(root, clone).stage_dir(stage) / name_of(stage, name, *args)


def stage_folder(root: Path, clone: str, stage: str) -> Path:
    """A clone's whole stage folder, for tools outside the pipeline that compare or measure finished runs (the
    benchmarks): not noted as a read."""
    from clonetrain.core.workspace import Workspace

    return Workspace(root, clone).stage_dir(stage)


def folder(ws, stage: str) -> Path:
    """A stage's whole folder, read as one (a report section that shows whatever the evaluation left)."""
    _note(ws, stage, ".")
    return ws.stage_dir(stage)


def path(ws, stage: str, name: str, *args: Any, required: bool = True) -> Path:
    """The path of `stage`'s file `name`, noted as read. required: a missing file is an error saying which
    stage to run (else the path is returned and the caller checks)."""
    rel = name_of(stage, name, *args)
    p = ws.stage_dir(stage) / rel
    _note(ws, stage, rel)
    if required and not p.exists():
        raise missing(ws, stage, rel)
    return p


def missing(ws, stage: str, what: str) -> UpstreamMissingError:
    """The error for a stage output that is not there, naming the first stage to run: the earliest one, in the
    order stages run (FILES), that has no output either."""
    order = [s for s in FILES if s != "corpus"]  # the corpus report is a command's, not a stage's
    before = order[: order.index(stage)] if stage in order else []
    first = next((s for s in before if ws.read_manifest(s) is None), stage)
    chain = "" if first == stage else f"; nothing from {first!r} on is there either"
    return UpstreamMissingError(f"clone {ws.clone!r} has no {stage} output ({what}){chain}",
                                f"run: python -m clonetrain stage={first} clone={ws.clone}, then the stages after it "
                                "(stage=preprocess runs them all)")


def exists(ws, stage: str, name: str, *args: Any) -> bool:
    """Is the file there? Asking is a read too: its appearing later must rerun the reader."""
    return path(ws, stage, name, *args, required=False).is_file()


def read_json(ws, stage: str, name: str, *args: Any) -> Any:
    """A JSON file of `stage`; one declared in contract.contents.RECORDS must hold the keys its readers rely on."""
    obj = json.loads(path(ws, stage, name, *args).read_text())
    declared = contents.RECORDS.get((stage, name))
    if declared and (lacking := contents.missing_keys(declared, obj)):
        raise _stale(ws, stage, name, ", ".join(lacking))
    return obj


def write_record(out_dir: Path, stage: str, name: str, obj: Any) -> None:
    """Write `stage`'s JSON file `name` (atomically), refusing a declared record without the keys its readers use."""
    from clonetrain.core.workspace import write_json_atomic

    declared = contents.RECORDS.get((stage, name))
    if declared and (lacking := contents.missing_keys(declared, obj)):
        raise contents.ContractError(f"{stage}/{name_of(stage, name)} lacks {', '.join(lacking)}, which "
                                     "contract.contents.RECORDS declares its readers rely on")
    write_json_atomic(output(out_dir, stage, name), obj)


def read(ws, stage: str, name: str):
    """`stage`'s declared .npz file `name` as its dataclass (contract.contents.ARRAYS: faces -> Faces)."""
    kind = _arrays(stage, name)
    return kind.read(path(ws, stage, name), lambda lacking: _stale(ws, stage, name, lacking))


def write(out_dir: Path, stage: str, name: str, arrays) -> None:
    """Write `stage`'s declared .npz file `name` from its dataclass."""
    kind = _arrays(stage, name)
    if type(arrays) is not kind:
        raise contents.ContractError(f"{stage}/{name_of(stage, name)} is a {kind.__name__}, "
                                     f"not a {type(arrays).__name__}")
    arrays.write(output(out_dir, stage, name))


def _arrays(stage: str, name: str):
    try:
        return contents.ARRAYS[(stage, name)]
    except KeyError:
        raise KeyError(f"{stage}'s {name!r} is not declared in contract.contents.ARRAYS") from None


def _stale(ws, stage: str, name: str, lacking: str) -> UpstreamMissingError:
    return UpstreamMissingError(f"clone {ws.clone!r}'s {stage}/{name_of(stage, name)} lacks {lacking}: it was "
                                "written by an older clonetrain",
                                f"rerun: python -m clonetrain stage={stage} clone={ws.clone} force=true")


def load(ws, stage: str, name: str, *args: Any, mmap_mode: str | None = None):
    """np.load of an undeclared .npy / .npz file of `stage` (a declared one is read typed, by `read`)."""
    if (stage, name) in contents.ARRAYS:
        raise contents.ContractError(f"{stage}'s {name!r} is declared in contract.contents: files.read gives it typed")
    return np.load(path(ws, stage, name, *args), mmap_mode=mmap_mode)


def _note(ws, stage: str, rel: str) -> None:
    reads.note_file(ws.clone, stage, rel)


def manifest(ws, stage: str) -> dict | None:
    """`stage`'s manifest (its counts, warnings, details), or None when the stage has not run; noted as read."""
    _note(ws, stage, "manifest.json")
    return ws.read_manifest(stage)
