"""The contract between stages: the readers of each stage's files, on real preprocessed footage."""

import ast
from pathlib import Path

import numpy as np
import soundfile as sf

from clonetrain.contract.sound import frames_sound
from conftest import ffmpeg


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
    return {m for m in found if m.startswith("clonetrain")}


def test_no_import_runs_back_up_the_layers_and_stage_paths_live_in_the_contract():
    below_stages = [p for p in SRC.rglob("*.py") if p.parent.name not in ("stages", "runtime")
                    and p.name not in ("pipeline.py", "__main__.py", "nightly.py")]
    for path in below_stages:
        assert not any(m.startswith("clonetrain.stages") for m in _imports(path)), path
    # The contract sits below training, evaluation, models, report and the stages.
    upper = ("clonetrain.stages", "clonetrain.training", "clonetrain.evaluation", "clonetrain.models",
             "clonetrain.report", "clonetrain.pipeline")
    for path in (SRC / "contract").glob("*.py"):
        assert not any(m.startswith(upper) for m in _imports(path)), path
    # Another stage's folder is reached through contract.files only.
    for path in SRC.rglob("*.py"):
        if path.relative_to(SRC).as_posix() not in ("contract/files.py", "workspace.py", "pipeline.py"):
            assert "stage_dir(" not in path.read_text(), path
