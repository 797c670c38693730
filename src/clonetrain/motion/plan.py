"""Plan which frame of the clone's footage to show under each frame of new speech.

Under speech the clone plays footage of itself talking, in pauses footage of itself listening; it always plays
forward (in a long pause it may turn round on a still frame, so no gesture is seen backwards), and it cuts from one stretch to another only where the head pose and face
box of the two frames match, about as closely as two neighbouring frames of the real footage do. Where no such
match exists right away it keeps playing and looks again on the next frames; only the end of the footage forces
a cut, which is then blended over a few frames.

    pool = library.build_pool(...);  want = wanted_labels(speech_frames, fps, PlanCfg())
    path = plan(pool, want, PlanCfg())      # path.frames[k]: the pool frame shown at output frame k
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from clonetrain.motion.library import JumpScale, Pool, close_gaps
from clonetrain.core.config import PlanCfg  # the path planner's settings (render.motion)


@dataclass
class Path:
    frames: np.ndarray                        # (n,) pool frame shown at each output frame
    blend_from: np.ndarray                    # (n,) pool frame to fade from, -1 where none
    blend_weight: np.ndarray                  # (n,) weight of blend_from (0..1)
    cuts: list[dict] = field(default_factory=list)  # {"at", "from", "to", "jump", "forced"}
    turns: list[int] = field(default_factory=list)  # output frames where the path turned round on a still frame


def wanted_labels(speech: np.ndarray, fps: int, cfg: PlanCfg) -> np.ndarray:
    """Per output frame: should the clone be talking? Short pauses are bridged, speech onsets led."""
    talk = close_gaps(np.asarray(speech, bool), int(round(cfg.min_pause_s * fps)))
    lead = int(round(cfg.lead_s * fps))
    if lead and talk.any():
        ahead = talk.copy()
        for d in range(1, lead + 1):
            ahead[:-d] |= talk[d:]
        talk = ahead
    return talk


def _future_labels(pool: Pool, horizon: int) -> np.ndarray:
    """(N, horizon) int8: the label of frame q+h when playing on from q (1 talking, 0 idle), -1 past q's run."""
    n = len(pool)
    out = np.full((n, horizon), -1, np.int8)
    left = pool.run_left()
    for h in range(horizon):
        q = np.arange(n - h)
        ok = left[q] >= h
        out[q[ok], h] = pool.talking[q[ok] + h]
    return out


class Planner:
    """Steps through the pool one output frame at a time: what a live runtime drives with the labels it knows,
    and what `plan` drives with a whole speech's labels.

    At each frame it plays on, unless a cut to a landing whose head pose and face box match the current frame
    (within max_cut of the footage's own p99 change) makes the labels of the coming frames agree better with
    the speech's. Only the end of the footage forces a cut beyond that, which is then cross-faded."""

    def __init__(self, pool: Pool, cfg: PlanCfg, start: int | None = None, talking: bool = False):
        if len(pool) < 2:
            raise ValueError("the motion pool needs at least two frames")
        self.pool, self.cfg, fps = pool, cfg, pool.fps
        self.scale = JumpScale.of(pool)
        self.left = pool.run_left()
        self.horizon = max(1, int(round(cfg.horizon_s * fps)))
        self.future = _future_labels(pool, self.horizon)
        # Nearer frames count more: the cut is for what comes next, the far future can be fixed later.
        self.weights = np.linspace(1.0, 0.2, self.horizon, dtype=np.float32)
        self.recent = int(round(cfg.recent_s * fps))
        self.last_shown = np.full(len(pool), -10**9, np.int64)
        self.cuts: list[dict] = []
        self.k, self.fading, self.direction, self.turns = -1, [], 1, []
        speed = self.scale.jump(pool, np.arange(len(pool) - 1), np.arange(1, len(pool)))
        speed[pool.run[1:] != pool.run[:-1]] = np.inf
        # Still: slow on both sides (a run's first and last frames have only one side, and cannot turn).
        self.still = np.zeros(len(pool), bool)
        self.still[1:-1] = np.maximum(speed[:-1], speed[1:]) <= cfg.turn_below
        if start is None:
            cand = np.flatnonzero((pool.talking == talking) & (self.left > 0))
            cand = cand if cand.size else np.flatnonzero(self.left > 0)
            # The calmest start: the frame nearest the footage's mean pose and box.
            d = np.maximum(np.linalg.norm(pool.pose[cand] - pool.pose[cand].mean(0), axis=1) / self.scale.pose,
                           np.linalg.norm(pool.box[cand] - pool.box[cand].mean(0), axis=1) / self.scale.box)
            start = int(cand[np.argmin(d)])
        self.p = start

    def step(self, ahead) -> tuple[int, int, float]:
        """The next output frame: (pool frame, pool frame to fade from or -1, its weight). `ahead`: whether the
        clone should be talking at this frame and, as far as known, at the frames after it."""
        ahead = np.atleast_1d(np.asarray(ahead, bool))
        self.k += 1
        if self.k > 0:
            self._advance(ahead)
        self.last_shown[self.p] = self.k
        if self.fading:
            src, w = self.fading.pop(0)
            return self.p, src, w
        return self.p, -1, 0.0

    def _agreement(self, ahead: np.ndarray) -> np.ndarray:
        """For every pool frame, how well playing on from it fits the coming labels (weighted share, 0..1)."""
        want = np.full(self.horizon, ahead[-1], np.int8)  # unknown future: as the last known frame
        want[: min(len(ahead), self.horizon)] = ahead[: self.horizon]
        w = self.weights
        return ((self.future == want) * w).sum(1) / w.sum()

    def _neighbour(self, p: int, direction: int) -> int | None:
        q = p + direction
        return q if 0 <= q < len(self.pool) and self.pool.run[q] == self.pool.run[p] else None

    def _advance(self, ahead: np.ndarray) -> None:
        pool, cfg, p = self.pool, self.cfg, self.p
        nxt = self._neighbour(p, self.direction)
        label = bool(ahead[0])
        agree = self._agreement(ahead)
        jump = self.scale.jump(pool, p, np.arange(len(pool)))
        limit = np.inf if nxt is None else cfg.max_cut
        score = agree - cfg.jump_weight * jump - cfg.recent_penalty * ((self.k - self.last_shown) < self.recent)
        pause = int(np.argmax(ahead)) if ahead.any() else len(ahead)
        if not label and pause >= cfg.nod_pause_s * pool.fps:
            score = score + cfg.nod_bonus * pool.nodding
        score[(jump > limit) | (self.future[:, 0] != label) | (self.left == 0)] = -np.inf
        score[p] = -np.inf
        if nxt is not None:
            score[nxt] = -np.inf
        q = int(np.argmax(score))
        # Playing on costs nothing (it is the footage's own motion). Backwards, only the next label is known.
        if nxt is None:
            stay = -np.inf
        else:
            stay = float(agree[nxt]) if self.direction > 0 else float(pool.talking[nxt] == label)
        if np.isfinite(score[q]) and (nxt is None or score[q] > stay + cfg.min_gain):
            self._cut(q, float(jump[q]), forced=nxt is None)
            return
        if self.still[p] and not label and (nxt is None or bool(pool.talking[nxt]) != label
                                            or self._runway(p, self.direction, label) < self._wanted_for(ahead, label)):
            # Turning round here keeps more of the wanted footage in front of us than playing on would.
            back = self._neighbour(p, -self.direction)
            if back is not None and bool(pool.talking[back]) == label and not self._still_ahead(p, label):
                self.direction = -self.direction
                self.turns.append(self.k)
                self.p = back
                return
        if nxt is not None:
            self.p = nxt
        # else: nowhere to go at all (a still pool): hold the frame

    def _runway(self, p: int, direction: int, label: bool) -> int:
        """Frames of `label` that follow p in `direction` before the label changes or the run ends."""
        n, q = 0, self._neighbour(p, direction)
        while q is not None and bool(self.pool.talking[q]) == label and n < self.horizon:
            n, q = n + 1, self._neighbour(q, direction)
        return n

    def _still_ahead(self, p: int, label: bool) -> bool:
        """Is there a later still frame to turn on, inside the footage of `label` ahead? Then turn there, so
        the pause sees as much of this stretch as it can."""
        q = self._neighbour(p, self.direction)
        while q is not None and bool(self.pool.talking[q]) == label:
            after = self._neighbour(q, self.direction)
            if self.still[q] and after is not None and bool(self.pool.talking[after]) == label:
                return True
            q = after
        return False

    @staticmethod
    def _wanted_for(ahead: np.ndarray, label: bool) -> int:
        """How many of the coming frames (after this one) still want `label`."""
        rest = ahead[1:] != label
        return int(np.argmax(rest)) if rest.any() else len(ahead) - 1

    def _cut(self, q: int, j: float, forced: bool) -> None:
        p, cfg = self.p, self.cfg
        self.cuts.append({"at": self.k, "from": int(p), "to": q, "jump": round(j, 3), "forced": forced})
        if j > cfg.blend_above:  # fade out of the stretch we leave, played on as far as it goes
            tail, src = [], p
            for _ in range(cfg.blend_frames):
                src = self._neighbour(src, self.direction) or src
                tail.append(src)
            self.fading = [(t, 1 - (b + 1) / (cfg.blend_frames + 1)) for b, t in enumerate(tail)]
        self.p, self.direction = q, 1


def plan(pool: Pool, want: np.ndarray, cfg: PlanCfg, start: int | None = None) -> Path:
    """The whole path under speech known in advance (`want`: per output frame, talking or not)."""
    n = len(want)
    want = np.asarray(want, bool)
    planner = Planner(pool, cfg, start, bool(want[0]) if n else False)
    frames = np.zeros(n, np.int64)
    blend_from = np.full(n, -1, np.int64)
    blend_weight = np.zeros(n, np.float32)
    for k in range(n):
        frames[k], blend_from[k], blend_weight[k] = planner.step(want[k : k + planner.horizon])
    return Path(frames=frames, blend_from=blend_from, blend_weight=blend_weight, cuts=planner.cuts,
                turns=planner.turns)
