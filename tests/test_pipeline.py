"""Caching, force, selective reruns, manifests, atomicity and the clone lock, on real preprocessed footage."""

import json
import os
import shutil
import socket

import pytest

from clonetrain.core import manifest, pipeline
from clonetrain.core.errors import LockedError, UpstreamMissingError
from clonetrain.core.manifest import sha256_file
from conftest import make_cfg, make_clone, run

PRE = ["ingest", "transcribe", "faces", "landmarks", "audio", "report"]


@pytest.fixture()
def cloned(preprocessed, tmp_path):
    """A private copy of the preprocessed clone, so tests here can rerun and break it."""
    root = tmp_path / "data"
    shutil.copytree(preprocessed.root, root, symlinks=True)
    return root


def test_unchanged_inputs_and_config_skip_every_stage(cloned):
    assert run(cloned, "man", "stage=preprocess") == {s: "skipped" for s in PRE}


def test_force_reruns(cloned):
    assert run(cloned, "man", "stage=audio", "force=true") == {"audio": "ran"}


def test_a_setting_reruns_only_the_stages_it_affects(cloned):
    statuses = run(cloned, "man", "stage=preprocess", "faces.crop_scale=1.8")
    assert statuses == {"ingest": "skipped", "transcribe": "skipped", "faces": "ran", "landmarks": "ran", "audio": "ran",
                        "report": "ran"}
    statuses = run(cloned, "man", "stage=preprocess", "faces.crop_scale=1.8", "report.thumbnails=4")
    assert statuses == {"ingest": "skipped", "transcribe": "skipped", "faces": "skipped", "landmarks": "skipped",
                        "audio": "skipped", "report": "ran"}


def test_a_stage_reruns_when_what_it_read_changes_and_only_then(cloned, monkeypatch):
    """Dependencies are recorded while a stage runs: its code (every clonetrain module it imports), the settings
    and the upstream files it read."""
    real = manifest.module_source

    def edited(*names):
        monkeypatch.setattr(manifest, "module_source", lambda name: real(name) + ("\n# edited\n" if name in names else ""))

    edited("clonetrain.report_page.svg")  # the report's plots: only the report imports it
    assert run(cloned, "man", "stage=preprocess") == {**{s: "skipped" for s in PRE}, "report": "ran"}
    edited("clonetrain.report_page.svg", "clonetrain.voice.tts")  # text-to-speech: nothing in preprocessing uses it
    assert run(cloned, "man", "stage=preprocess") == {s: "skipped" for s in PRE}
    edited("clonetrain.report_page.svg", "clonetrain.contract.faces")  # the face flags: every reader of faces.npz
    assert run(cloned, "man", "stage=preprocess") == {"ingest": "skipped", "transcribe": "skipped", "faces": "ran",
                                                      "landmarks": "ran", "audio": "ran", "report": "ran"}
    # A setting of ingest's section that the report reads (the footage verdict's speech floor), and faces does not.
    assert run(cloned, "man", "stage=faces", "ingest.min_speech_s=12") == {"faces": "skipped"}
    assert run(cloned, "man", "stage=report", "ingest.min_speech_s=12") == {"report": "ran"}
    m = json.loads((cloned / "work" / "man" / "report" / "manifest.json").read_text())
    assert m["config"]["ingest.min_speech_s"] == 12 and "faces.crop_scale" not in m["config"]
    assert "profile.json" in m["read"]["audio"] and m["upstream"]["evaluate"] is None  # read, and not there yet
    # The landmark model, which the landmarks stage builds from `landmarks.model._target_` and imports nowhere.
    edited("clonetrain.report_page.svg", "clonetrain.contract.faces", "clonetrain.vision.landmarks")
    statuses = run(cloned, "man", "stage=preprocess")
    assert statuses["landmarks"] == "ran" and statuses["faces"] == statuses["ingest"] == "skipped", statuses


def test_changed_footage_reruns_from_ingest(cloned, clips):
    take = cloned / "raw" / "man" / "take1.mp4"
    take.unlink()
    shutil.copy(clips["man20_late"], take)
    assert run(cloned, "man", "stage=ingest") == {"ingest": "ran"}


def test_manifest_records_hashes_of_every_output(cloned):
    for stage in PRE:
        m = json.loads((cloned / "work" / "man" / stage / "manifest.json").read_text())
        assert m["fingerprint"] and m["versions"]["ffmpeg"] != "missing"
        for rel, entry in m["outputs"].items():
            assert sha256_file(cloned / "work" / "man" / stage / rel) == entry["sha256"]


def test_a_deleted_output_is_rebuilt(cloned):
    (cloned / "work" / "man" / "audio" / "mel.npy").unlink()
    assert run(cloned, "man", "stage=audio") == {"audio": "ran"}


def test_a_failing_stage_leaves_the_previous_output_intact(cloned, monkeypatch):
    from clonetrain.stages import audio

    before = (cloned / "work" / "man" / "audio" / "manifest.json").read_text()

    def crash(cfg, ws, out_dir):
        (out_dir / "mel.npy").write_bytes(b"half a file")
        raise KeyboardInterrupt  # as if the run were killed

    monkeypatch.setattr(audio, "run", crash)
    with pytest.raises(KeyboardInterrupt):
        run(cloned, "man", "stage=audio", "force=true")
    assert (cloned / "work" / "man" / "audio" / "manifest.json").read_text() == before
    assert not (cloned / "work" / "man" / "audio.tmp").exists()
    monkeypatch.undo()
    assert run(cloned, "man", "stage=audio") == {"audio": "skipped"}


def test_a_stage_before_its_upstream_says_what_to_run(clips, tmp_path):
    make_clone(tmp_path, "fresh", {"a.mp4": clips["man20"]})
    with pytest.raises(UpstreamMissingError, match="stage=ingest clone=fresh"):
        run(tmp_path, "fresh", "stage=faces")


def test_a_second_run_on_the_same_clone_is_refused(cloned):
    cfg = make_cfg(cloned, "man", "stage=preprocess")
    with pipeline.clone_lock(pipeline.Workspace(cloned, "man")):
        with pytest.raises(LockedError, match=rf"being processed by another run \(pid {os.getpid()} on "
                                              rf"{socket.gethostname()}, started 20\d\d-"):
            pipeline.run(cfg)


def test_unknown_stage_lists_the_choices(cloned):
    with pytest.raises(Exception, match="choose one of: preprocess, all, ingest"):
        run(cloned, "man", "stage=trian")


def test_the_code_a_stage_built_from_a_setting_counts_and_libraries_do_not():
    """`_target_` classes in recorded settings join the stage's code hash when they are ours or a studio's own
    module; an installed library's (its version is recorded apart) and a missing module's do not."""
    from clonetrain.core.pipeline import built_modules

    config = {"landmarks.model": {"_target_": "clonetrain.vision.landmarks.FanLandmarker", "device": "auto"},
              "x": [{"_target_": "torch.nn.Identity"}],
              "y": {"nested": {"_target_": "example_stage.StillMeshLandmarker"}},
              "z": {"_target_": "no_such_module.Thing"}, "faces.crop_scale": 1.6}
    assert built_modules(config) == ["clonetrain.vision.landmarks", "example_stage"]
