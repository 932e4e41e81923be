"""The stored procedures the lab answers: sp_executesql, the ODBC drivers' own catalog calls, msdb's job procedures.

Drivers call `sp_datatype_info_100` on connect (pyodbc's SQLGetTypeInfo) and
`sp_describe_undeclared_parameters` to describe a NULL parameter; the gate runs database-scoped
queries through `EXEC [db].sys.sp_executesql`; the active probes call msdb.dbo.sp_add_job & co.
(agent.py). Anything else is 2812, as for a procedure that does not exist.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from linkgate.lab.engine import agent, errors
from linkgate.lab.engine.schema import column
from linkgate.lab.results import Outcome, ResultSet, ReturnStatus, SqlError

if TYPE_CHECKING:
    from linkgate.lab.engine.session import EngineSession

Arguments = list[tuple[str, Any]]

DATATYPE_COLUMNS = tuple(
    column(n, t)
    for n, t in (
        ("TYPE_NAME", "sysname"),
        ("DATA_TYPE", "smallint"),
        ("PRECISION", "int"),
        ("LITERAL_PREFIX", "varchar(32)"),
        ("LITERAL_SUFFIX", "varchar(32)"),
        ("CREATE_PARAMS", "varchar(32)"),
        ("NULLABLE", "smallint"),
        ("CASE_SENSITIVE", "smallint"),
        ("SEARCHABLE", "smallint"),
        ("UNSIGNED_ATTRIBUTE", "smallint"),
        ("MONEY", "smallint"),
        ("AUTO_INCREMENT", "smallint"),
        ("LOCAL_TYPE_NAME", "sysname"),
        ("MINIMUM_SCALE", "smallint"),
        ("MAXIMUM_SCALE", "smallint"),
        ("SQL_DATA_TYPE", "smallint"),
        ("SQL_DATETIME_SUB", "smallint"),
        ("NUM_PREC_RADIX", "int"),
        ("INTERVAL_PRECISION", "smallint"),
        ("USERTYPE", "smallint"),
    )
)
# TYPE_NAME, DATA_TYPE, PRECISION, prefix, suffix, CREATE_PARAMS, CASE_SENSITIVE, SEARCHABLE, UNSIGNED,
# MONEY, MIN_SCALE, MAX_SCALE, SQL_DATA_TYPE, SQL_DATETIME_SUB, RADIX, USERTYPE
DATATYPES: tuple[tuple[Any, ...], ...] = (
    ("sql_variant", -150, 8000, None, None, None, 0, 2, None, 0, 0, 0, -150, None, 10, 0),
    ("uniqueidentifier", -11, 36, "'", "'", None, 0, 2, None, 0, None, None, -11, None, None, 0),
    ("ntext", -10, 1073741823, "N'", "'", None, 0, 1, None, 0, None, None, -10, None, None, 0),
    ("nvarchar", -9, 4000, "N'", "'", "max length", 0, 3, None, 0, None, None, -9, None, None, 0),
    ("sysname", -9, 128, "N'", "'", None, 0, 3, None, 0, None, None, -9, None, None, 256),
    ("nchar", -8, 4000, "N'", "'", "length", 0, 3, None, 0, None, None, -8, None, None, 0),
    ("bit", -7, 1, None, None, None, 0, 2, None, 0, 0, 0, -7, None, None, 16),
    ("tinyint", -6, 3, None, None, None, 0, 2, 1, 0, 0, 0, -6, None, 10, 5),
    ("bigint", -5, 19, None, None, None, 0, 2, 0, 0, 0, 0, -5, None, 10, 0),
    ("varbinary", -3, 8000, "0x", None, "max length", 0, 2, None, 0, None, None, -3, None, None, 4),
    ("binary", -2, 8000, "0x", None, "length", 0, 2, None, 0, None, None, -2, None, None, 3),
    ("char", 1, 8000, "'", "'", "length", 0, 3, None, 0, None, None, 1, None, None, 1),
    ("numeric", 2, 38, None, None, "precision,scale", 0, 2, 0, 0, 0, 38, 2, None, 10, 10),
    ("decimal", 3, 38, None, None, "precision,scale", 0, 2, 0, 0, 0, 38, 3, None, 10, 24),
    ("money", 3, 19, "$", None, None, 0, 2, 0, 1, 4, 4, 3, None, 10, 11),
    ("int", 4, 10, None, None, None, 0, 2, 0, 0, 0, 0, 4, None, 10, 7),
    ("smallint", 5, 5, None, None, None, 0, 2, 0, 0, 0, 0, 5, None, 10, 6),
    ("float", 6, 53, None, None, None, 0, 2, 0, 0, None, None, 6, None, 2, 8),
    ("real", 7, 24, None, None, None, 0, 2, 0, 0, None, None, 7, None, 2, 0),
    ("varchar", 12, 8000, "'", "'", "max length", 0, 3, None, 0, None, None, 12, None, None, 2),
    ("date", 91, 10, "'", "'", None, 0, 3, None, 0, None, None, 9, 1, None, 0),
    ("datetime2", 93, 27, "'", "'", "scale", 0, 3, None, 0, 0, 7, 9, 3, None, 0),
    ("datetime", 93, 23, "'", "'", None, 0, 3, None, 0, 3, 3, 9, 3, None, 12),
)
UNDECLARED_COLUMNS = tuple(
    column(n, t)
    for n, t in (
        ("parameter_ordinal", "int"),
        ("name", "sysname"),
        ("suggested_system_type_id", "int"),
        ("suggested_system_type_name", "nvarchar(256)"),
        ("suggested_max_length", "smallint"),
        ("suggested_precision", "tinyint"),
        ("suggested_scale", "tinyint"),
        ("suggested_user_type_id", "int"),
        ("suggested_user_type_database", "sysname"),
        ("suggested_user_type_schema", "sysname"),
        ("suggested_user_type_name", "sysname"),
        ("suggested_assembly_qualified_type_name", "nvarchar(4000)"),
        ("suggested_xml_collection_id", "int"),
        ("suggested_xml_collection_database", "sysname"),
        ("suggested_xml_collection_schema", "sysname"),
        ("suggested_xml_collection_name", "sysname"),
        ("suggested_is_xml_document", "bit"),
        ("suggested_is_case_sensitive", "bit"),
        ("suggested_is_fixed_length_type", "bit"),
        ("suggested_is_input", "bit"),
        ("suggested_is_output", "bit"),
        ("formal_parameter_name", "sysname"),
        ("suggested_tds_type_id", "int"),
        ("suggested_tds_length", "int"),
    )
)
DECLARATION = re.compile(r"@(\w+)\s+([\w]+(?:\s*\([^)]*\))?)(\s+OUT(?:PUT)?)?", re.IGNORECASE)


def call(session: EngineSession, written: str, arguments: Arguments) -> list[Outcome]:
    """Run procedure `written` ([db.][schema.]name, brackets allowed) with (name, value) arguments."""
    parts = [p.strip().strip('[]"') for p in written.split(".")]
    name = parts[-1].lower()
    database = parts[0] if len(parts) == 3 and parts[0] else None
    if name in agent.PROCEDURES and (len(parts) < 2 or parts[-2].lower() in ("", "dbo")):
        return _in(session, database, written, lambda: agent.call(session, name, arguments))
    handler = PROCEDURES.get(name)
    if handler is None or (len(parts) >= 2 and parts[-2] and parts[-2].lower() not in ("sys", "dbo")):
        raise errors.unknown_procedure(written.strip())
    if database is None:
        return [*handler(session, arguments), ReturnStatus(0)]
    if not session.has_database(database):
        raise errors.unknown_procedure(written.strip())
    with session.in_database(database):
        return [*handler(session, arguments), ReturnStatus(0)]


def _in(session: EngineSession, database: str | None, written: str, run: Callable[[], list[Outcome]]) -> list[Outcome]:
    """Run a procedure in `database` (a three-part name's) or the current one, ending with its return status."""
    if database is None:
        return [*run(), ReturnStatus(0)]
    if not session.has_database(database):
        raise errors.unknown_procedure(written.strip())
    with session.in_database(database):
        return [*run(), ReturnStatus(0)]


def _executesql(session: EngineSession, arguments: Arguments) -> list[Outcome]:
    if not arguments or not isinstance(arguments[0][1], str):
        raise SqlError(214, "Procedure expects parameter '@statement' of type 'ntext/nchar/nvarchar'.")
    statement = arguments[0][1]
    declared = (
        [m.group(1).lower() for m in DECLARATION.finditer(str(arguments[1][1] or ""))] if len(arguments) > 1 else []
    )
    values: dict[str, Any] = {}
    for i, (name, value) in enumerate(arguments[2:]):
        key = name.lstrip("@").lower() if name else (declared[i] if i < len(declared) else "")
        if key not in declared:
            raise SqlError(8178, f"The parameterized query expects the parameter '@{key}', which was not supplied.")
        values[key] = value
    out: list[Outcome] = []
    session.run_batch(statement, values, out)
    return out


def _datatype_row(t: tuple[Any, ...]) -> tuple[Any, ...]:
    """A DATATYPES entry as the result row: NULLABLE (always 1) after CREATE_PARAMS, AUTO_UNIQUE_VALUE
    (0 where UNSIGNED_ATTRIBUTE applies) and LOCAL_TYPE_NAME (the name) after MONEY, INTERVAL_PRECISION
    (NULL) before USERTYPE."""
    name, unsigned = t[0], t[8]
    return (*t[:6], 1, *t[6:10], 0 if unsigned is not None else None, name, *t[10:15], None, t[15])


DATATYPE_ROWS = tuple(_datatype_row(t) for t in DATATYPES)
"""The whole answer, built once: it is the same for every instance and every connection."""


def _datatype_info(session: EngineSession, arguments: Arguments) -> list[Outcome]:
    named = {n.lstrip("@").lower(): v for n, v in arguments if n}
    positional = [v for n, v in arguments if not n]
    value = named.get("data_type", positional[0] if positional else 0)
    wanted = int(value) if value not in (None, "") else 0
    rows = [row for row in DATATYPE_ROWS if not wanted or row[1] == wanted]
    return [ResultSet(DATATYPE_COLUMNS, rows)]


def _describe_undeclared(session: EngineSession, arguments: Arguments) -> list[Outcome]:
    text = str(arguments[0][1] or "") if arguments else ""
    declared = (
        {m.group(1).lower() for m in DECLARATION.finditer(str(arguments[1][1] or ""))} if len(arguments) > 1 else set()
    )
    seen: list[str] = []
    for match in re.finditer(r"(?<![@\w])@(\w+)", text):
        name = match.group(1)
        if name.lower() not in declared and name.lower() not in (s.lower() for s in seen):
            seen.append(name)
    rows = [
        (
            i,
            f"@{name}",
            231,
            "nvarchar(4000)",
            8000,
            0,
            0,
            None,
            None,
            None,
            None,
            None,
            None,
            None,
            None,
            None,
            False,
            False,
            False,
            True,
            False,
            f"@{name}",
            231,
            8000,
        )
        for i, name in enumerate(seen, start=1)
    ]
    return [ResultSet(UNDECLARED_COLUMNS, rows)]


PROCEDURES: dict[str, Callable[[EngineSession, Arguments], list[Outcome]]] = {
    "sp_executesql": _executesql,
    "sp_datatype_info_100": _datatype_info,
    "sp_datatype_info": _datatype_info,
    "sp_describe_undeclared_parameters": _describe_undeclared,
}
