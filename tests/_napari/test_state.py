"""The per-viewer state, the loaded-model cache, ``notify`` and the napari wing's import
layout, without a viewer on screen."""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from napari_imilia._napari.inspect_settings import InspectorSettings, inspector_settings_path
from napari_imilia._napari.models import ModelCache
from napari_imilia._napari.notify import notify
from napari_imilia._napari.state import DEFAULT_K, TopTiles, viewer_state
from napari_imilia.interpret import InspectConfig
from napari_imilia.predict.slide import PredictionResult
from napari_imilia.review.session import ReviewSession

NAPARI_WING = Path(__file__).resolve().parents[2] / "src" / "napari_imilia" / "_napari"


class _Viewer:
    """Stands for a napari viewer: the state only needs a weakly referable key."""


class _Slide:
    """Stands for an open slide (the inspection tools are loaded per slide)."""


def _scored(session: ReviewSession, n_tiles: int) -> PredictionResult:
    """A prediction of ``n_tiles`` tiles (tile ``t<i>`` scores ``i``) set on ``session``."""
    tiles = pd.DataFrame(
        {
            "tile_id": [f"t{i}" for i in range(n_tiles)],
            "x": [224 * i for i in range(n_tiles)],
            "y": [0] * n_tiles,
            "width": [224] * n_tiles,
            "height": [224] * n_tiles,
            "score": [float(i) for i in range(n_tiles)],
            "attention": [float(-i) for i in range(n_tiles)],
        }
    )
    tiles["rank"] = tiles["score"].rank(ascending=False).astype(int)
    info = {"slide_id": session.slide_id, "score": 0.5, "model_sha256": "abc"}
    out = session.results_dir
    out.mkdir(parents=True, exist_ok=True)
    tiles.to_csv(out / "tiles.csv", index=False)
    (out / "slide.json").write_text(json.dumps(info))
    result = PredictionResult(session.slide_id, session.slide.path, 0.5, 0.0, tiles, info, out)
    session.set_prediction(result)
    return result


def test_one_state_per_viewer_holds_session_cohort_and_top_tiles(
    small_svs: Path, tmp_path: Path
) -> None:
    viewer, other = _Viewer(), _Viewer()
    state = viewer_state(viewer)
    assert viewer_state(viewer) is state and viewer_state(other) is not state
    assert isinstance(state.models, ModelCache) and state.session is None
    seen: list[object] = []
    state.session_changed.connect(seen.append)
    first = ReviewSession.open(small_svs, tmp_path / "results")
    closed: list[bool] = []
    first.closed.connect(lambda: closed.append(True))
    state.set_session(first)
    state.set_session(first)  # the same session again: nothing happens
    second = ReviewSession.open(small_svs, tmp_path / "results")
    state.review_target = "region"
    state.set_session(second)
    assert seen == [first, second] and closed == [True]  # the old session is closed
    assert state.review_target == "tile"  # a new slide starts on its tiles

    # the top tiles: the state's choice over the session's tiles, wherever they are shown
    assert state.top_tile_ids() == []  # not scored yet
    _scored(second, 14)
    assert state.top_tile_ids() == [f"t{i}" for i in range(13, 13 - DEFAULT_K, -1)]
    changes: list[TopTiles] = []
    state.top_tiles_changed.connect(changes.append)
    state.set_top_tiles(TopTiles(k=3, bottom=True, column="attention"))
    state.set_top_tiles(TopTiles(k=3, bottom=True, column="attention"))
    assert len(changes) == 1
    assert state.top_tile_ids() == ["t13", "t12", "t11"]  # lowest attention first
    state.set_top_tiles(TopTiles(k=2, column="score_ch9"))  # a column this result lacks
    assert state.top_tile_ids() == ["t13", "t12"]  # ranked by the tile score

    cohorts: list[object] = []
    state.cohort_changed.connect(cohorts.append)
    marker = object()
    state.set_cohort(marker)  # type: ignore[arg-type]
    state.set_cohort(None)
    assert cohorts == [marker, None] and state.cohort is None


def test_inspection_choices_are_the_states_and_remembered(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("IMILIA_CONFIG_DIR", str(tmp_path / "config"))
    state = viewer_state(_Viewer())
    assert state.inspect_settings == InspectorSettings()  # no file yet: the defaults
    chosen = InspectorSettings(cell_backend="histoplus-json", histoplus_json="/x/cells.json")
    state.set_inspect_settings(chosen)
    assert state.inspect_settings is chosen
    saved = json.loads(inspector_settings_path().read_text(encoding="utf-8"))
    assert saved["cell_backend"] == "histoplus-json"
    assert viewer_state(_Viewer()).inspect_settings == chosen  # a new viewer reads them


def test_inspection_tools_are_loaded_once_per_choice_and_slide() -> None:
    cache = ModelCache()
    assert cache.cell_backend is None and cache.episeg_probe is None
    slide, other_slide = _Slide(), _Slide()
    classical = InspectConfig(cell_backend="classical")
    tools = cache.inspect_tools(classical, slide)
    assert cache.inspect_tools(InspectConfig(cell_backend="classical"), slide) is tools
    assert cache.cell_backend is tools.backend and cache.episeg_probe is None
    coarser = InspectConfig(cell_backend="classical", analysis_mpp=1.0)
    assert cache.inspect_tools(coarser, slide) is not tools  # another choice: loaded again
    again = cache.inspect_tools(coarser, other_slide)
    assert again is not cache.inspect_tools(classical, other_slide)  # and another slide
    assert cache.loaded_inspect_tools.config == classical


def test_notify_is_one_plain_text_napari_notification(monkeypatch: pytest.MonkeyPatch) -> None:
    import napari.utils.notifications as notifications

    shown: list[tuple[str, str]] = []
    for level in ("error", "warning", "info"):
        monkeypatch.setattr(
            notifications, f"show_{level}", lambda m, lv=level: shown.append((lv, m))
        )
    notify("warning", "slide has no MPP metadata")
    notify("error", "model checkpoint not found")
    notify("info", "last slide of the cohort")
    assert shown == [
        ("warning", "slide has no MPP metadata"),
        ("error", "model checkpoint not found"),
        ("info", "last slide of the cohort"),
    ]
    with pytest.raises(ValueError, match="unknown notification level 'debug'"):
        notify("debug", "not a level")


def _imports(path: Path, module: str) -> set[str]:
    """Modules of napari_imilia that ``path`` imports, at the top or inside functions."""
    package = module.split(".")
    if path.name != "__init__.py":
        package = package[:-1]
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom):
            base = package[: len(package) - node.level + 1] if node.level else []
            name = ".".join([*base, *([node.module] if node.module else [])])
            found |= {name} | {f"{name}.{alias.name}" for alias in node.names}
        elif isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
    return {name for name in found if name.startswith("napari_imilia.")}


def _part(module: str) -> str | None:
    """The part of the napari wing a module belongs to: ``layers``, ``docks``, or the
    module's own name for the wing's top-level modules (None outside the wing)."""
    parts = module.split(".")
    if parts[:2] != ["napari_imilia", "_napari"] or len(parts) < 3:
        return None
    return parts[2]


def test_the_napari_wing_imports_one_way() -> None:
    """No two parts of the wing import each other, lazily or not: state below layers below
    the link below the keys below the docks; the state, layers, link and keys never reach a
    dock."""
    modules = {
        ".".join(
            ["napari_imilia", "_napari", *p.relative_to(NAPARI_WING).with_suffix("").parts]
        ).removesuffix(".__init__"): p
        for p in NAPARI_WING.rglob("*.py")
    }
    edges: set[tuple[str, str]] = set()
    for module, path in modules.items():
        for target in _imports(path, module):
            a, b = _part(module), _part(target)
            if a and b and a != b:
                edges.add((a, b))
    mutual = sorted({tuple(sorted(e)) for e in edges if (e[1], e[0]) in edges})
    assert mutual == []
    reach = {a: {b for x, b in edges if x == a} for a, _ in edges}
    for _ in range(len(reach)):
        for a in reach:
            reach[a] |= set().union(*(reach.get(b, set()) for b in reach[a]))
    assert all(a not in reach[a] for a in reach)  # no circle through several parts
    for below in ("state", "layers", "link", "keys", "models", "inspecting", "roles"):
        assert "docks" not in reach.get(below, set()), below
    assert "link" not in reach["layers"] and "keys" not in reach["link"]
    assert "layers" not in reach["state"]


def test_the_state_imports_without_qt() -> None:
    code = (
        "import sys; import napari_imilia._napari.state; "
        "print(sorted(m for m in ('qtpy', 'PyQt5', 'PyQt6', 'napari.qt', 'torch') "
        "if m in sys.modules))"
    )
    done = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        check=True,
        env={"PYTHONPATH": str(NAPARI_WING.parents[1]), "PATH": ""},
    )
    assert done.stdout.strip() == "[]"
