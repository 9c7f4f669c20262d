"""Every option of every `imilia` subcommand says what it does in --help."""

from __future__ import annotations

import argparse

from napari_imilia.cli import build_parser


def _subparsers(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return dict(action.choices)
    return {}


def test_every_subcommand_option_has_help_text() -> None:
    commands = _subparsers(build_parser())
    assert {"predict", "inspect", "score", "train", "demo"} <= set(commands)
    undocumented = [
        f"{name} {action.option_strings[0]}"
        for name, sub in commands.items()
        for action in sub._actions
        if action.option_strings and not action.help
    ]
    assert undocumented == []
