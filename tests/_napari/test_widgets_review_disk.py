"""The Review dock on a disk that refuses writes: a clear notification, no traceback, and the
entries already saved kept (issue 14). pytest-qt under Xvfb."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import pytest

from napari_imilia._napari.state import viewer_state

pytestmark = pytest.mark.gui
PLUGIN = "napari-imilia"


@pytest.fixture(scope="module")
def scored(small_svs: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    import torch

    from napari_imilia.mil import create_model, save_model
    from napari_imilia.predict.slide import predict_slide

    root = tmp_path_factory.mktemp("scored")
    torch.manual_seed(0)
    model = create_model("max-mil", 64, hidden=[8])
    path = save_model(model.eval(), root / "m.safetensors", extractor="imilia-stain-stats")
    return predict_slide(small_svs, root / "results", model_path=path, progress=False).out_dir


def test_review_dock_reports_a_refusing_disk(
    make_napari_viewer: Any,
    scored: Path,
    small_svs: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import napari.utils.notifications as notifications

    root = tmp_path / "results"
    shutil.copytree(scored, root / scored.name, ignore=shutil.ignore_patterns("features"))
    monkeypatch.setenv("IMILIA_RESULTS_DIR", str(root))
    shown: list[tuple[str, str]] = []
    for level in ("error", "warning", "info"):
        monkeypatch.setattr(
            notifications, f"show_{level}", lambda m, lv=level: shown.append((lv, str(m)))
        )
    viewer = make_napari_viewer(show=False)
    viewer.open(small_svs, plugin=PLUGIN)
    _dock, panel = viewer.window.add_plugin_dock_widget(PLUGIN, "Review")
    session = viewer_state(viewer).session
    first, second = session.ranked_tiles(2)["tile_id"]
    session.select_tile(first)
    assert len(panel.record("agree")) == 1

    # the journal cannot be appended to any more: a read-only share refuses it (a folder in
    # its place would now be refused earlier, by the results gate, as not a regular file)
    import errno

    from napari_imilia.review import store

    original = store.open_results_file

    def refusing(path, root, *, append=False):
        if append:
            raise OSError(errno.EROFS, "Read-only file system", str(path))
        return original(path, root)

    monkeypatch.setattr(store, "open_results_file", refusing)
    session.select_tile(second)
    assert panel.record("disagree") == []
    errors = [m for lv, m in shown if lv == "error"]
    assert len(errors) == 1 and "review not saved" in errors[0]
    assert "cannot be saved in" in errors[0] and "write access" in errors[0]
    assert [e.tile_id for e in session.review.entries()] == [first]
