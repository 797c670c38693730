"""The lip-sync model side on tiny configs and real preprocessed footage."""

import json
import shutil
import subprocess
import sys

import ffmpeg
import numpy as np
import pytest
import torch

from clonetrain.core.errors import ClonetrainError, UpstreamMissingError
from clonetrain.audio_analysis.model_input import FeatureSpec
from clonetrain.models import checkpoint
from clonetrain.models.lipsync import Generator, ModelSpec, SyncExpert
from clonetrain.contract.clip import load_clip
from clonetrain.training.data import WindowDataset
from clonetrain.training.module import LipSyncModule
from clonetrain.core.workspace import Workspace
from conftest import TINY, make_cfg, make_clone, run

TINY_SPEC = ModelSpec(channels=4, max_channels=16, audio_dim=16, expert_dim=8)


def _without(*prefixes: str) -> list[str]:
    return [o for o in TINY if not o.startswith(prefixes)]


def test_a_few_steps_lower_the_loss(preprocessed):
    clip = load_clip(preprocessed, 96)
    ds = WindowDataset(clip, 0, clip.split(0.15), 5, 0, clip.split(0.15))
    torch.manual_seed(0)
    batch = {k: torch.stack([ds[i][k] for i in (0, 50)]) for k in ds[0]}
    module = LipSyncModule(spec=TINY_SPEC.__dict__, lr=3e-3)
    opt = module.configure_optimizers()
    first = None
    for _ in range(25):
        out = module.losses(batch)
        loss = out["l1"] + out["l1_lower"]
        first = first if first is not None else loss.item()
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert float(loss) < 0.7 * first


def test_generator_keeps_the_known_upper_half(preprocessed):
    clip = load_clip(preprocessed, 96)
    frames = torch.from_numpy(np.asarray(clip.faces[:2])).float().div(255).permute(0, 3, 1, 2)
    faces = torch.cat([frames, frames], 1)
    out = Generator(TINY_SPEC).eval()(faces, torch.zeros(2, 1, 80, 16))
    assert torch.equal(out[:, :, :48], frames[:, :, :48])


def test_checkpoint_round_trips_bit_exactly(tmp_path):
    torch.manual_seed(1)
    g, e = Generator(TINY_SPEC), SyncExpert(TINY_SPEC)
    path = tmp_path / "m.safetensors"
    checkpoint.save(path, g, e, {"clone": "x"})
    g2, e2, meta = checkpoint.load(path)
    assert meta == {"clone": "x"} and g2.spec == TINY_SPEC
    for a, b in ((g, g2), (e, e2)):
        sa, sb = a.state_dict(), b.state_dict()
        assert sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


def test_train_writes_a_model_and_holds_out_the_end(trained):
    d = trained / "work" / "man" / "train"
    split = json.loads((d / "split.json").read_text())
    assert split["holdout_from_frame"] == 425  # 15% of 500 frames held out
    assert split["reference_frame"] < 425
    m = json.loads((d / "manifest.json").read_text())
    assert m["counts"]["steps"] == 4 and m["counts"]["stopped_by"] == "max steps"
    assert any(p.suffix == ".png" for p in (d / "samples").iterdir())  # sample grids
    # The held-out preview: real | generated with its sound, 4 s (train.preview_seconds) or all 75 held-out frames.
    info = ffmpeg.probe(str(d / "samples" / "heldout.mp4"))
    video = next(s for s in info["streams"] if s["codec_type"] == "video")
    audio = next(s for s in info["streams"] if s["codec_type"] == "audio")
    assert abs(float(audio["duration"]) - 3.0) < 0.1  # the held-out seconds' own sound, no more
    assert int(video["nb_frames"]) == 75 and int(video["width"]) == 2 * int(video["height"])
    assert "heldout.wav" not in {p.name for p in (d / "samples").iterdir()}
    # Its right half is generated: same upper face as the real left half, another lower face.
    w, h = int(video["width"]), int(video["height"])
    raw, _ = (ffmpeg.input(str(d / "samples" / "heldout.mp4")).output("pipe:", format="rawvideo", pix_fmt="rgb24",
                                                                        vframes=1).run(capture_stdout=True, quiet=True))
    frame = np.frombuffer(raw, np.uint8).reshape(h, w, 3).astype(float)
    real, fake = frame[:, : w // 2], frame[:, w // 2 :]
    upper, lower = slice(h // 8, h // 2 - 8), slice(h // 2 + 8, h - h // 8)  # clear of the burnt-in label
    assert np.abs(real[upper] - fake[upper]).mean() < 4 < np.abs(real[lower] - fake[lower]).mean()
    assert not (trained / "work" / "man" / "resume").exists() or not any((trained / "work" / "man" / "resume").iterdir())


def test_training_is_deterministic_with_a_seed(trained, tmp_path):
    first, _, _ = checkpoint.load(trained / "work" / "man" / "train" / "model.safetensors")
    root = tmp_path / "data"
    shutil.copytree(trained, root, symlinks=True)
    run(root, "man", "stage=train", "force=true", *TINY)
    again, _, _ = checkpoint.load(root / "work" / "man" / "train" / "model.safetensors")
    a, b = first.state_dict(), again.state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)
    run(root, "man", "stage=train", "force=true", "train.seed=7", *TINY)
    other, _, _ = checkpoint.load(root / "work" / "man" / "train" / "model.safetensors")
    assert not all(torch.equal(a[k], other.state_dict()[k]) for k in a)  # the seed matters


def _dies_at_step(monkeypatch, step: int):
    """Training raises at `step`, as if the run were killed there; returns the real training_step."""
    real_step = LipSyncModule.training_step

    def dies(self, batch, idx):
        if self.global_step == step:
            raise RuntimeError("killed")
        return real_step(self, batch, idx)

    monkeypatch.setattr(LipSyncModule, "training_step", dies)
    return real_step


def test_a_killed_training_resumes_from_its_checkpoint(preprocessed, tmp_path, monkeypatch):
    root = tmp_path / "data"
    shutil.copytree(preprocessed.root, root, symlinks=True)
    _dies_at_step(monkeypatch, 3)
    with pytest.raises(RuntimeError, match="killed"):
        run(root, "man", "stage=train", *TINY)
    assert not (root / "work" / "man" / "train").exists()
    assert list((root / "work" / "man" / "resume").glob("train-*/last.ckpt"))
    monkeypatch.undo()
    run(root, "man", "stage=train", *TINY)
    counts = json.loads((root / "work" / "man" / "train" / "manifest.json").read_text())["counts"]
    assert counts["resumed_from_step"] == 2 and counts["steps"] == 4


def _scripted_validation(monkeypatch, monitor: str, scores: dict[int, float], snapshots: dict | None = None):
    """Validation logs `scores[step]` as `monitor` (and keeps a copy of the generator's weights per step), so a test
    decides which validation is the best."""

    def validation_step(self, batch, idx):
        self.log(monitor, scores[self.global_step], on_step=False, on_epoch=True, batch_size=1)
        if snapshots is not None:
            snapshots[self.global_step] = {k: v.detach().clone() for k, v in self.generator.state_dict().items()}

    monkeypatch.setattr(LipSyncModule, "validation_step", validation_step)


def test_kept_weights_and_early_stopping_follow_the_monitors_direction(preprocessed, tmp_path, monkeypatch):
    # Accuracy: higher is better. The best is step 4; two worse validations after it stop the run, in epoch 0.
    root = tmp_path / "data"
    shutil.copytree(preprocessed.root, root, symlinks=True)
    snapshots: dict = {}
    _scripted_validation(monkeypatch, "val/expert_acc", {2: 0.5, 4: 0.9, 6: 0.3, 8: 0.2, 10: 0.95}, snapshots)
    run(root, "man", "stage=train", *_without("train.max_steps="), "train.max_steps=12", "train.monitor=val/expert_acc",
        "train.early_stop_patience=2")
    counts = json.loads((root / "work" / "man" / "train" / "manifest.json").read_text())["counts"]
    assert counts["steps"] == 8 and counts["stopped_by"] == "early stopping"
    assert counts["best_step"] == 4 and counts["best_monitor"] == pytest.approx(0.9)
    kept, _, meta = checkpoint.load(root / "work" / "man" / "train" / "model.safetensors")
    assert meta["best_step"] == 4
    assert all(torch.equal(v, snapshots[4][k]) for k, v in kept.state_dict().items())
    with pytest.raises(ClonetrainError, match="train.monitor='val/nope' is not a metric"):
        run(root, "man", "stage=train", "train.monitor=val/nope", *TINY)


def test_a_resumed_training_keeps_the_best_weights_from_before_the_kill(preprocessed, tmp_path, monkeypatch):
    root = tmp_path / "data"
    shutil.copytree(preprocessed.root, root, symlinks=True)
    snapshots: dict = {}
    _scripted_validation(monkeypatch, "val/l1_lower", {2: 0.1, 4: 0.3, 6: 0.5, 8: 0.4}, snapshots)
    real_step = _dies_at_step(monkeypatch, 5)
    longer = [*_without("train.max_steps="), "train.max_steps=8"]
    with pytest.raises(RuntimeError, match="killed"):
        run(root, "man", "stage=train", *longer)
    monkeypatch.setattr(LipSyncModule, "training_step", real_step)
    run(root, "man", "stage=train", *longer)
    counts = json.loads((root / "work" / "man" / "train" / "manifest.json").read_text())["counts"]
    assert counts["resumed_from_step"] == 4 and counts["steps"] == 8 and counts["stopped_by"] == "max steps"
    # The best (step 2, before the kill) is kept, not the best the resumed process saw (step 8).
    assert counts["best_step"] == 2 and counts["best_monitor"] == pytest.approx(0.1)
    kept, _, _ = checkpoint.load(root / "work" / "man" / "train" / "model.safetensors")
    assert all(torch.equal(v, snapshots[2][k]) for k, v in kept.state_dict().items())


def test_evaluate_reports_every_metric_for_the_clone_and_baselines(trained):
    report = json.loads((trained / "work" / "man" / "evaluate" / "metrics.json").read_text())
    assert report["heldout_frames"] == 75
    for name in ("clone", "static_frame", "real_footage"):
        m = report["metrics"][name]
        assert m["lmd_mouth"] >= 0 and m["judged_frames"] > 0
        assert -1 <= m["mouth_open_corr"] <= 1 and 0 <= m["ssim_lower"] <= 1
        assert m["sync_peak_margin"] is None or 0 <= m["sync_peak_margin"] <= 2
    assert report["metrics"]["real_footage"]["lmd_mouth"] == 0
    assert report["metrics"]["real_footage"]["sync_peak_margin"] > 0  # 3 s of real speech: one lag fits best
    assert 10 < report["metrics"]["static_frame"]["psnr_lower"] < 60
    assert set(report["comparison"]["clone_vs_static_frame"]) == {"lmd_mouth", "mouth_open_corr", "psnr_lower",
                                                                  "ssim_lower", "offset_frames"}
    clip = trained / "work" / "man" / "evaluate" / "heldout.mp4"
    assert clip.stat().st_size > 10_000
    audio = next(s for s in ffmpeg.probe(str(clip))["streams"] if s["codec_type"] == "audio")
    assert abs(float(audio["duration"]) - 3.0) < 0.1  # the 75 held-out frames' own sound


def test_evaluate_includes_the_untuned_base(trained, tmp_path):
    root = tmp_path / "data"
    shutil.copytree(trained, root, symlinks=True)
    base = root / "work" / "man" / "train" / "model.safetensors"
    shutil.copy(base, tmp_path / "base.safetensors")
    run(root, "man", "stage=train", f"model.base={tmp_path / 'base.safetensors'}", *_without("train.max_steps="),
        "train.max_steps=2")
    run(root, "man", "stage=evaluate", *TINY)
    report = json.loads((root / "work" / "man" / "evaluate" / "metrics.json").read_text())
    assert "base_untuned" in report["metrics"] and "clone_vs_base_untuned" in report["comparison"]


def test_missing_or_malformed_base_checkpoint_is_a_clear_error(preprocessed, tmp_path):
    with pytest.raises(checkpoint.CheckpointError, match="does not exist"):
        run(preprocessed.root, "man", "stage=train", f"model.base={tmp_path / 'nope.safetensors'}", *TINY)
    bad = tmp_path / "bad.safetensors"
    bad.write_text("not a checkpoint")
    with pytest.raises(checkpoint.CheckpointError, match="not a readable safetensors checkpoint"):
        run(preprocessed.root, "man", "stage=train", f"model.base={bad}", *TINY)
    other = tmp_path / "other.safetensors"  # hears the clone's features, but has another shape
    features = FeatureSpec.from_cfg(make_cfg(preprocessed.root, "man").audio_features, 16000)
    shape = ModelSpec(channels=6, n_mels=features.dims, audio_input=features.signature)
    checkpoint.save(other, Generator(shape), SyncExpert(shape))
    with pytest.raises(checkpoint.CheckpointError, match="another model shape"):
        run(preprocessed.root, "man", "stage=train", f"model.base={other}", *TINY)


def test_the_model_hears_the_mel_bands_the_audio_stage_computes(preprocessed, tmp_path):
    root = tmp_path / "data"
    shutil.copytree(preprocessed.root, root, symlinks=True)
    mel40 = ("audio_features.encoder=mel", "audio_features.n_mels=40")
    with pytest.raises(UpstreamMissingError, match=r"preprocessed with audio features whisper-base:2 \(512 "
                                                   r"channels\), audio_features expects mel \(40 channels\)"):
        run(root, "man", "stage=train", *mel40, *TINY)
    run(root, "man", "stage=audio", *mel40)
    run(root, "man", "stage=train", *mel40, *_without("train.max_steps="), "train.max_steps=2")
    generator, _, _ = checkpoint.load(root / "work" / "man" / "train" / "model.safetensors")
    assert generator.spec.n_mels == 40
    run(root, "man", "stage=evaluate", *mel40, *TINY)
    assert (root / "work" / "man" / "evaluate" / "metrics.json").is_file()


def test_training_a_clone_never_preprocessed_is_a_clear_error(clips, tmp_path):
    make_clone(tmp_path, "raw_only", {"a.mp4": clips["man20"]})
    with pytest.raises(UpstreamMissingError, match="stage=ingest clone=raw_only"):
        run(tmp_path, "raw_only", "stage=train", *TINY)


def test_wandb_logs_offline_without_an_account(preprocessed, tmp_path, monkeypatch):
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    monkeypatch.setenv("WANDB_MODE", "offline")
    root = tmp_path / "data"
    shutil.copytree(preprocessed.root, root, symlinks=True)
    run(root, "man", "stage=train", *_without("logger=", "train.max_steps="), "train.max_steps=10", "logger=wandb")
    runs = list((root / "logs" / "wandb").glob("offline-run-*"))
    assert runs and any(p.suffix == ".wandb" for p in runs[0].iterdir())
    # Losses and each parameter group's learning rate are in the run's history.
    history = b"".join(p.read_bytes() for p in runs[0].iterdir() if p.suffix == ".wandb")
    for key in (b"train/l1_lower", b"val/sync", b"lr-Adam/generator", b"lr-Adam/expert"):
        assert key in history, key
    # Training logs its held-out preview clip.
    previews = list((root / "logs" / "wandb").glob("offline-run-*/files/media/videos/val/*.mp4"))
    assert len(previews) == 1 and previews[0].stat().st_size > 10_000
    # The evaluation logs its metrics and the generated held-out clip.
    run(root, "man", "stage=evaluate", *_without("logger="), "logger=wandb")
    clips = list((root / "logs" / "wandb").glob("offline-run-*/files/media/videos/eval/*.mp4"))
    assert len(clips) == 1 and clips[0].stat().st_size > 10_000
    # The package is logged as a clone artifact, with its verdict, from the training run that made it (resumed by
    # the id the train manifest records), so wandb's lineage links the clone version to its run.
    train_run = Workspace(root, "man").read_manifest("train")["details"]["tracker_run_id"]
    assert train_run and any(p.name.endswith(f"-{train_run}") for p in runs)
    run(root, "man", "stage=package", *_without("logger="), "logger=wandb")
    of_train = [p for p in (root / "logs" / "wandb").glob(f"offline-run-*-{train_run}") if p not in runs]
    assert len(of_train) == 1
    (artifact,) = _artifacts(next(of_train[0].glob("*.wandb")))
    assert (artifact.type, artifact.name) == ("clone", "clone-man") and "v0001" in artifact.aliases
    meta = json.loads(artifact.metadata)
    assert meta["version"] == "v0001" and meta["train_run_id"] == train_run
    assert meta["verdict"]["level"] != "ok" and meta["verdict"]["headline"].startswith("The clone misses")
    assert set(meta["metrics"]) >= {"lmd_mouth", "mouth_open_corr"}


def _artifacts(wandb_file):
    """The artifact records of an offline wandb run file."""
    from wandb.proto import wandb_internal_pb2 as pb
    from wandb.sdk.internal import datastore

    ds = datastore.DataStore()
    ds.open_for_scan(str(wandb_file))
    found = []
    while (data := ds.scan_data()) is not None:
        record = pb.Record()
        record.ParseFromString(data)
        if record.WhichOneof("record_type") == "artifact":
            found.append(record.artifact)
    return found


def test_augmentation_treats_a_window_and_its_references_alike(preprocessed):
    clip = load_clip(preprocessed, 96)
    split = clip.split(0.15)
    plain = WindowDataset(clip, 0, split, 5, 0, split)
    augmented = WindowDataset(clip, 0, split, 5, 0, split, augment=True)

    def corr(a: torch.Tensor, b: torch.Tensor) -> float:
        return float(torch.corrcoef(torch.stack([a.flatten(), b.flatten()]))[0, 1])

    mirrored = []
    for seed in range(12):
        torch.manual_seed(seed)
        want = plain[7]
        torch.manual_seed(seed)
        got = augmented[7]
        assert got["frames"].shape == want["frames"].shape and 0 <= got["frames"].min() and got["frames"].max() <= 1
        assert torch.equal(got["mels"], want["mels"]) and torch.equal(got["sync_mel"], want["sync_mel"])
        assert not torch.equal(got["frames"], want["frames"])  # recoloured, always
        flips = []
        for key in ("frames", "refs"):
            # A per-channel gain and contrast keep the picture's correlation with its source near 1.
            straight, flipped = corr(got[key], want[key]), corr(got[key], want[key].flip(-1))
            assert max(straight, flipped) > 0.97
            flips.append(flipped > straight)
        assert flips[0] == flips[1]  # mirrored together or not at all
        mirrored.append(flips[0])
    assert any(mirrored) and not all(mirrored)


def test_one_config_trains_on_several_processes_with_ddp(preprocessed, tmp_path):
    """trainer=ddp with two CPU processes (gloo): Lightning's launcher re-runs the command line for the second,
    which joins the training and leaves every other stage, the lock and the outputs to the first."""
    root = tmp_path / "data"
    shutil.copytree(preprocessed.root, root, symlinks=True)
    cmd = [sys.executable, "-m", "clonetrain", "stage=all", "clone=man", f"paths.root={root}", "logger=csv",
           "trainer=ddp", "trainer.accelerator=cpu", "trainer.devices=2", "trainer.precision=32-true", *_without("logger=")]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "Starting with 2 processes" in done.stdout + done.stderr
    m = json.loads((root / "work" / "man" / "train" / "manifest.json").read_text())
    assert m["counts"]["processes"] == 2 and m["counts"]["steps"] == 4
    checkpoint.load(root / "work" / "man" / "train" / "model.safetensors")
    assert (root / "work" / "man" / "evaluate" / "metrics.json").is_file()  # the first process went on alone
    assert not list((root / "work" / "man").glob("*.tmp"))


def test_no_usable_training_frame_says_why():
    import numpy as np
    import pytest

    from clonetrain.core.errors import UpstreamMissingError
    from clonetrain.audio_analysis.model_input import FeatureSpec
    from clonetrain.contract.clip import Clip
    from clonetrain.training.data import WindowDataset

    n = 10
    clip = Clip(clone="x", faces=np.zeros((n, 8, 8, 3), np.uint8), mel=np.zeros((40, 80), np.float32),
                usable=np.zeros(n, bool), take=np.zeros(n, int), mouth_open=np.zeros(n),
                valid_landmarks=np.arange(n) < 4, energy=np.zeros(n), fps=25, features=FeatureSpec())
    with pytest.raises(UpstreamMissingError, match="of its 10 training frames, 6 have no face or landmarks and 4 are "
                                                   "flagged") as err:
        WindowDataset(clip, 0, n, 5, 0, n)
    assert "report.html" in err.value.fix


def test_the_sync_loss_runs_outside_autocast(monkeypatch):
    """The expert's score is a cosine, not a logit: its cross-entropy runs in float32 with autocast off, because
    CUDA's bf16 autocast (the GPU default) refuses binary_cross_entropy (found on a lent H100). CPU autocast
    allows it, so the test checks that autocast is off where it is computed."""
    import torch.nn.functional as F

    from clonetrain.training import module

    seen, bce = [], F.binary_cross_entropy

    def spy(score, target):
        seen.append((torch.is_autocast_enabled("cpu"), score.dtype))
        return bce(score, target)

    monkeypatch.setattr(module.F, "binary_cross_entropy", spy)
    score = torch.linspace(0.05, 0.95, 8).bfloat16()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        loss = module.sync_bce(score, 1.0)
    assert seen == [(False, torch.float32)]
    assert torch.isclose(loss, bce(score.float(), torch.ones(8)))
