"""The files of a cohort run: reusing complete results, removing what interrupted runs left,
and ``cohort.csv`` merged over runs (one row per slide, the newest result wins).
"""

from __future__ import annotations

import json
import math
import os
import shutil
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from napari_imilia.errors import ImiliaError
from napari_imilia.files import write_text_atomic
from napari_imilia.predict.slide import RESULT_FILES

SUMMARY_COLUMNS: tuple[str, ...] = ("slide", "slide_id", "status", "score", "n_tiles", "error")
#: Summary columns that hold whole numbers (written without a decimal point, blank when unknown).
INTEGER_COLUMNS: tuple[str, ...] = ("n_tiles",)
SUMMARY_FILE = "cohort.csv"


def remove_stray_files(out_dir: Path, cache_dir: Path, slide_ids: Iterable[str]) -> list[Path]:
    """Remove what an interrupted run (a killed worker, Ctrl-C) left for these slides: the
    hidden staging folders in ``out_dir/<slide_id>/``, the temporary feature files
    ``cache_dir/.<slide_id>.h5.*.tmp``, and a temporary ``cohort.csv``. Returns what was removed.

    Only call it while no task writes these slides (before a run's tasks start, after all
    of them ended).
    """
    removed: list[Path] = []
    for slide_id in slide_ids:
        folder = out_dir / slide_id
        if folder.is_dir():
            for staging in folder.glob(".staging-*"):
                shutil.rmtree(staging, ignore_errors=True)
                removed.append(staging)
        removed.extend(_unlink_all(cache_dir.glob(f".{slide_id}.h5.*.tmp")))
    removed.extend(_unlink_all(out_dir.glob(f".{SUMMARY_FILE}.*.tmp")))
    return removed


def _unlink_all(paths: Iterable[Path]) -> list[Path]:
    removed = []
    for path in paths:
        path.unlink(missing_ok=True)
        removed.append(path)
    return removed


def expected_settings(
    model: Any, options: dict[str, Any], extractor: Any | None = None
) -> dict[str, Any]:
    """What a slide's ``slide.json`` must record for its result to be reused: the model's
    sha256, the extractor and its weights' sha256, the µm/px and tile size asked for (None:
    the model's or extractor's default), the tissue settings, the level-0 µm/px override and
    the tiling and protocol (a result made from a ``tiles_from`` file is never reused).
    ``options`` are ``predict_slide``'s; ``extractor``, when already loaded, is used as is."""
    from napari_imilia.files import sha256_file
    from napari_imilia.predict.slide import _extractor_key, check_tissue_params
    from napari_imilia.tiling.deepzoom import check_tiling

    config = dict(getattr(model, "config", {}) or {})
    name = options.get("extractor_name") or model.expected_extractor
    weights = options.get("extractor_weights")
    if extractor is not None:
        name, extractor_sha256 = extractor.name, extractor.weights_sha256
    elif weights:
        extractor_sha256 = sha256_file(weights)
    elif name and _extractor_key(name) == "imilia-stain-stats":
        from napari_imilia.features.extractors.builtin import builtin_digest

        extractor_sha256 = builtin_digest()
    else:
        extractor_sha256 = None
    return {
        "model_sha256": model.sha256,
        "extractor": _extractor_key(name) if name else None,
        "extractor_sha256": extractor_sha256,
        "target_mpp": options.get("target_mpp") or config.get("mpp"),
        "tile_px": options.get("tile_px") or config.get("tile_px"),
        "min_tissue_fraction": float(options.get("min_tissue_fraction", 0.5)),
        "tissue_params": check_tissue_params(options.get("tissue_params")),
        "mpp": options.get("mpp"),
        "tiling": check_tiling(
            options.get("tiling", "grid"), options.get("tiles_from"), options.get("protocol")
        ),
        "protocol": options.get("protocol"),
        "tiles_from": options.get("tiles_from"),
    }


def completed_row(
    slide: Path, out_dir: Path, expected: dict[str, Any], since_s: float | None = None
) -> dict[str, Any] | None:
    """The summary row of ``slide``'s existing result when it is complete (all
    :data:`RESULT_FILES`, a readable ``slide.json`` newer than the slide, and than ``since_s``
    epoch seconds when given) and was made with the ``expected`` settings
    (:func:`expected_settings`); otherwise None."""
    from napari_imilia.predict.slide import _extractor_key
    from napari_imilia.slide import slide_id_for

    folder = out_dir / slide_id_for(slide)
    info_path = folder / "slide.json"
    try:
        if not all((folder / name).is_file() for name in RESULT_FILES):
            return None
        written_s = info_path.stat().st_mtime
        if written_s < slide.stat().st_mtime or (since_s is not None and written_s < since_s):
            return None  # the slide changed since, or an older result
        info = json.loads(info_path.read_text(encoding="utf-8"))
        same = (
            Path(info["slide"]) == Path(os.path.abspath(slide))
            and info["model_sha256"] == expected["model_sha256"]
            and _extractor_key(info["extractor"]) == expected["extractor"]
            and (
                expected["extractor_sha256"] is None
                or info["extractor_sha256"] == expected["extractor_sha256"]
            )
            and _same_number(info["target_mpp"], expected["target_mpp"])
            and _same_number(info["tile_px"], expected["tile_px"])
            and _same_number(info["min_tissue_fraction"], expected["min_tissue_fraction"])
            and info.get("tissue_params") == expected["tissue_params"]
            and (info["mpp_source"] == "override") == (expected["mpp"] is not None)
            and _same_number(info["mpp"], expected["mpp"])
            and info.get("tiling", "grid") == expected["tiling"]
            and info.get("protocol") == expected["protocol"]
            and expected["tiles_from"] is None  # a coordinates file may have changed
        )
        row = {
            "slide": str(slide),
            "slide_id": str(info["slide_id"]),
            "status": "ok",
            "score": float(info["score"]),
            "n_tiles": int(info["n_tiles"]),
        }
    except (OSError, ValueError, KeyError, TypeError):
        return None  # unreadable or from an older version: compute again
    return row if same else None


def _same_number(stored: Any, wanted: Any) -> bool:
    """``wanted`` None means "any" (the default, resolved the same way for the same model)."""
    return wanted is None or math.isclose(float(stored), float(wanted), rel_tol=1e-9)


def summary_table(rows: Sequence[dict[str, Any]], slides: Sequence[str]) -> pd.DataFrame:
    """Rows as a table with :data:`SUMMARY_COLUMNS`, in the order of ``slides``."""
    order = {slide: i for i, slide in enumerate(slides)}
    table = pd.DataFrame(list(rows)).reindex(columns=list(SUMMARY_COLUMNS))
    if len(table):
        table = table.sort_values("slide", key=lambda col: col.map(order))
    return _typed(table.reset_index(drop=True))


def _typed(table: pd.DataFrame) -> pd.DataFrame:
    table = table.astype({"slide": str, "slide_id": str, "status": str, "score": "float64"})
    table["error"] = table["error"].astype(object).where(table["error"].notna(), float("nan"))
    return table.astype({name: "Int64" for name in INTEGER_COLUMNS})


def read_summary(path: Path) -> pd.DataFrame:
    """An existing ``cohort.csv`` (typed like :func:`summary_table`), or ``ImiliaError``."""
    try:
        table = pd.read_csv(path, dtype={"slide": str, "slide_id": str, "error": str})
        missing = [c for c in SUMMARY_COLUMNS if c not in table]
        if missing:
            raise ValueError(f"missing column(s) {', '.join(missing)}")
        return _typed(table.reindex(columns=list(SUMMARY_COLUMNS)))
    except (OSError, ValueError, TypeError) as error:
        raise ImiliaError(
            f"{path} is not a cohort table this program wrote ({error}); move it away and run again"
        ) from error


def write_summary(out_dir: Path, table: pd.DataFrame) -> pd.DataFrame:
    """Merge ``table`` into ``out_dir/cohort.csv`` and write it atomically; returns the merged
    table. A slide already in the file (same ``slide_id``) gets its new row in place; new
    slides follow in the order of ``table``."""
    path = out_dir / SUMMARY_FILE
    rows = {}
    if path.is_file():
        for row in read_summary(path).to_dict("records"):
            rows.setdefault(row["slide_id"], row)
    for row in table.to_dict("records"):
        rows[row["slide_id"]] = row  # in place when known, appended when new
    merged = _typed(pd.DataFrame(list(rows.values()), columns=list(SUMMARY_COLUMNS)))
    write_text_atomic(path, merged.to_csv(index=False))
    return merged
