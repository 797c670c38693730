"""The motion library: the clone's own footage cut into segments labelled by speech and by head motion, with the
head pose and face box they start and end on, so a renderer or a live runtime can plan a path through them.

A "pool" is the footage a clone may be shown with (usable training frames), frame by frame:

    pose (N, 3)   yaw, pitch, roll in degrees
    box  (N, 3)   the face's landmark box: centre x, y and size, in units of the footage's median face size
    talking (N,)  the person speaks here (pauses shorter than `min_pause_s` count as speech)
    nodding (N,)  the head pitches through `nod_degrees` within a second while turning less
    run  (N,)     id of the run of consecutive frames (same take, no gap) the frame belongs to
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass
class Pool:
    pose: np.ndarray
    box: np.ndarray
    talking: np.ndarray
    nodding: np.ndarray
    run: np.ndarray
    fps: int

    def __len__(self) -> int:
        return len(self.run)

    def arrays(self) -> dict[str, np.ndarray]:
        return {"pose": self.pose, "box": self.box, "talking": self.talking, "nodding": self.nodding,
                "run": self.run, "fps": np.array(self.fps)}

    @classmethod
    def from_arrays(cls, a) -> "Pool":
        return cls(pose=np.asarray(a["pose"], np.float32), box=np.asarray(a["box"], np.float32),
                   talking=np.asarray(a["talking"], bool), nodding=np.asarray(a["nodding"], bool),
                   run=np.asarray(a["run"], np.int64), fps=int(a["fps"]))

    def run_left(self) -> np.ndarray:
        """Frames left in its run after each frame (0 on a run's last frame)."""
        left = np.zeros(len(self), np.int64)
        for i in range(len(self) - 2, -1, -1):
            left[i] = left[i + 1] + 1 if self.run[i + 1] == self.run[i] else 0
        return left


def close_gaps(mask: np.ndarray, shortest: int) -> np.ndarray:
    """`mask` with every False run shorter than `shortest` frames, between two True runs, set True."""
    out = mask.copy()
    idx = np.flatnonzero(mask)
    if idx.size:
        gaps = np.flatnonzero(np.diff(idx) > 1)
        for g in gaps:
            a, b = idx[g] + 1, idx[g + 1]
            if b - a < shortest:
                out[a:b] = True
    return out


def face_box(points: np.ndarray) -> np.ndarray:
    """(N, 68, 2) landmarks in frame pixels -> (N, 3) centre x, y and size of their box, in units of the median
    size: a face that moves by half its size jumps 0.5 whatever the resolution. Landmarks, not the detector's
    smoothed box, because where a cut may land is decided by what is seen: the face itself."""
    lo, hi = np.nanmin(points, axis=1), np.nanmax(points, axis=1)
    centre = (lo + hi) / 2
    size = np.max(hi - lo, axis=1)
    unit = float(np.nanmedian(size)) or 1.0
    return np.nan_to_num(np.column_stack([centre, size]) / unit).astype(np.float32)


def nod_frames(pitch: np.ndarray, yaw: np.ndarray, run: np.ndarray, fps: int, nod_degrees: float) -> np.ndarray:
    """Frames inside a one-second window (of one run) whose pitch spans nod_degrees or more and 1.5x its yaw."""
    out = np.zeros(len(pitch), bool)
    for s in range(0, len(pitch) - fps + 1, max(1, fps // 5)):
        w = slice(s, s + fps)
        if run[s] != run[s + fps - 1]:
            continue
        p, y = np.ptp(pitch[w]), np.ptp(yaw[w])
        if p >= nod_degrees and p > 1.5 * y:
            out[w] = True
    return out


def build_pool(frame_ids: np.ndarray, take: np.ndarray, pose: np.ndarray, points: np.ndarray, speech: np.ndarray,
               fps: int, min_pause_s: float = 0.4, nod_degrees: float = 6.0) -> Pool:
    """The pool of the footage frames `frame_ids` (indices of the ingest timeline, ascending); `take`, `pose`,
    `points` (landmarks in frame pixels) and `speech` are indexed by that timeline."""
    frame_ids = np.asarray(frame_ids, np.int64)
    breaks = np.ones(len(frame_ids), bool)
    breaks[1:] = (np.diff(frame_ids) != 1) | (take[frame_ids[1:]] != take[frame_ids[:-1]])
    run = np.cumsum(breaks) - 1
    talking = np.zeros(len(frame_ids), bool)
    for r in np.unique(run):
        m = run == r
        talking[m] = close_gaps(speech[frame_ids[m]].astype(bool), int(round(min_pause_s * fps)))
    p = np.nan_to_num(pose[frame_ids].astype(np.float32))
    return Pool(pose=p, box=face_box(points[frame_ids].astype(np.float32)), talking=talking,
                nodding=nod_frames(p[:, 1], p[:, 0], run, fps, nod_degrees), run=run, fps=fps)


@dataclass
class JumpScale:
    """The footage's own 99th-percentile frame-to-frame change in head pose (degrees) and face box (face sizes):
    a change at or under 1.0 of these looks like the person's own motion."""

    pose: float
    box: float

    @classmethod
    def of(cls, pool: Pool) -> "JumpScale":
        same = pool.run[1:] == pool.run[:-1]
        dp = np.linalg.norm(np.diff(pool.pose, axis=0), axis=1)[same]
        db = np.linalg.norm(np.diff(pool.box, axis=0), axis=1)[same]
        if dp.size < 10:
            return cls(pose=1.0, box=0.02)
        # Floors: a nearly still take must not make every cut look like a jump.
        return cls(pose=max(float(np.percentile(dp, 99)), 0.5), box=max(float(np.percentile(db, 99)), 0.01))

    def jump(self, pool: Pool, a, b) -> np.ndarray:
        """How far frame(s) `a` are from frame(s) `b`, as a multiple of the footage's own p99 change (the larger
        of pose and box)."""
        dp = np.linalg.norm(pool.pose[a] - pool.pose[b], axis=-1) / self.pose
        db = np.linalg.norm(pool.box[a] - pool.box[b], axis=-1) / self.box
        return np.maximum(dp, db)


def segments(pool: Pool) -> list[dict]:
    """Runs of one label (talking/idle) within one run of footage, each with its head-motion label and the pose
    and box it enters and leaves on: what a runtime needs to plan a path through the library."""
    out = []
    start = 0
    n = len(pool)
    for i in range(1, n + 1):
        if i < n and pool.run[i] == pool.run[start] and pool.talking[i] == pool.talking[start]:
            continue
        sl = slice(start, i)
        out.append({
            "start": start, "end": i, "seconds": round((i - start) / pool.fps, 2),
            "speech": "talking" if pool.talking[start] else "idle",
            "head": "nodding" if pool.nodding[sl].mean() >= 0.3 else
                    ("moving" if np.ptp(pool.pose[sl], axis=0).max(initial=0) >= 8 else "still"),
            "entry": {"pose": [round(float(v), 2) for v in pool.pose[start]],
                      "box": [round(float(v), 4) for v in pool.box[start]]},
            "exit": {"pose": [round(float(v), 2) for v in pool.pose[i - 1]],
                     "box": [round(float(v), 4) for v in pool.box[i - 1]]},
        })
        start = i
    return out
