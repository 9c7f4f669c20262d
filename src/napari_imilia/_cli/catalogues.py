"""``imilia models`` and ``imilia extractors``: what the registries hold.

Output of each: one name per line (machine-readable), a blank line, then
``name: one-line description`` lines.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable, Sequence

Catalogue = Callable[[], Sequence[tuple[str, str]]]


def _list_models() -> Sequence[tuple[str, str]]:
    from napari_imilia.mil import list_models

    return list_models()


def _list_extractors() -> Sequence[tuple[str, str]]:
    from napari_imilia.features.extractors import list_extractors

    return list_extractors()


def print_catalogue(rows: Sequence[tuple[str, str]]) -> int:
    """Print names, a blank line, then ``name: description`` lines; returns exit status 0."""
    for name, _ in rows:
        print(name)
    print()
    for name, description in rows:
        print(f"{name}: {description}")
    return 0


def _add(
    subparsers: argparse._SubParsersAction, name: str, what: str, more: str, catalogue: Catalogue
) -> None:
    parser = subparsers.add_parser(
        name,
        help=f"list the {what} (names first, then descriptions)",
        description=(
            f"List the registered {what}: one name per line, a blank line, then "
            f"'name: description' lines. {more}"
        ),
    )
    parser.set_defaults(func=lambda args: print_catalogue(catalogue()))


def register(subparsers: argparse._SubParsersAction) -> None:
    _add(subparsers, "models", "MIL architectures", "See docs/mil_models.md.", _list_models)
    _add(
        subparsers,
        "extractors",
        "tile feature extractors",
        "ViT extractors need a local weights file (--extractor-weights); imilia-stain-stats "
        "needs none. See docs/extractors.md.",
        _list_extractors,
    )
