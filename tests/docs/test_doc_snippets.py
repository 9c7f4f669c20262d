"""The Python snippets of docs/*.md and README.md run exactly as printed.

Each page's ```` ```python ```` blocks run in order, as one script a user pastes into
``python -`` (stdin: no file, no main guard), in a folder of generated data named as the
docs name it: ``slide.svs`` (a generated biopsy), ``second.svs``, ``study.csv`` (both),
``model.safetensors`` (the bundled DEMO model) and ``results/slide/`` (its prediction). A
block preceded by a marker comment does not run in that session:

- ``<!-- docs-test: from-repository-root -->``: runs alone, from the repository root;
- ``<!-- docs-test: needs-weights -->``: needs model weights that are not in the repository;
- ``<!-- docs-test: fragment -->``: part of a program (names such as ``tile_rgb`` stand for
  the reader's data);
- ``<!-- docs-test: opens-napari -->``: opens a napari window and waits until it is closed.

The last three are skipped with one reason each (``pytest -rs`` groups them).
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
PAGES = [*sorted((REPO / "docs").glob("*.md")), REPO / "README.md"]
MARKER = re.compile(r"^<!--\s*docs-test:\s*([a-z-]+)\s*-->\s*$")
FROM_ROOT = "from-repository-root"
#: Why a marked block is not run (one reason per marker, so that skips group).
SKIPPED: dict[str, str] = {
    "needs-weights": "docs snippet needs model weights that are not in the repository "
    "(IMILIA's folds, H0-mini, HistoPLUS's CellViT, an EpiSeg probe)",
    "fragment": "docs snippet is a fragment: names such as tile_rgb stand for the reader's data",
    "opens-napari": "docs snippet opens a napari window and waits until it is closed",
}


@dataclass(frozen=True)
class Snippet:
    page: Path
    line: int
    code: str
    marker: str | None

    @property
    def name(self) -> str:
        return f"{self.page.name}:{self.line}"


def snippets(page: Path) -> list[Snippet]:
    """The ```python blocks of ``page`` with the marker on the line before each."""
    found, lines = [], page.read_text(encoding="utf-8").splitlines()
    index = 0
    while index < len(lines):
        if lines[index].strip() == "```python":
            end = next(k for k in range(index + 1, len(lines)) if lines[k].strip() == "```")
            mark = MARKER.match(lines[index - 1].strip()) if index else None
            code = "\n".join(lines[index + 1 : end]) + "\n"
            found.append(Snippet(page, index + 1, code, mark.group(1) if mark else None))
            index = end
        index += 1
    return found


ALL = [snippet for page in PAGES for snippet in snippets(page)]
SESSIONS = sorted({s.page for s in ALL if s.marker is None}, key=lambda p: p.name)


def test_every_marker_is_known() -> None:
    assert {s.marker for s in ALL} <= {None, FROM_ROOT, *SKIPPED}
    assert len(ALL) >= 15  # the pages still have their snippets


@pytest.fixture(scope="module")
def generated(tmp_path_factory) -> Path:
    """The files the docs name, generated: slides, a study CSV, a model, a prediction."""
    from napari_imilia.demo.sample import write_synthetic_slide
    from napari_imilia.predict.slide import default_model_path, predict_slide

    folder = tmp_path_factory.mktemp("docs_data")
    for name, seed in (("slide.svs", 3), ("second.svs", 4)):
        write_synthetic_slide(
            folder / name,
            width_px=1792,
            height_px=1344,
            seed=seed,
            inflamed_regions="random",
            n_inflamed_regions=1,
            levels=(1, 4),
        )
    (folder / "study.csv").write_text("slide,active\nslide.svs,1\nsecond.svs,0\n")
    demo = default_model_path()
    shutil.copy(demo, folder / "model.safetensors")
    shutil.copy(demo.with_suffix(".json"), folder / "model.json")
    predict_slide(folder / "slide.svs", folder / "results", decode_workers=0, progress=False)
    return folder


def run_as_printed(code: str, folder: Path) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTEST")}
    env["PYTHONPATH"] = os.pathsep.join([str(REPO / "src"), env.get("PYTHONPATH", "")])
    env["MPLBACKEND"] = "Agg"
    return subprocess.run(
        [sys.executable, "-"],
        input=code,
        cwd=folder,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )


def _uses_napari(code: str) -> bool:
    return "napari_imilia._napari" in code or re.search(r"^import napari$", code, re.M) is not None


@pytest.mark.slow
@pytest.mark.parametrize("page", SESSIONS, ids=lambda page: page.name)
def test_a_pages_snippets_run_as_printed(page: Path, generated: Path, tmp_path: Path) -> None:
    blocks = [s for s in ALL if s.page == page and s.marker is None]
    code = "\n".join(block.code for block in blocks)
    if _uses_napari(code) and not os.environ.get("DISPLAY"):
        pytest.skip("needs a display: run under xvfb-run (DISPLAY is unset)")
    folder = Path(shutil.copytree(generated, tmp_path / "user"))
    done = run_as_printed(code, folder)
    where = ", ".join(block.name for block in blocks)
    assert done.returncode == 0, f"{where}:\n{done.stderr[-4000:]}"
    assert "Traceback" not in done.stderr, f"{where}:\n{done.stderr[-4000:]}"


@pytest.mark.parametrize(
    "snippet", [s for s in ALL if s.marker == FROM_ROOT], ids=lambda snippet: snippet.name
)
def test_a_snippet_from_the_repository_root_runs(snippet: Snippet) -> None:
    done = run_as_printed(snippet.code, REPO)
    assert done.returncode == 0, f"{snippet.name}:\n{done.stderr[-4000:]}"


@pytest.mark.parametrize(
    "snippet", [s for s in ALL if s.marker in SKIPPED], ids=lambda snippet: snippet.name
)
def test_a_marked_snippet_is_skipped_with_its_reason(snippet: Snippet) -> None:
    compile(snippet.code, snippet.name, "exec")  # at least valid Python, as printed
    pytest.skip(SKIPPED[snippet.marker])
