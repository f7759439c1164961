"""The ``caffevis`` command: one subcommand per module in :mod:`caffevis.commands`.

Each command module defines ``register(subparsers)`` which adds its parser and sets
``func`` (called with the parsed args; returns an exit code or None). Errors derived
from :class:`~caffevis.errors.CaffevisError` print as one line and exit with 2.
"""
from __future__ import annotations

import argparse
import importlib
import pkgutil
import sys

from . import commands
from .errors import CaffevisError


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="caffevis",
        description="Deep Visualization Toolbox and Zeiler & Fergus deconvnet for Caffe models on ONNX Runtime. "
                    "With no command: the live viewer on LeNet.")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for mod in sorted(m.name for m in pkgutil.iter_modules(commands.__path__)):
        importlib.import_module(f"{commands.__name__}.{mod}").register(sub)
    return parser


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    parser = build_parser()
    if not argv:
        argv = ["live"]  # the embedded default: the viewer on LeNet
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        code = args.func(args)
    except CaffevisError as err:
        print(f"caffevis {args.command}: error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"caffevis {args.command}: interrupted", file=sys.stderr)
        return 130
    return int(code or 0)


if __name__ == "__main__":
    sys.exit(main())
