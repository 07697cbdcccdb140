"""What every command shares: the exit codes, the one argument parser class, the one error line.

House rule (docs/formats.md, "Our conventions"): exit code 0 when a command did its job (any
verdict), 2 for bad input or an internal error with one line `vnncert: error: ...` on stderr and no
usage dump; 130 after SIGINT and 143 after SIGTERM (`cli/__init__.py`).
"""
from __future__ import annotations

import argparse
import sys

NAME = "vnncert"
EXIT_OK = 0
EXIT_ERROR = 2


def one_line(message: object) -> str:
    """The message with its whitespace runs (newlines included) folded to single spaces."""
    return " ".join(str(message).split())


def fail(message: object) -> int:
    """Print `vnncert: error: MESSAGE` (one line) on stderr; return EXIT_ERROR."""
    print(f"{NAME}: error: {one_line(message)}", file=sys.stderr)
    return EXIT_ERROR


class UsageError(SystemExit):
    """A command line argparse refused. Its one line is on stderr already; exit code 2."""

    def __init__(self, message: str):
        super().__init__(EXIT_ERROR)
        self.message = message


class Parser(argparse.ArgumentParser):
    """argparse with the house rule for bad arguments: one line `vnncert: error: ...`, exit 2, no usage.

    Subparsers inherit the class (argparse's add_subparsers uses the parent's class), so every
    subcommand follows it; the standalone parsers of the two verify forms are Parsers too.
    """

    def error(self, message):
        fail(message)
        raise UsageError(message)
