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
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m uprm",
        description="UPRM command line: perceive, analyze, evaluate and train on surveillance video.",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, module in COMMANDS.items():
        try:
            importlib.import_module(module).register(sub)
        except ModuleNotFoundError as exc:
            if exc.name != module:
                raise
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    return int(args.func(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
