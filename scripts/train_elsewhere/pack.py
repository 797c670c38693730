"""Pack preprocessed clones for training on the device machine (64 MiB limit): 96 px crops as near-lossless
H.264 (yuv444, crf 10), Whisper features as int8 per channel, landmarks reduced to what training reads."""
import json, shutil, subprocess, sys
from pathlib import Path
import numpy as np

root, out = Path(sys.argv[1]), Path(sys.argv[2])
clones = sys.argv[3:]
out.mkdir(parents=True, exist_ok=True)
for clone in clones:
    src, dst = root / "work" / clone, out / clone
    if dst.exists():
        shutil.rmtree(dst)
    for st in ("ingest", "faces", "landmarks", "audio"):
        (dst / st).mkdir(parents=True)
        shutil.copy(src / st / "manifest.json", dst / st / "manifest.json")
    shutil.copy(src / "ingest/frames.npz", dst / "ingest/frames.npz")
    f = np.load(src / "faces/faces.npz"); np.savez(dst / "faces/faces.npz", flags=f["flags"])
    lm = np.load(src / "landmarks/landmarks.npz"); np.savez(dst / "landmarks/landmarks.npz", valid=lm["valid"], mouth_open=lm["mouth_open"])
    shutil.copy(src / "audio/energy.npy", dst / "audio/energy.npy")
    meta = json.loads((src / "audio/features.json").read_text()); shutil.copy(src / "audio/features.json", dst / "audio/features.json")
    feats = np.load(src / "audio" / meta["file"]).astype(np.float32)
    scale = np.abs(feats).max(0) + 1e-8
    np.savez(dst / "audio/features_q.npz", q=np.round(feats / scale * 127).astype(np.int8), scale=scale.astype(np.float32), name=meta["file"])
    crops = np.load(src / "faces/crops_96.npy", mmap_mode="r")
    n, s = crops.shape[0], crops.shape[1]
    p = subprocess.Popen(["ffmpeg", "-v", "error", "-y", "-f", "rawvideo", "-pix_fmt", "rgb24", "-s", f"{s}x{s}", "-r", "25", "-i", "-",
                          "-c:v", "libx264", "-preset", "medium", "-crf", "10", "-pix_fmt", "yuv444p", str(dst / "faces/crops_96.mp4")], stdin=subprocess.PIPE)
    p.stdin.write(np.ascontiguousarray(crops).tobytes()); p.stdin.close(); assert p.wait() == 0
    (dst / "faces/crops_96.n").write_text(str(n))
print(subprocess.run(["du", "-sh", str(out)], capture_output=True, text=True).stdout)
