"""model=wav2lip: the public Wav2Lip nets, their published checkpoint format, and fine-tuning a clone from them.

No published weights are on this machine, so the checkpoints here are written in the published layout
({"state_dict": {"module.<name>": tensor}, "optimizer": ..., "global_step": ..., "global_epoch": ...})
from randomly initialised nets; parameter names and shapes are checked against the public model code.
"""

import json
import shutil

import librosa
import numpy as np
import pytest
import soundfile as sf
import torch
from conftest import TINY, run
from safetensors.torch import load_file

from clonetrain.audio_analysis.features import log_mel
from clonetrain.models import checkpoint
from clonetrain.models.lipsync import ModelSpec, build_expert, build_generator
from clonetrain.models.wav2lip import WAV2LIP_AUDIO, MelAdapter
from clonetrain.audio_analysis.model_input import FeatureSpec

SPEC = ModelSpec(arch="wav2lip")
# (name, shape) pairs read off Rudrabha/Wav2Lip models/wav2lip.py and models/syncnet.py (conv.Conv2d holds
# conv_block = Sequential(Conv2d, BatchNorm2d); ConvTranspose2d weights are (in, out, k, k)).
GENERATOR_SHAPES = {
    "face_encoder_blocks.0.0.conv_block.0.weight": (16, 6, 7, 7),
    "face_encoder_blocks.2.3.conv_block.0.weight": (64, 64, 3, 3),
    "face_encoder_blocks.6.1.conv_block.0.weight": (512, 512, 1, 1),
    "audio_encoder.0.conv_block.0.weight": (32, 1, 3, 3),
    "audio_encoder.10.conv_block.1.running_var": (256,),
    "audio_encoder.12.conv_block.0.weight": (512, 512, 1, 1),
    "face_decoder_blocks.1.0.conv_block.0.weight": (1024, 512, 3, 3),
    "face_decoder_blocks.3.0.conv_block.0.weight": (768, 384, 3, 3),
    "face_decoder_blocks.6.2.conv_block.1.weight": (64,),
    "output_block.0.conv_block.0.weight": (32, 80, 3, 3),
    "output_block.1.weight": (3, 32, 1, 1),
}
EXPERT_SHAPES = {
    "face_encoder.0.conv_block.0.weight": (32, 15, 7, 7),
    "face_encoder.1.conv_block.0.weight": (64, 32, 5, 5),
    "face_encoder.16.conv_block.0.weight": (512, 512, 1, 1),
    "audio_encoder.11.conv_block.0.weight": (256, 256, 3, 3),
    "audio_encoder.13.conv_block.0.weight": (512, 512, 1, 1),
}


def published(net: torch.nn.Module, path, seed: int) -> dict:
    """Write `net` with random weights and batch-norm statistics the way Wav2Lip's training script saves."""
    torch.manual_seed(seed)
    state = {}
    for k, v in net.state_dict().items():
        state["module." + k] = (torch.rand_like(v) + 0.5 if "running_var" in k else torch.randn_like(v) * 0.05
                                if v.is_floating_point() else v)
    torch.save({"state_dict": state, "optimizer": {"state": {}, "param_groups": [{"lr": 1e-4}]},
                "global_step": 250000, "global_epoch": 42}, path)
    return {k.removeprefix("module."): v for k, v in state.items()}


def test_parameter_names_and_shapes_are_the_published_ones():
    g, e = build_generator(SPEC).state_dict(), build_expert(SPEC).state_dict()
    for shapes, state in ((GENERATOR_SHAPES, g), (EXPERT_SHAPES, e)):
        for name, shape in shapes.items():
            assert tuple(state[name].shape) == shape, name
    assert not any("mel_adapter" in k for k in [*g, *e])  # our adapter adds nothing to the checkpoint
    assert round(sum(v.numel() for k, v in g.items() if "running" not in k and "num_batches" not in k) / 1e6, 1) == 36.3


def test_published_checkpoints_load_with_weights_only(tmp_path):
    gen_file, expert_file = tmp_path / "wav2lip_gan.pth", tmp_path / "lipsync_expert.pth"
    want_g = published(build_generator(SPEC), gen_file, 1)
    published(build_expert(SPEC), expert_file, 2)
    g = build_generator(SPEC)
    info = checkpoint.load_wav2lip(gen_file, g, "generator")
    assert info == {"global_step": 250000, "global_epoch": 42}
    assert all(torch.equal(g.state_dict()[k], v) for k, v in want_g.items())
    faces, mels = torch.rand(2, 6, 96, 96), torch.randn(2, 1, 80, 16) * 0.3
    out = g.eval()(faces, mels)
    assert out.shape == (2, 3, 96, 96) and torch.equal(out[:, :, :48], faces[:, 3:6, :48])

    # The expert is not a generator, and a pickle that needs code to load is refused.
    with pytest.raises(checkpoint.CheckpointError, match="is not a Wav2Lip generator.*missing"):
        checkpoint.load_wav2lip(expert_file, build_generator(SPEC), "generator")
    evil = tmp_path / "evil.pth"
    torch.save({"state_dict": {"x": torch.zeros(1)}, "hook": MelAdapter()}, evil)
    with pytest.raises(checkpoint.CheckpointError, match="not a loadable PyTorch checkpoint"):
        checkpoint.load_wav2lip(evil, build_generator(SPEC), "generator")
    with pytest.raises(checkpoint.CheckpointError, match="(?s)does not exist.*put the published file there"):
        checkpoint.load_wav2lip(tmp_path / "absent.pth", build_expert(SPEC), "expert")


def test_mel_adapter_matches_wav2lips_own_mel(preprocessed):
    """Wav2Lip's audio.melspectrogram (pre-emphasis 0.97, |STFT| -> slaney mel, 20 log10 - 20 dB, scaled to
    [-4, 4]) written out here; our normalised log-mel through the adapter must land close to it."""
    wav, sr = sf.read(preprocessed.stage_dir("audio") / "audio.wav", dtype="float32")
    a = WAV2LIP_AUDIO
    assert sr == a["sample_rate"]
    emphasised = np.append(wav[0], wav[1:] - 0.97 * wav[:-1])
    spec = np.abs(librosa.stft(emphasised, n_fft=a["n_fft"], hop_length=a["hop_length"], win_length=a["win_length"]))
    mel = librosa.filters.mel(sr=sr, n_fft=a["n_fft"], n_mels=a["n_mels"], fmin=a["fmin"], fmax=a["fmax"]) @ spec
    db = 20 * np.log10(np.maximum(1e-5, mel)) - 20
    theirs = np.clip(8 * (db + 100) / 100 - 4, -4, 4)

    ours = FeatureSpec().normalise(log_mel(wav, sr, a["n_fft"], a["hop_length"], a["win_length"], a["n_mels"],
                                           a["fmin"], a["fmax"]))
    adapted = MelAdapter(a["n_mels"])(torch.from_numpy(ours.T)[None, None]).numpy()[0, 0]
    err = np.abs(adapted - theirs)
    # 0.08 per dB: a median within 1 dB, nearly all within 3 dB (the filter is not flat inside the lowest bands).
    assert np.median(err) < 0.08 and np.percentile(err, 95) < 0.25
    unadapted = np.abs(ours.T - theirs)
    assert np.median(unadapted) > 5 * np.median(err)


def test_a_clone_fine_tunes_from_published_weights_with_the_expert_frozen(preprocessed, tmp_path):
    root = tmp_path / "data"
    shutil.copytree(preprocessed.root, root, symlinks=True)
    gen_file, expert_file = tmp_path / "wav2lip_gan.pth", tmp_path / "lipsync_expert.pth"
    gen_state = published(build_generator(SPEC), gen_file, 3)
    expert_state = published(build_expert(SPEC), expert_file, 4)
    overrides = [o for o in TINY if not o.startswith(("model.", "train.max_steps"))]
    run(root, "man", "stage=audio", "model=wav2lip")  # its nets hear log-mel (model=wav2lip selects it)
    run(root, "man", "stage=train", "model=wav2lip", f"model.base={gen_file}", f"model.base_expert={expert_file}",
        "train.max_steps=2", *overrides)
    out = root / "work" / "man" / "train"
    spec, meta = checkpoint.read_header(out / "model.safetensors")
    assert spec.arch == "wav2lip" and meta["init_expert"] == str(expert_file) and meta["steps"] == 2
    saved = load_file(out / "model.safetensors")
    # Frozen: the expert's weights and its batch-norm statistics are exactly the published ones.
    assert all(torch.equal(saved[f"expert.{k}"], v) for k, v in expert_state.items())
    # The generator started from the published weights: two Adam steps move a weight by about 2 * lr at most,
    # while a fresh initialisation would be nowhere near them.
    convs = [k for k in gen_state if k.endswith("conv_block.0.weight")]
    assert max(float((saved[f"generator.{k}"] - gen_state[k]).abs().max()) for k in convs) < 0.01
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["details"]["base_expert_sha256"] and str(expert_file) in json.dumps(manifest["inputs"])
    # The generator trained on, and the clone evaluates like any other.
    run(root, "man", "stage=evaluate", "model=wav2lip", *overrides)
    metrics = json.loads((root / "work" / "man" / "evaluate" / "metrics.json").read_text())["metrics"]["clone"]
    assert 0 <= metrics["ssim_lower"] <= 1

    # A published file without model=wav2lip, or a published expert with our own model, is a clear error.
    with pytest.raises(checkpoint.CheckpointError, match="add model=wav2lip"):
        run(root, "man", "stage=train", f"model.base={gen_file}", "audio_features.encoder=mel", *TINY)
    with pytest.raises(checkpoint.CheckpointError, match="needs model=wav2lip"):
        run(root, "man", "stage=train", f"model.base_expert={expert_file}", "audio_features.encoder=mel", *TINY)
