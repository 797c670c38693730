"""How a path through the footage looks: the largest jump it makes where it leaves the footage's own order, and
how often it plays talking footage under speech and listening footage in pauses."""

from __future__ import annotations

import numpy as np

from clonetrain.motion.library import JumpScale, Pool, close_gaps


def jumps(pool: Pool, frames: np.ndarray) -> dict:
    """Frame-to-frame changes along `frames`, in multiples of the footage's own p99 change. `max_cut_jump`: the
    largest at a cut (where the path leaves the footage's order; a held frame counts as a cut of 0);
    `turns`: where it turns round (on still frames);
    `max_any_jump`: the largest anywhere, natural motion included; `real_max_jump`: the footage's own largest."""
    scale = JumpScale.of(pool)
    frames = np.asarray(frames)
    a, b = frames[:-1], frames[1:]
    step = scale.jump(pool, a, b)
    # The footage's own order, either way (a path turns round on still frames in long pauses).
    natural = (np.abs(b - a) == 1) & (pool.run[np.clip(b, 0, len(pool) - 1)] == pool.run[a])
    same = pool.run[1:] == pool.run[:-1]
    real = scale.jump(pool, np.arange(len(pool) - 1), np.arange(1, len(pool)))[same]
    return {"max_cut_jump": float(step[~natural].max(initial=0.0)), "max_any_jump": float(step.max(initial=0.0)),
            "real_max_jump": float(real.max(initial=0.0)), "cuts": int((~natural & (a != b)).sum()),
            "holds": int((a == b).sum()),
            "turns": int(((b[1:] - a[1:]) * (b[:-1] - a[:-1]) < 0).sum()), "p99_pose_degrees": scale.pose, "p99_box_faces": scale.box}


def label_shares(pool: Pool, frames: np.ndarray, speech: np.ndarray, fps: int, min_pause_s: float = 0.4) -> dict:
    """Share of the speech frames that play talking footage, and of the pause frames that play listening (idle)
    footage. A pause is a gap in the speech of at least min_pause_s, as in the library's own labels."""
    talk = close_gaps(np.asarray(speech, bool), int(round(min_pause_s * fps)))
    shown = pool.talking[np.asarray(frames)]
    return {"speech_on_talking": float(shown[talk].mean()) if talk.any() else float("nan"),
            "pause_on_idle": float((~shown[~talk]).mean()) if (~talk).any() else float("nan"),
            "speech_frames": int(talk.sum()), "pause_frames": int((~talk).sum())}
