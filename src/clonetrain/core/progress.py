"""Progress a person can follow in any output. A long loop (face detection, landmarks, training, render) logs a
line every `every_s` seconds, so a nightly job's log file, CI or `tee` shows it moving; in a terminal a bar
shows it too, with those lines printed above the bar.

    with Progress("faces take1.mp4", total=1500, unit="frames", every_s=30) as p:
        for batch in batches:
            ...
            p.update(len(batch))
"""

from __future__ import annotations

import contextlib
import logging
import sys
import time

log = logging.getLogger("clonetrain.core.progress")


def clock(seconds: float) -> str:
    """Seconds as m:ss (or h:mm:ss)."""
    s = int(round(max(seconds, 0)))
    h, rest = divmod(s, 3600)
    return f"{h}:{rest // 60:02d}:{rest % 60:02d}" if h else f"{rest // 60}:{rest % 60:02d}"


def terminal() -> bool:
    """Is stderr a person's terminal (a bar makes sense), not a file or a pipe?"""
    try:
        return sys.stderr.isatty()
    except (AttributeError, ValueError):
        return False


class Progress:
    """Counts work done of `total` (None: unknown) and reports it every `every_s` seconds as a log line and, in a
    terminal, as a bar. `line` may be replaced to say more than the count (training does)."""

    def __init__(self, what: str, total: float | None, unit: str, every_s: float = 30.0, bar: bool | None = None,
                 bar_format: str | None = None):
        self.what, self.total, self.unit, self.every_s = what, total, unit, float(every_s)
        self.done = 0.0
        self.started = self.last = time.perf_counter()
        self._bar = None
        self._redirect = None
        if terminal() if bar is None else bar:
            from tqdm import tqdm
            from tqdm.contrib.logging import logging_redirect_tqdm

            self._redirect = logging_redirect_tqdm()  # log lines above the bar, not through it
            self._redirect.__enter__()
            self._bar = tqdm(total=total, desc=what, unit=unit, leave=False, dynamic_ncols=True, bar_format=bar_format)

    def elapsed(self) -> float:
        return time.perf_counter() - self.started

    def eta(self) -> float | None:
        """Seconds left at the pace so far (None when it cannot be told yet)."""
        if not self.total or self.done <= 0:
            return None
        return self.elapsed() * (self.total - self.done) / self.done

    def line(self) -> str:
        count = f"{self.done:.0f}/{self.total:.0f} {self.unit} ({100 * self.done / self.total:.0f}%)" if self.total \
            else f"{self.done:.0f} {self.unit}"
        eta = self.eta()
        return f"{self.what}: {count}, {clock(self.elapsed())} elapsed" + (f", ~{clock(eta)} left" if eta is not None else "")

    def update(self, n: float = 1, to: float | None = None) -> None:
        """Add n done (or set the count to `to`); log a line when every_s has passed since the last one."""
        before = self.done
        self.done = float(to) if to is not None else self.done + n
        if self._bar is not None:
            self._bar.update(self.done - before)
        now = time.perf_counter()
        if now - self.last >= self.every_s:
            self.last = now
            log.info("%s", self.line())

    def note(self, text: str) -> None:
        """A few words shown after the bar (a terminal only; the log line says it in full)."""
        if self._bar is not None:
            self._bar.set_postfix_str(text, refresh=False)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None
        if self._redirect is not None:
            with contextlib.suppress(Exception):
                self._redirect.__exit__(None, None, None)
            self._redirect = None

    def __enter__(self) -> Progress:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
