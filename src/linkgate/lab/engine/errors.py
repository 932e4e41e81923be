"""SQL Server's errors, by number, and the mapping from DuckDB's and sqlglot's failures to them.

Clients react to the number, state and class (the driver derives SQLSTATE from them: 208 → 42S02,
229 → 42000, 18456 → 28000), so every failure the lab produces carries SQL Server's own triple.
"""

from __future__ import annotations

import re
from collections.abc import Callable

import duckdb
from sqlglot.errors import ParseError, TokenError

from linkgate.lab.results import SqlError

SqlErrorFactory = Callable[[re.Match[str]], SqlError]

DUCKDB_TYPES = {
    "INT32": "int",
    "INT64": "bigint",
    "INT16": "smallint",
    "INT8": "tinyint",
    "UINT8": "tinyint",
    "BOOL": "bit",
    "DOUBLE": "float",
    "FLOAT": "real",
    "TIMESTAMP": "datetime",
    "DATE": "date",
    "UUID": "uniqueidentifier",
    "BLOB": "varbinary",
}


STATEMENT_TERMINATING = frozenset({229, 297, 300})
"""Permission errors: SQL Server ends the statement and runs the batch on (Erland Sommarskog, "Error and
Transaction Handling in SQL Server", part 2: statement-termination). Every other error the lab raises ends
the batch: compile errors before anything ran, 208 (deferred name resolution) and run-time ones where they
happen."""


def statement_terminating(items: tuple[SqlError, ...] | list[SqlError]) -> bool:
    """Whether a statement that failed with `items` lets the rest of its batch run."""
    return bool(items) and all(e.number in STATEMENT_TERMINATING for e in items)


COMPILE_ERRORS = frozenset({102, 105, 137, 156, 174, 195, 207, 208, 4104})
"""Errors SQL Server raises while compiling a scope, or a statement of it when first reached (deferred name
resolution: 208): syntax, unclosed quote, undeclared variable, unknown function or SET option, argument
count, invalid column, invalid object, unbound multi-part identifier. Inside dynamic SQL (EXEC(N'…'),
sp_executesql) they end only that scope and the batch that ran it goes on (Sommarskog, part 2:
scope-abortion); at the top level the scope is the batch."""


def scope_aborting(items: tuple[SqlError, ...] | list[SqlError]) -> bool:
    """Whether a statement that failed at run time with `items` ends only its scope (see COMPILE_ERRORS)."""
    return bool(items) and all(e.number in COMPILE_ERRORS for e in items)


def invalid_object(name: str) -> SqlError:
    return SqlError(208, f"Invalid object name '{name}'.")


def invalid_column(name: str) -> SqlError:
    return SqlError(207, f"Invalid column name '{name}'.")


def syntax_error(near: str) -> SqlError:
    return SqlError(102, f"Incorrect syntax near '{near}'.", severity=15)


def unknown_procedure(name: str) -> SqlError:
    return SqlError(2812, f"Could not find stored procedure '{name}'.", state=62)


def unknown_function(name: str) -> SqlError:
    return SqlError(195, f"'{name}' is not a recognized built-in function name.", severity=15, state=10)


def wrong_argument_count(function: str) -> SqlError:
    return SqlError(174, f"The {function.lower()} function requires a different number of arguments.", severity=15)


def undeclared_variable(name: str) -> SqlError:
    return SqlError(137, f'Must declare the scalar variable "@{name}".', severity=15, state=2)


def unknown_database(name: str) -> SqlError:
    return SqlError(911, f"Database '{name}' does not exist. Make sure that the name is entered correctly.")


def no_database_access(login: str, database: str) -> SqlError:
    return SqlError(
        916,
        f'The server principal "{login}" is not able to access the database "{database}" under '
        "the current security context.",
        severity=14,
    )


def view_server_state_denied() -> list[SqlError]:
    """What SQL Server sends when a login without VIEW SERVER STATE reads a server DMV: 300, then 297."""
    return [
        SqlError(300, "VIEW SERVER STATE permission was denied on object 'server', database 'master'.", severity=14),
        SqlError(297, "The user does not have permission to perform this action."),
    ]


def select_denied(table: str, database: str, schema: str) -> SqlError:
    return SqlError(
        229,
        f"The SELECT permission was denied on the object '{table}', database '{database}', schema '{schema}'.",
        severity=14,
        state=5,
    )


def read_only_database(database: str) -> SqlError:
    """The lab's databases only answer reads: a write fails as on a read-only database."""
    return SqlError(3906, f'Failed to update database "{database}" because the database is read-only.')


def login_failed(user: str, state: int) -> SqlError:
    """18456; state 5 unknown login, 7 disabled, 8 wrong password (the client sees only the message)."""
    return SqlError(18456, f"Login failed for user '{user}'.", state=state, severity=14)


def cannot_open_database(database: str) -> SqlError:
    return SqlError(4060, f'Cannot open database "{database}" requested by the login. The login failed.', severity=11)


def from_sqlglot(e: ParseError | TokenError, text: str) -> SqlError:
    """A statement sqlglot cannot parse: 102 near the offending token."""
    if isinstance(e, ParseError) and e.errors:
        near = str(e.errors[0].get("highlight") or "").strip()
        if near:
            return syntax_error(near)
    words = text.split()
    return syntax_error(words[-1] if words else text)


def from_duckdb(e: duckdb.Error) -> SqlError:
    """Map a DuckDB failure to the SQL Server error a real server gives for the same mistake."""
    message = str(e).splitlines()[0]
    patterns: list[tuple[str, type[duckdb.Error], SqlErrorFactory]] = [
        (r'Referenced column "([^"]+)" not found', duckdb.BinderException, lambda m: invalid_column(m[1])),
        (
            r'(?:Table|Values list) "[^"]+" does not have a column named "([^"]+)"',
            duckdb.BinderException,
            lambda m: invalid_column(m[1]),
        ),
        (
            r'Referenced table "([^"]+)" not found',
            duckdb.BinderException,
            lambda m: SqlError(4104, f'The multi-part identifier "{m[1]}" could not be bound.'),
        ),
        (r"Table with name (\S+) does not exist", duckdb.CatalogException, lambda m: invalid_object(m[1])),
        (r"Function with name (\w+) does not exist", duckdb.CatalogException, lambda m: unknown_function(m[1])),
        (
            r"Could not convert string '([^']*)' to (\w+)",
            duckdb.ConversionException,
            lambda m: SqlError(
                245,
                f"Conversion failed when converting the varchar value '{m[1]}' to data type "
                f"{DUCKDB_TYPES.get(m[2], m[2].lower())}.",
            ),
        ),
        (r"Division by zero", duckdb.Error, lambda m: SqlError(8134, "Divide by zero error encountered.")),
        (r'syntax error at or near "([^"]*)"', duckdb.ParserException, lambda m: syntax_error(m[1])),
        (r"syntax error at end of input", duckdb.ParserException, lambda m: syntax_error("")),
    ]
    for pattern, kind, make in patterns:
        match = re.search(pattern, message)
        if match and isinstance(e, kind):
            return make(match)
    if isinstance(e, duckdb.ConversionException | duckdb.OutOfRangeException):
        return SqlError(8115, "Arithmetic overflow error converting expression to data type.")
    if isinstance(e, duckdb.BinderException):
        return SqlError(206, f"Operand type clash: {message.removeprefix('Binder Error: ')}")
    return SqlError(50000, f"The lab cannot evaluate this statement: {message}")
