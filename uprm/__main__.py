"""`python -m uprm COMMAND ...`: thin wrappers over library functions, one module per command.

Each command module exposes ``register(subparsers)`` that adds its parser and sets ``func``.
"""
from __future__ import annotations

import argparse
import importlib
import sys

# command name -> module that registers it (imported lazily so `--help` stays fast)
COMMANDS = {
    "perceive": "uprm.perception.cli",
    "analyze": "uprm.analysis_cli",
    "evaluate": "uprm.evaluate_cli",
    "train": "uprm.training.cli",
    "compose": "uprm.compose.cli",
}


def build_parser(only: str | None = None) -> argparse.ArgumentParser:
    """The CLI parser; with ``only``, just that command is imported (a broken optional package then
    cannot take the other commands down with it)."""
    parser = argparse.ArgumentParser(
        prog="python -m uprm",
        description="UPRM command line: perceive, analyze, evaluate and train on surveillance video.",
        epilog="example: python -m uprm analyze clip.mp4 --json out/clip.json",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, module in COMMANDS.items():
        if only is not None and name != only:
            continue
        importlib.import_module(module).register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    command = argv[0] if argv and argv[0] in COMMANDS else None
    parser = build_parser(only=command)
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    return int(args.func(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
