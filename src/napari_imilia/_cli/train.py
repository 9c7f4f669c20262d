"""``imilia train``: cross-validated MIL training on feature files (``imilia score`` is in
:mod:`napari_imilia._cli.score`).

``imilia train --features DIR --labels labels.csv --out model.safetensors`` reads
``DIR/<slide_id>.h5`` for every row of the ``slide_id,label`` CSV, runs stratified K-fold
cross-validation, writes ``cv_metrics.json`` beside ``--out``, then trains the final model on
all slides and writes ``--out`` with its ``.json`` config (each file atomically).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from napari_imilia._cli.paths import user_path
from napari_imilia.errors import ImiliaError

DEFAULT_ARCH = "imilia-chowder"


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "train",
        help="train a MIL model on feature files with cross-validation",
        description=(
            "Cross-validate a MIL architecture on DIR/<slide_id>.h5 feature files labelled by a "
            "'slide_id,label' CSV (label 0 or 1), write cv_metrics.json beside --out, then "
            "train the final model on all slides and save it (--out .safetensors + .json)."
        ),
    )
    parser.add_argument(
        "--features", type=user_path, required=True, help="folder of <slide_id>.h5 files"
    )
    parser.add_argument(
        "--labels", type=user_path, required=True, help="CSV with columns slide_id,label"
    )
    parser.add_argument(
        "--out", type=user_path, required=True, help="model file to write (.safetensors)"
    )
    parser.add_argument(
        "--arch", default=DEFAULT_ARCH, help=f"architecture (see `imilia models`; {DEFAULT_ARCH})"
    )
    parser.add_argument("--folds", type=int, default=5, help="cross-validation folds (5)")
    parser.add_argument("--seed", type=int, default=0, help="random seed (0)")
    parser.add_argument("--epochs", type=int, default=30, help="training epochs (30)")
    parser.add_argument("--lr", type=float, default=1e-3, help="Adam learning rate (1e-3)")
    parser.add_argument("--weight-decay", type=float, default=1e-4, help="Adam weight decay")
    parser.add_argument("--batch-size", type=int, default=8, help="slides per step (8)")
    parser.add_argument(
        "--hparam",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="architecture hyper-parameter, VALUE in JSON (e.g. n_top=10, mlp_hidden=[64])",
    )
    parser.add_argument("--device", default="cpu", help="cpu (default, reproducible) or cuda")
    parser.add_argument(
        "--threads", type=int, default=1, help="CPU threads (1: same weights on any machine)"
    )
    parser.add_argument(
        "--demo", action="store_true", help="mark the model as a demonstration, not for science"
    )
    parser.set_defaults(func=run_train)


def _parse_hparams(items: list[str]) -> dict[str, Any]:
    hparams: dict[str, Any] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise ImiliaError(f"--hparam {item!r} is not KEY=VALUE")
        try:
            hparams[key.strip()] = json.loads(value)
        except json.JSONDecodeError:
            hparams[key.strip()] = value
    return hparams


def run_train(args: argparse.Namespace) -> int:
    from napari_imilia.files import write_text_atomic
    from napari_imilia.mil import save_model, train_cross_validation
    from napari_imilia.mil.dataset import load_labelled_bags

    out = _checked_train_args(args)
    hparams = _parse_hparams(args.hparam)
    data = load_labelled_bags(args.features, args.labels, folds=args.folds)
    n_pos = int(data.labels.sum())
    print(
        f"{len(data.slide_ids)} slides ({n_pos} label 1, {len(data.slide_ids) - n_pos} label 0), "
        f"{data.in_dim}-d features from {data.attrs.get('extractor') or 'an unnamed extractor'}"
    )
    if data.ignored_feature_files:
        print(f"not in the labels file, ignored: {len(data.ignored_feature_files)} feature file(s)")
    result = train_cross_validation(
        data.bags,
        data.labels,
        args.arch,
        folds=args.folds,
        seed=args.seed,
        epochs=args.epochs,
        lr=args.lr,
        weight_decay=args.weight_decay,
        batch_size=args.batch_size,
        hparams=hparams,
        slide_ids=data.slide_ids,
        device=args.device,
        threads=args.threads,
        log=print,
    )
    metrics = {**result.metrics(), "labels_sha256": data.labels_sha256}
    metrics_path = out.parent / "cv_metrics.json"
    write_text_atomic(metrics_path, json.dumps(metrics, indent=2) + "\n")
    save_model(
        result.final_model,
        out,
        extractor=data.attrs.get("extractor"),
        mpp=data.attrs.get("target_mpp"),
        tile_px=data.attrs.get("tile_px"),
        training=_training_record(args, data, result, metrics_path),
        demo=args.demo,
    )
    print(
        f"mean ROC-AUC {result.mean_roc_auc:.3f}, mean balanced accuracy "
        f"{result.mean_balanced_accuracy:.3f} over {args.folds} folds"
    )
    print(f"wrote {metrics_path}")
    print(f"wrote {out} and {out.with_suffix('.json').name}")
    return 0


def _checked_train_args(args: argparse.Namespace) -> Path:
    """``--out`` as a path; ``ImiliaError`` for an unusable option, before any data is read."""
    from napari_imilia.mil import model_class

    out = Path(args.out)
    if out.suffix != ".safetensors":
        raise ImiliaError(f"--out must be a .safetensors file, not {out.name}")
    model_class(args.arch)  # unknown names fail before any data is read
    if args.folds < 2:
        raise ImiliaError(f"--folds must be at least 2, got {args.folds}")
    if args.epochs < 1:
        raise ImiliaError(f"--epochs must be at least 1, got {args.epochs}")
    if not args.lr > 0:
        raise ImiliaError(f"--lr must be positive, got {args.lr}")
    if not args.weight_decay >= 0:
        raise ImiliaError(f"--weight-decay must be 0 or more, got {args.weight_decay}")
    if args.batch_size < 1:
        raise ImiliaError(f"--batch-size must be at least 1, got {args.batch_size}")
    return out


def _training_record(
    args: argparse.Namespace, data: Any, result: Any, metrics_path: Path
) -> dict[str, Any]:
    """The ``training`` section of the model's config: data, settings and CV results."""
    return {
        "features_dir": str(Path(args.features).resolve()),
        "labels_file": str(Path(args.labels).resolve()),
        "labels_sha256": data.labels_sha256,
        "n_slides": len(data.slide_ids),
        "n_positive": int(data.labels.sum()),
        **result.settings,
        "device": str(args.device),
        "cv": {
            "mean_roc_auc": result.mean_roc_auc,
            "mean_balanced_accuracy": result.mean_balanced_accuracy,
            "pooled_oof_roc_auc": result.pooled_roc_auc,
            "folds": [
                {"fold": f.fold, "roc_auc": f.roc_auc, "balanced_accuracy": f.balanced_accuracy}
                for f in result.folds
            ],
        },
        "cv_metrics_file": metrics_path.name,
    }
