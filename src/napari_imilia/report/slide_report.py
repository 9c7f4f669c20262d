"""One slide's report page, ``results_root/<slide_id>/report.html`` (no Qt).

From the slide's cached result (``slide.json``, ``tiles.csv``, ``heatmap.png``) and review
(``review.json``, ``slide_grade.json``): the thumbnail with the tile-score heatmap, the slide
score, the model and extractor with their SHA-256, the top tiles with their cells (tinted by
class) and epithelium (outlined) as overlays beside a legend of the cell classes shown, the
marker table of those tiles (readable column names, fitted to the page), the reviewer's
verdicts, the slide grade and the notes. Top tiles are inspected here with the weight-free
backends (classical cells, stain-heuristic epithelium). Everything is embedded in the page.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pandas as pd

from napari_imilia.errors import ImiliaError
from napari_imilia.files import write_text_atomic
from napari_imilia.report import html as H
from napari_imilia.report.reader_study_page import reads_html
from napari_imilia.review.grade import NANCY_GRADES, SlideGrade
from napari_imilia.review.indices import ITEMS, RHI_MAX, index_values
from napari_imilia.review.reads import latest_grade
from napari_imilia.trust.results import read_results_bytes

#: Tiles shown with their overlays, best first.
DEFAULT_TOP_TILES = 4
#: Marker columns shown (those present), after tile_id, score and rank, and their headers.
#: Soft hyphens (U+00AD) let a long word break over two lines of a narrow column.
MARKER_LABELS: dict[str, str] = {
    "n_cells": "cells",
    "epithelium_fraction": "epi\u00adthelium (fraction of tissue)",
    "density_per_mm2_immune": "immune cells per mm²",
    "density_per_mm2_Lymphocytes": "lympho\u00adcytes per mm²",
    "density_per_mm2_Plasmocytes": "plasmo\u00adcytes per mm²",
    "density_per_mm2_Neutrophils": "neutro\u00adphils per mm²",
    "density_per_mm2_Eosinophils": "eosino\u00adphils per mm²",
    "intraepithelial_Neutrophils": "intra\u00adepithelial neutro\u00adphils",
    "intraepithelial_immune": "intra\u00adepithelial immune cells",
}
MARKER_COLUMNS: tuple[str, ...] = tuple(MARKER_LABELS)
#: Headers of the first columns of the marker table.
TILE_LABELS: dict[str, str] = {"tile_id": "tile", "score": "tile score", "rank": "rank"}
#: Headers of the verdict table.
REVIEW_LABELS: dict[str, str] = {
    "verdict": "verdict",
    "target_kind": "on",
    "tile_id": "tile",
    "reviewer_class": "class",
    "note": "note",
    "reviewer": "reviewer",
    "updated_utc": "saved (UTC)",
}


def legend_html(class_counts: dict[str, int]) -> str:
    """A legend of the cell classes present (swatch, name, cells in the tiles shown) and of
    the epithelium outline, in the overlays' colours."""
    from napari_imilia.interpret.cells.types import CELL_CLASS_COLORS
    from napari_imilia.interpret.masks import EPITHELIUM_OUTLINE_RGB

    def line(rgb: tuple[int, int, int], text: str) -> str:
        colour = "#{:02x}{:02x}{:02x}".format(*rgb)
        return f'<div><span class="swatch" style="background:{colour}"></span>{H.esc(text)}</div>'

    rows = [
        line(rgb, f"{name} ({class_counts[name]})")
        for name, rgb in CELL_CLASS_COLORS.items()
        if class_counts.get(name)
    ]
    rows.append(line(EPITHELIUM_OUTLINE_RGB, "epithelium (outline)"))
    return f'<div class="legend"><b>Cell classes</b> (cells){"".join(rows)}</div>'


def _top_tiles(slide_path: str, tiles: pd.DataFrame, top_k: int) -> tuple[str, pd.DataFrame]:
    """(HTML figures of the overlays with their legend, marker table) of the ``top_k`` best
    tiles."""
    from napari_imilia.interpret import TileBox, inspect_tile, read_tile_at_mpp, select_tiles
    from napari_imilia.interpret.masks import overlay_tile
    from napari_imilia.slide import open_slide

    best = select_tiles(tiles, f"top:{top_k}")
    figures, rows = [], []
    counts: dict[str, int] = {}
    with open_slide(slide_path) as slide:
        for _, row in best.iterrows():
            inspection = inspect_tile(slide, row)
            rgb, _, _ = read_tile_at_mpp(slide, TileBox.from_row(row), inspection.mpp)
            picture = overlay_tile(rgb, inspection) if rgb.shape[:2] == inspection.shape else rgb
            caption = (
                f"tile {row['tile_id']} (rank {int(row['rank'])}, score {float(row['score']):.4f},"
                f" {inspection.n_cells} cells)"
            )
            figures.append(H.figure(H.rgb_png(picture), caption, width=256))
            for name, count in inspection.markers.counts.items():
                counts[name] = counts.get(name, 0) + int(count)
            markers = inspection.markers.as_row()
            rows.append(
                {
                    "tile_id": str(row["tile_id"]),
                    "score": float(row["score"]),
                    "rank": int(row["rank"]),
                    **{k: markers[k] for k in MARKER_COLUMNS if k in markers},
                }
            )
    overlays = f'<div class="figs">{"".join(figures)}</div>{legend_html(counts)}'
    return f'<div class="overlays">{overlays}</div>', pd.DataFrame(rows)


def _reviews(results_dir: Path, slide_id: str) -> pd.DataFrame:
    from napari_imilia.review import ReviewStore
    from napari_imilia.review.exports import reviews_table
    from napari_imilia.review.store import JOURNAL_FILE, REVIEW_FILE

    if not any(os.path.lexists(results_dir / name) for name in (REVIEW_FILE, JOURNAL_FILE)):
        return pd.DataFrame()  # never reviewed (the journal alone holds every edit)
    table = reviews_table(ReviewStore.open(results_dir, slide_id))[list(REVIEW_LABELS)]
    table["reviewer"] = table["reviewer"].fillna("").replace("", "(not recorded)")
    return table.rename(columns=REVIEW_LABELS)


def _grade_html(grade: SlideGrade | None) -> str:
    if grade is None or not (grade.is_graded or grade.note or grade.model_agreement):
        return '<p class="missing">No slide grade yet.</p>'
    nancy = "-" if grade.nancy is None else f"{grade.nancy} ({NANCY_GRADES[grade.nancy][0]})"
    definition = "" if grade.nancy is None else NANCY_GRADES[grade.nancy][1]
    return H.key_values(
        [
            ("Nancy histological index", nancy),
            ("definition", definition),
            ("activity", grade.effective_activity or "-"),
            *_index_rows(grade),
            ("agreement with the model's call", grade.model_agreement or "-"),
            ("note", grade.note or "-"),
            ("reviewer", grade.reviewer or "-"),
            ("graded (UTC)", grade.updated_utc or "-"),
        ]
    )


def _index_rows(grade: SlideGrade) -> list[tuple[str, str]]:
    """Nancy and RHI from the item grades, and the item grades (none without items)."""
    if not grade.items:
        return []
    values = index_values(grade.items)
    nancy, rhi = values["nancy_from_items"], values["rhi"]
    graded = [
        f"{item.name} {grade.items[item.key]} ({item.levels[grade.items[item.key]]})"
        for item in ITEMS
        if item.key in grade.items and grade.items[item.key] <= item.max_grade
    ]
    return [
        ("Nancy from the item grades", "-" if nancy is None else str(nancy)),
        ("Robarts histopathology index (RHI)", "-" if rhi is None else f"{rhi} / {RHI_MAX}"),
        ("item grades", "; ".join(graded) or "-"),
    ]


def write_slide_report(
    results_dir: str | Path, *, top_k: int = DEFAULT_TOP_TILES, slide_path: str | None = None
) -> Path:
    """Write ``results_dir/report.html`` for a scored slide (``ImiliaError`` if it is not);
    ``top_k`` tiles with overlays (0 for none); ``slide_path`` when the slide moved since it
    was scored. Returns the page's path."""
    from napari_imilia.predict.slide import load_prediction

    results_dir = Path(results_dir)
    result = load_prediction(results_dir)
    info: dict[str, Any] = result.info
    slide_id = result.slide_id
    source = slide_path or str(result.slide_path)
    body = [f"<h1>Slide report: {H.esc(slide_id)}</h1>"]
    if info.get("model_is_demo"):
        body.append(
            '<p class="demo">DEMO model trained on synthetic slides: its scores say nothing '
            "about real inflammation.</p>"
        )
    body.append(
        H.key_values(
            [
                ("slide score (probability of active inflammation)", result.score),
                ("logit", result.logit),
                ("tiles scored", info.get("n_tiles")),
                ("model", info.get("model")),
                ("model SHA-256", info.get("model_sha256")),
                ("feature extractor", info.get("extractor")),
                ("extractor SHA-256", info.get("extractor_sha256") or "- (weight-free)"),
                ("slide file", info.get("slide")),
                ("level-0 µm/px", info.get("mpp")),
                ("tile size (px at the model's µm/px)", info.get("tile_px")),
                ("model µm/px", info.get("target_mpp")),
                ("software", info.get("software")),
            ]
        )
    )
    heatmap = results_dir / "heatmap.png"
    if heatmap.is_file():  # through the gate: a link out of the folder is not embedded
        png = read_results_bytes(heatmap, results_dir)
        body += ["<h2>Heatmap of tile scores</h2>", H.figure(png, "tile scores over the thumbnail")]
    if top_k > 0:
        body.append(f"<h2>Top {top_k} tiles: cells and epithelium</h2>")
        try:
            figures, markers = _top_tiles(source, result.tiles, top_k)
        except (ImiliaError, OSError) as error:
            body.append(f'<p class="missing">Tiles could not be inspected: {H.esc(error)}</p>')
        else:
            body.append(figures)
            for column in [c for c in markers.columns if c.startswith("density_per_mm2")]:
                # whole cells per mm²: a narrower table that fits the page
                markers[column] = markers[column].map(
                    lambda v: round(float(v)) if pd.notna(v) else float("nan")
                )
            markers = markers.rename(columns={**TILE_LABELS, **MARKER_LABELS})
            body += [
                "<h2>Markers of the top tiles</h2>",
                f'<div class="wide">{H.table(markers, digits=3)}</div>',
            ]
    body.append("<h2>Slide grade</h2>")
    body.append(_grade_html(latest_grade(results_dir, slide_id)))
    body.append(reads_html(results_dir, slide_id))
    reviews = _reviews(results_dir, slide_id)
    body.append("<h2>Reviewer's verdicts on tiles and regions</h2>")
    body.append(H.table(reviews) if len(reviews) else '<p class="muted">No tile verdicts.</p>')
    body.append('<p class="muted"><a href="../cohort_report.html">cohort report</a></p>')
    return write_text_atomic(
        results_dir / "report.html", H.page(f"{slide_id} report", "".join(body))
    )
