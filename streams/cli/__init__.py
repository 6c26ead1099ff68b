"""``registry``: the command line of the credit registry.

This module only wires subcommands, and imports a subcommand's module only when that
subcommand runs: ``registry --help`` and the parsers load no Kafka, HTTP or ClickHouse client
(``tests/unit/streams/cli/test_cli_imports.py`` holds that). Each entry of :data:`COMMANDS` names a
subcommand, its one-line help, and where it lives: ``"package.module"`` (the module defines
``add_parser(subparsers)`` returning its ``argparse`` parser, and ``run(args) -> int``) or
``"package.module:NAME"`` (an object ``NAME`` in that module with the same two attributes).
``run`` returns the process exit status, one of :class:`streams.cli.base.ExitCode`.

Whatever happens, the process prints no Python traceback: usage errors are one line and exit
64; an unexpected exception is one line and exit 70 (``-v`` logs the traceback).

The package owns the command line: parsing, printing and exit codes (:mod:`streams.cli.base`),
each subcommand's module, the worker's composition (:mod:`streams.cli.worker`, the stream, sink,
lag monitor and API in one process), the API-only process (:mod:`streams.cli.api`) and the local
stack of ``make run`` (:mod:`streams.cli.local_stack`). It may import every room of ``streams``;
only :mod:`streams.cli.worker` and :mod:`streams.cli.api` may import ``consumers`` (checked by
``lint-imports``). ``python -m streams.cli`` runs :func:`main`.
"""

from __future__ import annotations

import contextlib
import importlib
import logging
import os
import sys
from collections.abc import Sequence
from typing import Any

from streams.cli.base import ExitCode, Parser

#: (subcommand, where it lives, one-line help). Registration point: one line per subcommand.
COMMANDS: list[tuple[str, str, str]] = [
    ("publish", "streams.lender.jsonl:PUBLISH", "publish loan events from a JSON Lines file"),
    ("consent", "streams.lender.jsonl:CONSENT",
     "publish a borrower's consent grant or revocation"),
    ("simulate", "streams.lender.simulator",
     "publish a reproducible simulated loan history, then live events"),
    ("worker", "streams.cli.worker",
     "run the stream processor (several may run; they share the work)"),
    ("frequency", "streams.cli.risk:FREQUENCY",
     "the risk view of one borrower (draws, amounts, lenders over a window)"),
    ("lag", "streams.cli.risk:LAG", "consumer lag per group, topic and partition"),
    ("lender", "streams.cli.lender:LENDER",
     "provision lenders and the worker principal on the broker"),
    ("erase", "streams.cli.erase:ERASE",
     "erase one borrower's data (ClickHouse rows, consent in Redis)"),
    ("api", "streams.cli.api",
     "the risk API as a process of its own, against a ClickHouse server"),
    ("report", "streams.cli.report:REPORT",
     "the data subject's own report: what the registry holds on them"),
]


def _load(target: str) -> Any:
    module_name, _, attribute = target.partition(":")
    module = importlib.import_module(module_name)
    return getattr(module, attribute) if attribute else module


def _chosen(argv: Sequence[str], names: set[str]) -> str | None:
    """The subcommand named in ``argv`` (first word that is not an option), if any."""
    for word in argv:
        if not word.startswith("-"):
            return word if word in names else None
    return None


def build_parser(
    commands: Sequence[tuple[str, str, str]] = COMMANDS, *, load: Sequence[str] | None = None
) -> Parser:
    """The ``registry`` parser. Only the subcommands named in ``load`` (default: all) get
    their full parser, which imports their module; the others are listed by name and help."""
    parser = Parser(
        prog="registry", description="National consumer-credit registry: lender and operator "
        "tools. Exit codes: 0 ok, 64 usage, 65 bad input, 66 unreadable file, 69 service "
        "unavailable, 70 internal error, 75 not acknowledged (re-run), 77 permission denied, "
        "78 configuration refused.",
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="log Kafka client details")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name, target, help_text in commands:
        if load is None or name in load:
            command = _load(target)
            sub = command.add_parser(subparsers) or subparsers.choices[name]
            sub.set_defaults(_run=command.run)
        else:
            subparsers.add_parser(name, help=help_text)
    return parser


def main(argv: Sequence[str] | None = None) -> None:
    """Parse ``argv`` (default ``sys.argv[1:]``), run the subcommand, exit with its status."""
    argv = list(sys.argv[1:] if argv is None else argv)
    chosen = _chosen(argv, {name for name, _, _ in COMMANDS})
    try:
        parser = build_parser(load=[chosen] if chosen else [])
    except ImportError as exc:  # a broken installation, not a usage error
        print(f"registry {chosen}: cannot load the command ({exc})", file=sys.stderr)
        sys.exit(ExitCode.SOFTWARE)
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.WARNING,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    if not args.verbose:  # connection retries are reported by the commands themselves
        logging.getLogger("aiokafka").setLevel(logging.CRITICAL)
    try:
        code = int(args._run(args))
    except KeyboardInterrupt:
        code = ExitCode.INTERRUPTED
    except BrokenPipeError:  # the reader of our output went away (``| head``): not a bug
        with contextlib.suppress(OSError):
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        code = ExitCode.OK
    except Exception as exc:  # a bug: one line, never a traceback (unless -v)
        if args.verbose:
            logging.getLogger("registry").error("internal error", exc_info=True)
        print(f"registry {args.command}: internal error ({type(exc).__name__}); run with -v "
              "for the details", file=sys.stderr)
        code = ExitCode.SOFTWARE
    sys.exit(code)
