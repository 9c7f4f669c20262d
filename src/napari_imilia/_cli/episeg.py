"""``imilia train-episeg``: train the EpiSeg epithelium probe on tiles with epithelium masks."""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path
from typing import Any

import numpy as np

from napari_imilia._cli.paths import user_path
from napari_imilia.device import DEVICE_CHOICES
from napari_imilia.errors import DataError, ImiliaError

TILE_SUFFIXES = (".png", ".tif", ".tiff")
MASK_SUFFIXES = (".png",)


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "train-episeg",
        help="train the EpiSeg epithelium probe (logistic regression on ViT patch tokens)",
        description=(
            "Embed every tile with a ViT extractor, label each 14 px patch from the tile's "
            "binary epithelium mask, cross-validate a logistic regression grouped by tile, and "
            "write the probe (.safetensors) and episeg_cv.json (average precision per fold) "
            "beside it. Tiles: RGB PNG/TIFF; masks: binary PNGs with the same names (stem). "
            "Or --dataset: IBDColEpi's patch dataset as IMILIA uses it (images resized to "
            "1022 px, trained on Trainset, evaluated on Testset: episeg_test.json with the "
            "average precision and the precision-recall curve, and episeg_pr_curve.png)."
        ),
    )
    parser.add_argument(
        "--tiles", type=user_path, default=None, help="folder of RGB tiles (.png, .tif)"
    )
    parser.add_argument(
        "--masks", type=user_path, default=None, help="folder of binary masks (.png), same names"
    )
    parser.add_argument(
        "--dataset",
        type=user_path,
        default=None,
        metavar="DIR",
        help="IBDColEpi patch dataset (patch-dataset-HE/{Trainset,Testset}/{Images_tif,"
        "Labels_tif}) instead of --tiles/--masks",
    )
    parser.add_argument(
        "--image-px",
        type=int,
        default=1022,
        help="--dataset images are resized to this (IMILIA: 1022 px = 73 patches of 14 px)",
    )
    parser.add_argument("--extractor", required=True, help="ViT extractor name (patch tokens)")
    parser.add_argument(
        "--extractor-weights", type=user_path, default=None, help="local weights file"
    )
    parser.add_argument(
        "--out", type=user_path, required=True, help="probe file to write (.safetensors)"
    )
    parser.add_argument("--folds", type=int, default=5, help="cross-validation folds (by tile)")
    parser.add_argument(
        "--seed", type=int, default=0, help="random seed of the fold split and the probe (0)"
    )
    parser.add_argument(
        "--mpp", type=float, default=None, help="µm/px of the tiles (default: the extractor's)"
    )
    parser.add_argument(
        "--device",
        choices=DEVICE_CHOICES,
        default="auto",
        help="where the ViT runs: auto (CUDA when available), cpu or cuda",
    )
    parser.add_argument("--batch-size", type=int, default=8, help="tiles per ViT forward pass (8)")
    parser.set_defaults(func=run)


def _files(folder: Path, suffixes: tuple[str, ...], what: str) -> dict[str, Path]:
    if not folder.is_dir():
        raise DataError(f"{what} folder {folder} does not exist")
    found: dict[str, Path] = {}
    for path in sorted(folder.iterdir()):
        if path.suffix.lower() in suffixes and not path.name.startswith("."):
            if path.stem in found:
                raise DataError(f"{what} {found[path.stem].name} and {path.name} share a name")
            found[path.stem] = path
    if not found:
        raise DataError(f"no {what} ({', '.join(suffixes)}) in {folder}")
    return found


def read_tile_rgb(path: Path) -> np.ndarray:
    """An RGB tile as (H, W, 3) uint8 (alpha dropped); ``DataError`` otherwise."""
    try:
        if path.suffix.lower() in (".tif", ".tiff"):
            import tifffile

            image = tifffile.imread(path)
        else:
            from PIL import Image

            with Image.open(path) as handle:
                image = np.asarray(handle)
    except Exception as error:
        raise DataError(f"cannot read tile {path} ({error})") from error
    if image.ndim != 3 or image.shape[2] not in (3, 4) or image.dtype != np.uint8:
        raise DataError(
            f"tile {path} must be an 8-bit RGB image; got shape {image.shape}, {image.dtype}"
        )
    return np.ascontiguousarray(image[:, :, :3])


def read_binary_mask(path: Path) -> np.ndarray:
    """A binary PNG mask (values 0/1 or 0/255) as (H, W) bool; ``DataError`` otherwise."""
    from PIL import Image

    try:
        with Image.open(path) as handle:
            mask = np.asarray(handle)
    except Exception as error:
        raise DataError(f"cannot read mask {path} ({error})") from error
    if mask.ndim != 2:
        raise DataError(f"mask {path} must be a single-channel image; got shape {mask.shape}")
    if mask.dtype == bool:
        return mask
    values = set(np.unique(mask).tolist())
    if not (values <= {0, 1} or values <= {0, 255}):
        shown = sorted(values)[:6]
        raise DataError(f"mask {path} is not binary: values {shown}; use 0 and 255 (or 0 and 1)")
    return mask > 0


def load_pairs(tiles_dir: Path, masks_dir: Path) -> tuple[list[str], np.ndarray, np.ndarray]:
    """Matched tiles and masks: names, (N, H, W, 3) uint8 tiles, (N, H, W) bool masks."""
    tiles = _files(tiles_dir, TILE_SUFFIXES, "tiles")
    masks = _files(masks_dir, MASK_SUFFIXES, "masks")
    no_mask = sorted(set(tiles) - set(masks))
    no_tile = sorted(set(masks) - set(tiles))
    if no_mask or no_tile:
        raise DataError(
            f"tiles and masks must have the same names; tiles without a mask: {no_mask[:5]}, "
            f"masks without a tile: {no_tile[:5]}"
        )
    names = sorted(tiles)
    rgb, binary = [], []
    for name in names:
        image, mask = read_tile_rgb(tiles[name]), read_binary_mask(masks[name])
        if mask.shape != image.shape[:2]:
            raise DataError(
                f"mask {masks[name].name} is {mask.shape[1]}x{mask.shape[0]} px but its tile is "
                f"{image.shape[1]}x{image.shape[0]} px"
            )
        if rgb and image.shape != rgb[0].shape:
            raise DataError(
                f"tiles must all have the same size; {tiles[name].name} is "
                f"{image.shape[1]}x{image.shape[0]} px, {tiles[names[0]].name} is "
                f"{rgb[0].shape[1]}x{rgb[0].shape[0]} px"
            )
        rgb.append(image)
        binary.append(mask)
    return names, np.stack(rgb), np.stack(binary)


def _json_ready(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _json_ready(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_json_ready(v) for v in value]
    return value


def run(args: argparse.Namespace) -> int:
    from napari_imilia.files import write_text_atomic
    from napari_imilia.interpret.epithelium import patch_tokens_of, train_episeg_probe

    out = Path(args.out)
    if out.suffix != ".safetensors":
        raise ImiliaError(f"--out {out} must end in .safetensors")
    if (args.dataset is None) == (args.tiles is None or args.masks is None):
        raise ImiliaError("give --tiles and --masks, or --dataset (IBDColEpi's patch dataset)")
    test = None
    if args.dataset is not None:
        from napari_imilia.interpret.epithelium.ibdcolepi import load_patch_dataset, split_folders

        train = load_patch_dataset(args.dataset, "Trainset", args.image_px)
        names, tiles, masks = train.names, train.images, train.labels
        try:
            split_folders(args.dataset, "Testset")
        except DataError:
            print("no Testset in the dataset: cross-validation only")
        else:
            test = load_patch_dataset(args.dataset, "Testset", args.image_px)
    else:
        names, tiles, masks = load_pairs(Path(args.tiles), Path(args.masks))
    if len(names) < args.folds:
        raise DataError(
            f"{len(names)} tile(s) cannot be split into {args.folds} folds; "
            "add tiles or lower --folds"
        )
    from napari_imilia.features.extractors import create_extractor

    extractor = create_extractor(
        args.extractor, weights_path=args.extractor_weights, device=args.device
    )
    native = args.dataset is not None  # IMILIA: H0-mini on the whole 1022 px image
    tokens = np.concatenate(
        [
            patch_tokens_of(extractor, tiles[start : start + args.batch_size], native_size=native)
            for start in range(0, len(tiles), max(1, args.batch_size))
        ]
    )
    mpp = float(args.mpp if args.mpp is not None else getattr(extractor, "target_mpp", 0.5))
    probe, metrics = train_episeg_probe(
        tokens,
        masks,
        folds=args.folds,
        seed=args.seed,
        extractor_name=extractor.name,
        extractor_weights_sha256=getattr(extractor, "weights_sha256", "") or "",
        mpp=mpp,
        patch_px=round(tiles.shape[1] / tokens.shape[1]),
    )
    probe.save(out)
    metrics = {"probe": out.name, "extractor": extractor.name, "tiles": names, **metrics}
    cv_path = out.with_name("episeg_cv.json")
    write_text_atomic(cv_path, json.dumps(_json_ready(metrics), indent=2) + "\n")
    folds_text = ", ".join(
        "n/a" if not math.isfinite(a) else f"{a:.3f}" for a in metrics["fold_ap"]
    )
    print(
        f"EpiSeg probe on {len(names)} tiles ({metrics['n_clear_patches']} clear patches): "
        f"C={metrics['best_c']:g}, cross-validated AP {metrics['mean_ap']:.3f} "
        f"(folds: {folds_text})"
    )
    print(f"wrote {out} and {cv_path}")
    if test is not None:
        _evaluate_test_set(probe, extractor, test, out, args.batch_size)
    return 0


def _evaluate_test_set(probe: Any, extractor: Any, test: Any, out: Path, batch: int) -> None:
    """Average precision and PR curve of the probe on the Testset, as IMILIA reports them."""
    from napari_imilia.files import atomic_path, write_text_atomic
    from napari_imilia.interpret.epithelium import patch_tokens_of
    from napari_imilia.interpret.epithelium.ibdcolepi import evaluate_on_patches

    tokens = np.concatenate(
        [
            patch_tokens_of(extractor, test.images[start : start + batch], native_size=True)
            for start in range(0, len(test.images), max(1, batch))
        ]
    )
    result = {
        "probe": out.name,
        "images": test.names,
        **evaluate_on_patches(probe, tokens, test.labels),
    }
    json_path = out.with_name("episeg_test.json")
    write_text_atomic(json_path, json.dumps(_json_ready(result), indent=2) + "\n")
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axis = plt.subplots(figsize=(5, 5))
    curve = result["pr_curve"]
    axis.plot(curve["recall"], curve["precision"])
    axis.set(xlabel="Recall", ylabel="Precision", xlim=(0, 1), ylim=(0, 1.02))
    axis.set_title(f"EpiSeg test set: AP {result['average_precision']:.4f}")
    axis.grid(True)
    png_path = out.with_name("episeg_pr_curve.png")
    with atomic_path(png_path) as temporary:
        figure.savefig(temporary, format="png", bbox_inches="tight", dpi=120)
    plt.close(figure)
    print(
        f"test set ({len(test.names)} images, {result['n_patches']} patches): average "
        f"precision {result['average_precision']:.4f}; at threshold {probe.threshold:g}: "
        f"precision {result['precision_at_threshold']:.3f}, recall "
        f"{result['recall_at_threshold']:.3f}"
    )
    print(f"wrote {json_path} and {png_path}")
