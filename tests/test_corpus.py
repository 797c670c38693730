"""A pretraining corpus from an archive of real clips: kept when the sound follows the mouth, a base trained on
what was kept (and an older base given the mouth control pretrain fits today); a model trained elsewhere adopted as a
clone's; the paired bootstrap over the drivers' frames."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys

import numpy as np
import pytest
import torch
from safetensors.numpy import load_file

from clonetrain.product import corpus
from clonetrain.core.errors import ClonetrainError
from clonetrain.evaluation import paired
from clonetrain.models import checkpoint
from clonetrain.contract import series
from clonetrain.contract.clip import load_clip
from clonetrain.core.workspace import Workspace
from clonetrain.training.data import WindowDataset

from conftest import PROJECT, TINY, make_clone, run, write_consent


@pytest.fixture(scope="module")
def archive(clips, footage, module_scratch):
    d = module_scratch / "archive"
    d.mkdir()
    shutil.copy(clips["man20"], d / "host talking.mp4")            # in sync: kept
    shutil.copy(footage / "music_woman_15s.mp4", d / "music.mp4")   # a face over music: not her voice
    shutil.copy(footage / "bad_not_a_video.mp4", d / "broken.mp4")  # a broken upload: reported, skipped
    (d / "notes.txt").write_text("not a clip")
    write_consent(d)
    return d


@pytest.fixture(scope="module")
def built(archive, module_scratch):
    root = module_scratch / "data"
    report = corpus.build(root, "base", archive, archive / "consent.yaml", [], [*corpus.DEFAULTS, "logger=none"])
    return root, report


def test_corpus_keeps_clips_in_sync_and_says_why_others_were_dropped(built):
    root, report = built
    rows = {r["clip"]: r for r in report["rows"]}
    assert set(rows) == {"host talking.mp4", "music.mp4", "broken.mp4"}
    host = rows["host talking.mp4"]
    assert host["kept"] and host["clone"] == "base-host_talking" and host["usable_windows"] > 100
    assert not rows["music.mp4"]["kept"] and "mouth" in rows["music.mp4"]["reason"]
    assert not rows["broken.mp4"]["kept"] and rows["broken.mp4"]["reason"]
    assert (report["kept"], report["dropped"]) == (1, 2)
    on_disk = json.loads((root / "work" / "base" / "corpus" / "corpus.json").read_text())
    assert on_disk["rows"] == report["rows"]
    # Each clip is a clone of its own, with the archive's consent record beside it.
    assert (root / "raw" / "base-host_talking" / "consent.yaml").is_file()


def test_a_base_pretrains_on_the_kept_clips(built):
    root, report = built
    kept = [r["clone"] for r in report["rows"] if r["kept"]]
    run(root, "base", "stage=pretrain", f"pretrain.corpus=[{','.join(kept)}]", *TINY)
    first = Workspace(root, "base").stage_dir("pretrain") / "model.safetensors"
    generator, _, meta = checkpoint.load(first)
    assert generator.mouth.fitted and meta["mouth_control"]["prior"] is False  # fitted on the corpus's frames
    # ... on whole clips, their held-out end too: its ridge is chosen by leaving clips out, not frames
    whole = trained_on = 0
    for clone in kept:
        clip = load_clip(Workspace(root, clone), generator.spec.image_size)
        split, T = clip.split(0.15), generator.spec.sync_frames  # train.holdout's default
        whole += len(WindowDataset(clip, 0, clip.n, T, 0, split).control_samples()[1])
        trained_on += len(WindowDataset(clip, 0, split, T, 0, split).control_samples()[1])
    assert meta["mouth_control"]["frames"] == whole > trained_on
    # A base goes on from another (one trained for longer, or elsewhere): its regression is the prior.
    run(root, "longer", "stage=pretrain", f"pretrain.corpus=[{','.join(kept)}]", *TINY, f"model.base={first}")
    _, _, meta = checkpoint.load(Workspace(root, "longer").stage_dir("pretrain") / "model.safetensors")
    assert meta["continued_from"] == str(first) and meta["mouth_control"]["prior"] is True


def test_clones_start_from_the_studio_base_once_it_is_built(built, trained, tmp_path, caplog):
    """model.base=auto (the default): no base yet means from scratch, saying so; once `clonetrain corpus`
    has built one, the clone retrains from it; a base that does not fit is passed over with a warning."""
    root = tmp_path / "data"
    shutil.copytree(trained, root)
    split = root / "work" / "man" / "train" / "split.json"
    assert json.loads(split.read_text())["base"] is None  # the fixture trained before any base existed
    assert run(root, "man", "stage=train", *TINY) == {"train": "skipped"}
    studio = Workspace(built[0], "base").stage_dir("pretrain")
    if not (studio / "model.safetensors").is_file():  # this test run alone: build the base it needs
        test_a_base_pretrains_on_the_kept_clips(built)
    shutil.copytree(studio, Workspace(root, "base").stage_dir("pretrain"))
    base = Workspace(root, "base").stage_dir("pretrain") / "model.safetensors"
    assert run(root, "man", "stage=train", *TINY) == {"train": "ran"}  # the base's arrival reruns it
    assert json.loads(split.read_text())["base"] == str(base)
    with pytest.raises(ClonetrainError, match="model.base"):  # adopting takes a model named outright
        run(root, "man", "stage=train", *TINY, "train.max_steps=0")
    with caplog.at_level("WARNING"):
        run(root, "man", "stage=train", *TINY, "model.audio_dim=8")  # another shape than the base's
    assert json.loads(split.read_text())["base"] is None
    assert "does not fit this clone" in caplog.text and str(base) in caplog.text


def test_an_existing_base_gets_todays_control_fit_without_training_again(built, tmp_path):
    """scripts/refit_base_control.py: a base whose control was fitted otherwise (here: wiped) gets the fit
    stage=pretrain makes today, its networks untouched."""
    root, report = built
    kept = [r["clone"] for r in report["rows"] if r["kept"]]
    base = Workspace(root, "base").stage_dir("pretrain") / "model.safetensors"
    if not base.is_file():  # this test run alone: build the base it needs
        test_a_base_pretrains_on_the_kept_clips(built)
    generator, expert, meta = checkpoint.load(base)
    wiped = tmp_path / "wiped.safetensors"
    fitted = generator.mouth.weight.clone()
    generator.mouth.weight.zero_()
    checkpoint.save(wiped, generator, expert, meta)
    out = tmp_path / "refit.safetensors"
    subprocess.run([sys.executable, str(PROJECT / "scripts" / "refit_base_control.py"), str(wiped), str(out),
                    "--data", str(root), f"pretrain.corpus=[{','.join(kept)}]", *TINY], check=True)
    refit, refit_expert, refit_meta = checkpoint.load(out)
    assert torch.allclose(refit.mouth.weight, fitted, rtol=1e-4, atol=1e-7)
    assert refit_meta["mouth_control"]["frames"] == meta["mouth_control"]["frames"]
    assert all(torch.equal(a, b) for a, b in zip(refit.audio.parameters(), generator.audio.parameters()))
    assert all(torch.equal(a, b) for a, b in zip(refit_expert.parameters(), expert.parameters()))


def test_corpus_clips_are_left_out_of_the_nightly_run_and_the_studio_page(archive, clips, tmp_path):
    from clonetrain.product import nightly
    from clonetrain.studio import overview

    made = corpus.import_archive(tmp_path, "base", [archive / "host talking.mp4"], archive / "consent.yaml")
    make_clone(tmp_path, "anna", {"take.mp4": clips["man20"]})
    assert made == ["base-host_talking"] and corpus.is_corpus_clip(tmp_path / "raw" / "base-host_talking")
    assert nightly._clones(tmp_path, []) == ["anna"]
    assert overview.clone_ids(tmp_path) == ["anna"]
    # Named outright, a clip is built like any clone.
    assert nightly._clones(tmp_path, ["base-host_talking"]) == ["base-host_talking"]


def test_an_archive_without_consent_is_refused(archive, tmp_path):
    with pytest.raises(ClonetrainError, match="consent"):
        corpus.build(tmp_path, "base", archive, tmp_path / "missing.yaml", [], [])


def test_a_model_trained_elsewhere_is_adopted_as_it_is(trained, tmp_path):
    root = tmp_path / "data"
    shutil.copytree(trained, root)
    elsewhere = tmp_path / "trained_on_gpu.safetensors"
    shutil.copy(trained / "work" / "man" / "train" / "model.safetensors", elsewhere)
    run(root, "man", "stage=train", *TINY, f"model.base={elsewhere}", "train.max_steps=0", "force=true")
    out = root / "work" / "man" / "train"
    adopted, original = load_file(out / "model.safetensors"), load_file(elsewhere)
    assert adopted.keys() == original.keys() and all(np.array_equal(adopted[k], original[k]) for k in adopted)
    split = json.loads((out / "split.json").read_text())
    assert split["adopted"] == str(elsewhere) and split["base"] is None  # no un-tuned base to compare it with


def test_train_max_steps_0_without_a_base_says_what_to_give(trained, tmp_path):
    root = tmp_path / "data"
    shutil.copytree(trained, root)
    with pytest.raises(ClonetrainError, match="model.base"):
        run(root, "man", "stage=train", *TINY, "train.max_steps=0", "force=true")


def test_cross_speaker_bootstrap_prefers_the_mouth_that_follows_the_speaker(preprocessed, tmp_path):
    real = np.load(preprocessed.stage_dir("landmarks") / "landmarks.npz")["mouth_open"].astype(float)
    rng = np.random.default_rng(0)
    follows = real + rng.normal(0, real.std() * 0.5, real.shape)       # follows the real mouth, noisily
    shuffled = real[rng.permutation(len(real))]                          # the same openings in random order
    halves = {"a": slice(0, len(real) // 2), "b": slice(len(real) // 2, None)}  # two "drivers"
    a = {k: (follows[s], real[s]) for k, s in halves.items()}
    series.write_driver_series(tmp_path / "a.npz", a)  # as evaluate writes it, per driver
    read = series.read_driver_series(tmp_path / "a.npz")
    assert read.keys() == a.keys() and all(np.array_equal(read[k][0], a[k][0]) for k in a)
    b = {k: (shuffled[s], real[s]) for k, s in halves.items()}
    better = paired.cross_speaker_bootstrap(a, b, block=25, count=300)
    assert better["drivers"] == 2 and better["advantage"] > 0.3 and paired.verdict(better) == "better"
    assert paired.verdict(paired.cross_speaker_bootstrap(b, a, block=25, count=300)) == "worse"
    same = paired.cross_speaker_bootstrap(a, a, block=25, count=300)
    assert same["advantage"] == 0 and paired.verdict(same) == "tie"
