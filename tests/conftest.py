"""Shared fixtures. Real footage comes from ../shared/footage (never copied into the project) through the one
`footage` fixture; clips are cut from it with the real ffmpeg."""

from __future__ import annotations

import datetime as dt
import os
import shutil
import subprocess
from pathlib import Path

# Under pytest-xdist (pyproject's addopts) each worker gets its share of the cores, for itself and the processes it
# starts: two workers each running torch and numpy on every core would only take turns.
_WORKERS = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
if _WORKERS > 1:
    for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ.setdefault(_var, str(max(1, (os.cpu_count() or 1) // _WORKERS)))

import numpy as np  # noqa: E402  (after the thread counts: numpy's BLAS reads them when it loads)
import pytest  # noqa: E402
from hydra import compose, initialize_config_dir
from omegaconf import DictConfig

from clonetrain.core import config as config_mod
from clonetrain.core import pipeline
from clonetrain.core.workspace import Workspace

PROJECT = Path(__file__).resolve().parents[1]
FOOTAGE = PROJECT.parent / "shared" / "footage"


@pytest.fixture(scope="session")
def footage() -> Path:
    if not (FOOTAGE / "talk_man_60s.mp4").is_file():
        pytest.fail(f"the shared test footage is missing: expected {FOOTAGE}/talk_man_60s.mp4 (see SOURCES.md)")
    return FOOTAGE


def make_cfg(root: Path, clone: str, *overrides: str) -> DictConfig:
    config_mod.register()
    with initialize_config_dir(config_dir=str(PROJECT / "conf"), version_base="1.3"):
        return compose("config", overrides=[f"paths.root={root}", f"clone={clone}", *overrides])


def ffmpeg(*args: str) -> None:
    subprocess.run(["ffmpeg", "-v", "error", "-y", *args], check=True)


def write_consent(raw: Path, expires: dt.date | None = None) -> None:
    expires = expires or dt.date.today() + dt.timedelta(days=30)
    (raw / "consent.yaml").write_text(
        "person: test speaker\nrecorded_by: public test clip\ndate: 2026-01-01\n"
        f"permitted_uses: [pipeline_testing]\nexpires: {expires.isoformat()}\n")


def make_clone(root: Path, clone: str, takes: dict[str, Path], consent: bool = True) -> Workspace:
    """Put takes (name -> source file, linked not copied) and a consent record into raw/<clone>/."""
    ws = Workspace(root, clone)
    ws.raw_dir.mkdir(parents=True, exist_ok=True)
    for name, src in takes.items():
        dst = ws.raw_dir / name
        try:
            os.link(src, dst)
        except OSError:
            shutil.copy2(src, dst)
    if consent:
        write_consent(ws.raw_dir)
    return ws


def assert_labelled(frames: np.ndarray) -> None:
    """Every frame carries the AI-generated label: a dark box with white text in its top-left corner (the
    footage is bright there)."""
    corner = frames[:, 2:18, 2:90].astype(float).mean(-1)
    assert np.all(corner.mean((1, 2)) < 110) and np.all((corner > 200).mean((1, 2)) > 0.05)


def run(root: Path, clone: str, *overrides: str) -> dict[str, str]:
    return pipeline.run(make_cfg(root, clone, *overrides))


@pytest.fixture(scope="session")
def clips(footage, tmp_path_factory) -> dict[str, Path]:
    """Short clips cut from the real footage, made once per session."""
    d = tmp_path_factory.mktemp("clips")
    man = d / "man20.mp4"
    ffmpeg("-i", str(footage / "talk_man_60s.mp4"), "-t", "20", "-c:v", "libx264", "-preset", "veryfast",
           "-crf", "18", "-c:a", "aac", str(man))
    # The same picture with its sound 8 frames (320 ms) late.
    late = d / "man20_late.mp4"
    ffmpeg("-i", str(man), "-itsoffset", "0.32", "-i", str(man), "-map", "0:v", "-map", "1:a", "-c:v", "copy",
           "-c:a", "aac", "-af", "aresample=async=1:first_pts=0", "-t", "20", str(late))
    # 12 s of each, just over ingest's minimum footage and speech (10 s): for tests that run whole nightly passes.
    short = {}
    for name, src in (("man12", man), ("man12_late", late)):
        short[name] = d / f"{name}.mp4"
        ffmpeg("-i", str(src), "-t", "12", "-c", "copy", str(short[name]))
    return {"man20": man, "man20_late": late, **short}


@pytest.fixture(scope="module")
def module_scratch(tmp_path_factory, request) -> Path:
    """A folder for one test module's shared fixtures, removed once the module is done: the suite writes
    gigabytes of workspaces, and a CI machine can be short of disk."""
    d = tmp_path_factory.mktemp(request.module.__name__.rpartition(".")[2])
    yield d
    shutil.rmtree(d, ignore_errors=True)


@pytest.fixture(scope="session")
def preprocessed(clips, tmp_path_factory) -> Workspace:
    """A clone of 20 s of the main clip, run through the whole preprocessing chain once."""
    root = tmp_path_factory.mktemp("data")
    ws = make_clone(root, "man", {"take1.mp4": clips["man20"]})
    run(root, "man", "stage=preprocess")
    return ws


def run_until(root: Path, clone: str, last: str, *overrides: str) -> dict[str, str]:
    """Run the preprocessing stages in order up to and including `last`."""
    statuses = {}
    for stage in pipeline.GROUPS["preprocess"]:
        if stage == "transcribe" and last != stage:
            continue  # nothing before the report reads the transcript; Whisper would only cost time
        statuses.update(run(root, clone, f"stage={stage}", *overrides))
        if stage == last:
            return statuses
    raise ValueError(last)


# A model small enough to train a few steps in seconds on 2 cores: tests behaviour, not quality.
TINY_MODEL = ["model.channels=4", "model.max_channels=16", "model.audio_dim=16", "model.expert_dim=8"]
TINY = [*TINY_MODEL, "train.batch_size=2", "train.val_batches=1", "train.val_every=2", "train.checkpoint_every=2",
        "train.max_steps=4", "logger=none", "render.footage_seconds=4",
        # The mouth control's ridge as cross-validation chose it on talk_man: the choice (five decompositions and
        # 60 held-out scores over Whisper's 2560 columns) would add about a second to every training here
        # (test_mouth_control tests it).
        "train.mouth_ridge=1000",
        # The cross-speaker evaluation has its own tests (test_cross_speaker.py): the others skip its drivers.
        "evaluate.drivers=[]",
        # The voice's evaluation speaks, converts and transcribes (twice) each sentence: one is enough to test it.
        "voice_model.eval_sentences=['Welcome back to the stream, today we are looking at three new products.']"]


@pytest.fixture(scope="session")
def trained(preprocessed, tmp_path_factory) -> Path:
    """The preprocessed clone trained for a few steps with a tiny model, and evaluated (a data root)."""
    root = tmp_path_factory.mktemp("trained") / "data"
    shutil.copytree(preprocessed.root, root, symlinks=True)
    run(root, "man", "stage=train", *TINY)
    run(root, "man", "stage=evaluate", *TINY)
    return root
