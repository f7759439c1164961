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


class DefaultsHelpFormatter(argparse.HelpFormatter):
    """Help that states every option's default: ``(default: X)`` is appended unless the help
    already says what the default is (e.g. "default: the settings' value"); an option with no
    default value shows ``(default: unset)``, a switch none (it is off unless given)."""

    def _get_help_string(self, action):
        text = action.help or ""
        if "default" in text.lower() or action.default is argparse.SUPPRESS or action.nargs == 0 or action.required \
                or not (action.option_strings or action.nargs in ("?", "*")):
            return text
        if action.default is None or action.default == []:
            shown = "unset"
        elif isinstance(action.default, (list, tuple)):
            shown = ",".join(map(str, action.default))
        else:
            shown = "%(default)s"
        return f"{text} (default: {shown})" if text else f"default: {shown}"


def with_defaults(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """Give ``parser`` a help formatter showing defaults, keeping its own formatter's layout."""
    base = parser.formatter_class
    if not issubclass(base, DefaultsHelpFormatter):
        parser.formatter_class = type(f"Defaults{base.__name__}", (DefaultsHelpFormatter, base), {})
    return parser


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="caffevis",
        description="Deep Visualization Toolbox and Zeiler & Fergus deconvnet for Caffe models on ONNX Runtime. "
                    "With no command: the live viewer on LeNet.")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for mod in sorted(m.name for m in pkgutil.iter_modules(commands.__path__)):
        importlib.import_module(f"{commands.__name__}.{mod}").register(sub)
    for command_parser in sub.choices.values():
        with_defaults(command_parser)
        command_parser.add_argument("--verbose", action="store_true",
                                    help="say which execution provider runs and why")
    return parser


def setup_logging(verbose: bool) -> None:
    """caffevis' own messages as ``caffevis: ...`` lines on stderr: warnings, and with ``--verbose``
    also which execution provider runs."""
    import logging

    class StderrHandler(logging.Handler):
        def emit(self, record):  # sys.stderr as it is now (tests and callers may replace it)
            print(self.format(record), file=sys.stderr)

    logger = logging.getLogger("caffevis")
    if not logger.handlers:
        handler = StderrHandler()
        handler.setFormatter(logging.Formatter("caffevis: %(message)s"))
        logger.addHandler(handler)
        logger.propagate = False
    logger.setLevel(logging.INFO if verbose else logging.WARNING)


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    parser = build_parser()
    if not argv:
        argv = ["live"]  # the embedded default: the viewer on LeNet
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    setup_logging(getattr(args, "verbose", False))
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
