"""``imilia train`` (cross-validated MIL training) and ``imilia score`` (MIL on feature files).

``imilia train --features DIR --labels labels.csv --out model.safetensors`` reads
``DIR/<slide_id>.h5`` for every row of the ``slide_id,label`` CSV, runs stratified K-fold
cross-validation, writes ``cv_metrics.json`` beside ``--out``, then trains the final model on
all slides and writes ``--out`` with its ``.json`` config (each file atomically).

``imilia score --model M --features DIR --out OUT`` scores every ``DIR/*.h5`` with a checkpoint,
a folder of checkpoints or several ``--model`` files (an ensemble) and writes
``OUT/scores.csv`` (slide_id, score = probability, logit, n_tiles), ``OUT/tiles/<slide_id>.csv``
(tile_id ``x_y`` as in predict's tiles.csv, x, y, score[, attention]; x, y = level-0
top-left pixels) and ``OUT/score_info.json``.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from napari_imilia.errors import ImiliaError

DEFAULT_ARCH = "imilia-chowder"


def register(subparsers: argparse._SubParsersAction) -> None:
    _register_train(subparsers)
    _register_score(subparsers)


def _register_train(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "train",
        help="train a MIL model on feature files with cross-validation",
        description=(
            "Cross-validate a MIL architecture on DIR/<slide_id>.h5 feature files labelled by a "
            "'slide_id,label' CSV (label 0 or 1), write cv_metrics.json beside --out, then "
            "train the final model on all slides and save it (--out .safetensors + .json)."
        ),
    )
    parser.add_argument("--features", required=True, help="folder of <slide_id>.h5 files")
    parser.add_argument("--labels", required=True, help="CSV with columns slide_id,label")
    parser.add_argument("--out", required=True, help="model file to write (.safetensors)")
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


def _register_score(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "score",
        help="score feature files with a MIL model (slide scores + tile scores)",
        description=(
            "Score every DIR/*.h5 feature file with a MIL checkpoint (or a folder of them, an "
            "ensemble) and write OUT/scores.csv and OUT/tiles/<slide_id>.csv."
        ),
    )
    parser.add_argument(
        "--model",
        required=True,
        action="append",
        help="checkpoint file or folder; repeat to form an ensemble",
    )
    parser.add_argument("--features", required=True, help="folder of <slide_id>.h5 files")
    parser.add_argument("--out", required=True, help="output folder")
    parser.add_argument("--device", default="auto", help="auto, cpu or cuda")
    parser.add_argument(
        "--pad-to-tiles",
        type=int,
        default=None,
        metavar="N",
        help="IMILIA's protocol: cut/zero-pad every bag to N rows, no mask (IMILIA: 10000)",
    )
    parser.set_defaults(func=run_score)


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
    from napari_imilia.mil import model_class, save_model, train_cross_validation
    from napari_imilia.mil.dataset import load_labelled_bags

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
    training = {
        "features_dir": str(Path(args.features).resolve()),
        "labels_file": str(Path(args.labels).resolve()),
        "labels_sha256": data.labels_sha256,
        "n_slides": len(data.slide_ids),
        "n_positive": n_pos,
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
    save_model(
        result.final_model,
        out,
        extractor=data.attrs.get("extractor"),
        mpp=data.attrs.get("target_mpp"),
        tile_px=data.attrs.get("tile_px"),
        training=training,
        demo=args.demo,
    )
    print(
        f"mean ROC-AUC {result.mean_roc_auc:.3f}, mean balanced accuracy "
        f"{result.mean_balanced_accuracy:.3f} over {args.folds} folds"
    )
    print(f"wrote {metrics_path}")
    print(f"wrote {out} and {out.with_suffix('.json').name}")
    return 0


def run_score(args: argparse.Namespace) -> int:
    import numpy as np
    import pandas as pd

    from napari_imilia import __version__
    from napari_imilia.features.cache import read_features
    from napari_imilia.files import write_text_atomic
    from napari_imilia.mil import load_model
    from napari_imilia.trust.paths import check_writable_folder, path_inside, safe_name

    features_dir, out_dir = Path(args.features), Path(args.out)
    check_writable_folder(out_dir)
    if not features_dir.is_dir():
        raise ImiliaError(f"features folder not found: {features_dir}")
    files = sorted(features_dir.glob("*.h5"))
    if not files:
        raise ImiliaError(f"no <slide_id>.h5 feature files in {features_dir}")
    sources = args.model[0] if len(args.model) == 1 else args.model
    model = load_model(sources, device=args.device, pad_to_tiles=args.pad_to_tiles)
    print(f"model {model.name} (sha256 {model.sha256[:12]}…) on {model.device}")
    rows = []
    for path in files:
        bag = read_features(path)
        prediction = model.predict(bag.features, extractor=bag.attrs.get("extractor"))
        tiles = pd.DataFrame(
            {
                "tile_id": [f"{x}_{y}" for x, y in bag.coords.tolist()],
                "x": bag.coords[:, 0],
                "y": bag.coords[:, 1],
                "score": prediction.tile_scores.astype(np.float64),
            }
        )
        if prediction.attention is not None:
            tiles["attention"] = prediction.attention.astype(np.float64)
        slide_id = safe_name(path.stem)
        write_text_atomic(
            path_inside(out_dir, "tiles", f"{slide_id}.csv"), tiles.to_csv(index=False)
        )
        rows.append(
            {
                "slide_id": slide_id,
                "score": prediction.probability,
                "logit": prediction.logit,
                "n_tiles": bag.n_tiles,
            }
        )
        print(f"{slide_id}: score {prediction.probability:.4f} ({bag.n_tiles} tiles)")
    write_text_atomic(out_dir / "scores.csv", pd.DataFrame(rows).to_csv(index=False))
    info = {
        "model": model.name,
        "model_sha256": model.sha256,
        "model_is_demo": bool(model.config.get("demo", False)),
        "architecture": model.architecture,
        "n_members": len(model.members),
        "pad_to_tiles": model.pad_to_tiles,
        "features_dir": str(features_dir.resolve()),
        "n_slides": len(rows),
        "software": f"napari-imilia {__version__}",
    }
    write_text_atomic(out_dir / "score_info.json", json.dumps(info, indent=2) + "\n")
    print(f"wrote {out_dir / 'scores.csv'} and {len(rows)} tile table(s) in {out_dir / 'tiles'}")
    return 0
