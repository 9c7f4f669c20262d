"""The overall bar of ``imilia predict`` on several slides: k of N slides, time elapsed and
left, slides per minute, failures so far (one tqdm bar on stderr, in every mode)."""

from __future__ import annotations

import sys
import time
from typing import Any, TextIO

from napari_imilia.cohort.run import CohortProgress


class CohortBar:
    """A tqdm bar fed with :class:`CohortProgress`; :meth:`write` prints above it. The bar
    appears with the first progress (once slides start), so an early error stays one line."""

    def __init__(self, total: int, file: TextIO | None = None) -> None:
        self.total = total
        self.file = file or sys.stderr
        # a terminal redraws the bar every second; a log file gets a line per slide (and
        # one every 30 s while none ends)
        self.interval_s = 1.0 if getattr(self.file, "isatty", lambda: False)() else 30.0
        self._shown_at = 0.0
        self.bar: Any = None

    def _start(self) -> Any:
        from tqdm.auto import tqdm

        return tqdm(
            total=self.total,
            desc="cohort",
            bar_format="{desc} {n_fmt}/{total_fmt} slides |{bar}| [{elapsed}{postfix}]",
            file=self.file,
            dynamic_ncols=True,
            position=0,
        )

    def update(self, progress: CohortProgress) -> None:
        if self.bar is None:
            self.bar = self._start()
        now = time.monotonic()
        if progress.done == self.bar.n and now - self._shown_at < self.interval_s:
            return
        self._shown_at = now
        self.bar.n = progress.done
        self.bar.set_postfix_str(describe(progress), refresh=False)
        self.bar.refresh()

    def write(self, line: str, file: TextIO | None = None) -> None:
        from tqdm.auto import tqdm

        tqdm.write(line, file=file or sys.stdout)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


def describe(progress: CohortProgress) -> str:
    """``ETA 01:05, 4.2 slides/min, 1 failed, 3 reused`` (the bar's right-hand part)."""
    from tqdm import tqdm

    eta = "?" if progress.eta_s is None else tqdm.format_interval(progress.eta_s)
    parts = [f"ETA {eta}", f"{progress.slides_per_min:.1f} slides/min"]
    parts.append(f"{progress.failed} failed")
    if progress.reused:
        parts.append(f"{progress.reused} reused")
    return ", ".join(parts)
