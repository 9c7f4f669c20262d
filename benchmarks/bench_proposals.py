"""Item-grade proposals: fitting the ordinal model and its cross-validated kappa.

Run: ``python benchmarks/bench_proposals.py``. For 10, 30, 100 and 300 graded slides with
generated census features (log densities over the slide and in the worst window; grades 0-3
made from the density), times one item's calibration as the grade form does it after a
commit: the cross-validated kappa (leave-one-out up to 30 slides, 10-fold beyond) plus the
final fit, with the BFGS solver used and, for comparison, scipy's L-BFGS-B. CPU time of the
process (``time.process_time``), median of ``--repeats``: the machine may be shared.

Prints a markdown table. Nothing here asserts; figures go to docs/performance.md.
"""

from __future__ import annotations

import argparse
import statistics
import time
from unittest import mock

import numpy as np


def _calibration(x: np.ndarray, y: np.ndarray) -> tuple[float, str]:
    from napari_imilia.review.proposals import cross_validated_kappa, fit_ordinal

    kappa, scheme = cross_validated_kappa(x, y, 3)
    fit_ordinal(x, y)
    return float(kappa or 0.0), scheme


def _timed(x: np.ndarray, y: np.ndarray, repeats: int) -> tuple[float, float, str]:
    times, kappa, scheme = [], 0.0, ""
    for _ in range(repeats):
        start = time.process_time()
        kappa, scheme = _calibration(x, y)
        times.append(time.process_time() - start)
    return statistics.median(times), kappa, scheme


def _lbfgsb(*args, **kwargs):
    """scipy's minimize with L-BFGS-B in place of the method asked for."""
    import scipy.optimize

    kwargs["method"] = "L-BFGS-B"
    return scipy.optimize.minimize(*args, **kwargs)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    from napari_imilia.review import proposals

    rng = np.random.default_rng(0)
    _timed(np.ones((10, 2)) * np.arange(10)[:, None], np.arange(10) % 2, 1)  # warm-up
    print("| graded slides | CV | kappa | BFGS (used) CPU s | L-BFGS-B CPU s |")
    print("| ---: | --- | ---: | ---: | ---: |")
    for n in (10, 30, 100, 300):
        density = rng.uniform(20, 3000, n)
        x = np.column_stack([np.log1p(density), np.log1p(1.5 * density * rng.uniform(0.8, 1.2, n))])
        y = np.searchsorted([200.0, 600.0, 1500.0], density)
        used, kappa, scheme = _timed(x, y, args.repeats)
        with mock.patch.object(proposals, "minimize", _lbfgsb):
            other, _, _ = _timed(x, y, args.repeats)
        print(f"| {n} | {scheme} | {kappa:.2f} | {used:.3f} | {other:.3f} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
