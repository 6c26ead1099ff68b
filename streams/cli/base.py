"""What every ``registry`` subcommand shares: exit codes, the ``SubCommand`` pair, the
argument parser that reports usage errors in one line, and ASCII-only number arguments.

This module imports nothing beyond the standard library, so ``registry --help`` and the
parser definitions of every subcommand stay fast (no Kafka, HTTP or ClickHouse client).

Exit codes follow BSD ``sysexits.h``, the same for every subcommand:

====  ===============  =======================================================================
code  name             meaning
====  ===============  =======================================================================
0     OK               done: every record published / the question answered
64    USAGE            the command line is wrong (unknown option, bad value, bad lender id)
65    DATA_ERR         the input was refused: a bad line in ``publish`` (the good lines ARE
                       published), an invalid consent, an id or window the API refused (400)
66    NO_INPUT         the input file cannot be opened or read
69    UNAVAILABLE      Kafka or the worker's API cannot be reached, or answered 5xx
70    SOFTWARE         an internal error (a bug): one line on stderr, ``-v`` shows details
75    TEMP_FAIL        the broker did not acknowledge every record: run the same file again
                       (the registry de-duplicates by event id)
77    NO_PERM          the API refused the token (401/403) or the broker refused the operation
130   INTERRUPTED      Ctrl-C
====  ===============  =======================================================================
"""

from __future__ import annotations

import argparse
import enum
import sys
from collections.abc import Callable
from typing import Any, NamedTuple, NoReturn


class ExitCode(enum.IntEnum):
    """Process exit status of every ``registry`` subcommand (BSD ``sysexits.h`` values)."""

    OK = 0
    USAGE = 64
    DATA_ERR = 65
    NO_INPUT = 66
    UNAVAILABLE = 69
    SOFTWARE = 70
    TEMP_FAIL = 75
    NO_PERM = 77
    CONFIG = 78
    INTERRUPTED = 130


class SubCommand(NamedTuple):
    """What ``streams.cli`` wires: ``add_parser(subparsers)`` and ``run(args) -> exit code``."""

    add_parser: Callable[[Any], argparse.ArgumentParser]
    run: Callable[[argparse.Namespace], int]


class Parser(argparse.ArgumentParser):
    """An ``ArgumentParser`` whose errors are ONE line on stderr and exit :attr:`ExitCode.USAGE`.

    (argparse's own default prints the whole usage block and exits 2.)
    """

    def error(self, message: str) -> NoReturn:
        sys.stderr.write(f"{self.prog}: {message} (see {self.prog} --help)\n")
        sys.exit(ExitCode.USAGE)


def fail(command: str, message: str, code: ExitCode) -> int:
    """Print ``registry COMMAND: MESSAGE`` on stderr; return ``code`` for ``run`` to return."""
    print(f"registry {command}: {message}", file=sys.stderr)
    return int(code)


def lender_problem(lender_id: str) -> str | None:
    """Why ``lender_id`` is not a valid lender id, without repeating it (a user may paste a
    national id there by mistake); None when it is valid."""
    from schemas.errors import InvalidLenderId
    from schemas.topics import LENDER_ID_PATTERN, check_lender_id

    try:
        check_lender_id(lender_id)
    except InvalidLenderId:
        return f"the lender id must match {LENDER_ID_PATTERN} (lower case, digits, - _)"
    return None


def ascii_int(text: str) -> int:
    """An ``argparse`` type: a base-10 integer in ASCII digits (``int()`` would also take
    full-width or other Unicode digits). Raises ``ArgumentTypeError``."""
    body = text.strip()
    if not body.isascii() or not body.lstrip("+-").isdigit():
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number in ASCII digits")
    return int(body)


def ascii_float(text: str) -> float:
    """An ``argparse`` type: a finite decimal number in ASCII (no ``nan``/``inf``, no
    full-width digits). Raises ``ArgumentTypeError``."""
    body = text.strip()
    ok = body.isascii() and any(c.isdigit() for c in body)
    try:
        value = float(body) if ok else None
    except ValueError:
        value = None
    if value is None or value != value or value in (float("inf"), float("-inf")):
        raise argparse.ArgumentTypeError(f"{text!r} is not a number in ASCII digits")
    return value
