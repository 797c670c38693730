"""The contract between stages: the readers of each stage's files, on real preprocessed footage."""

import ast
import re
import shutil
from dataclasses import fields
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from clonetrain.contract import contents, files, metrics as metric_decl
from clonetrain.core.errors import UpstreamMissingError
from clonetrain.contract.sound import frames_sound
from clonetrain.core.workspace import Workspace
from conftest import ffmpeg, make_cfg


def test_frames_sound_follows_the_files_sample_rate(preprocessed, tmp_path):
    # The clone's sound resampled to 22.05 kHz: frames 100-175 (3 s at 25 fps) are 3 s of it, the same seconds.
    wav16 = preprocessed.stage_dir("audio") / "audio.wav"
    wav22 = tmp_path / "audio22.wav"
    ffmpeg("-i", str(wav16), "-ar", "22050", str(wav22))
    a, sr_a = frames_sound(wav16, 100, 175, 25)
    b, sr_b = frames_sound(wav22, 100, 175, 25)
    assert (sr_a, len(a)) == (16000, 48000) and (sr_b, len(b)) == (22050, 66150)
    # Same sound: the loudness envelopes (10 ms bins) of the two cuts agree.
    env = [np.sqrt((x[: len(x) // (sr // 100) * (sr // 100)].reshape(-1, sr // 100) ** 2).mean(1)) for x, sr in
           ((a, sr_a), (b, sr_b))]
    assert np.corrcoef(env[0], env[1])[0, 1] > 0.95
    assert sf.info(str(wav16)).frames > 175 * 640


SRC = Path(__file__).resolve().parents[1] / "src" / "clonetrain"


def _imports(path: Path) -> set[str]:
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            found.add(node.module)
            # from clonetrain.product import avatar: the module imported is clonetrain.product.avatar
            found |= {f"{node.module}.{a.name}" for a in node.names
                      if (SRC.parent / node.module.replace(".", "/") / f"{a.name}.py").is_file()}
    return {m for m in found if m.startswith("clonetrain")}


# docs/architecture.md's layers, top to bottom: a module imports from its own row or the rows below it.
LAYERS = [
    ("clonetrain.__main__", "clonetrain.core.pipeline", "clonetrain.product.nightly", "clonetrain.product.corpus",
     "clonetrain.studio"),
    ("clonetrain.stages", "clonetrain.runtime"),
    ("clonetrain.training", "clonetrain.evaluation", "clonetrain.report_page", "clonetrain.product"),
    ("clonetrain.contract",),
    ("clonetrain.models", "clonetrain.audio_analysis", "clonetrain.vision", "clonetrain.media", "clonetrain.voice",
     "clonetrain.motion"),
    ("clonetrain.core", "clonetrain"),
]


def _layer(module: str) -> int:
    """The row of a module: its longest matching prefix decides (clonetrain.core.pipeline is a runner)."""
    matches = [(len(p), row) for row, prefixes in enumerate(LAYERS) for p in prefixes
               if module == p or module.startswith(p + ".")]
    return max(matches)[1]


def _module_of(path: Path) -> str:
    return ".".join(("clonetrain", *path.relative_to(SRC).with_suffix("").parts)).removesuffix(".__init__")


def test_no_import_runs_back_up_the_layers_and_stage_paths_live_in_the_contract():
    for path in SRC.rglob("*.py"):
        row = _layer(_module_of(path))
        upward = sorted(m for m in _imports(path) if _layer(m) < row)
        assert not upward, (path, upward)
    # The reusable parts know nothing of stage files or the config's structure: the contract sits above them.
    for part in ("audio_analysis", "vision", "media", "models", "motion", "voice"):
        for path in (SRC / part).glob("*.py"):
            assert not any(m.startswith("clonetrain.contract") for m in _imports(path)), path
    # Another stage's folder is reached through contract.files only.
    for path in SRC.rglob("*.py"):
        if path.relative_to(SRC).as_posix() not in ("contract/files.py", "core/workspace.py", "core/pipeline.py"):
            assert "stage_dir(" not in path.read_text(), path
    # A stage names the files it writes in the contract too (contract.files.output), never by a literal.
    for path in [*(SRC / "stages").glob("*.py"), *(SRC / "training").glob("*.py")]:
        assert not re.search(r"out_dir / f?[\"']", path.read_text()), path
    # Nor is any stage's file joined to a folder by its literal name anywhere else (a package keeps the stage
    # names through the contract too: clone_package.MODEL, voice_package.MODEL).
    names = {n for stage in files.FILES.values() for n in stage.values() if "{" not in n}
    literal = re.compile(r"/\s*f?[\"'](" + "|".join(map(re.escape, names)) + r")[\"']")
    for path in SRC.rglob("*.py"):
        if path.relative_to(SRC).as_posix() != "contract/files.py":
            assert not literal.search(path.read_text()), (path, literal.search(path.read_text()).group(0))
    # What a stage's data files hold is written through the contract's declarations (contract.contents).
    for path in SRC.rglob("*.py"):
        text = path.read_text()
        assert not re.search(r"(np\.savez|write_json_atomic)\(files\.output\(", text), path


def test_every_goal_is_judged_from_its_metrics_declaration():
    """Targets come from the goals declared on the metrics: their keys, their direction (an offset is judged by
    its size, LMD over the static frame's), and not measured is not met (but a where-possible one is no miss)."""
    results = {"clone": {"mouth_open_corr": 0.6, "lmd_mouth": 0.3, "offset_frames": -1.0,
                         "cross_speaker_mouth_r": None, "silence_closed_fraction": float("nan"),
                         "mouth_sharpness_ratio": 0.9},
               "static_frame": {"lmd_mouth": 0.5}}
    met, values = metric_decl.goal_values(results)
    assert met == {"mouth_open_corr>=0.5": True, "heldout_mouth_r>=0.75": False, "lmd_mouth<=0.7*static": True,
                   "heldout_lmd_vs_static<=0.5": False, "mouth_sharpness_ratio>=0.85": True,
                   "offset_within_1_frame": True}
    assert values["heldout_lmd_vs_static"] == {"value": 0.6, "met": False, "goal": values["heldout_lmd_vs_static"]["goal"]}
    assert values["cross_speaker_mouth_r"]["value"] is None and not values["silence_closed_fraction"]["met"]
    results["clone"]["offset_frames"] = 2.0
    assert not metric_decl.goal_values(results)[0]["offset_within_1_frame"]
    # The nightly floor's default is the goals marked as release targets, read from the declaration.
    from clonetrain.core.config import NightlyCfg
    from clonetrain.product import nightly
    assert NightlyCfg().floor == ["release"]
    assert metric_decl.release_targets() == ["lmd_mouth<=0.7*static", "mouth_open_corr>=0.5", "offset_within_1_frame",
                                             metric_decl.BEATS_EVERY_BASELINE]
    entry = {"metrics": {}, "targets": {**met, metric_decl.BEATS_EVERY_BASELINE: False}}
    assert nightly.floor(entry, ["release"]) == ["target beats_every_baseline missed"]
    assert nightly.floor(entry, ["*"]) == [f"target {k} missed" for k, ok in entry["targets"].items() if not ok]


def test_the_parts_that_swap_are_built_from_their_config_target(tmp_path):
    """The landmark model, the face detector and the training logger are named by their class (`_target_`) in
    the config; a preset swaps the class, and a wrong one is a clear error naming the setting."""
    from lightning.pytorch.loggers import CSVLogger

    from clonetrain.contract.build import build
    from clonetrain.core.errors import ClonetrainError, WeightsMissingError
    from clonetrain.training.fit import make_logger
    from clonetrain.vision.detector import MediaPipeFaceDetector
    from clonetrain.contract.build import build_landmarker

    cfg = make_cfg(tmp_path, "x", "faces.min_confidence=0.7")
    detector = build(cfg.faces.detector, "faces.detector")
    assert isinstance(detector, MediaPipeFaceDetector)
    detector.close()
    landmarker = build_landmarker(cfg.landmarks)
    assert landmarker.name == "mediapipe"
    landmarker.close()
    # The FAN preset builds face-alignment's model: here its weights are missing, which says where to put them.
    with pytest.raises(WeightsMissingError, match="2DFAN4"):
        build_landmarker(make_cfg(tmp_path, "x", "landmarks=fan", f"landmarks.fan_weights={tmp_path}").landmarks)
    with pytest.raises(ClonetrainError, match="landmarks=fan"):
        build_landmarker(make_cfg(tmp_path, "x", "landmarks.backend=fan").landmarks)
    with pytest.raises(ClonetrainError, match="faces.detector"):
        build(make_cfg(tmp_path, "x", "faces.detector._target_=clonetrain.vision.NoSuchDetector").faces.detector,
              "faces.detector")
    assert isinstance(make_logger(make_cfg(tmp_path, "x", "logger=csv"), "run", tmp_path), CSVLogger)
    assert make_logger(make_cfg(tmp_path, "x", "logger=none"), "run", tmp_path) is False
    # The logger outside training (core.experiment_log) follows logger.name: the two cannot disagree.
    with pytest.raises(ClonetrainError, match="logger=wandb, logger=csv or logger=none"):
        make_logger(make_cfg(tmp_path, "x", "logger=csv", "logger.name=wandb"), "run", tmp_path)


def test_a_metric_declared_once_reaches_the_gate_the_card_and_the_comparisons(monkeypatch):
    """Adding a metric is its declaration (and its computation): the nightly gate, the package's card and the
    clone-against-clone comparison take it from there, with the direction it was declared with."""
    from clonetrain.evaluation import metrics as evaluation_metrics
    from clonetrain.product import nightly
    from clonetrain.stages import package

    teeth = metric_decl.Metric("teeth_visible", True, "teeth visible", gated=True, card=True)
    monkeypatch.setattr(metric_decl, "GATED", (*metric_decl.GATED, teeth))
    monkeypatch.setattr(metric_decl, "CARD", (*metric_decl.CARD, teeth))
    live = {"lmd_mouth": 0.05, "mouth_open_corr": 0.5, "offset_frames": 0.2, "psnr_lower": 25.0, "ssim_lower": 0.8,
            "mouth_sharpness_ratio": 0.9, "teeth_visible": 0.5}
    ok, why = nightly.gate({**live, "teeth_visible": 0.2}, live, 0.02)
    assert not ok and why == ["teeth_visible 0.2 vs live 0.5"]
    assert nightly.gate({**live, "teeth_visible": 0.7}, live, 0.02) == (True, [])
    # The offset is gated by its declared rule: within a frame passes, further than live and than a frame does not.
    assert nightly.gate({**live, "offset_frames": -0.9}, live, 0.02)[0]
    assert nightly.gate({**live, "offset_frames": -2.0}, live, 0.02) == (False, ["offset_frames -2.0 vs live 0.2"])
    evaluation = {"metrics": {"clone": {**live, "teeth_visible": 0.37}}, "targets": {}, "heldout_frames": 10,
                  "judge": "mediapipe"}
    consent = {"person": "p", "recorded_by": "r", "date": "d", "expires": "e", "sha256": "s", "permitted_uses": ["x"]}
    card = package._model_card("c", "v0001", consent, evaluation, {}, {"holdout_from_frame": 5}, [])
    assert "| teeth visible |" in card and card.count("| 0.37 |") == 1
    # A package names the stage files it copies as the contract does (written out there: verifying is stdlib-only).
    from clonetrain.product import clone_package, voice_package

    assert (clone_package.MODEL, clone_package.METRICS, clone_package.CONSENT) == (
        files.name_of("train", "model"), files.name_of("evaluate", "metrics"), files.name_of("ingest", "consent"))
    assert (voice_package.MODEL, voice_package.RECORD) == (files.name_of("voice", "model"), files.name_of("voice", "record"))
    # An offset (best at 0) is judged by its declaration's rule wherever two clones are compared.
    offset = metric_decl.BY_NAME["offset_frames"]
    assert evaluation_metrics.beats({"offset_frames": -0.8}, {"offset_frames": 0.1})["offset_frames"]
    assert not evaluation_metrics.beats({"offset_frames": 2.0}, {"offset_frames": 0.1})["offset_frames"]
    assert offset.holds_against(-0.8, 0.1) and not offset.holds_against(2.0, 0.1) and offset.holds_against(2.0, None)


def test_what_the_stages_write_is_what_the_contract_declares(trained, tmp_path):
    """Every declared file of a real run holds exactly its declared arrays, one row per frame, and the keys its
    readers rely on; a file an older clonetrain wrote without one is an error naming the rerun; a stage cannot
    write what is not declared."""
    ws = Workspace(trained, "man")
    n = len(files.read(ws, "ingest", "frames").take)
    for (stage, name), kind in contents.ARRAYS.items():
        with np.load(files.path(ws, stage, name)) as z:
            assert sorted(z.files) == sorted(f.name for f in fields(kind)), (stage, name)
        got = files.read(ws, stage, name)
        assert isinstance(got, kind) and {len(v) for v in got.arrays().values() if np.ndim(v)} == {n}
    for (stage, name), record in contents.RECORDS.items():
        if ws.read_manifest(stage) is not None:
            assert not contents.missing_keys(record, files.read_json(ws, stage, name)), (stage, name)
    with pytest.raises(contents.ContractError, match="declared in contract.contents"):
        files.load(ws, "faces", "faces")

    old = Workspace(tmp_path, "man")
    shutil.copytree(ws.stage_dir("landmarks"), old.stage_dir("landmarks"))
    lm = files.read(ws, "landmarks", "landmarks").arrays()
    np.savez(old.stage_dir("landmarks") / "landmarks.npz", **{k: v for k, v in lm.items() if k != "pose"})
    with pytest.raises(UpstreamMissingError, match="lacks pose") as err:
        files.read(old, "landmarks", "landmarks")
    assert "stage=landmarks clone=man force=true" in err.value.fix
    shutil.copytree(ws.stage_dir("train"), old.stage_dir("train"))
    (old.stage_dir("train") / "split.json").write_text('{"frames": 500}')
    with pytest.raises(UpstreamMissingError, match="lacks holdout_from_frame"):
        files.read_json(old, "train", "split")

    with pytest.raises(contents.ContractError, match="disagree on the number of frames"):
        files.write(tmp_path, "landmarks", "landmarks", contents.Landmarks(**{**lm, "valid": lm["valid"][:-1]}))
    with pytest.raises(contents.ContractError, match="is a Faces, not a Landmarks"):
        files.write(tmp_path, "faces", "faces", contents.Landmarks(**lm))
    with pytest.raises(contents.ContractError, match="lacks status"):
        files.write_record(tmp_path, "ingest", "takes", [{"take": 0, "file": "a.mp4"}])


def test_a_clone_packed_for_another_machine_reads_back_as_the_same_clip(preprocessed, tmp_path):
    """scripts/train_elsewhere: the pack keeps the contract's names and arrays, so training there reads the clip
    that training here reads (up to the pack's near-lossless crops and 8-bit features)."""
    import subprocess
    import sys

    from clonetrain.contract.clip import load_clip

    pack = tmp_path / "pack"
    scripts = Path(__file__).resolve().parents[1] / "scripts" / "train_elsewhere"
    subprocess.run([sys.executable, str(scripts / "pack.py"), str(preprocessed.root), str(pack), "man"], check=True)
    subprocess.run([sys.executable, str(scripts / "unpack.py"), str(pack)], check=True)
    (tmp_path / "root" / "work").mkdir(parents=True)
    shutil.copytree(pack / "man", tmp_path / "root" / "work" / "man")
    here, there = load_clip(preprocessed, 96), load_clip(Workspace(tmp_path / "root", "man"), 96)
    assert there.n == here.n and (there.usable == here.usable).all() and (there.take == here.take).all()
    assert np.array_equal(there.mouth_open, here.mouth_open) and there.features == here.features
    assert np.abs(there.mel - here.mel).max() < 0.02 * np.abs(here.mel).max()
    assert np.abs(np.asarray(there.faces, float) - np.asarray(here.faces, float)).mean() < 3
