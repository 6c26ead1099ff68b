"""ClickHouse failures as types the sink can act on: back off, dead-letter rows, or give up.

Every driver error is turned into one of these at the facade (:mod:`consumers.clickhouse.client`)
by :func:`classify`, keeping the server's numeric error ``code`` and symbolic ``name`` when the
driver knows them (``None`` otherwise):

* :class:`ClickHouseUnavailable` (``retriable``): an outage. The server is unreachable,
  overloaded or short of a resource (connection refused/reset, network and socket errors,
  timeouts, memory limits, too many parts, too many simultaneous queries, read-only replicas,
  Keeper trouble). Retrying the same request later may work; nothing about the data is wrong.
* :class:`ClickHouseDataRefused` (not retriable, row-attributable): ClickHouse (or the driver,
  while encoding the Native block) refused the data of an insert: a type mismatch, a value out
  of range or unparsable, a NULL for a non-nullable column, a violated ``CHECK`` constraint.
  The same rows will be refused again; other rows of the batch would be taken.
* :class:`ClickHouseRefused` (not retriable, not row-attributable): the statement itself is
  refused whatever the data: syntax, unknown table/column/database/setting, authentication or
  access. Retrying cannot help and splitting the rows cannot either: an operator must act.

Codes that are in none of the tables below fall back on the driver's own class:
``OperationalError`` (network, HTTP retries exhausted) and anything unknown count as an outage,
the conservative choice: a misclassified outage stalls the sink visibly (lag monitor, failure
metric, log with code and name) and loses nothing, whereas diverting rows to dead letters on an
unknown error could not be undone automatically.
"""

from __future__ import annotations

import struct

from clickhouse_connect.driver import exceptions as driver

from schemas.errors import RegistryError

#: Outages: retrying later may work.
OUTAGE_CODES: dict[int, str] = {
    3: "UNEXPECTED_END_OF_FILE", 32: "ATTEMPT_TO_READ_AFTER_EOF", 159: "TIMEOUT_EXCEEDED",
    160: "TOO_SLOW", 164: "READONLY", 173: "CANNOT_ALLOCATE_MEMORY", 198: "DNS_ERROR",
    201: "QUOTA_EXCEEDED", 202: "TOO_MANY_SIMULTANEOUS_QUERIES", 203: "NO_FREE_CONNECTION",
    209: "SOCKET_TIMEOUT", 210: "NETWORK_ERROR", 225: "NO_ZOOKEEPER", 236: "ABORTED",
    241: "MEMORY_LIMIT_EXCEEDED", 242: "TABLE_IS_READ_ONLY", 243: "NOT_ENOUGH_SPACE",
    252: "TOO_MANY_PARTS", 279: "ALL_CONNECTION_TRIES_FAILED", 285: "TOO_FEW_LIVE_REPLICAS",
    286: "UNSATISFIED_QUORUM_FOR_PREVIOUS_WRITE", 319: "UNKNOWN_STATUS_OF_INSERT",
    394: "QUERY_WAS_CANCELLED", 425: "SYSTEM_ERROR", 439: "CANNOT_SCHEDULE_TASK",
    999: "KEEPER_EXCEPTION", 1000: "POCO_EXCEPTION",
}

#: Refusals of the data: the same rows fail again, other rows would be taken.
DATA_CODES: dict[int, str] = {
    6: "CANNOT_PARSE_TEXT", 26: "CANNOT_PARSE_QUOTED_STRING",
    27: "CANNOT_PARSE_INPUT_ASSERTION_FAILED", 38: "CANNOT_PARSE_DATE",
    41: "CANNOT_PARSE_DATETIME", 53: "TYPE_MISMATCH", 69: "ARGUMENT_OUT_OF_BOUND",
    70: "CANNOT_CONVERT_TYPE", 72: "CANNOT_PARSE_NUMBER", 117: "INCORRECT_DATA",
    131: "TOO_LARGE_STRING_SIZE", 190: "SIZES_OF_ARRAYS_DONT_MATCH",
    321: "VALUE_IS_OUT_OF_RANGE_OF_DATA_TYPE", 349: "CANNOT_INSERT_NULL_IN_ORDINARY_COLUMN",
    395: "FUNCTION_THROW_IF_VALUE_IS_NON_ZERO", 407: "DECIMAL_OVERFLOW",
    469: "VIOLATED_CONSTRAINT", 691: "UNKNOWN_ELEMENT_OF_ENUM",
}

#: Refusals of the statement: neither retrying nor splitting the rows helps.
STATEMENT_CODES: dict[int, str] = {
    8: "THERE_IS_NO_COLUMN", 10: "NOT_FOUND_COLUMN_IN_BLOCK", 16: "NO_SUCH_COLUMN_IN_TABLE",
    20: "NUMBER_OF_COLUMNS_DOESNT_MATCH", 42: "NUMBER_OF_ARGUMENTS_DOESNT_MATCH",
    43: "ILLEGAL_TYPE_OF_ARGUMENT", 44: "ILLEGAL_COLUMN", 46: "UNKNOWN_FUNCTION",
    47: "UNKNOWN_IDENTIFIER", 48: "NOT_IMPLEMENTED", 57: "TABLE_ALREADY_EXISTS",
    60: "UNKNOWN_TABLE", 62: "SYNTAX_ERROR", 81: "UNKNOWN_DATABASE", 115: "UNKNOWN_SETTING",
    192: "UNKNOWN_USER", 193: "WRONG_PASSWORD", 194: "REQUIRED_PASSWORD",
    195: "IP_ADDRESS_NOT_ALLOWED", 497: "ACCESS_DENIED", 516: "AUTHENTICATION_FAILED",
}

#: TOO_MANY_PARTS also reports an insert block that spans too many partitions
#: (``max_partitions_per_insert_block``): that is the shape of the data, and a smaller batch
#: is taken, so it is a data refusal (bisection resolves it without dead-lettering a row).
_TOO_MANY_PARTITIONS = "partitions for single insert block"

#: Exceptions the driver raises while encoding rows into a Native block (a value that does not
#: fit the column type): refused data in an insert, a refused call (a bug) anywhere else.
_ENCODING_ERRORS = (ValueError, TypeError, OverflowError, struct.error)


class ClickHouseError(RegistryError):
    """Base of ClickHouse failures seen by the registry; ``code``/``name`` are the server's."""

    retriable: bool = False

    def __init__(self, message: str, *, code: int | None = None,
                 name: str | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.name = name

    @property
    def label(self) -> str:
        """``CODE NAME`` (or the parts known), for logs and dead-letter rows."""
        return " ".join(str(part) for part in (self.code, self.name) if part is not None)


class ClickHouseUnavailable(ClickHouseError):
    """The server or embedded engine did not take the request; trying again may work."""

    retriable = True


class ClickHouseRefused(ClickHouseError):
    """ClickHouse refused the statement; the same statement will be refused again."""


class ClickHouseDataRefused(ClickHouseRefused):
    """ClickHouse (or the driver encoding the block) refused the data of an insert.

    Some rows are at fault: the same rows are refused again, a batch without them is taken.
    """


class MigrationError(ClickHouseError):
    """A migration file could not be applied; start-up stops here."""


def classify(exc: BaseException, *, inserting: bool = False) -> ClickHouseError:
    """The registry's type for a driver failure ``exc`` (``inserting``: raised by an insert).

    Decided by the server's error code when the driver has one (tables above), else by the
    driver's exception class; the code and symbolic name are kept on the result.
    """
    if isinstance(exc, ClickHouseError):
        return exc
    code = getattr(exc, "code", None)
    code = code if isinstance(code, int) else None
    name = getattr(exc, "name", None)
    name = name if isinstance(name, str) and name else None
    kind = type(exc).__name__
    message = f"{kind}: {exc}"
    if code is not None:
        name = name or OUTAGE_CODES.get(code) or DATA_CODES.get(code) or STATEMENT_CODES.get(code)
        if code == 252 and _TOO_MANY_PARTITIONS in str(exc).lower():
            return ClickHouseDataRefused(message, code=code, name=name)
        if code in OUTAGE_CODES:
            return ClickHouseUnavailable(message, code=code, name=name)
        if code in DATA_CODES:
            return ClickHouseDataRefused(message, code=code, name=name)
        if code in STATEMENT_CODES:
            return ClickHouseRefused(message, code=code, name=name)
        return ClickHouseUnavailable(message, code=code, name=name)
    # no server code: the driver's class (clickhouse_connect.driver.exceptions) decides
    if isinstance(exc, driver.DataError) or (inserting and isinstance(exc, _ENCODING_ERRORS)):
        return ClickHouseDataRefused(message, name=name or kind)
    if isinstance(exc, (driver.ProgrammingError, driver.NotSupportedError, *_ENCODING_ERRORS)):
        return ClickHouseRefused(message, name=name or kind)
    return ClickHouseUnavailable(message, name=name or kind)
