"""``imilia inspect``: cells, epithelium and markers of a scored slide's tiles."""

from __future__ import annotations

import argparse

from napari_imilia._cli.paths import user_path
from napari_imilia.device import DEVICE_CHOICES


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "inspect",
        help="cells, epithelium and markers of a scored slide's top/bottom/all tiles",
        description=(
            "Reuse `imilia predict`'s result for SLIDE (RESULTS/<slide_id>/tiles.csv), "
            "detect and classify cells and segment epithelium in the chosen tiles on all "
            "cores, and write into OUT/<slide_id>/: markers.csv (per-tile counts, densities "
            "per mm², epithelium fraction, intraepithelial immune cells), cells.geojson "
            "(QuPath cells), epithelium.geojson, markers_summary.json (Spearman correlation "
            "of each marker with the tile score) and markers_vs_score.png."
        ),
    )
    parser.add_argument(
        "slide", type=user_path, metavar="SLIDE", help="the slide file scored by imilia predict"
    )
    parser.add_argument(
        "--tiles",
        default="top:50",
        help="which tiles: top:K, bottom:K, all, tile ids (x_y), comma-separated "
        "(e.g. top:50,bottom:50); default top:50",
    )
    parser.add_argument(
        "--out", type=user_path, required=True, help="output folder (OUT/<slide_id>/ is written)"
    )
    parser.add_argument(
        "--results",
        type=user_path,
        default=None,
        help="folder imilia predict wrote into (default: --out)",
    )
    add_inspect_options(parser)
    parser.add_argument(
        "--workers",
        type=int,
        default=None,
        help="processes (default: all cores for weight-free backends, 1 for deep models)",
    )
    parser.set_defaults(func=run)


def add_inspect_options(parser: argparse.ArgumentParser) -> None:
    """How tiles are inspected (``imilia inspect`` and ``imilia cells``): the device, MPP
    override and analysis MPP, then the cell and epithelium backends and their files."""
    parser.add_argument(
        "--device",
        choices=DEVICE_CHOICES,
        default="auto",
        help="where deep cell/epithelium models run: auto (CUDA when available), cpu or cuda",
    )
    parser.add_argument(
        "--mpp", type=float, default=None, help="level-0 µm/px, overriding the slide's metadata"
    )
    parser.add_argument(
        "--analysis-mpp",
        type=float,
        default=None,
        help="µm/px tiles are analysed at (default: the cell backend's: classical 0.5, a "
        "CellViT checkpoint's own); needed for a CellViT checkpoint that is not a HistoPLUS "
        "release and has no JSON config",
    )
    _add_backend_options(parser)


def _add_backend_options(parser: argparse.ArgumentParser) -> None:
    """The cell and epithelium backends and the files they read."""
    from napari_imilia.interpret import CELL_BACKENDS
    from napari_imilia.interpret.epithelium import METHODS

    parser.add_argument(
        "--cell-backend",
        choices=CELL_BACKENDS,
        default="classical",
        help="cell detector: classical (weight-free, default), cellvit (needs "
        "--cell-checkpoint) or histoplus-json (reads --histoplus-json)",
    )
    parser.add_argument(
        "--cell-protocol",
        choices=("histoplus", "tile-context"),
        default="histoplus",
        help="CellViT inference: histoplus (HistoPLUS's 784 px windows, cells per window, "
        "duplicates removed; default) or tile-context (224 px windows, stitched maps)",
    )
    parser.add_argument(
        "--cell-checkpoint",
        type=user_path,
        default=None,
        help="local CellViT checkpoint (--cell-backend cellvit)",
    )
    parser.add_argument(
        "--histoplus-json",
        type=user_path,
        default=None,
        help="HistoPLUS cell JSON of this slide (--cell-backend histoplus-json)",
    )
    parser.add_argument(
        "--epithelium",
        choices=METHODS,
        default="stain-heuristic",
        help="epithelium method: stain-heuristic (weight-free, default) or episeg (needs "
        "--episeg-probe and --episeg-extractor-weights)",
    )
    parser.add_argument(
        "--episeg-probe",
        type=user_path,
        default=None,
        help="EpiSeg probe .safetensors (--epithelium episeg)",
    )
    parser.add_argument(
        "--episeg-extractor-weights",
        type=user_path,
        default=None,
        help="local weights of the ViT the EpiSeg probe was trained on",
    )


def run(args: argparse.Namespace) -> int:
    from napari_imilia.errors import ImiliaError
    from napari_imilia.interpret import inspect_slide

    if args.workers is not None and args.workers < 1:
        raise ImiliaError(f"--workers must be at least 1; got {args.workers}")
    result = inspect_slide(
        args.slide,
        args.out,
        tiles=args.tiles,
        results_dir=args.results,
        cell_backend=args.cell_backend,
        cell_checkpoint=args.cell_checkpoint,
        cell_protocol=args.cell_protocol,
        histoplus_json=args.histoplus_json,
        epithelium_method=args.epithelium,
        episeg_probe=args.episeg_probe,
        episeg_extractor_weights=args.episeg_extractor_weights,
        device=args.device,
        mpp=args.mpp,
        analysis_mpp=args.analysis_mpp,
        workers=args.workers,
        progress=True,
    )
    immune = result.summary.get("markers", {}).get("density_per_mm2_immune", {})
    rho = immune.get("spearman_rho")
    rho_text = "n/a" if rho is None else f"{rho:+.2f}"
    print(
        f"{result.slide_id}: {len(result.markers)} tiles, {result.n_cells} cells; immune "
        f"density vs score Spearman rho {rho_text}; wrote {result.out_dir}"
    )
    return 0
