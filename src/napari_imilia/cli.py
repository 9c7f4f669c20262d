"""The ``imilia`` command line: one sub-command per job, each defined in ``napari_imilia._cli``.

Every sub-command module exposes ``register(subparsers)``, which adds its parser and sets
``func(args) -> int`` on it. Errors a user can act on are raised as ``ImiliaError`` and printed
as one line, with exit status 2; nothing else is caught.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

from napari_imilia import __version__
from napari_imilia.errors import ImiliaError

# Order here is the order shown by ``imilia --help``.
COMMAND_MODULES: tuple[str, ...] = (
    "napari_imilia._cli.demo",
    "napari_imilia._cli.predict",
    "napari_imilia._cli.inspect",
    "napari_imilia._cli.catalogues",
    "napari_imilia._cli.train",
    "napari_imilia._cli.episeg",
)


def build_parser() -> argparse.ArgumentParser:
    """Build the top-level parser with every registered sub-command."""
    parser = argparse.ArgumentParser(
        prog="imilia",
        description="Interpretable MIL inflammation analysis of H&E whole-slide images.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for module_name in COMMAND_MODULES:
        importlib.import_module(module_name).register(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``imilia``; returns the process exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 1
    try:
        return int(args.func(args) or 0)
    except ImiliaError as error:
        print(f"imilia {args.command}: error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"imilia {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
