"""The WORLD vocoder (pyworld) and mel-cepstra (pysptk): analyse speech into pitch, spectral envelope and
aperiodicity every 5 ms, and synthesise it back (60 s in about 4 s on a CPU; resynthesis MCD 2.7 dB).

Frames: WORLD frame w is at w * FRAME_MS ms, so 4 WORLD frames fall on one 20 ms Whisper feature frame."""

from __future__ import annotations

import functools
import warnings
from dataclasses import dataclass

import numpy as np

from clonetrain.core.errors import WeightsMissingError

SAMPLE_RATE = 16000
FRAME_MS = 5.0
FFT_SIZE = 1024
ORDER = 39  # 40 mel-cepstra: no further loss than WORLD's own (issue 14)
ALPHA = 0.41  # frequency warping that approximates the mel scale at 16 kHz
F0_FLOOR, F0_CEIL = 60.0, 500.0
MCD_CONST = 10.0 / np.log(10.0) * np.sqrt(2.0)


def _pyworld():
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # pyworld 0.3.5 imports pkg_resources, deprecated (setuptools<81 pinned)
            import pyworld
    except ImportError:
        raise WeightsMissingError("pyworld (the WORLD vocoder) is not installed, so no voice can be built or spoken",
                                  "pip install pyworld pysptk  (pyworld builds from source: needs a C++ compiler "
                                  "and the Python headers, e.g. apt-get install g++ python3-dev)") from None
    return pyworld


def _pysptk():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # pysptk imports pkg_resources, deprecated (setuptools<81 pinned for it)
        import pysptk
    return pysptk


@dataclass
class Analysis:
    f0: np.ndarray   # (W,) Hz, 0 where unvoiced
    mcep: np.ndarray  # (W, ORDER + 1) mel-cepstra of the spectral envelope (c0: level)
    ap: np.ndarray   # (W, FFT_SIZE // 2 + 1) aperiodicity


def analyse(wav: np.ndarray, sr: int = SAMPLE_RATE) -> Analysis:
    pw = _pyworld()
    x = np.asarray(wav, np.float64)
    f0, t = pw.dio(x, sr, f0_floor=F0_FLOOR, f0_ceil=F0_CEIL, frame_period=FRAME_MS)
    f0 = pw.stonemask(x, f0, t, sr)
    sp = pw.cheaptrick(x, f0, t, sr, fft_size=FFT_SIZE)
    ap = pw.d4c(x, f0, t, sr, fft_size=FFT_SIZE)
    return Analysis(f0=f0, mcep=sp_to_mcep(sp), ap=ap)


@functools.lru_cache(maxsize=1)
def _matrices() -> tuple[np.ndarray, np.ndarray]:
    """pysptk's sp2mc is linear in log(sp) and mc2sp's log is linear in mc: both as matrices, read off pysptk
    itself once on unit vectors. pysptk applies them one frame at a time in Python (about 1 s a minute of
    frames each way); a matrix product does a whole utterance at once, with the same numbers."""
    sptk = _pysptk()
    bins = FFT_SIZE // 2 + 1
    to_mc = np.stack([sptk.sp2mc(np.exp(np.eye(bins)[i])[None], ORDER, ALPHA)[0] for i in range(bins)])
    from_mc = np.stack([np.log(sptk.mc2sp(np.eye(ORDER + 1)[i][None], ALPHA, FFT_SIZE)[0]) for i in range(ORDER + 1)])
    return to_mc, from_mc  # (bins, D): log sp -> mc; (D, bins): mc -> log sp


def sp_to_mcep(sp: np.ndarray) -> np.ndarray:
    return (np.log(np.maximum(sp, 1e-300)) @ _matrices()[0]).astype(np.float32)


def mcep_to_sp(mcep: np.ndarray) -> np.ndarray:
    return np.exp(np.asarray(mcep, np.float64) @ _matrices()[1])


def synthesise(f0: np.ndarray, mcep: np.ndarray, ap: np.ndarray, sr: int = SAMPLE_RATE) -> np.ndarray:
    pw = _pyworld()
    n = min(len(f0), len(mcep), len(ap))
    wav = pw.synthesize(np.ascontiguousarray(f0[:n], np.float64), mcep_to_sp(mcep[:n]),
                        np.ascontiguousarray(ap[:n], np.float64), sr, frame_period=FRAME_MS)
    return wav.astype(np.float32)


def mcd(a: np.ndarray, b: np.ndarray, mask: np.ndarray | None = None) -> float:
    """Mel-cepstral distortion in dB between time-aligned mel-cepstra, c0 (level) left out."""
    n = min(len(a), len(b))
    d = a[:n, 1:] - b[:n, 1:]
    if mask is not None:
        d = d[mask[:n]]
    return float(MCD_CONST * np.sqrt((d.astype(np.float64) ** 2).sum(1)).mean()) if len(d) else float("nan")
