"""On the device: rebuild the crops and the feature file from the pack (pack.py), under the contract's names.
    python unpack.py PACK"""
import sys
from pathlib import Path

import cv2
import numpy as np

REPO = next(p for p in Path(__file__).resolve().parents if (p / "src" / "clonetrain").is_dir())
sys.path[:0] = [str(Path(__file__).parent / "site"), str(REPO / "src")]  # omegaconf beside it, as train.py
from clonetrain.contract import files  # noqa: E402

sys.path.insert(0, str(Path(__file__).parent))
from pack import COUNT, CROPS, QUANTISED, VIDEO  # noqa: E402


def unpack(d: Path) -> None:
    n = int((d / "faces" / COUNT).read_text())
    cap, frames = cv2.VideoCapture(str(d / "faces" / VIDEO)), []
    while True:
        ok, fr = cap.read()
        if not ok:
            break
        frames.append(cv2.cvtColor(fr, cv2.COLOR_BGR2RGB))
    assert len(frames) == n, (d, len(frames), n)
    np.save(files.output(d / "faces", "faces", "crops", CROPS), np.stack(frames))
    z = np.load(d / "audio" / QUANTISED)
    features = z["q"].astype(np.float32) / 127 * z["scale"]
    np.save(files.output(d / "audio", "audio", "feature_array", str(z["name"])), features)


if __name__ == "__main__":
    for d in sorted(Path(sys.argv[1]).iterdir()):
        if d.is_dir():
            unpack(d)
    print("unpacked")
