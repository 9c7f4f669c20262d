"""The ``imilia`` command line: one sub-command per job, each defined in ``napari_imilia._cli``.

Every sub-command module exposes ``register(subparsers)``, which adds its parser and sets
``func(args) -> int`` on it. Errors a user can act on are raised as ``ImiliaError`` and printed
as one line, with exit status 2, and so are file-system refusals (a file where a folder is
expected, no permission, disk full); nothing else is caught.
"""

from __future__ import annotations

import argparse
import errno
import importlib
import sys
from collections.abc import Sequence
from pathlib import Path

from napari_imilia import __version__
from napari_imilia.errors import ImiliaError

#: OSError numbers that mean the user's paths or disk, not a bug: reported in one line.
USER_OS_ERRNOS = frozenset(
    {
        errno.ENOTDIR,
        errno.EISDIR,
        errno.EACCES,
        errno.EPERM,
        errno.EEXIST,
        errno.ENOSPC,
        errno.EROFS,
    }
)

#: Sub-commands whose --out is a folder: a file there is refused before any work is done.
FOLDER_OUT_COMMANDS = frozenset({"demo", "predict", "inspect", "cells", "score"})

# Order here is the order shown by ``imilia --help``.
COMMAND_MODULES: tuple[str, ...] = (
    "napari_imilia._cli.demo",
    "napari_imilia._cli.predict",
    "napari_imilia._cli.inspect",
    "napari_imilia._cli.cells",
    "napari_imilia._cli.info",
    "napari_imilia._cli.report",
    "napari_imilia._cli.study",
    "napari_imilia._cli.catalogues",
    "napari_imilia._cli.train",
    "napari_imilia._cli.score",
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
        _check_out_folder(args)
        return int(args.func(args) or 0)
    except ImiliaError as error:
        print(f"imilia {args.command}: error: {error}", file=sys.stderr)
        return 2
    except OSError as error:
        if error.errno not in USER_OS_ERRNOS:
            raise
        print(
            f"imilia {args.command}: error: {error.strerror}: {error.filename}; "
            "check the paths you passed (output folders must be folders you can write to)",
            file=sys.stderr,
        )
        return 2
    except KeyboardInterrupt:
        print(f"imilia {args.command}: interrupted", file=sys.stderr)
        return 130


def _check_out_folder(args: argparse.Namespace) -> None:
    out = getattr(args, "out", None)
    if args.command not in FOLDER_OUT_COMMANDS or out is None:
        return
    if Path(out).is_file():
        raise ImiliaError(f"--out {out} is a file; give a folder (it is created when missing)")
    from napari_imilia.trust.paths import check_writable_folder

    check_writable_folder(out, what="--out folder")


if __name__ == "__main__":
    sys.exit(main())
