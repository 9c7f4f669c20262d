"""``imilia predict`` on several slides: ``predict_cohort`` under one overall bar (k of N
slides, time elapsed and left, slides per minute, failures so far: one tqdm bar on stderr, in
every mode, showing :class:`~napari_imilia.progress.RunProgress`) with a line per finished
slide above it."""

from __future__ import annotations

import argparse
import sys
import time
from typing import Any, TextIO

from napari_imilia.progress import RunProgress


def predict_many(args: argparse.Namespace, settings: Any, options: dict[str, Any]) -> int:
    """Run the slides of ``args``; exit status 2 when a slide failed, 130 on Ctrl-C."""
    from napari_imilia.cohort.run import CohortInterrupted, predict_cohort

    bar = CohortBar()
    try:
        table = predict_cohort(
            args.slides,
            args.out,
            settings=settings,
            scheduler=args.scheduler,
            cluster_workers=args.cluster_workers,
            on_result=bar.report,
            on_progress=bar.update,
            force=args.force,
            scheduler_timeout_s=args.scheduler_timeout,
            slide_timeout_s=args.slide_timeout,
            worker_timeout_s=args.worker_timeout,
            lock_wait_s=args.wait_for_lock,
            **options,
        )
    except CohortInterrupted as stop:
        bar.close()
        n_ok = int((stop.table["status"] == "ok").sum())
        print(
            f"imilia predict: interrupted: {n_ok} of {bar.total} slides scored; "
            f"wrote {args.out}/cohort.csv",
            file=sys.stderr,
        )
        return 130
    finally:
        bar.close()
    n_ok = int((table["status"] == "ok").sum())
    print(f"{n_ok} of {len(table)} slides scored; wrote {args.out}/cohort.csv")
    return 0 if n_ok == len(table) else 2


class CohortBar:
    """A tqdm bar fed with :class:`RunProgress`; :meth:`write` prints above it. The bar
    appears with the first progress (once slides start), so an early error stays one line."""

    def __init__(self, file: TextIO | None = None) -> None:
        self.total = 0
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

    def update(self, progress: RunProgress) -> None:
        if self.bar is None:
            self.total = progress.total
            self.bar = self._start()
        now = time.monotonic()
        if progress.done == self.bar.n and now - self._shown_at < self.interval_s:
            return
        self._shown_at = now
        self.bar.n = progress.done
        self.bar.set_postfix_str(describe(progress), refresh=False)
        self.bar.refresh()

    def report(self, row: dict[str, Any]) -> None:
        """One line for a finished slide: its score (stdout) or its error (stderr)."""
        if row["status"] == "ok":
            reused = ", reused" if row.get("reused") else ""
            self.write(
                f"{row['slide_id']}: score {row['score']:.4f} ({row['n_tiles']} tiles{reused})"
            )
        else:
            self.write(f"{row['slide']}: error: {row['error']}", file=sys.stderr)

    def write(self, line: str, file: TextIO | None = None) -> None:
        from tqdm.auto import tqdm

        tqdm.write(line, file=file or sys.stdout)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


def describe(progress: RunProgress) -> str:
    """``ETA 01:05, 4.2 slides/min, 1 failed, 3 reused`` (the bar's right-hand part)."""
    from tqdm import tqdm

    eta = "?" if progress.eta_s is None else tqdm.format_interval(progress.eta_s)
    parts = [f"ETA {eta}", f"{progress.per_min:.1f} slides/min"]
    parts.append(f"{progress.failed} failed")
    if progress.reused:
        parts.append(f"{progress.reused} reused")
    return ", ".join(parts)
