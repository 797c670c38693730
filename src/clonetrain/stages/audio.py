"""audio: the lip-sync model's audio features (log-mel or Whisper encoder layers) aligned to the video frames,
speech, pitch, speaking rate, a voice profile, and the audio-video offset of every take (corrected when it is
beyond a couple of frames).

Reads  ingest/audio.wav, ingest/vad.json, ingest/takes.json, ingest/frames.npz, landmarks/landmarks.npz,
       faces/faces.npz
Writes audio.wav     the sound with each take's offset corrected (16 kHz mono)
       mel.npy       (T, n_mels) log-mel dB; video frame j owns mel frames [j*sr/hop/fps, (j+1)*sr/hop/fps)
       whisper.npy   audio_features.encoder=whisper: (T50, layers x 512) float16, 50 frames/s (video frame j owns
                     frames [2j, 2j+2) at 25 fps), one fixed 30 s window grid from the first sample, minus the
                     encoding of a silent window (audio_analysis.whisper.encode)
       features.json what the model hears: {"file": mel.npy | whisper.npy, "spec": audio_analysis.model_input.FeatureSpec}
       energy.npy    (N,) voice-band log energy per video frame (after correction)
       speech.npy    (N,) bool: the frame lies in speech
       vad.json      speech segments after correction
       offsets.json  per take: offset (frames, ms), correlation curve, whether it was corrected
       profile.json  speech seconds, usable speech seconds, f0 statistics, speaking rate, voice timbre

    python -m clonetrain stage=audio clone=anna audio_features.correct_beyond_frames=1
    python -m clonetrain stage=audio clone=anna audio_features.encoder=whisper
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import soundfile as sf
from omegaconf import DictConfig

from clonetrain.audio_analysis import features, sync, vad
from clonetrain.audio_analysis.model_input import FeatureSpec
from clonetrain.contract import files
from clonetrain.contract.faces import usable as usable_face
from clonetrain.core.manifest import StageResult
from clonetrain.core.workspace import Workspace


def _speech_mask(segments: list, n: int, fps: int) -> np.ndarray:
    """Frames whose centre lies in a speech segment."""
    centres = (np.arange(n) + 0.5) / fps
    mask = np.zeros(n, bool)
    for s, e in segments:
        mask |= (centres >= s) & (centres < e)
    return mask


def run(cfg: DictConfig, ws: Workspace, out_dir: Path) -> StageResult:
    c = cfg.audio_features
    spec = FeatureSpec.from_cfg(c, cfg.ingest.sample_rate)  # fails on a bad setting before any work
    wav, sr = sf.read(files.path(ws, "ingest", "audio"), dtype="float32")
    fps = int(files.read(ws, "ingest", "frames").fps)
    spf = sr // fps
    takes = [t for t in files.read_json(ws, "ingest", "takes") if t["status"] == "ok"]
    lm = files.read(ws, "landmarks", "landmarks")
    flags = files.read(ws, "faces", "faces").flags
    mouth, valid = lm.mouth_open, lm.valid & usable_face(flags)
    n = len(mouth)
    segments_in = [tuple(s) for s in files.read_json(ws, "ingest", "vad")["segments"]]

    result = StageResult()
    offsets, segments_out, energy = [], [], np.zeros(n, np.float32)
    wav = wav.copy()
    for take in takes:
        a, b = take["first_frame"], take["first_frame"] + take["frames"]
        t0, t1 = a / fps, b / fps
        take_wav = wav[a * spf : b * spf]
        take_segments = [(s, e) for s, e in segments_in if t0 <= s < t1]
        e = features.frame_energy(take_wav, sr, fps, b - a)
        est = sync.estimate_offset(mouth[a:b], e, valid[a:b], c.max_offset_frames)
        offset = est.frames - c.mouth_lead_frames
        speech_s = vad.total_seconds(take_segments)
        margin = est.margin()
        clear = bool(np.isfinite(margin) and margin >= c.min_peak_margin)
        reliable = bool(np.isfinite(est.frames) and est.peak >= c.min_sync_correlation and clear
                        and speech_s >= c.min_speech_for_offset_s and take["lipsync"])
        shift = int(round(offset)) if reliable and abs(offset) > c.correct_beyond_frames + 0.5 else 0
        row = {"take": take["take"], "file": take["file"], "offset_frames": round(float(offset), 2),
               "offset_ms": round(float(offset) * 1000 / fps), "peak_correlation": round(est.peak, 3),
               "peak_margin": round(margin, 3) if np.isfinite(margin) else None,
               "reliable": reliable, "corrected_frames": shift,
               "lags": est.lags.tolist(), "correlation": [None if not np.isfinite(v) else round(float(v), 4)
                                                          for v in est.correlation]}
        if shift:
            take_wav = sync.shift_audio(take_wav, shift, spf)
            wav[a * spf : b * spf] = take_wav
            take_segments = [(max(t0, s - shift / fps), min(t1, e_ - shift / fps)) for s, e_ in take_segments]
            take_segments = [(s, e_) for s, e_ in take_segments if e_ > s]
            e = features.frame_energy(take_wav, sr, fps, b - a)
            late = "behind" if shift > 0 else "ahead of"
            result.warnings.append(f"{take['file']}: audio is {abs(row['offset_ms'])} ms {late} video, corrected "
                                   f"(moved {abs(shift)} frames)")
        elif (take["lipsync"] and np.isfinite(est.peak) and est.peak < c.min_sync_correlation
              and speech_s >= c.min_speech_for_offset_s):
            result.warnings.append(f"{take['file']}: the mouth hardly follows the sound (r={est.peak:.2f}): "
                                   "is it the speaker's own voice? offset not corrected")
        elif take["lipsync"] and speech_s >= c.min_speech_for_offset_s and np.isfinite(est.frames) and not clear:
            result.warnings.append(f"{take['file']}: the audio offset is unclear: lags 3 or more frames apart "
                                   f"fit about equally (margin {margin:.3f} < {c.min_peak_margin}); "
                                   "not corrected")
        offsets.append(row)
        segments_out.extend(take_segments)
        energy[a:b] = e

    mel = features.log_mel(wav, sr, c.n_fft, c.hop_length, c.win_length, c.n_mels, c.fmin, c.fmax)
    speech = _speech_mask(segments_out, n, fps)
    lipsync_frames = files.read(ws, "ingest", "frames").lipsync
    # Frame-quantised, so it can exceed the VAD's seconds by a frame per segment: clip it.
    usable_speech_s = min(float(np.count_nonzero(speech & valid & lipsync_frames)) / fps,
                          vad.total_seconds(segments_out))
    profile = {
        "speech_s": round(vad.total_seconds(segments_out), 2),
        "usable_speech_s": round(usable_speech_s, 2),
        **features.pitch_stats(wav, sr, segments_out, c.f0_min, c.f0_max),
        "speaking_rate_per_s": features.speaking_rate(wav, sr, segments_out),
        "voice": features.voice_profile(wav, sr, segments_out),
    }
    sf.write(files.output(out_dir, "audio", "audio"), wav, sr, subtype="PCM_16")
    np.save(files.output(out_dir, "audio", "mel"), mel)
    if spec.encoder == "mel":
        feature_file, n_features = files.name_of("audio", "mel"), len(mel)
    else:
        # Computed on the corrected sound, so the features line up with the picture as the mel does.
        feats = spec.compute(wav, sr)
        np.save(files.output(out_dir, "audio", "whisper"), feats.astype(np.float16))  # half the disk; the model's noise is larger
        feature_file, n_features = files.name_of("audio", "whisper"), len(feats)
    files.write_record(out_dir, "audio", "features", {"file": feature_file, "spec": spec.to_dict()})
    np.save(files.output(out_dir, "audio", "energy"), energy)
    np.save(files.output(out_dir, "audio", "speech"), speech)
    files.write_record(out_dir, "audio", "vad", {"sample_rate": sr, "segments": segments_out})
    files.write_record(out_dir, "audio", "offsets", offsets)
    files.write_record(out_dir, "audio", "profile", profile)

    result.counts = {"mel_frames": int(len(mel)), "mel_per_video_frame": sr / c.hop_length / fps,
                     "feature_frames": int(n_features), "features_per_video_frame": spec.frames_per_video_frame(fps),
                     "speech_s": profile["speech_s"], "usable_speech_s": profile["usable_speech_s"],
                     "corrected_takes": sum(1 for o in offsets if o["corrected_frames"])}
    result.summary = [f"{profile['speech_s']:.1f} s of speech, {usable_speech_s:.1f} s usable for lip-sync "
                      f"(speech with a usable face); model input: {spec.signature}, {n_features}x{spec.dims}"]
    if profile["f0_median_hz"]:
        result.summary.append(f"pitch median {profile['f0_median_hz']} Hz (p10-p90 {profile['f0_p10_hz']}-"
                              f"{profile['f0_p90_hz']} Hz), {profile['speaking_rate_per_s']} syllables/s")
    for o in offsets:
        state = ("corrected" if o["corrected_frames"] else "within tolerance") if o["reliable"] else "not measurable"
        result.summary.append(f"{o['file']}: audio offset {o['offset_ms']:+d} ms (r={o['peak_correlation']}) {state}")
    return result
