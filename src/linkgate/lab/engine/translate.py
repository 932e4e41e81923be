"""T-SQL statement → DuckDB SQL (sqlglot AST rewrites), with the SQL Server type of each result column.

`translate(text, database)` is pure and cached by (text, current database): every instance of the
process shares the work. What depends on the instance or session is read at run time through DuckDB
variables (`getvariable('lg_i')` = the instance, `lg_login`, `lg_spid`…), named parameters, or the
`TableRef`s the caller checks (existence for this version, permissions).

Rewrites, each for a documented difference between T-SQL and DuckDB:
- system views → derived tables over the shared storage filtered to the instance (and database);
  `#temp` → the session's DuckDB temp table; unknown names → 208 with the name as written;
- `@@VERSION` & co. → session variables; `@P1`/`@var` → named parameters;
- SERVERPROPERTY, IS_SRVROLEMEMBER, IS_ROLEMEMBER, HAS_PERMS_BY_NAME, DB_ID, DB_NAME, SUSER_SNAME,
  OBJECT_ID, GETDATE… → lookups of the instance's rows; unknown functions → 195;
- `+` on strings → `||`; `/` on integers → `//`; BIT → BOOLEAN; CONVERT(varchar, binary, 1) → '0x…'.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Literal

import sqlglot
from sqlglot import exp
from sqlglot.errors import ParseError, TokenError

from linkgate.lab.engine import errors
from linkgate.lab.engine.coltypes import CHAR_TYPES, INTEGER_TYPES, duckdb_type, from_datatype, named
from linkgate.lab.engine.rows import FIXED_SERVER_ROLES
from linkgate.lab.engine.schema import OWNED_TABLES, TABLES, SystemTable, find
from linkgate.lab.engine.usage import Usage
from linkgate.lab.results import Column, SqlType

Kind = Literal["select", "create_temp", "drop_temp", "insert_temp", "write"]


@dataclass(frozen=True)
class TableRef:
    """A system table a statement reads: checked per instance before it runs."""

    written: str
    database: str
    """The database it resolves in (explicit, or the current one)."""
    table: SystemTable


@dataclass(frozen=True)
class TempColumn:
    """A column of a session's #temp table: its type is known only to the session."""

    table: str
    column: str


@dataclass(frozen=True)
class VariableColumn:
    """A @variable: its declared type is known only to the session."""

    name: str


Hint = Column | TempColumn | VariableColumn | None


@dataclass(frozen=True)
class Translated:
    kind: Kind
    sql: str
    tables: tuple[TableRef, ...] = ()
    names: tuple[str | None, ...] = ()
    """Result column names as SQL Server sends them ('' for an expression); None: DuckDB's (a * expansion)."""
    hints: tuple[Hint, ...] = ()
    params: tuple[str, ...] = ()
    """@names the statement uses (lower case, without @)."""
    lookups: tuple[tuple[str, str, str], ...] = ()
    """(parameter, kind, literal): OBJECT_ID(N'…') and SERVERPROPERTY('…') calls the session resolves and binds."""
    temp_table: str | None = None
    temp_columns: tuple[Column, ...] = ()
    if_exists: bool = False
    storages: tuple[str, ...] = ()
    """The hidden storage tables the DuckDB statement reads (loaded on first use)."""
    variables: tuple[str, ...] = ()
    """The session variables (getvariable) the DuckDB statement reads: set on the connection before it runs."""
    deterministic: bool = False
    """Whether the same rows, values and variables always give the same result (no clock, no randomness,
    no #temp table): only then may a result be reused (catalog.py)."""


GLOBALS: dict[str, tuple[str, Column]] = {
    "version": ("lg_version", Column("", SqlType.NVARCHAR, 300)),
    "servername": ("lg_servername", Column("", SqlType.NVARCHAR, 128)),
    "servicename": ("lg_servicename", Column("", SqlType.NVARCHAR, 128)),
    "spid": ("lg_spid", Column("", SqlType.SMALLINT)),
    "language": ("lg_language", Column("", SqlType.NVARCHAR, 128)),
    "lock_timeout": ("lg_lock_timeout", Column("", SqlType.INT)),
}
CONSTANT_GLOBALS: dict[str, tuple[int, Column]] = {
    "trancount": (0, Column("", SqlType.INT)),
    "error": (0, Column("", SqlType.INT)),
    "rowcount": (0, Column("", SqlType.INT)),
    "max_precision": (38, Column("", SqlType.TINYINT)),
    "langid": (0, Column("", SqlType.SMALLINT)),
    "datefirst": (7, Column("", SqlType.TINYINT)),
    "textsize": (2147483647, Column("", SqlType.INT)),
}
SYSNAME = Column("", SqlType.NVARCHAR, 128)
INT = Column("", SqlType.INT)
FUNCTION_TYPES: dict[str, Column] = {
    "SERVERPROPERTY": Column("", SqlType.SQL_VARIANT),
    "IS_SRVROLEMEMBER": INT,
    "IS_ROLEMEMBER": INT,
    "HAS_PERMS_BY_NAME": INT,
    "DB_ID": INT,
    "DB_NAME": SYSNAME,
    "SUSER_SNAME": SYSNAME,
    "SUSER_NAME": SYSNAME,
    "ORIGINAL_LOGIN": SYSNAME,
    "USER_NAME": SYSNAME,
    "HOST_NAME": SYSNAME,
    "APP_NAME": SYSNAME,
    "GETUTCDATE": Column("", SqlType.DATETIME),
    "SYSDATETIME": Column("", SqlType.DATETIME2, None, None, 7),
    "SYSUTCDATETIME": Column("", SqlType.DATETIME2, None, None, 7),
}
STRING_FUNCTIONS = (exp.Substring, exp.Upper, exp.Lower, exp.Trim, exp.Concat, exp.Right, exp.Left, exp.DPipe)
T_SQL_FUNCTIONS = frozenset(
    {
        "Abs",
        "Ascii",
        "Avg",
        "Case",
        "Cast",
        "Ceil",
        "Chr",
        "Coalesce",
        "Concat",
        "ConcatWs",
        "Convert",
        "Count",
        "CurrentSchema",
        "CurrentTimestamp",
        "CurrentTimestampLTZ",
        "CurrentUser",
        "DateAdd",
        "DateDiff",
        "DateFromParts",
        "Day",
        "DenseRank",
        "Exists",
        "Exp",
        "Extract",
        "FirstValue",
        "Floor",
        "Greatest",
        "GroupConcat",
        "If",
        "JSONExtractScalar",
        "Lag",
        "LastDay",
        "Lead",
        "Least",
        "Left",
        "Length",
        "Ln",
        "Lower",
        "Max",
        "Min",
        "Month",
        "Nullif",
        "NumberToStr",
        "ObjectId",
        "Pi",
        "Pow",
        "Rand",
        "Rank",
        "Repeat",
        "Replace",
        "Reverse",
        "Right",
        "Round",
        "RowNumber",
        "SHA",
        "Sign",
        "Space",
        "Sqrt",
        "Stddev",
        "StrPosition",
        "Stuff",
        "Substring",
        "Sum",
        "TimeStrToTime",
        "TimeToStr",
        "Translate",
        "Trim",
        "TryCast",
        "TsOrDsToDate",
        "Unicode",
        "Upper",
        "Uuid",
        "Year",
    }
)
"""The sqlglot nodes T-SQL's own built-in functions parse into; any other function is DuckDB's, not SQL Server's."""
_OPERATORS = (exp.Connector, exp.Binary, exp.Predicate, exp.Unary)
CONVERT_STYLES = {
    120: "%Y-%m-%d %H:%M:%S",
    121: "%Y-%m-%d %H:%M:%S.%g",
    23: "%Y-%m-%d",
    112: "%Y%m%d",
    126: "%Y-%m-%dT%H:%M:%S.%g",
    108: "%H:%M:%S",
    101: "%m/%d/%Y",
    103: "%d/%m/%Y",
}


def translate(text: str, database: str) -> Translated:
    """Translate one statement for a session whose current database is `database` (SqlError on failure)."""
    return _translate(text, database.lower())


@functools.lru_cache(maxsize=4096)
def _translate(text: str, database: str) -> Translated:
    try:
        tree = sqlglot.parse_one(text, read="tsql")
    except (ParseError, TokenError) as e:
        raise errors.from_sqlglot(e, text) from None
    return _Translator(database).run(tree)


@dataclass
class _Source:
    table: SystemTable | None = None
    temp: str | None = None
    derived: dict[str, Hint] = field(default_factory=dict)

    def column(self, name: str) -> tuple[bool, Hint]:
        lowered = name.lower()
        if self.table is not None:
            c = self.table.column(name)
            return (c is not None), c
        if self.temp is not None:
            return True, TempColumn(self.temp, lowered)
        return (lowered in self.derived), self.derived.get(lowered)


class _Translator:
    def __init__(self, database: str) -> None:
        self.database = database
        self.tables: list[TableRef] = []
        self.params: list[str] = []
        self.lookups: list[tuple[str, str, str]] = []
        self.ctes: set[str] = set()
        self.scopes: dict[int, dict[str, _Source]] = {}

    # ---- entry

    def run(self, tree: exp.Expr) -> Translated:
        if isinstance(tree, exp.Query) and not tree.args.get("into"):
            return self.select(tree)
        if isinstance(tree, exp.Create) and str(tree.args.get("kind")).upper() == "TABLE":
            return self.create_temp(tree)
        if isinstance(tree, exp.Drop) and str(tree.args.get("kind")).upper() == "TABLE":
            tables = tree.args.get("expressions") or tree.args.get("tables") or []
            if len(tables) == 1 and _is_temp(tables[0]):
                return Translated(
                    "drop_temp", "", temp_table=_temp_name(tables[0]), if_exists=bool(tree.args.get("exists"))
                )
        if isinstance(tree, exp.Insert):
            target = tree.this.this if isinstance(tree.this, exp.Schema) else tree.this
            if isinstance(target, exp.Table) and _is_temp(target):
                return self.insert_temp(tree, target)
        return Translated("write", tree.sql(dialect="tsql"))

    def select(self, tree: exp.Query) -> Translated:
        self.ctes = {cte.alias_or_name.lower() for cte in tree.find_all(exp.CTE)}
        first = _first_select(tree)
        names: list[str | None] = []
        hints: list[Hint] = []
        for projection in first.expressions if first else []:
            if isinstance(projection, exp.Star) or (
                isinstance(projection, exp.Column) and isinstance(projection.this, exp.Star)
            ):
                names.append(None)
                hints.append(None)
                continue
            names.append(projection.alias_or_name if isinstance(projection, exp.Alias | exp.Column) else "")
            hints.append(self.infer(projection))
        self.rewrite(tree)
        sql = tree.sql(dialect="duckdb")
        return Translated(
            "select",
            sql,
            tuple(self.tables),
            tuple(names),
            tuple(hints),
            tuple(dict.fromkeys(self.params)),
            tuple(self.lookups),
            storages=_storages(sql),
            variables=_variables(sql),
            deterministic=_deterministic(sql),
        )

    def create_temp(self, tree: exp.Create) -> Translated:
        schema = tree.this
        table = schema.this if isinstance(schema, exp.Schema) else schema
        if not isinstance(table, exp.Table) or not _is_temp(table) or not isinstance(schema, exp.Schema):
            return Translated("write", tree.sql(dialect="tsql"))
        columns = []
        for definition in schema.expressions:
            if isinstance(definition, exp.ColumnDef) and isinstance(definition.args.get("kind"), exp.DataType):
                declared = from_datatype(definition.args["kind"]) or Column("", SqlType.NVARCHAR, 4000)
                columns.append(named(declared, definition.name))
        name = _temp_name(table)
        definition = ", ".join(f'"{c.name}" {duckdb_type(c)}' for c in columns)
        return Translated(
            "create_temp", f'CREATE TEMP TABLE "{name}" ({definition})', temp_table=name, temp_columns=tuple(columns)
        )

    def insert_temp(self, tree: exp.Insert, target: exp.Table) -> Translated:
        name = _temp_name(target)
        target.replace(_temp_table(name))
        source = tree.expression
        if isinstance(source, exp.Query):
            self.ctes = {cte.alias_or_name.lower() for cte in source.find_all(exp.CTE)}
        self.rewrite(tree)
        sql = tree.sql(dialect="duckdb")
        return Translated(
            "insert_temp",
            sql,
            tuple(self.tables),
            params=tuple(dict.fromkeys(self.params)),
            lookups=tuple(self.lookups),
            temp_table=name,
            storages=_storages(sql),
            variables=_variables(sql),
        )

    # ---- result types

    def scope(self, select: exp.Select) -> dict[str, _Source]:
        key = id(select)
        if key not in self.scopes:
            sources: dict[str, _Source] = {}
            items = [select.args.get("from_") or select.args.get("from")]
            items += list(select.args.get("joins") or [])
            for item in items:
                node = item.this if isinstance(item, exp.From | exp.Join) else None
                if isinstance(node, exp.Table):
                    sources[node.alias_or_name.lower()] = self.source_of_table(node)
                elif isinstance(node, exp.Subquery) and isinstance(node.this, exp.Query):
                    sources[node.alias_or_name.lower()] = _Source(derived=self.outputs(node.this))
            self.scopes[key] = sources
        return self.scopes[key]

    def source_of_table(self, node: exp.Table) -> _Source:
        if _is_temp(node):
            return _Source(temp=_temp_name(node))
        if not node.args.get("db") and node.name.lower() in self.ctes:
            cte = next((c for c in node.root().find_all(exp.CTE) if c.alias_or_name.lower() == node.name.lower()), None)
            return _Source(derived=self.outputs(cte.this) if cte is not None else {})
        return _Source(table=find(node.args["db"].name if node.args.get("db") else "dbo", node.name))

    def outputs(self, query: exp.Query) -> dict[str, Hint]:
        first = _first_select(query)
        if first is None:
            return {}
        out: dict[str, Hint] = {}
        for projection in first.expressions:
            if isinstance(projection, exp.Alias | exp.Column) and not isinstance(projection.this, exp.Star):
                out[projection.alias_or_name.lower()] = self.infer(projection)
        return out

    def infer(self, e: exp.Expr) -> Hint:
        """The SQL Server type of an expression, when the query implies one."""
        if isinstance(e, exp.Alias | exp.Paren):
            return self.infer(e.this)
        if isinstance(e, exp.Cast | exp.TryCast):
            return from_datatype(e.to)
        if isinstance(e, exp.Convert) and isinstance(e.this, exp.DataType):
            return from_datatype(e.this)
        if isinstance(e, exp.Column):
            return self.column_type(e)
        if isinstance(e, exp.Count):
            return Column("", SqlType.BIGINT if e.args.get("big_int") else SqlType.INT)
        if isinstance(e, exp.Max | exp.Min | exp.Coalesce | exp.AnyValue):
            return self.infer(e.this)
        if isinstance(e, exp.National):
            return Column("", SqlType.NVARCHAR, max(len(e.name), 1))
        if isinstance(e, exp.Literal):
            if e.is_string:
                return Column("", SqlType.VARCHAR, max(len(e.name), 1))
            return INT if e.name.lstrip("-").isdigit() and abs(int(e.name)) < 2**31 else None
        if isinstance(e, exp.Parameter):
            inner = e.this
            if isinstance(inner, exp.Parameter):
                name = inner.name.lower()
                return GLOBALS[name][1] if name in GLOBALS else CONSTANT_GLOBALS.get(name, (0, None))[1]
            return VariableColumn(e.name.lower())
        if isinstance(e, exp.CurrentUser | exp.CurrentSchema):
            return SYSNAME
        if isinstance(e, exp.CurrentTimestamp):
            return Column("", SqlType.DATETIME)
        if isinstance(e, exp.ObjectId):
            return INT
        if isinstance(e, exp.Anonymous):
            return FUNCTION_TYPES.get(e.name.upper())
        return None

    def column_type(self, e: exp.Column) -> Hint:
        select = e.find_ancestor(exp.Select)
        qualifier = e.table.lower()
        while select is not None:
            sources = self.scope(select)
            if qualifier:
                if qualifier in sources:
                    return sources[qualifier].column(e.name)[1]
            else:
                for source in sources.values():
                    found, hint = source.column(e.name)
                    if found:
                        return hint
            select = select.parent.find_ancestor(exp.Select) if select.parent else None
        return None

    def is_string(self, e: exp.Expr) -> bool:
        if isinstance(e, exp.DPipe | exp.Concat | exp.National) or (isinstance(e, exp.Literal) and e.is_string):
            return True
        if isinstance(e, exp.Add):
            return self.is_string(e.this) or self.is_string(e.expression)
        if isinstance(e, STRING_FUNCTIONS):
            return True
        hint = self.infer(e)
        return isinstance(hint, Column) and hint.type in CHAR_TYPES

    def is_integer(self, e: exp.Expr) -> bool:
        hint = self.infer(e)
        return isinstance(hint, Column) and hint.type in INTEGER_TYPES

    # ---- rewriting

    def rewrite(self, tree: exp.Expr) -> None:
        plus = {id(n) for n in tree.find_all(exp.Add) if self.is_string(n.this) or self.is_string(n.expression)}
        division = {id(n) for n in tree.find_all(exp.Div) if self.is_integer(n.this) and self.is_integer(n.expression)}
        converts = {id(n): self.infer(n.expression) for n in tree.find_all(exp.Convert)}
        for node in reversed(list(tree.walk(bfs=False))):
            replacement = self.replace(node, plus, division, converts)
            if replacement is not None and node is not tree:
                node.replace(replacement)

    def replace(self, node: exp.Expr, plus: set[int], division: set[int], converts: dict[int, Hint]) -> exp.Expr | None:
        if isinstance(node, exp.Table):
            return self.table(node)
        if isinstance(node, exp.Column) and (node.args.get("db") or node.args.get("catalog")):
            return exp.column(node.name, table=node.table, quoted=True)
        if isinstance(node, exp.Parameter):
            return None if isinstance(node.parent, exp.Parameter) else self.parameter(node)
        if isinstance(node, exp.DataType):
            return _duckdb_datatype(node)
        if isinstance(node, exp.Add) and id(node) in plus:
            return exp.DPipe(this=node.this, expression=node.expression)
        if isinstance(node, exp.Div) and id(node) in division:
            return exp.IntDiv(this=node.this, expression=node.expression)
        if isinstance(node, exp.Convert):
            return _convert(node, converts.get(id(node)))
        if isinstance(node, exp.CurrentUser):
            return _sql("getvariable('lg_login')")
        if isinstance(node, exp.CurrentTimestamp):
            return _sql("current_localtimestamp()")
        if isinstance(node, exp.CurrentSchema):  # T-SQL's SCHEMA_NAME([id]), not DuckDB's current_schema()
            return _schema_name(node.this)
        if isinstance(node, exp.ObjectId):
            if not isinstance(node.this, exp.Literal | exp.National):
                return exp.Null()
            return self.lookup("object", node.this.name)
        if isinstance(node, exp.Anonymous):
            return self.function(node)
        if (
            isinstance(node, exp.Func)
            and not isinstance(node, _OPERATORS)
            and type(node).__name__ not in T_SQL_FUNCTIONS
        ):
            raise errors.unknown_function(node.sql_name().lower())
        return None

    def table(self, node: exp.Table) -> exp.Expr | None:
        if _is_temp(node):
            return (
                _temp_table(_temp_name(node)).as_(node.alias_or_name) if node.alias else _temp_table(_temp_name(node))
            )
        catalog = node.args.get("catalog")
        schema = node.args.get("db")
        if not schema and not catalog and node.name.lower() in self.ctes:
            return None
        if isinstance(node.this, exp.Func | exp.Anonymous) or not node.name:
            raise errors.syntax_error(node.sql(dialect="tsql"))
        written = ".".join(p.name for p in (catalog, schema, node.this) if p is not None and p.name)
        if catalog is not None and not schema:
            written = f"{catalog.name}..{node.name}"
        table = find(schema.name if schema is not None and schema.name else "dbo", node.name)
        database = catalog.name.lower() if catalog is not None and catalog.name else self.database
        if table is None or (table.scope == "msdb" and database != "msdb"):
            raise errors.invalid_object(written)
        self.tables.append(TableRef(written, database, table))
        alias = node.alias or node.name
        return exp.Subquery(
            this=_storage_select(table.name, database if table.scope == "database" else ""),
            alias=exp.TableAlias(this=exp.to_identifier(alias, quoted=True)),
        )

    def parameter(self, node: exp.Parameter) -> exp.Expr:
        inner = node.this
        if isinstance(inner, exp.Parameter):
            name = inner.name.lower()
            if name in GLOBALS:
                return _sql(f"getvariable('{GLOBALS[name][0]}')")
            if name in CONSTANT_GLOBALS:
                return exp.Literal.number(CONSTANT_GLOBALS[name][0])
            raise errors.undeclared_variable("@" + inner.name)
        name = node.name.lower()
        self.params.append(name)
        return exp.Parameter(this=exp.Var(this=name))

    def lookup(self, kind: str, literal: str) -> exp.Expr:
        """A value the session knows without a query (bound as a parameter, so the plan stays shared)."""
        param = f"lg_lookup_{len(self.lookups)}"
        self.lookups.append((param, kind, literal))
        return exp.Parameter(this=exp.Var(this=param))

    def function(self, node: exp.Anonymous) -> exp.Expr:
        name = node.name.upper()
        args = node.expressions
        if name == "SERVERPROPERTY" and len(args) == 1 and isinstance(args[0], exp.Literal | exp.National):
            return self.lookup("property", args[0].name)
        template = FUNCTIONS.get(name)
        if template is None:
            raise errors.unknown_function(node.name)
        sql = template(self.database, len(args))
        if sql is None:
            raise errors.wrong_argument_count(node.name)
        return _fill(sql, args)


# ---- function templates: DuckDB SQL with __A0__, __A1__ … standing for the arguments

TemplateFn = Callable[[str, int], str | None]

_ROLES = ", ".join(f"'{r}'" for r in FIXED_SERVER_ROLES)
_I = "getvariable('lg_i')"


def _serverproperty(db: str, n: int) -> str | None:
    if n != 1:
        return None
    return (
        f"(SELECT lg_f.lg_value FROM (SELECT k AS lg_key, v AS lg_value FROM lab.server_properties "
        f"WHERE lg_i = {_I}) AS lg_f WHERE lg_f.lg_key = lower(CAST(__A0__ AS VARCHAR)))"
    )


def _is_srvrolemember(db: str, n: int) -> str | None:
    if n not in (1, 2):
        return None
    login = "coalesce(CAST(__A1__ AS VARCHAR), getvariable('lg_login'))" if n == 2 else "getvariable('lg_login')"
    return (
        f"(CASE WHEN lower(CAST(__A0__ AS VARCHAR)) NOT IN ({_ROLES}) THEN NULL "
        f"WHEN lower(CAST(__A0__ AS VARCHAR)) = 'public' THEN 1 "
        f"WHEN EXISTS (SELECT 1 FROM (SELECT lower(r.name) AS lg_role, lower(l.name) AS lg_member "
        f"FROM lab.sys_server_role_members m "
        f"JOIN lab.sys_server_principals r ON r.lg_i = m.lg_i AND r.principal_id = m.role_principal_id "
        f"JOIN lab.sys_server_principals l ON l.lg_i = m.lg_i AND l.principal_id = m.member_principal_id "
        f"WHERE m.lg_i = {_I}) AS lg_f "
        f"WHERE lg_f.lg_role = lower(CAST(__A0__ AS VARCHAR)) AND lg_f.lg_member = lower({login})) "
        f"THEN 1 ELSE 0 END)"
    )


def _is_rolemember(db: str, n: int) -> str | None:
    if n not in (1, 2):
        return None
    user = "coalesce(CAST(__A1__ AS VARCHAR), getvariable('lg_user'))" if n == 2 else "getvariable('lg_user')"
    role = "lower(CAST(__A0__ AS VARCHAR))"
    return (
        f"(CASE WHEN NOT EXISTS (SELECT 1 FROM (SELECT lower(name) AS lg_role FROM lab.sys_database_principals "
        f"WHERE lg_i = {_I} AND lg_db = '{db}' AND type = 'R') AS lg_r WHERE lg_r.lg_role = {role}) THEN NULL "
        f"WHEN {role} = 'public' OR ({role} = 'db_owner' AND lower({user}) = 'dbo') THEN 1 "
        f"WHEN EXISTS (SELECT 1 FROM (SELECT lower(r.name) AS lg_role, lower(u.name) AS lg_member "
        f"FROM lab.sys_database_role_members m "
        f"JOIN lab.sys_database_principals r ON r.lg_i = m.lg_i AND r.lg_db = m.lg_db "
        f"AND r.principal_id = m.role_principal_id "
        f"JOIN lab.sys_database_principals u ON u.lg_i = m.lg_i AND u.lg_db = m.lg_db "
        f"AND u.principal_id = m.member_principal_id "
        f"WHERE m.lg_i = {_I} AND m.lg_db = '{db}') AS lg_f "
        f"WHERE lg_f.lg_role = {role} AND lg_f.lg_member = lower({user})) THEN 1 ELSE 0 END)"
    )


def _has_perms_by_name(db: str, n: int) -> str | None:
    if n < 3:
        return None
    return (
        "(CASE WHEN getvariable('lg_sysadmin') THEN 1 "
        "WHEN __A1__ IS NULL OR upper(CAST(__A1__ AS VARCHAR)) = 'SERVER' THEN "
        "CASE WHEN list_contains(getvariable('lg_permissions'), upper(CAST(__A2__ AS VARCHAR))) THEN 1 ELSE 0 END "
        "ELSE 0 END)"
    )


_DATABASES = (
    f"(SELECT name AS lg_name, lower(name) AS lg_key, database_id AS lg_id FROM lab.sys_databases "
    f"WHERE lg_i = {_I}) AS lg_f"
)
"""The instance's databases under names no statement uses: an argument such as `DB_NAME(database_id)` is
then a column of the calling query, evaluated row by row, never one of the lookup's own."""


def _db_id(db: str, n: int) -> str | None:
    if n == 0:
        return f"(SELECT lg_f.lg_id FROM {_DATABASES} WHERE lg_f.lg_key = '{db}')"
    if n == 1:
        return f"(SELECT lg_f.lg_id FROM {_DATABASES} WHERE lg_f.lg_key = lower(CAST(__A0__ AS VARCHAR)))"
    return None


def _db_name(db: str, n: int) -> str | None:
    if n == 0:
        return f"(SELECT lg_f.lg_name FROM {_DATABASES} WHERE lg_f.lg_key = '{db}')"
    if n == 1:
        return f"(SELECT lg_f.lg_name FROM {_DATABASES} WHERE lg_f.lg_id = __A0__)"
    return None


FIXED_SCHEMAS = {
    1: "dbo",
    2: "guest",
    3: "INFORMATION_SCHEMA",
    4: "sys",
    16384: "db_owner",
    16385: "db_accessadmin",
    16386: "db_securityadmin",
    16387: "db_ddladmin",
    16389: "db_backupoperator",
    16390: "db_datareader",
    16391: "db_datawriter",
    16392: "db_denydatareader",
    16393: "db_denydatawriter",
}
"""The schemas every database has, with the ids SQL Server gives them; the lab's databases have no others."""


def _schema_name(argument: exp.Expr | None) -> exp.Expr:
    """SCHEMA_NAME(): the caller's default schema (guest's is guest, everyone else's dbo in the lab);
    SCHEMA_NAME(id): the fixed schema with that id, else NULL — a CASE, so a column argument is read row-wise."""
    if argument is None:
        return _sql("(CASE WHEN getvariable('lg_user') = 'guest' THEN 'guest' ELSE 'dbo' END)")
    whens = " ".join(f"WHEN {i} THEN '{name}'" for i, name in FIXED_SCHEMAS.items())
    return _fill(f"(CASE __A0__ {whens} ELSE NULL END)", [argument])


def _constant(sql: str, arities: tuple[int, ...] = (0,)) -> TemplateFn:
    def template(db: str, n: int) -> str | None:
        return sql if n in arities else None

    return template


FUNCTIONS: dict[str, TemplateFn] = {
    "SERVERPROPERTY": _serverproperty,
    "IS_SRVROLEMEMBER": _is_srvrolemember,
    "IS_ROLEMEMBER": _is_rolemember,
    "HAS_PERMS_BY_NAME": _has_perms_by_name,
    "DB_ID": _db_id,
    "DB_NAME": _db_name,
    "SUSER_SNAME": _constant("getvariable('lg_login')", (0,)),
    "SUSER_NAME": _constant("getvariable('lg_login')", (0,)),
    "ORIGINAL_LOGIN": _constant("getvariable('lg_login')"),
    "USER_NAME": _constant("getvariable('lg_user')", (0,)),
    "HOST_NAME": _constant("getvariable('lg_host')"),
    "APP_NAME": _constant("getvariable('lg_app')"),
    "GETUTCDATE": _constant("CAST(timezone('UTC', now()) AS TIMESTAMP)"),
    "SYSDATETIME": _constant("current_localtimestamp()"),
    "SYSUTCDATETIME": _constant("CAST(timezone('UTC', now()) AS TIMESTAMP)"),
}


@functools.lru_cache(maxsize=512)
def _parsed(sql: str) -> exp.Expr:
    return sqlglot.parse_one(sql, read="duckdb")


def _sql(sql: str) -> exp.Expr:
    return _parsed(sql).copy()


def _fill(sql: str, args: list[exp.Expr]) -> exp.Expr:
    tree = _sql(sql)
    for column in list(tree.find_all(exp.Column)):
        if column.name.startswith("__A") and column.name.endswith("__"):
            column.replace(args[int(column.name[3:-2])].copy())
    return tree


@functools.lru_cache(maxsize=512)
def _storage_query(table_name: str, database: str) -> exp.Select:
    table = TABLES[table_name]
    columns = ", ".join(f'"{c.name}"' for c in table.columns)
    where = f"lg_i = {_I}" + (f" AND lg_db = '{database}'" if database else "")
    if table.name == "sys.dm_exec_sessions":
        where = (
            "lg_i IN (getvariable('lg_i'), getvariable('lg_instance')) "
            "AND (getvariable('lg_view_server_state') OR session_id = getvariable('lg_spid'))"
        )
    elif table.name in OWNED_TABLES:  # the scenario's rows and the objects this instance created since
        where = "lg_i IN (getvariable('lg_i'), getvariable('lg_instance'))" + (
            f" AND lg_db = '{database}'" if database else ""
        )
    parsed = sqlglot.parse_one(f"SELECT {columns} FROM {table.storage} WHERE {where}", read="duckdb")
    assert isinstance(parsed, exp.Select)
    return parsed


def _storage_select(table_name: str, database: str) -> exp.Select:
    return _storage_query(table_name, database.replace("'", "''")).copy()


def _storages(sql: str) -> tuple[str, ...]:
    return tuple(dict.fromkeys(re.findall(r"\blab\.\w+", sql)))


_VARIABLE = re.compile(r"\bgetvariable\s*\(\s*'(\w+)'\s*\)", re.IGNORECASE)
_VOLATILE = re.compile(
    r"\b(?:LOCALTIMESTAMP|LOCALTIME|CURRENT_\w*|GET_CURRENT_\w*|TRANSACTION_TIMESTAMP|STATEMENT_TIMESTAMP)\b"
    r"|\b(?:NOW|TODAY|RANDOM|SETSEED|UUID|UUIDV\d|GEN_RANDOM_UUID|NEXTVAL|CURRVAL)\s*\("
    r"|\btemp\.",
    re.IGNORECASE,
)
"""What makes a DuckDB statement's result change with nothing else changing: the clock, randomness, new
ids, sequences, and a session's #temp tables (temp.main."#…"). Matched on the whole text, strings
included: a false match only costs a cache miss."""


@functools.lru_cache(maxsize=4096)
def narrowed(sql: str, derived: tuple[str, ...], usage: Usage) -> str:
    """`sql` with the derived table of each system view selecting only the columns the statement uses.

    DuckDB parses and binds every column a derived table lists, used or not: a third of a wide view's
    query. `usage` (engine/usage.py) names the columns of each storage table the statement reads,
    wherever it names it; `derived` the storage table of each derived table (`Translated.tables`).
    Dropping columns nobody references changes no result, and no name resolves elsewhere: a name the
    statement uses is kept where it was. A storage table whose derived tables are not all found as
    written is left whole.
    """
    out = sql
    for storage, used in usage:
        table = _BY_STORAGE.get(storage)
        if used is None or table is None:
            continue
        whole = f"SELECT {_column_list(table.columns)} FROM {storage} "
        if out.count(whole) != derived.count(storage):
            continue
        kept = [c for c in table.columns if c.name in used] or list(table.columns[:1])
        out = out.replace(whole, f"SELECT {_column_list(kept)} FROM {storage} ")
    return out


def _column_list(columns: tuple[Column, ...] | list[Column]) -> str:
    return ", ".join(f'"{c.name}"' for c in columns)


_BY_STORAGE = {t.storage: t for t in TABLES.values()}


def _variables(sql: str) -> tuple[str, ...]:
    return tuple(dict.fromkeys(name.lower() for name in _VARIABLE.findall(sql)))


def _deterministic(sql: str) -> bool:
    return _VOLATILE.search(sql) is None


def _first_select(query: exp.Expr) -> exp.Select | None:
    while isinstance(query, exp.SetOperation | exp.Subquery):
        query = query.this
    return query if isinstance(query, exp.Select) else None


def _is_temp(node: exp.Expr) -> bool:
    return (isinstance(node, exp.Table) and bool(node.this.args.get("temporary"))) or (
        isinstance(node, exp.Table) and node.name.startswith("#")
    )


def _temp_name(node: exp.Table) -> str:
    return "#" + node.name.lstrip("#").lower()


def _temp_table(name: str) -> exp.Table:
    return exp.Table(
        this=exp.to_identifier(name, quoted=True), db=exp.to_identifier("main"), catalog=exp.to_identifier("temp")
    )


def _duckdb_datatype(node: exp.DataType) -> exp.DataType | None:
    t = exp.DataType.Type
    kind = node.this
    if kind == t.USERDEFINED and str(node.args.get("kind", "")).lower() == "sysname":
        return exp.DataType.build("VARCHAR")
    simple = {
        t.BIT: "BOOLEAN",
        t.VARBINARY: "BLOB",
        t.BINARY: "BLOB",
        t.NVARCHAR: "VARCHAR",
        t.NCHAR: "VARCHAR",
        t.CHAR: "VARCHAR",
        t.VARCHAR: "VARCHAR",
        t.TEXT: "VARCHAR",
        t.MONEY: "DECIMAL(19,4)",
        t.SMALLMONEY: "DECIMAL(10,4)",
        t.FLOAT: "DOUBLE",
        t.XML: "VARCHAR",
        t.DATETIME2: "TIMESTAMP",
        t.SMALLDATETIME: "TIMESTAMP",
        t.DATETIME: "TIMESTAMP",
        t.IMAGE: "BLOB",
    }
    if kind in simple:
        return exp.DataType.build(simple[kind], dialect="duckdb")
    return None


def _convert(node: exp.Convert, source: Hint) -> exp.Expr:
    target = node.this
    value = node.expression
    style_node = node.args.get("style")
    style = int(style_node.name) if isinstance(style_node, exp.Literal) and style_node.name.isdigit() else None
    target_column = from_datatype(target) if isinstance(target, exp.DataType) else None
    if target_column is not None and target_column.type in CHAR_TYPES and isinstance(source, Column):
        if source.type in (SqlType.VARBINARY, SqlType.BINARY) and style in (1, 2):
            hexed = _fill("upper(hex(__A0__))", [value])
            return exp.DPipe(this=exp.Literal.string("0x"), expression=hexed) if style == 1 else hexed
        if source.type in (SqlType.DATETIME, SqlType.DATETIME2, SqlType.DATE, SqlType.SMALLDATETIME) and style:
            fmt = CONVERT_STYLES.get(style)
            if fmt:
                return _fill(f"strftime(__A0__, '{fmt}')", [value])
    datatype = _duckdb_datatype(target) if isinstance(target, exp.DataType) else None
    return exp.Cast(this=value, to=datatype or target)
