"""``RunProgress``: how far a run over many items has come (no Qt, no clock inside).

The one progress type of runs over many slides: ``predict_cohort``'s ``on_progress`` (and so
``imilia predict``'s bar), :func:`~napari_imilia.cohort.scoring.score_unscored` and the
Cohort dock's Score all; the Slide and model dock counts one slide's tiles with it too. A
new value is made at each step; the rate and the time left count only the items computed
since the run started (``done - reused``), so results reused from an earlier run (or
features read from the cache) do not inflate them.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class RunProgress:
    """``done`` of ``total`` items (``unit``: "slides" or "tiles"), ``failed`` and ``reused``
    included; ``elapsed_s`` seconds since computing started; ``cancelled`` once the run was
    asked to stop."""

    total: int
    done: int = 0
    failed: int = 0
    reused: int = 0
    elapsed_s: float = 0.0
    cancelled: bool = False
    unit: str = "slides"

    @property
    def per_s(self) -> float | None:
        """Items computed (not reused) per second so far; None before the first."""
        computed = self.done - self.reused
        return computed / self.elapsed_s if computed > 0 and self.elapsed_s > 0 else None

    @property
    def per_min(self) -> float:
        """Items computed per minute so far; 0 before the first."""
        rate = self.per_s
        return 0.0 if rate is None else 60.0 * rate

    @property
    def slides_per_min(self) -> float:
        """:attr:`per_min` under the name ``imilia predict``'s bar and older code use."""
        return self.per_min

    @property
    def eta_s(self) -> float | None:
        """Seconds left at the rate so far; None before the first computed item."""
        rate = self.per_s
        return None if rate is None else max(self.total - self.done, 0) / rate

    def text(self) -> str:
        """'3 of 12 slides scored, about 1 min 20 s left' (or '... scored (cancelled)')."""
        text = f"{self.done} of {self.total} {self.unit} scored"
        if self.cancelled:
            return text + " (cancelled)"
        eta = self.eta_s
        if eta is not None and self.done < self.total:
            minutes, seconds = divmod(round(eta), 60)
            text += (
                f", about {minutes} min {seconds} s left"
                if minutes
                else f", about {seconds} s left"
            )
        return text
