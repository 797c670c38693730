"""docs/architecture.md's worked examples, run: a new stage and a new landmark backend join the pipeline with
nothing declared but their code, and the pipeline records what they read (tests/example_stage.py holds both)."""

from __future__ import annotations

import dataclasses
import json
import shutil

import numpy as np
import pytest

from clonetrain.contract import contents, files
from clonetrain.core import config as config_mod
from clonetrain.core import manifest, pipeline
from clonetrain.core.errors import ClonetrainError
from clonetrain.core.workspace import Workspace
import example_stage
from conftest import run


@pytest.fixture()
def cloned(preprocessed, tmp_path):
    root = tmp_path / "data"
    shutil.copytree(preprocessed.root, root, symlinks=True)
    return root


def test_a_new_stage_runs_records_its_reads_and_is_skipped_until_they_change(cloned, monkeypatch):
    monkeypatch.setitem(pipeline.STAGES, "lipsdb", pipeline.Stage("lipsdb", "example_stage"))
    monkeypatch.setitem(files.FILES, "lipsdb", {"lips": "lips.npz"})
    monkeypatch.setitem(contents.ARRAYS, ("lipsdb", "lips"), example_stage.Lips)
    # Its settings' dataclass joins the config (as a field of config.Config would): the default lives there only.
    with_lipsdb = dataclasses.make_dataclass("ConfigWithLipsdb", [
        ("lipsdb", example_stage.LipsdbCfg, dataclasses.field(default_factory=example_stage.LipsdbCfg))],
        bases=(config_mod.Config,))
    monkeypatch.setattr(config_mod, "Config", with_lipsdb)
    assert run(cloned, "man", "stage=lipsdb") == {"lipsdb": "ran"}
    ws = Workspace(cloned, "man")
    m = json.loads((ws.stage_dir("lipsdb") / "manifest.json").read_text())
    # What it read is recorded, nothing was declared: the landmarks file, its one setting, its code's modules.
    assert m["read"] == {"landmarks": ["landmarks.npz"]} and m["config"] == {"lipsdb.min_open": 0.05}
    apart = files.read(ws, "lipsdb", "lips").apart
    opening = files.read(ws, "landmarks", "landmarks").mouth_open
    assert 0 < apart.sum() < apart.size and np.array_equal(apart, np.nan_to_num(opening) > 0.05)
    assert run(cloned, "man", "stage=lipsdb", "lipsdb.min_open=0.05") == {"lipsdb": "skipped"}  # the default, said
    assert run(cloned, "man", "stage=lipsdb", "lipsdb.min_open=0.2") == {"lipsdb": "ran"}
    assert files.read(ws, "lipsdb", "lips").apart.sum() < apart.sum()
    # An upstream change reruns it: the landmarks made again by another backend.
    run(cloned, "man", "stage=landmarks", "landmarks.model._target_=example_stage.StillMeshLandmarker",
        "landmarks.backend=mesh-still")
    assert run(cloned, "man", "stage=lipsdb", "lipsdb.min_open=0.2") == {"lipsdb": "ran"}


def test_a_new_landmark_backend_is_named_by_its_class_and_recorded(cloned, monkeypatch):
    ws = Workspace(cloned, "man")
    tracked = files.read(ws, "landmarks", "landmarks")
    still = ("stage=landmarks", "landmarks.model._target_=example_stage.StillMeshLandmarker",
             "landmarks.backend=mesh-still")
    assert run(cloned, "man", *still) == {"landmarks": "ran"}
    assert run(cloned, "man", *still) == {"landmarks": "skipped"}
    # Its code is the stage's code too, though no import names it: an edit reruns the stage.
    real = manifest.module_source
    monkeypatch.setattr(manifest, "module_source",
                        lambda name: real(name) + ("\n# edited\n" if name == "example_stage" else ""))
    assert run(cloned, "man", *still) == {"landmarks": "ran"}
    still = files.read(ws, "landmarks", "landmarks")
    m = json.loads((ws.stage_dir("landmarks") / "manifest.json").read_text())
    assert m["config"]["landmarks.model"] == {"_target_": "example_stage.StillMeshLandmarker"}
    assert m["counts"]["backend"] == "mesh-still"
    # The same faces, fitted frame by frame: the points agree with the tracked ones to a few pixels of 256.
    both = tracked.valid & still.valid
    assert both.mean() > 0.9
    gap = np.linalg.norm(tracked.points[both] - still.points[both], axis=-1)
    assert np.median(gap) < 4
    # Built from the preset's name with the wrong class is refused, naming the fix.
    with pytest.raises(ClonetrainError, match="landmarks=mediapipe or landmarks=fan"):
        run(cloned, "man", "stage=landmarks", "landmarks.backend=fan", "force=true")
