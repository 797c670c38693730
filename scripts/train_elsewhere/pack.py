"""Pack preprocessed clones for training on the device machine (64 MiB limit): 96 px crops as near-lossless
H.264 (yuv444, crf 10), Whisper features as int8 per channel, landmarks reduced to what training reads. Every stage
file is named through clonetrain.contract.files, so the pack keeps the layout the readers there expect.
    python scripts/train_elsewhere/pack.py DATA_ROOT PACK CLONES..."""
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np

from clonetrain.contract import files
from clonetrain.core.workspace import Workspace

CROPS = 96
# What training reads of the per-frame files; the other arrays are packed as zeros of their shape (compressed to
# almost nothing), so the files keep the contract's arrays and the limit holds.
KEEP = {("ingest", "frames"): None, ("faces", "faces"): {"flags"}, ("landmarks", "landmarks"): {"valid", "mouth_open"}}
QUANTISED, VIDEO, COUNT = "features_q.npz", f"crops_{CROPS}.mp4", f"crops_{CROPS}.n"  # the pack's own files


def pack(root: Path, out: Path, clone: str) -> None:
    ws = Workspace(root, clone)
    dst = out / clone
    if dst.exists():
        shutil.rmtree(dst)
    for stage in ("ingest", "faces", "landmarks", "audio"):
        (dst / stage).mkdir(parents=True)
        shutil.copy(ws.manifest_path(stage), dst / stage / ws.manifest_path(stage).name)
    for (stage, name), keep in KEEP.items():
        arrays = files.read(ws, stage, name).arrays()
        np.savez_compressed(files.output(dst / stage, stage, name),
                            **{k: v if keep is None or k in keep else np.zeros_like(v) for k, v in arrays.items()})
    for name in ("energy", "features"):
        shutil.copy(files.path(ws, "audio", name), files.output(dst / "audio", "audio", name))
    meta = files.read_json(ws, "audio", "features")
    feats = files.load(ws, "audio", "feature_array", meta["file"]).astype(np.float32)
    scale = np.abs(feats).max(0) + 1e-8
    np.savez(dst / "audio" / QUANTISED, q=np.round(feats / scale * 127).astype(np.int8),
             scale=scale.astype(np.float32), name=meta["file"])
    crops = files.load(ws, "faces", "crops", CROPS, mmap_mode="r")
    n, s = crops.shape[0], crops.shape[1]
    p = subprocess.Popen(["ffmpeg", "-v", "error", "-y", "-f", "rawvideo", "-pix_fmt", "rgb24", "-s", f"{s}x{s}",
                          "-r", "25", "-i", "-", "-c:v", "libx264", "-preset", "medium", "-crf", "10",
                          "-pix_fmt", "yuv444p", str(dst / "faces" / VIDEO)], stdin=subprocess.PIPE)
    p.stdin.write(np.ascontiguousarray(crops).tobytes())
    p.stdin.close()
    assert p.wait() == 0
    (dst / "faces" / COUNT).write_text(str(n))


if __name__ == "__main__":
    root, out = Path(sys.argv[1]), Path(sys.argv[2])
    out.mkdir(parents=True, exist_ok=True)
    for clone in sys.argv[3:]:
        pack(root, out, clone)
    print(subprocess.run(["du", "-sh", str(out)], capture_output=True, text=True).stdout)
