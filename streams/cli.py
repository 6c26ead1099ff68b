"""``registry``: the command line of the credit registry.

This module only wires subcommands. Each entry of :data:`COMMANDS` names where a subcommand
lives: ``"package.module"`` (the module defines ``add_parser(subparsers)`` returning its
``argparse`` parser, and ``run(args) -> int``) or ``"package.module:NAME"`` (an object ``NAME``
in that module with the same two attributes). ``run`` returns the process exit status.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys
from collections.abc import Sequence
from typing import Any

#: (subcommand, where it lives). Registration point: add one line per subcommand.
COMMANDS: list[tuple[str, str]] = [
    ("publish", "streams.lender.jsonl:PUBLISH"),
    ("consent", "streams.lender.jsonl:CONSENT"),
    ("simulate", "streams.lender.simulator"),
    # --- registered by other components (uncomment / add as they land) ---
    ("worker", "streams.worker"),
    ("frequency", "streams.risk_cli:FREQUENCY"),
    ("lag", "streams.risk_cli:LAG"),
    ("lender", "streams.lender_admin:LENDER"),
    ("erase", "streams.erasure:ERASE"),
    ("report", "streams.report_cli:REPORT"),
]


def _load(target: str) -> Any:
    module_name, _, attribute = target.partition(":")
    module = importlib.import_module(module_name)
    return getattr(module, attribute) if attribute else module


def build_parser(commands: Sequence[tuple[str, str]] = COMMANDS) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="registry", description="National consumer-credit registry: lender and operator tools."
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="log Kafka client details")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name, target in commands:
        command = _load(target)
        sub = command.add_parser(subparsers) or subparsers.choices[name]
        sub.set_defaults(_run=command.run)
    return parser


def main(argv: Sequence[str] | None = None) -> None:
    """Parse ``argv`` (default ``sys.argv[1:]``), run the subcommand, exit with its status."""
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.WARNING,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    if not args.verbose:  # connection retries are reported by the commands themselves
        logging.getLogger("aiokafka").setLevel(logging.CRITICAL)
    try:
        code = int(args._run(args))
    except KeyboardInterrupt:
        code = 130
    sys.exit(code)


if __name__ == "__main__":
    main()
