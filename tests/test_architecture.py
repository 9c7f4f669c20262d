"""The rules of docs/architecture.md hold: folders import only folders below them, no import
circle (imports inside functions count), Qt only in the napari wing, no file over 400 lines and
no function over 80 (scripts/check_architecture.py measures the same)."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "check_architecture.py"


@pytest.fixture(scope="module")
def arch():
    spec = importlib.util.spec_from_file_location("check_architecture", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def modules(arch):
    return arch.load_modules()


def test_every_module_belongs_to_a_layer(arch, modules) -> None:
    assert {arch.folder_of(name) for name in modules} <= set(arch.LAYERS)
    assert len(modules) > 150  # the walk found the package


def test_no_import_circle(arch, modules) -> None:
    assert arch.cycles(modules) == []


def test_no_folder_imports_a_folder_above_it(arch, modules) -> None:
    assert arch.upward_imports(modules) == []


def test_qt_stays_in_the_napari_wing(arch, modules) -> None:
    assert arch.qt_outside_napari(modules) == []


def test_files_and_functions_stay_small(arch, modules) -> None:
    files, functions = arch.sizes(modules)
    assert [f for f in files if f[0] > arch.MAX_FILE_LINES] == []
    assert [f for f in functions if f[0] > arch.MAX_FUNCTION_LINES] == []


def test_the_checker_sees_a_planted_circle_and_an_upward_import(arch) -> None:
    low, high = "napari_imilia.slide.a", "napari_imilia.predict.b"
    planted = {low: arch.Module(low, Path("a"), {high}), high: arch.Module(high, Path("b"), {low})}
    assert arch.cycles(planted) == [[high, low]]
    assert arch.upward_imports(planted) == [f"{low} -> {high}"]
