#!/usr/bin/env python
"""Compare MIL architectures for the demo model on the demo cohort's cached features.

Run ``scripts/train_demo_model.py --out-dir DIR`` first (it writes ``DIR/features`` and
``DIR/labels.csv``), then::

    python benchmarks/demo_model_architectures.py --cohort-dir DIR

For each candidate and training seed: stratified 5-fold CV on the cohort (``mean AUC``,
``mean bal. acc.``, ``pooled AUC`` of the out-of-fold probabilities, the lowest out-of-fold
probability of a label-1 slide and the highest of a label-0 slide, and that of
``demo_s0_012_inflamed``, whose one inflamed area covers most of its tissue), then the final
model on eight 6144 x 4096 px sample slides (``sample_slide_path(seed=0..3, inflamed=...)``,
4x the cohort's median tissue): lowest score of the inflamed ones, highest of the normal ones,
fewest top-10 tiles inside the planted areas. Prints a Markdown table (docs/demo_model.md).
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

CANDIDATES: list[tuple[str, dict[str, Any]]] = [
    ("imilia-chowder", {"n_channels": 3, "n_top": 5, "n_bottom": 5, "mlp_hidden": [16, 8]}),
    ("abmil", {"embed_dim": 32, "attn_dim": 16}),
    ("max-mil", {"hidden": [32], "mean_aux_weight": 0.0}),
    ("max-mil", {"hidden": [32], "mean_aux_weight": 0.1}),
    ("max-mil", {"hidden": [32], "mean_aux_weight": 0.5}),
]
DIFFUSE_SLIDE = "demo_s0_012_inflamed"
SAMPLE_SEEDS = (0, 1, 2, 3)


def top_hits(tiles: Any, boxes: list[list[float]], n: int = 10) -> int:
    """How many of the ``n`` best-ranked tiles have their centre in a box (level-0 px)."""
    top = tiles.nsmallest(n, "rank")
    cx, cy = top["x"] + top["width"] / 2, top["y"] + top["height"] / 2
    inside = np.zeros(len(top), dtype=bool)
    for x, y, w, h in boxes:
        inside |= ((cx >= x) & (cx < x + w) & (cy >= y) & (cy < y + h)).to_numpy()
    return int(inside.sum())


def main() -> int:
    from napari_imilia.demo.sample import read_truth, sample_slide_path
    from napari_imilia.mil import save_model, train_cross_validation
    from napari_imilia.mil.dataset import load_labelled_bags
    from napari_imilia.predict.slide import predict_slide

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cohort-dir", type=Path, required=True)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    parser.add_argument("--epochs", type=int, default=60)
    parser.add_argument("--lr", type=float, default=3e-3)
    args = parser.parse_args()

    data = load_labelled_bags(args.cohort_dir / "features", args.cohort_dir / "labels.csv")
    diffuse = data.slide_ids.index(DIFFUSE_SLIDE)
    samples = [
        (inflamed, sample_slide_path(seed=seed, inflamed=inflamed))
        for seed in SAMPLE_SEEDS
        for inflamed in (True, False)
    ]
    print(
        "| architecture | hparams | seed | mean AUC | mean bal. acc. | pooled AUC | min OOF "
        "label 1 | max OOF label 0 | OOF diffuse | min inflamed sample | max normal sample "
        "| min top-10 hits |"
    )
    print("|" + " --- |" * 12)
    with tempfile.TemporaryDirectory() as work:
        work_dir = Path(work)
        for arch, hparams in CANDIDATES:
            for seed in args.seeds:
                cv = train_cross_validation(
                    data.bags,
                    data.labels,
                    arch,
                    folds=5,
                    seed=seed,
                    epochs=args.epochs,
                    lr=args.lr,
                    hparams=hparams,
                    slide_ids=data.slide_ids,
                )
                model_path = save_model(
                    cv.final_model,
                    work_dir / "model.safetensors",
                    extractor=data.attrs["extractor"],
                    mpp=data.attrs["target_mpp"],
                    tile_px=data.attrs["tile_px"],
                    demo=True,
                )
                inflamed_scores, normal_scores, hits = [], [], []
                for inflamed, slide in samples:
                    result = predict_slide(
                        slide,
                        work_dir / "out",
                        model_path=model_path,
                        device="cpu",
                        progress=False,
                        cache_dir=args.cohort_dir / "sample_features",
                    )
                    if inflamed:
                        inflamed_scores.append(result.score)
                        boxes = read_truth(slide)["inflamed_regions_level0_px"]
                        hits.append(top_hits(result.tiles, boxes))
                    else:
                        normal_scores.append(result.score)
                oof, y = cv.oof_probability, cv.labels
                print(
                    f"| {arch} | {hparams} | {seed} | {cv.mean_roc_auc:.3f} | "
                    f"{cv.mean_balanced_accuracy:.3f} | {cv.pooled_roc_auc:.3f} | "
                    f"{oof[y == 1].min():.2f} | {oof[y == 0].max():.2f} | {oof[diffuse]:.2f} | "
                    f"{min(inflamed_scores):.3f} | {max(normal_scores):.2f} | {min(hits)} |",
                    flush=True,
                )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
