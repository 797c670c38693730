"""The mouth control (models.mouth_control) on real preprocessed footage: the regression from sound to mouth
opening, how it reaches the generator, and checkpoints from before it."""

import dataclasses

import numpy as np
import pytest
import torch
from safetensors import safe_open
from safetensors.torch import load_file, save_file

from clonetrain.evaluation.metrics import pearson
from clonetrain.models import checkpoint
from clonetrain.models.lipsync import Generator, ModelSpec, SyncExpert
from clonetrain.models.mouth_control import FALLBACK_RIDGE, MouthControl, zscore
from clonetrain.contract.clip import load_clip
from clonetrain.training.data import WindowDataset

TINY_SPEC = ModelSpec(channels=4, max_channels=16, audio_dim=16, expert_dim=8)


def _parts(ws, cut: float = 0.6):
    """Windows over the first `cut` of the clip and over the rest."""
    clip = load_clip(ws, 96)
    k = int(clip.n * cut)
    return clip, WindowDataset(clip, 0, k, 5, 0, k), WindowDataset(clip, k, clip.n, 5, 0, k)


def _predict(control: MouthControl, windows: np.ndarray) -> np.ndarray:
    return control(torch.from_numpy(windows).float()[:, None]).numpy()


def test_the_control_predicts_the_opening_of_frames_it_never_saw(preprocessed):
    clip, first, rest = _parts(preprocessed)
    control = MouthControl(clip.features.dims)
    windows, z = rest.control_samples()
    assert not control.fitted and np.all(_predict(control, windows) == 0)  # unfitted: no opinion
    info = control.fit([first.control_samples()])  # the ridge cross-validated on blocks of these frames
    assert info["fitted"] and info["frames"] > 200 and control.fitted and len(info["ridge_scores"]) > 1
    r = pearson(_predict(control, windows), z)
    # The same sound in another order (one-second blocks swapped about) must not follow the mouth as well.
    blocks = np.array_split(np.arange(len(windows)), max(len(windows) // 25, 2))
    shuffled = np.concatenate([blocks[i] for i in np.random.default_rng(0).permutation(len(blocks))])
    r_shuffled = pearson(_predict(control, windows[shuffled]), z)
    assert r > 0.3 and r > r_shuffled + 0.2, (r, r_shuffled)
    # The gain restores the spread of the openings the regression was fitted on.
    spread = _predict(control, first.control_samples()[0]).std()
    assert 0.8 < spread < 1.25


def test_a_clone_is_pulled_towards_its_bases_regression(preprocessed):
    clip, first, rest = _parts(preprocessed, 0.5)
    base = MouthControl(clip.features.dims)
    base.fit([first.control_samples()])
    held = MouthControl(clip.features.dims)
    held.fit([rest.control_samples()], ridge=1e9, prior=base)
    free = MouthControl(clip.features.dims)
    free.fit([rest.control_samples()], ridge=1.0, prior=base)
    gap = lambda c: float((c.weight - base.weight).norm() / base.weight.norm())  # noqa: E731
    assert gap(held) < 0.01 < gap(free)


def test_the_generator_hears_the_opening_it_is_given_or_predicts_one(preprocessed):
    clip, first, _ = _parts(preprocessed)
    torch.manual_seed(0)
    g = Generator(dataclasses.replace(TINY_SPEC, n_mels=clip.features.dims, audio_input=clip.features.signature)).eval()
    g.mouth.fit([first.control_samples()])
    for layer in (g.control[-1], *g.control_levels):  # as training makes them: the control matters
        torch.nn.init.normal_(layer.weight)
    faces = torch.from_numpy(np.asarray(clip.faces[:4])).float().div(255).permute(0, 3, 1, 2)
    x = torch.cat([faces, faces], 1)  # reference | target
    x[:, 3:, 48:] = 0  # the target's lower half masked
    mels = torch.from_numpy(np.stack([clip.mel_window(t + 0.5) for t in range(4)])).float()[:, None]
    with torch.no_grad():
        shut, wide = g(x, mels, torch.full((4,), -1.5)), g(x, mels, torch.full((4,), 2.5))
        assert torch.equal(shut[:, :, :48], wide[:, :, :48])  # the known upper half stays as it is
        assert (shut[:, :, 48:] - wide[:, :, 48:]).abs().mean() > 1e-3
        assert torch.equal(g(x, mels), g(x, mels, g.mouth(mels)))  # no control given: the predicted one


def test_a_checkpoint_from_before_the_mouth_control_loads_and_draws_as_it_did(tmp_path):
    torch.manual_seed(2)
    g, e = Generator(TINY_SPEC).eval(), SyncExpert(TINY_SPEC)
    path = tmp_path / "old.safetensors"
    checkpoint.save(path, g, e, {})
    tensors = load_file(str(path))
    with safe_open(str(path), framework="pt") as f:
        header = f.metadata()
    old = {k: v for k, v in tensors.items() if not k.startswith(("generator.mouth.", "generator.control."))}
    assert len(old) < len(tensors)
    save_file(old, str(path), metadata=header)
    loaded, _, _ = checkpoint.load(path)
    faces, mels = torch.rand(3, 6, 96, 96), torch.rand(3, 1, 80, 16)
    with torch.no_grad():
        assert torch.equal(loaded(faces, mels), g(faces, mels))
    assert not loaded.mouth.fitted


def test_zscore_ignores_frames_without_landmarks():
    opening = np.array([0.1, 0.3, np.nan, 0.5, 9.0])
    z = zscore(opening, np.array([True, True, True, True, False]))
    assert np.isnan(z[2]) and np.isnan(z[4]) and abs(np.nanmean(z)) < 1e-6


def test_too_few_frames_to_cross_validate_take_the_fallback_ridge(preprocessed):
    clip, first, _ = _parts(preprocessed)
    windows, z = first.control_samples()
    control = MouthControl(clip.features.dims)
    info = control.fit([(windows[:20], z[:20])])  # less than a second: a few frames per fold
    assert info["fitted"] and info["ridge"] == FALLBACK_RIDGE and info["ridge_scores"] is None


@pytest.mark.parametrize("columns", [200, 600])
def test_cross_validation_scores_every_ridge_as_refitting_each_fold_would(preprocessed, columns):
    """The scores come from one eigendecomposition per fold; they must equal solving each fold at each ridge
    (on real frames, their first feature columns, so that the direct solves stay cheap). With 200 columns each
    fold's training frames outnumber them (the decomposition of x x^T, as for a base); with 600 they are fewer than
    half (the decomposition from the frames, as for a clone's minute against Whisper's 2560 columns)."""
    from clonetrain.models.mouth_control import RIDGES, _features, _held_out_errors, _Stats

    clip, first, _ = _parts(preprocessed)
    x, z = _features(*first.control_samples())
    x = x[:, :columns]
    folds = [_Stats(x.shape[1]) for _ in range(5)]
    for f, part in zip(folds, np.array_split(np.arange(len(z)), 5)):
        f.add(x[part], z[part])
    w0 = np.linspace(-0.01, 0.01, x.shape[1])  # a prior, as a clone fitted against its base has
    scores = _held_out_errors(folds, RIDGES, w0)
    for ridge in RIDGES:
        sse = 0.0
        for i, held in enumerate(folds):
            rest = [f for j, f in enumerate(folds) if j != i]
            train = sum(rest[1:], rest[0])
            assert (train.rows is not None) == (columns == 600)  # the frames kept only where they are few
            w, mu = train.solve(ridge, w0)
            sse += held.error(w, mu, train.sy / train.n)
        assert np.isclose(scores[ridge], sse / len(z), rtol=1e-8), (ridge, columns)
    assert len(set(np.round(list(scores.values()), 6))) > 1  # the ridges do differ on these frames
