"""``imilia models``: the MIL architectures that ``imilia train`` and checkpoints can use.

Output: one architecture name per line (machine-readable), a blank line, then
``name: one-line description`` lines.
"""

from __future__ import annotations

import argparse


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "models",
        help="list the MIL architectures (names first, then descriptions)",
        description=(
            "List the registered MIL architectures: one name per line, a blank line, then "
            "'name: description' lines. See docs/mil_models.md."
        ),
    )
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from napari_imilia.mil import list_models

    models = list_models()
    for name, _ in models:
        print(name)
    print()
    for name, description in models:
        print(f"{name}: {description}")
    return 0
