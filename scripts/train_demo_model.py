#!/usr/bin/env python
"""Train the bundled DEMO model (src/napari_imilia/data/demo_model.safetensors + .json).

A demonstration, not a diagnostic model: it learns planted inflammation on our own synthetic
slides. Deterministic (fixed seeds), a few minutes on 2 CPU cores:

1. cohort: ``napari_imilia.demo.cohort.demo_cohort_recipe(--slides, --seed)`` written with
   ``write_cohort`` into ``--out-dir/slides`` (+ ``labels.csv``), half the slides with 1-3
   planted inflamed areas, half normal;
2. features: the real pipeline (``detect_tissue`` → ``make_tile_grid`` at the extractor's
   0.5 µm/px and 224 px → ``extract_slide_features``) with the weight-free extractor
   ``imilia-stain-stats``, cached in ``--out-dir/features/<slide_id>.h5``;
3. training: ``load_labelled_bags`` + ``train_cross_validation`` (stratified K-fold,
   ``--out-dir/cv_metrics.json``), final model on all slides saved by ``save_model`` with
   ``demo=True`` and the provenance record;
4. check: ``predict_slide`` with the saved model on the bundled sample slide and on its
   normal twin (``sample_slide_path(inflamed=False)``); their scores and how many top-10
   tiles lie in the planted inflamed areas go to ``--out-dir/sample_check.json``.

Why this architecture and these settings: docs/demo_model.md.

Usage (from the repository root)::

    python scripts/train_demo_model.py --out-dir /tmp/imilia_demo_cohort
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from napari_imilia import __version__
from napari_imilia.demo.cohort import demo_cohort_recipe, recipe_summary, write_cohort
from napari_imilia.files import write_text_atomic

REPO_ROOT = Path(__file__).resolve().parents[1]
DEFAULT_MODEL_OUT = REPO_ROOT / "src" / "napari_imilia" / "data" / "demo_model.safetensors"
EXTRACTOR = "imilia-stain-stats"
ARCH = "max-mil"
#: Presence MIL: tile scorer 64 -> 32 (ReLU) -> 1, slide logit = max tile logit; a light
#: mean-score term while training (prediction is always the maximum). See docs/demo_model.md.
HPARAMS: dict[str, Any] = {"hidden": [32], "mean_aux_weight": 0.1}
TRAINING: dict[str, Any] = {"folds": 5, "epochs": 60, "lr": 3e-3, "batch_size": 8}
TOP_TILES = 10


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--out-dir", type=Path, required=True, help="cohort, features and CV metrics folder"
    )
    parser.add_argument("--slides", type=int, default=48, help="cohort size, even (48)")
    parser.add_argument("--seed", type=int, default=0, help="cohort and training seed (0)")
    parser.add_argument(
        "--model-out", type=Path, default=DEFAULT_MODEL_OUT, help="model file to write"
    )
    parser.add_argument("--arch", default=ARCH, help=f"MIL architecture ({ARCH})")
    parser.add_argument(
        "--hparams",
        type=json.loads,
        default=None,
        help=f"JSON hyper-parameters (for {ARCH}: {HPARAMS})",
    )
    parser.add_argument("--epochs", type=int, default=TRAINING["epochs"])
    parser.add_argument("--lr", type=float, default=TRAINING["lr"])
    parser.add_argument("--no-sample-check", action="store_true", help="skip step 4")
    return parser.parse_args(argv)


def extract_cohort_features(slide_paths: list[Path], features_dir: Path) -> dict[str, Any]:
    """Tile features of every slide into ``features_dir/<slide_id>.h5``; returns tile stats."""
    from napari_imilia.features.extract import extract_slide_features
    from napari_imilia.features.extractors import create_extractor
    from napari_imilia.slide import open_slide
    from napari_imilia.tiling.grid import make_tile_grid
    from napari_imilia.tiling.tissue import detect_tissue

    extractor = create_extractor(EXTRACTOR, device="cpu")
    n_tiles = []
    for path in slide_paths:
        with open_slide(path) as slide:
            grid = make_tile_grid(
                slide,
                detect_tissue(slide),
                target_mpp=extractor.target_mpp,
                tile_px=extractor.tile_px,
            )
            bag = extract_slide_features(
                slide, grid, extractor, cache_dir=features_dir, progress=False
            )
            n_tiles.append(bag.n_tiles)
    return {
        "extractor": extractor.name,
        "extractor_weights_sha256": extractor.weights_sha256,
        "target_mpp": float(extractor.target_mpp),
        "tile_px": int(extractor.tile_px),
        "tiles_per_slide": [int(min(n_tiles)), int(np.median(n_tiles)), int(max(n_tiles))],
    }


def default_hparams(arch: str) -> dict[str, Any]:
    """:data:`HPARAMS` for the default architecture, the architecture's defaults otherwise."""
    return dict(HPARAMS) if arch == ARCH else {}


def train(args: argparse.Namespace, features_dir: Path, labels_path: Path) -> tuple[Any, Any]:
    from napari_imilia.mil import train_cross_validation
    from napari_imilia.mil.dataset import load_labelled_bags

    data = load_labelled_bags(features_dir, labels_path, folds=TRAINING["folds"])
    result = train_cross_validation(
        data.bags,
        data.labels,
        args.arch,
        folds=TRAINING["folds"],
        seed=args.seed,
        epochs=args.epochs,
        lr=args.lr,
        batch_size=TRAINING["batch_size"],
        hparams=args.hparams if args.hparams is not None else default_hparams(args.arch),
        slide_ids=data.slide_ids,
        device="cpu",
        threads=1,
        log=print,
    )
    return data, result


def sample_check(model_path: Path, out_dir: Path) -> dict[str, Any]:
    """Score the bundled sample slide (and its normal twin): top-10 tiles in planted areas."""
    from napari_imilia.demo.sample import read_truth, sample_slide_path
    from napari_imilia.predict.slide import predict_slide

    check: dict[str, Any] = {}
    for kind, inflamed in (("sample", True), ("normal_sample", False)):
        slide_path = sample_slide_path(inflamed=inflamed)
        result = predict_slide(
            slide_path, out_dir, model_path=model_path, device="cpu", progress=False
        )
        boxes = read_truth(slide_path)["inflamed_regions_level0_px"]
        top = result.tiles.nsmallest(TOP_TILES, "rank")
        check[kind] = {
            "slide": slide_path.name,
            "score": result.score,
            "model_is_demo": result.info["model_is_demo"],
            "n_tiles": len(result.tiles),
            "n_tiles_in_inflamed_regions": sum(
                tile_in_boxes(row, boxes) for row in result.tiles.itertuples()
            ),
            f"top{TOP_TILES}_in_inflamed_regions": sum(
                tile_in_boxes(row, boxes) for row in top.itertuples()
            ),
        }
    return check


def tile_in_boxes(tile: Any, boxes: list[list[float]]) -> bool:
    """Whether a tile's centre (level-0 px) lies in one of the (x, y, w, h) boxes."""
    cx, cy = tile.x + tile.width / 2, tile.y + tile.height / 2
    return any(x <= cx < x + w and y <= cy < y + h for x, y, w, h in boxes)


def main(argv: list[str] | None = None) -> int:
    from napari_imilia.mil import save_model

    args = parse_args(argv)
    out_dir: Path = args.out_dir
    timings: dict[str, float] = {}
    started = time.perf_counter()

    recipe = demo_cohort_recipe(args.slides, args.seed)
    slide_paths, labels_path = write_cohort(recipe, out_dir)
    timings["cohort_s"] = time.perf_counter() - started
    print(
        f"cohort: {len(slide_paths)} slides in {out_dir / 'slides'} ({timings['cohort_s']:.1f} s)"
    )

    step = time.perf_counter()
    features_dir = out_dir / "features"
    tiling = extract_cohort_features(slide_paths, features_dir)
    timings["features_s"] = time.perf_counter() - step
    print(
        f"features: {features_dir}, tiles per slide (min, median, max) "
        f"{tiling['tiles_per_slide']} ({timings['features_s']:.1f} s)"
    )

    step = time.perf_counter()
    data, result = train(args, features_dir, labels_path)
    metrics = {**result.metrics(), "labels_sha256": data.labels_sha256}
    write_text_atomic(out_dir / "cv_metrics.json", json.dumps(metrics, indent=2) + "\n")
    timings["training_s"] = time.perf_counter() - step
    print(
        f"CV: mean ROC-AUC {result.mean_roc_auc:.3f}, mean balanced accuracy "
        f"{result.mean_balanced_accuracy:.3f}, pooled out-of-fold ROC-AUC "
        f"{result.pooled_roc_auc:.3f} ({timings['training_s']:.1f} s)"
    )

    n_pos = int(data.labels.sum())
    arguments = sys.argv[1:] if argv is None else argv
    training = {
        "script": "scripts/train_demo_model.py",
        "command": " ".join(["python scripts/train_demo_model.py", *arguments]),
        "data": recipe_summary(recipe, args.seed),
        "n_slides": len(data.slide_ids),
        "n_positive": n_pos,
        "n_slides_per_class": {"0": len(data.slide_ids) - n_pos, "1": n_pos},
        "labels_sha256": data.labels_sha256,
        **tiling,
        **result.settings,
        "device": "cpu",
        "cv": {
            "mean_roc_auc": result.mean_roc_auc,
            "std_roc_auc": metrics["std_roc_auc"],
            "mean_balanced_accuracy": result.mean_balanced_accuracy,
            "pooled_oof_roc_auc": result.pooled_roc_auc,
            "folds": [
                {"fold": f.fold, "roc_auc": f.roc_auc, "balanced_accuracy": f.balanced_accuracy}
                for f in result.folds
            ],
        },
        "cv_metrics_file": "cv_metrics.json (in the --out-dir of the run)",
        "software": f"napari-imilia {__version__}",
    }
    save_model(
        result.final_model,
        args.model_out,
        extractor=tiling["extractor"],
        mpp=tiling["target_mpp"],
        tile_px=tiling["tile_px"],
        training=training,
        demo=True,
        name="imilia-demo",
    )
    print(f"wrote {args.model_out} and {args.model_out.with_suffix('.json').name}")

    if not args.no_sample_check:
        step = time.perf_counter()
        check = sample_check(args.model_out, out_dir / "sample_check")
        timings["sample_check_s"] = time.perf_counter() - step
        write_text_atomic(out_dir / "sample_check.json", json.dumps(check, indent=2) + "\n")
        sample, normal = check["sample"], check["normal_sample"]
        print(
            f"sample slide: score {sample['score']:.3f}, top-{TOP_TILES} tiles in planted "
            f"inflamed areas: {sample[f'top{TOP_TILES}_in_inflamed_regions']}; normal sample "
            f"slide: score {normal['score']:.3f}"
        )
    timings["total_s"] = time.perf_counter() - started
    print("timings: " + ", ".join(f"{k} {v:.1f}" for k, v in timings.items()))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
