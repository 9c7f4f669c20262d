"""`imilia` --help texts and one-line errors for bad output folders and settings."""

from __future__ import annotations

import argparse

import pytest

from napari_imilia.cli import build_parser, main


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


def test_subcommands_in_help_order_each_from_its_module() -> None:
    commands = _subparsers(build_parser())
    assert list(commands) == [
        "demo",
        "predict",
        "inspect",
        "cells",
        "info",
        "report",
        "study",
        "models",
        "extractors",
        "train",
        "score",
        "train-episeg",
    ]
    funcs = {name: sub.get_default("func") for name, sub in commands.items()}
    assert funcs["train"].__module__ == "napari_imilia._cli.train"
    assert funcs["score"].__module__ == "napari_imilia._cli.score"
    assert funcs["inspect"].__module__ == "napari_imilia._cli.inspect"


@pytest.mark.parametrize("command", ["predict", "inspect", "score", "demo"])
def test_out_that_is_a_file_is_one_line_error(tmp_path, capsys, command: str) -> None:
    afile = tmp_path / "results.txt"
    afile.write_text("not a folder\n")
    argv = {
        "predict": ["predict", str(tmp_path / "s.svs"), "--out", str(afile)],
        "inspect": ["inspect", str(tmp_path / "s.svs"), "--out", str(afile)],
        "score": ["score", "--model", "m", "--features", "f", "--out", str(afile)],
        "demo": ["demo", "--no-viewer", "--out", str(afile)],
    }[command]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert err == f"imilia {command}: error: --out {afile} is a file; " + (
        "give a folder (it is created when missing)"
    )


def test_file_system_refusal_is_one_line_error(tmp_path, capsys, monkeypatch) -> None:
    def refuse(args):
        raise NotADirectoryError(20, "Not a directory", str(tmp_path / "x" / "features"))

    parser_args = build_parser().parse_args(["models"])
    monkeypatch.setattr(parser_args, "func", refuse)
    monkeypatch.setattr("napari_imilia.cli.build_parser", lambda: _FixedParser(parser_args))
    assert main(["models"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "Not a directory" in err[0] and str(tmp_path / "x") in err[0]


class _FixedParser:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args

    def parse_args(self, argv):
        return self.args


@pytest.mark.parametrize(
    ("option", "value", "message"),
    [
        ("--lr", "-1", "--lr must be positive, got -1.0"),
        ("--weight-decay", "-0.1", "--weight-decay must be 0 or more, got -0.1"),
        ("--batch-size", "0", "--batch-size must be at least 1, got 0"),
    ],
)
def test_train_rejects_bad_optimiser_settings(tmp_path, capsys, option, value, message) -> None:
    argv = ["train", "--features", str(tmp_path), "--labels", str(tmp_path / "l.csv")]
    argv += ["--out", str(tmp_path / "m.safetensors"), option, value]
    assert main(argv) == 2
    assert capsys.readouterr().err.strip() == f"imilia train: error: {message}"


@pytest.mark.parametrize(
    ("option", "value", "message"),
    [
        ("--top", "0", "--top must be at least 1, got 0"),
        ("--mask-tiles", "-1", "--mask-tiles must be 0 or more, got -1"),
    ],
)
def test_demo_names_its_options_in_errors(tmp_path, capsys, option, value, message) -> None:
    assert main(["demo", "--no-viewer", "--out", str(tmp_path / "d"), option, value]) == 2
    assert capsys.readouterr().err.strip() == f"imilia demo: error: {message}"
    assert not (tmp_path / "d").exists()
