"""``imilia cells``: the whole-slide cell census of one or many slides."""

from __future__ import annotations

import argparse

from napari_imilia._cli.paths import user_path


def register(subparsers: argparse._SubParsersAction) -> None:
    from napari_imilia._cli.inspect import add_inspect_options

    parser = subparsers.add_parser(
        "cells",
        help="census of every cell of every tissue tile, by class and compartment",
        description=(
            "Detect, classify and place every cell of every tissue tile of each SLIDE (files, "
            "folders, glob patterns or a CSV) and write into OUT/<slide_id>/census/: "
            "cells.parquet (one row per cell: level-0 centroid, class, confidence, area µm², "
            "compartment epithelium / lamina propria / other, tile), tiles.csv and "
            "regions.csv (counts per class and compartment, areas mm²), cells.geojson "
            "(QuPath cells) and census.json. A killed run continues where it stopped; a "
            "finished census made with the same settings is reused."
        ),
    )
    parser.add_argument(
        "slides", type=user_path, metavar="SLIDE", nargs="+", help="slides, folders, globs or CSV"
    )
    parser.add_argument(
        "--out", type=user_path, required=True, help="output folder (OUT/<slide_id>/census/)"
    )
    add_inspect_options(parser)
    parser.add_argument(
        "--tile-px",
        type=int,
        default=224,
        help="tile side in px at --target-mpp (default 224, as imilia predict)",
    )
    parser.add_argument(
        "--target-mpp", type=float, default=0.5, help="µm/px of the tile grid (default 0.5)"
    )
    parser.add_argument(
        "--min-tissue",
        type=float,
        default=0.05,
        help="tiles with less tissue are left out (0-1, default 0.05)",
    )
    parser.add_argument(
        "--workers",
        type=int,
        default=None,
        help="processes per slide (default: all cores for weight-free backends)",
    )
    parser.add_argument(
        "--force", action="store_true", help="recompute finished censuses and drop kept parts"
    )
    parser.add_argument(
        "--scheduler",
        default=None,
        help="dask scheduler address (tcp://host:port): one task per slide",
    )
    parser.add_argument(
        "--parallel-slides",
        dest="cluster_workers",
        metavar="N",
        type=int,
        default=None,
        help="slides at once on a local dask cluster of this many workers",
    )
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from napari_imilia.cohort.census import census_cohort
    from napari_imilia.errors import ImiliaError
    from napari_imilia.interpret import InspectConfig
    from napari_imilia.interpret.census import CensusSettings

    if args.workers is not None and args.workers < 1:
        raise ImiliaError(f"--workers must be at least 1; got {args.workers}")
    settings = CensusSettings(
        inspect=InspectConfig(
            cell_backend=args.cell_backend,
            cell_checkpoint=args.cell_checkpoint,
            histoplus_json=args.histoplus_json,
            epithelium_method=args.epithelium,
            episeg_probe=args.episeg_probe,
            episeg_extractor_weights=args.episeg_extractor_weights,
            device=args.device,
            analysis_mpp=args.analysis_mpp,
            cell_protocol=args.cell_protocol,
        ),
        target_mpp=args.target_mpp,
        tile_px=args.tile_px,
        min_tissue_fraction=args.min_tissue,
        mpp=args.mpp,
    )
    bar = _Bar()
    table = census_cohort(
        args.slides,
        args.out,
        settings,
        workers=args.workers,
        scheduler=args.scheduler,
        cluster_workers=args.cluster_workers,
        force=args.force,
        on_row=bar.row,
        slide_progress=bar.update,
    )
    bar.close()
    failed = table[table["status"] != "ok"]
    return 0 if failed.empty else 1


class _Bar:
    """A tqdm bar of tiles per slide and one line per finished slide."""

    def __init__(self) -> None:
        self.bar: object | None = None

    def update(self, progress: object) -> None:
        from tqdm.auto import tqdm

        if self.bar is None:
            self.bar = tqdm(total=progress.total, unit="tile", desc="census", dynamic_ncols=True)
        self.bar.total = progress.total
        self.bar.update(progress.done - self.bar.n)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None

    def row(self, row: dict) -> None:
        self.close()
        if row["status"] == "ok":
            reused = " (reused)" if row.get("reused") else ""
            print(f"{row['slide_id']}: {row['n_tiles']} tiles, {row['n_cells']} cells{reused}")
        else:
            print(f"{row['slide_id']}: error: {row['error']}")
