"""``imilia extractors``: the tile feature extractors ``imilia predict --extractor`` can use.

Output: one extractor name per line (machine-readable), a blank line, then
``name: one-line description`` lines.
"""

from __future__ import annotations

import argparse


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "extractors",
        help="list the tile feature extractors (names first, then descriptions)",
        description=(
            "List the registered tile feature extractors: one name per line, a blank line, "
            "then 'name: description' lines. ViT extractors need a local weights file "
            "(--extractor-weights); imilia-stain-stats needs none. See docs/extractors.md."
        ),
    )
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from napari_imilia.extractors import list_extractors

    extractors = list_extractors()
    for name, _ in extractors:
        print(name)
    print()
    for name, description in extractors:
        print(f"{name}: {description}")
    return 0
