"""On the device: rebuild crops_96.npy and the feature file from the pack."""
import sys
from pathlib import Path
import cv2, numpy as np

for d in sorted(Path(sys.argv[1]).iterdir()):
    if not d.is_dir():
        continue
    n = int((d / "faces/crops_96.n").read_text())
    cap, frames = cv2.VideoCapture(str(d / "faces/crops_96.mp4")), []
    while True:
        ok, fr = cap.read()
        if not ok:
            break
        frames.append(cv2.cvtColor(fr, cv2.COLOR_BGR2RGB))
    assert len(frames) == n, (d, len(frames), n)
    np.save(d / "faces/crops_96.npy", np.stack(frames))
    z = np.load(d / "audio/features_q.npz")
    np.save(d / "audio" / str(z["name"]), z["q"].astype(np.float32) / 127 * z["scale"])
print("unpacked")
