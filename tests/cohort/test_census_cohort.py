"""The census of many slides: in this process, and one task per slide on a real loopback dask
cluster (a ``dask scheduler`` and two ``dask worker`` processes)."""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

import pandas as pd
import pytest

from napari_imilia.cohort.census import CENSUS_TABLE, census_cohort
from napari_imilia.demo.sample import write_synthetic_slide
from napari_imilia.interpret.census import CensusData, CensusSettings

sys.path.insert(0, str(Path(__file__).parent))
from loopback_cluster import LoopbackCluster

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="POSIX processes")
SETTINGS = CensusSettings(tile_px=448)  # 896 µm tiles: few tiles, the same cells


@pytest.fixture(scope="module")
def slides(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    folder = tmp_path_factory.mktemp("census_slides")
    first = write_synthetic_slide(folder / "case_0.svs", width_px=1536, height_px=1024, seed=1)
    return [first, Path(shutil.copyfile(first, folder / "case_1.svs"))]


def test_on_a_cluster_each_slide_is_a_task_and_a_bad_one_does_not_stop_the_others(slides, tmp_path):
    here = census_cohort(slides[:1], tmp_path / "here", SETTINGS, workers=1)
    assert here["status"].tolist() == ["ok"]
    bad = tmp_path / "broken.svs"
    bad.write_bytes(b"not a slide")
    cluster = LoopbackCluster(tmp_path / "cluster_cwd", n_workers=2)
    try:
        rows = []
        table = census_cohort(
            [*slides, bad],
            tmp_path / "out",
            SETTINGS,
            scheduler=cluster.address,
            on_row=rows.append,
            timeout_s=60,
        )
    finally:
        cluster.stop()
    assert table["slide_id"].tolist() == ["case_0", "case_1", "broken"]
    assert table["status"].tolist() == ["ok", "ok", "error"]
    assert len(rows) == 3
    assert table["n_cells"].iloc[0] == table["n_cells"].iloc[1] == here["n_cells"].iloc[0]
    written = pd.read_csv(tmp_path / "out" / CENSUS_TABLE)
    assert written["status"].tolist() == table["status"].tolist()
    for case in ("case_0", "case_1"):  # the same census as in this process
        a = CensusData.load(tmp_path / "here" / "case_0" / "census").tiles
        b = CensusData.load(tmp_path / "out" / case / "census").tiles
        pd.testing.assert_frame_equal(a.drop(columns="seconds"), b.drop(columns="seconds"))
