"""``imilia predict``'s bounded waits: the results folder's lock, one slide, a silent worker.

Their defaults repeat ``predict_cohort``'s, so ``imilia --help`` need not import it.
"""

from __future__ import annotations

import argparse

from napari_imilia.errors import ImiliaError

#: Seconds one slide may run (``predict_cohort``'s ``SLIDE_TIMEOUT_S``).
SLIDE_TIMEOUT_S = 6 * 3600.0
#: Seconds a dask worker may stay silent (``cohort.watch.WORKER_TIMEOUT_S``).
WORKER_TIMEOUT_S = 60.0


def add_limit_options(parser: argparse.ArgumentParser) -> None:
    """``--wait-for-lock``, ``--slide-timeout`` and ``--worker-timeout``."""
    group = parser.add_argument_group("limits (see docs/prediction.md)")
    group.add_argument(
        "--wait-for-lock",
        type=float,
        default=0.0,
        metavar="SECONDS",
        help="one run writes into a results folder at a time: wait up to SECONDS for another "
        "run writing into --out to end (default 0: refuse at once, naming that run)",
    )
    group.add_argument(
        "--slide-timeout",
        type=float,
        default=SLIDE_TIMEOUT_S,
        metavar="SECONDS",
        help="stop a slide that runs longer than this and report it as an error "
        f"({SLIDE_TIMEOUT_S:g} s; 0: no limit)",
    )
    group.add_argument(
        "--worker-timeout",
        type=float,
        default=WORKER_TIMEOUT_S,
        metavar="SECONDS",
        help="on a dask cluster, a worker whose heartbeat stops this long (frozen, its host "
        f"gone) is removed and its slides run on another ({WORKER_TIMEOUT_S:g})",
    )


def check_limit_args(args: argparse.Namespace) -> None:
    """Refuse impossible limits before any slide is opened."""
    if args.worker_timeout <= 0:
        raise ImiliaError(f"--worker-timeout must be positive, got {args.worker_timeout}")
    for name in ("slide_timeout", "wait_for_lock"):
        value = getattr(args, name)
        if value < 0:
            raise ImiliaError(f"--{name.replace('_', '-')} must be 0 or more, got {value}")
