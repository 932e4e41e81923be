"""One login's session on a simulated instance: runs batches statement by statement, as SQL Server does.

Statements SQL Server answers without a query plan (SET, USE, DBCC TRACESTATUS, EXEC, DECLARE,
PRINT, transactions) are handled here; everything else is translated (`translate.py`) and run on the
session's own DuckDB connection, whose variables carry the session's identity and whose temp tables
are the session's #tables. Results come back as `Outcome`s with SQL Server's column types.

DuckDB work is what a simulated instance costs (a SET VARIABLE is a quarter of a millisecond, a query
one to five), so a session sets on its connection only the variables a statement reads, when they
changed, and a deterministic query whose result the catalog already holds for the same rows, values
and variables is answered from there (catalog.py).
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

import duckdb
from sqlglot import exp
from sqlglot.tokenizer_core import Token, TokenType

from linkgate.lab.engine import ddl, errors, procedures
from linkgate.lab.engine.batch import (
    STARTERS,
    Block,
    IfStatement,
    Node,
    Statement,
    keyword,
    split_batch,
    statement_tokens,
)
from linkgate.lab.engine.coltypes import from_datatype, from_duckdb, named, shape
from linkgate.lab.engine.schema import VIEW_SERVER_STATE
from linkgate.lab.engine.translate import TableRef, TempColumn, Translated, VariableColumn, narrowed, translate
from linkgate.lab.results import (
    Column,
    DatabaseChanged,
    Message,
    Outcome,
    ResultSet,
    RowCount,
    SqlError,
    SqlType,
    Variant,
)
from linkgate.lab.scenario import LoginSpec

if TYPE_CHECKING:
    from linkgate.lab.engine.instance import SimulatedInstance

SET_OPTIONS = re.compile(
    r"^SET\s+(NOCOUNT|ANSI_NULLS|ANSI_WARNINGS|ANSI_PADDING|ANSI_NULL_DFLT_ON|ANSI_DEFAULTS|QUOTED_IDENTIFIER|"
    r"ARITHABORT|ARITHIGNORE|CONCAT_NULL_YIELDS_NULL|XACT_ABORT|IMPLICIT_TRANSACTIONS|NUMERIC_ROUNDABORT|"
    r"CURSOR_CLOSE_ON_COMMIT|NOEXEC|FMTONLY|TEXTSIZE|DATEFORMAT|DATEFIRST|LANGUAGE|DEADLOCK_PRIORITY|LOCK_TIMEOUT|"
    r"ROWCOUNT|STATISTICS\s+\w+|TRANSACTION\s+ISOLATION\s+LEVEL)\b\s*(.*)$",
    re.IGNORECASE | re.DOTALL,
)
SET_VARIABLE = re.compile(r"^SET\s+@(\w+)\s*=\s*(.+)$", re.IGNORECASE | re.DOTALL)
DECLARE = re.compile(
    r"^DECLARE\s+@(\w+)\s+(?:AS\s+)?([\w]+(?:\s*\([^)]*\))?)\s*(?:=\s*(.+))?$", re.IGNORECASE | re.DOTALL
)
USE = re.compile(r"^USE\s+(\[[^\]]+\]|\"[^\"]+\"|\w+)\s*;?$", re.IGNORECASE)
DBCC = re.compile(r"^DBCC\s+(\w+)\s*(?:\(([^)]*)\))?\s*(?:WITH\s+(.+?))?\s*;?$", re.IGNORECASE | re.DOTALL)
TRANSACTION = re.compile(
    r"^(BEGIN\s+(DISTRIBUTED\s+)?TRAN(SACTION)?|COMMIT|ROLLBACK|SAVE\s+TRAN(SACTION)?)\b", re.IGNORECASE
)
INSERT_EXEC = re.compile(
    r"^INSERT\s+(?:INTO\s+)?(#\w+)\s*(?:\(([^)]*)\))?\s*(EXEC(?:UTE)?\b.*)$", re.IGNORECASE | re.DOTALL
)
PRINT = re.compile(r"^PRINT\s+(.+)$", re.IGNORECASE | re.DOTALL)
DBCC_DONE = "DBCC execution completed. If DBCC printed error messages, contact your system administrator."
TRACE_COLUMNS = tuple(Column(n, SqlType.SMALLINT) for n in ("TraceFlag", "Status", "Global", "Session"))


class Failed(Exception):
    """A statement failed with one or more SQL Server errors: the batch ends here, unless all of them are
    statement-terminating (errors.STATEMENT_TERMINATING), when it runs on with the next statement.

    `before` is what dynamic SQL the failure came out of had produced first: SQL Server had sent it already,
    so whoever turns the failure into outcomes puts it ahead of the errors."""

    def __init__(self, *items: SqlError, before: Sequence[Outcome] = ()) -> None:
        super().__init__(items[0].message)
        self.items = items
        self.before = tuple(before)


class EngineSession:
    """A logged-in connection (implements `linkgate.lab.backend.Session`)."""

    def __init__(
        self,
        instance: SimulatedInstance,
        login_name: str,
        login: LoginSpec,
        spid: int,
        database: str,
        *,
        app_name: str,
        host_name: str,
    ) -> None:
        self._instance = instance
        self._login_name = login_name
        self._login = login
        self._spid = spid
        self._database = database
        self._con = instance.catalog.connection()
        self._temp: dict[str, tuple[Column, ...]] = {}
        self._variables: dict[str, tuple[Column | None, Any]] = {}
        self._state: dict[str, Any] = {}
        """The DuckDB variables (lg_…) as the session's identity and context make them now."""
        self._applied: dict[str, Any] = {}
        """The values last set on the connection (see `_sync`)."""
        self._nocount = False
        self._depth = 0
        roles = {r.lower() for r in login.server_roles}
        self.sysadmin = "sysadmin" in roles
        permissions = {p.upper() for p in login.permissions} | {"CONNECT SQL"}
        self.view_server_state = self.sysadmin or VIEW_SERVER_STATE in permissions
        p = instance.profile
        self._set_variables(
            {
                "lg_i": instance.row_set_id,
                "lg_instance": instance.own_id,
                "lg_login": login_name,
                "lg_spid": spid,
                "lg_version": p.version_string,
                "lg_servername": p.server_name,
                "lg_servicename": p.service_id,
                "lg_language": "us_english",
                "lg_lock_timeout": -1,
                "lg_host": host_name,
                "lg_app": app_name,
                "lg_sysadmin": self.sysadmin,
                "lg_permissions": sorted(permissions),
                "lg_view_server_state": self.view_server_state,
                "lg_user": self.user_in(database) or "guest",
            }
        )

    # ---- Session protocol

    @property
    def database(self) -> str:
        return self._database

    @property
    def login_name(self) -> str:
        return self._login_name

    @property
    def instance(self) -> SimulatedInstance:
        """The instance this session is logged in to (its Agent, its machine)."""
        return self._instance

    def execute(self, sql: str, params: Mapping[str, Any] | None = None) -> list[Outcome]:
        self._instance.record(self, sql, "rpc" if params is not None else "batch", params or {})
        bound = {k.lstrip("@").lower(): v for k, v in (params or {}).items()}
        return self._guarded(lambda out: self.run_batch(sql, bound, out))

    def call_procedure(self, name: str, params: list[tuple[str, Any]]) -> list[Outcome]:
        self._instance.record(self, name, "proc", {n or f"#{i}": v for i, (n, v) in enumerate(params)})
        return self._guarded(lambda out: out.extend(procedures.call(self, name, params)))

    # ---- what procedures and statements use

    def user_in(self, database: str) -> str | None:
        """The database user this login maps to (dbo for sysadmin, guest in system databases), None: no access."""
        if self.sysadmin:
            return "dbo"
        if any(d.lower() == database.lower() for d in self._login.databases):
            return self._login_name
        return "guest" if database.lower() in ("master", "tempdb", "msdb") else None

    def has_database(self, name: str) -> bool:
        return self._instance.database_name(name) is not None

    def database_roles(self, database: str) -> set[str]:
        roles = next((r for d, r in self._login.databases.items() if d.lower() == database.lower()), ())
        return {r.lower() for r in roles}

    def run_batch(self, sql: str, params: Mapping[str, Any], out: list[Outcome]) -> None:
        """Run `sql` as one scope: the batch itself, or dynamic SQL (EXEC(N'…'), sp_executesql) inside one.

        A compile error of dynamic SQL, or a compile-class error one of its statements meets when reached
        (208), ends only the dynamic SQL: its error joins `out` after what it had produced, and the
        statement that ran it completes, so the outer batch goes on. Anything else propagates, carrying
        what the dynamic SQL had produced (`Failed.before`)."""
        if self._depth >= 16:
            raise Failed(
                SqlError(217, "Maximum stored procedure, function, trigger, or view nesting level exceeded (limit 32).")
            )
        self._depth += 1
        compiled = False
        try:
            nodes = split_batch(sql)
            self._compile(nodes)
            compiled = True
            for i, node in enumerate(nodes):
                self._node(node, params, out, first=i == 0)
        except (Failed, SqlError, duckdb.Error) as e:
            if self._depth == 1:
                raise
            items = _failure_items(e)
            before = (*out, *(e.before if isinstance(e, Failed) else ()))
            if compiled and not errors.scope_aborting(items):
                raise Failed(*items, before=before) from e
            out[:] = [*before, *items]
        finally:
            self._depth -= 1

    @contextmanager
    def in_database(self, database: str) -> Iterator[None]:
        """Run something in another database's context (EXEC db.sys.sp_executesql), then come back."""
        canonical = self._instance.database_name(database)
        if canonical is None:
            raise Failed(errors.unknown_database(database))
        if self.user_in(canonical) is None:
            raise Failed(errors.no_database_access(self._login_name, canonical))
        previous = self._database
        self._switch(canonical)
        try:
            yield
        finally:
            self._switch(previous)

    def scalar(self, expression: str, params: Mapping[str, Any]) -> Any:
        """Evaluate one T-SQL expression (for IF, PRINT, DECLARE … = expr, EXEC arguments)."""
        result = self._select(translate(f"SELECT {expression}", self._database), params)
        value = result.rows[0][0] if result.rows else None
        return value.value if isinstance(value, Variant) else value

    # ---- batches and statements

    def _guarded(self, work: Any) -> list[Outcome]:
        out: list[Outcome] = []
        try:
            work(out)
        except Failed as e:
            out.extend((*e.before, *e.items))
        except SqlError as e:
            out.append(e)
        except duckdb.Error as e:
            out.append(errors.from_duckdb(e))
        return out

    def _compile(self, nodes: Sequence[Node]) -> bool:
        """What SQL Server does before a batch runs: compile it, so that a compile error (102, 195, 207…)
        fails it with nothing run and nothing sent. Statements SQL Server compiles only when reached are
        left to run time: names it cannot resolve yet (208, deferred name resolution), #temp tables, @variables,
        and whatever follows a USE (it compiles in the other database). False: a USE stopped it."""
        for node in nodes:
            if isinstance(node, IfStatement):
                if not self._compile([n for n in (node.then, node.otherwise) if n is not None]):
                    return False
            elif isinstance(node, Block):
                if not self._compile(node.body):
                    return False
            else:
                text = node.text.strip().rstrip(";").strip()
                head = _head(text)
                if head == "USE":
                    return False
                if head in _NOT_COMPILED or TRANSACTION.match(text) or _looks_like_procedure(text):
                    continue
                if head in ("CREATE", "DROP") and ddl.handles(text):
                    continue
                try:
                    translated = translate(text, self._database)
                except SqlError as e:
                    if e.number == errors.invalid_object("").number:
                        continue
                    raise
                self._bind_check(translated)
        return True

    def _bind_check(self, t: Translated) -> None:
        """A query DuckDB cannot bind (a column no view has: 207) fails the batch before it runs.

        Binding depends on the statement's text alone (the storage tables' columns are the same for every
        instance), so each statement is planned once per process; statements reading #temp tables or
        @variables bind only when they run."""
        if t.kind != "select" or t.params or _TEMP_TABLE in t.sql:
            return
        if t.sql not in _BIND_ERRORS:
            self._instance.load(t.storages)
            self._sync(t.variables)
            found: SqlError | None = None
            try:
                self._con.execute("EXPLAIN " + t.sql, self._bind(t, {}))
            except (duckdb.BinderException, duckdb.ParserException) as e:
                found = errors.from_duckdb(e)
            except duckdb.Error:
                found = None  # a run-time failure (a conversion folded while planning): it happens when it runs
            if len(_BIND_ERRORS) >= _BIND_CACHE_SIZE:
                _BIND_ERRORS.clear()
            _BIND_ERRORS[t.sql] = found
        error = _BIND_ERRORS[t.sql]
        if error is not None:
            raise Failed(error)

    def _node(self, node: Node, params: Mapping[str, Any], out: list[Outcome], *, first: bool) -> None:
        try:
            self._run_node(node, params, out, first=first)
        except Failed as e:
            if not errors.statement_terminating(e.items):
                raise
            out.extend((*e.before, *e.items))
        except SqlError as e:
            if not errors.statement_terminating((e,)):
                raise
            out.append(e)

    def _run_node(self, node: Node, params: Mapping[str, Any], out: list[Outcome], *, first: bool) -> None:
        if isinstance(node, Statement):
            self._statement(node.text.strip().rstrip(";").strip(), params, out, first=first)
        elif isinstance(node, IfStatement):
            branch = (
                node.then
                if self.scalar(f"CASE WHEN {node.condition} THEN 1 ELSE 0 END", params) == 1
                else node.otherwise
            )
            if branch is not None:
                self._node(branch, params, out, first=False)
        elif isinstance(node, Block):
            for child in node.body:
                self._node(child, params, out, first=False)

    def _statement(self, text: str, params: Mapping[str, Any], out: list[Outcome], *, first: bool) -> None:
        head = _head(text)
        if head == "SET":
            self._set(text, params, out)
        elif head == "USE":
            self._use(text, out)
        elif head == "DBCC":
            out.extend(self._dbcc(text))
        elif head in ("EXEC", "EXECUTE"):
            out.extend(self._exec(text, params))
        elif head == "DECLARE":
            self._declare(text, params)
        elif head == "PRINT":
            match = PRINT.match(text)
            value = self.scalar(match.group(1), params) if match else ""
            out.append(Message(0, "" if value is None else str(value)))
        elif TRANSACTION.match(text):
            out.append(RowCount(None))
        elif head in ("CREATE", "DROP") and ddl.handles(text):
            out.extend(ddl.run(self, text))
        elif head == "INSERT" and INSERT_EXEC.match(text):
            out.append(self._insert_exec(text, params))
        elif first and _looks_like_procedure(text):
            out.extend(self._exec(text, params))
        else:
            out.extend(self._translated(translate(text, self._database), params))

    def _translated(self, t: Translated, params: Mapping[str, Any]) -> list[Outcome]:
        if t.kind == "select":
            return [self._select(t, params)]
        if t.kind == "create_temp":
            assert t.temp_table is not None
            if t.temp_table in self._temp:
                raise Failed(SqlError(2714, f"There is already an object named '{t.temp_table}' in the database."))
            self._con.execute(t.sql)
            self._temp[t.temp_table] = t.temp_columns
            return [RowCount(None)]
        if t.kind == "drop_temp":
            assert t.temp_table is not None
            if t.temp_table not in self._temp:
                if t.if_exists:
                    return [RowCount(None)]
                raise Failed(
                    SqlError(
                        3701,
                        f"Cannot drop the table '{t.temp_table}', because it does not exist or "
                        "you do not have permission.",
                        state=5,
                        severity=11,
                    )
                )
            self._con.execute(f'DROP TABLE temp.main."{t.temp_table}"')
            del self._temp[t.temp_table]
            return [RowCount(None)]
        if t.kind == "insert_temp":
            assert t.temp_table is not None
            if t.temp_table not in self._temp:
                raise Failed(errors.invalid_object(t.temp_table))
            self._check(t.tables)
            bound = self._bind(t, params)
            self._instance.load(t.storages)
            self._sync(t.variables)
            count = self._con.execute(t.sql, bound).fetchone()
            return [RowCount(None if self._nocount else int(count[0]) if count else 0)]
        raise Failed(errors.read_only_database(self._database))

    def _select(self, t: Translated, params: Mapping[str, Any]) -> ResultSet:
        self._check(t.tables)
        description, rows = self._query(t, self._bind(t, params))
        names = list(t.names)
        hints = list(t.hints)
        if None in names or len(names) != len(description):
            names = [d[0] for d in description]
            hints = [self._hint_by_name(t, d[0]) for d in description]
        columns = []
        values_by_column = [list(col) for col in zip(*rows, strict=True)] if rows else [[] for _ in description]
        for i, d in enumerate(description):
            column = self._resolve_hint(hints[i])
            shaped = shape(column, values_by_column[i]) if column is not None else None
            if column is None or shaped is None:
                column = from_duckdb(str(d[1]), values_by_column[i])
                shaped = shape(column, values_by_column[i]) or values_by_column[i]
            values_by_column[i] = shaped
            columns.append(named(column, names[i] or ""))
        out_rows = [tuple(col[r] for col in values_by_column) for r in range(len(rows))]
        return ResultSet(tuple(columns), out_rows)

    def _query(self, t: Translated, bound: dict[str, Any]) -> tuple[Sequence[Any], Sequence[tuple[Any, ...]]]:
        """The DuckDB result (description, rows) of a SELECT: from the catalog's cache when it holds the result
        of the same statement, values and variables over the same values of the columns it reads, else run here."""
        instance = self._instance
        catalog = instance.catalog
        key: tuple[Any, ...] | None = None
        sql = t.sql
        if t.deterministic:
            variables = {name: self._state[name] for name in t.variables if name in self._state}
            identity = (
                t.sql,
                tuple(sorted((k, _exact(v)) for k, v in bound.items())),
                tuple((k, _exact(v)) for k, v in variables.items() if k not in _ROW_SET_VARIABLES),
            )
            usage = catalog.usage(identity, t.sql, bound, variables, t.storages)
            contents = catalog.contents(instance.row_set_key, instance.own_id, usage) if usage is not None else None
            if contents is not None:
                key = (identity, contents)
                found = catalog.cached(key)
                if found is not None:
                    return found
            if usage is not None:
                sql = narrowed(t.sql, tuple(ref.table.storage for ref in t.tables), usage)
        instance.load(t.storages)
        self._sync(t.variables)
        try:
            cursor = self._con.execute(sql, bound)
        except duckdb.BinderException:
            if sql is t.sql:
                raise
            cursor = self._con.execute(t.sql, bound)  # never expected: the whole statement decides then
        description = cursor.description or []
        rows = cursor.fetchall()
        if key is not None:
            catalog.remember(key, description, rows)
        return description, rows

    def _sync(self, names: Sequence[str]) -> None:
        """Set on the connection the variables a statement reads whose value changed since last set."""
        for name in names:
            if name not in self._state:
                continue  # never set: getvariable() answers NULL, as it always did
            value = self._state[name]
            applied = self._applied.get(name, _UNSET)
            if applied is _UNSET or type(applied) is not type(value) or applied != value:
                self._con.execute(f"SET VARIABLE {name} = $v", {"v": value})
                self._applied[name] = value

    def _resolve_hint(self, hint: Column | TempColumn | VariableColumn | None) -> Column | None:
        if isinstance(hint, TempColumn):
            columns = self._temp.get(hint.table, ())
            return next((c for c in columns if c.name.lower() == hint.column), None)
        if isinstance(hint, VariableColumn):
            return self._variables.get(hint.name, (None, None))[0]
        return hint

    def _hint_by_name(self, t: Translated, name: str) -> Column | None:
        for ref in t.tables:
            column = ref.table.column(name)
            if column is not None:
                return column
        for columns in self._temp.values():
            for column in columns:
                if column.name.lower() == name.lower():
                    return column
        return None

    def _check(self, tables: tuple[TableRef, ...]) -> None:
        """Existence for this instance's version, database access and permissions, as SQL Server checks them."""
        instance = self._instance
        for ref in tables:
            database = instance.database_name(ref.database)
            if database is None or not ref.table.available(instance.profile.managed, instance.profile.major):
                raise Failed(errors.invalid_object(ref.written))
            if self.user_in(database) is None:
                raise Failed(errors.no_database_access(self._login_name, database))
            if ref.table.permission == VIEW_SERVER_STATE and not self.view_server_state:
                raise Failed(*errors.view_server_state_denied())
            if (
                ref.table.scope == "msdb"
                and not self.sysadmin
                and not (self.database_roles("msdb") & {"db_datareader", "db_owner"})
            ):
                schema, name = ref.table.name.split(".")
                raise Failed(errors.select_denied(name, "msdb", schema))

    def _bind(self, t: Translated, params: Mapping[str, Any]) -> dict[str, Any]:
        bound: dict[str, Any] = {}
        for name in t.params:
            if name in params:
                bound[name] = params[name]
            elif name in self._variables:
                bound[name] = self._variables[name][1]
            else:
                raise Failed(errors.undeclared_variable(name))
        for param, kind, literal in t.lookups:
            if kind == "object":
                bound[param] = self._instance.object_id(literal, self._database, set(self._temp))
            else:
                bound[param] = self._instance.server_property(literal)
        return bound

    # ---- statements answered without a query

    def _set(self, text: str, params: Mapping[str, Any], out: list[Outcome]) -> None:
        variable = SET_VARIABLE.match(text)
        if variable:
            name = variable.group(1).lower()
            if name not in self._variables:
                raise Failed(errors.undeclared_variable(variable.group(1)))
            self._assign(name, self._variables[name][0], variable.group(2), params)
            out.append(RowCount(None))
            return
        option = SET_OPTIONS.match(text)
        if option is None:
            word = text.split()[1] if len(text.split()) > 1 else ""
            raise Failed(SqlError(195, f"'{word}' is not a recognized SET option.", severity=15))
        name, value = option.group(1).upper(), option.group(2).strip().rstrip(";").strip()
        if name == "NOCOUNT":
            self._nocount = value.upper() == "ON"
        elif name == "LOCK_TIMEOUT":
            if not re.fullmatch(r"-?\d+", value):
                raise Failed(errors.syntax_error(value))
            self._set_variables({"lg_lock_timeout": int(value)})
        out.append(RowCount(None))

    def _use(self, text: str, out: list[Outcome]) -> None:
        match = USE.match(text)
        if match is None:
            raise Failed(errors.syntax_error(text.split()[-1]))
        wanted = match.group(1).strip('[]"')
        database = self._instance.database_name(wanted)
        if database is None:
            raise Failed(errors.unknown_database(wanted))
        if self.user_in(database) is None:
            raise Failed(errors.no_database_access(self._login_name, database))
        previous = self._database
        self._switch(database)
        out.append(DatabaseChanged(previous, database))
        out.append(Message(5701, f"Changed database context to '{database}'."))

    def _switch(self, database: str) -> None:
        self._database = database
        self._set_variables({"lg_user": self.user_in(database) or "guest"})

    def _dbcc(self, text: str) -> list[Outcome]:
        match = DBCC.match(text)
        if match is None or match.group(1).upper() != "TRACESTATUS":
            raise Failed(
                SqlError(
                    2526,
                    "Incorrect DBCC statement. Check the documentation for the correct DBCC syntax and options.",
                    severity=16,
                    state=3,
                )
            )
        args = [a.strip() for a in (match.group(2) or "").split(",") if a.strip()]
        if not all(re.fullmatch(r"-?\d+", a) for a in args):
            raise Failed(errors.syntax_error(args[0] if args else text))
        options = {o.strip().upper() for o in (match.group(3) or "").split(",")}
        running = self._instance.running_trace_flags()
        flags = [int(a) for a in args if a != "-1"]
        if flags:
            rows = [(f, int(f in running), int(f in running), 0) for f in flags]
        else:
            rows = [(f, 1, 1, 0) for f in sorted(running)]
        out: list[Outcome] = [ResultSet(TRACE_COLUMNS, list(rows))] if rows else []
        if "NO_INFOMSGS" not in options:
            out.append(Message(2528, DBCC_DONE, severity=10))
        return out

    def _exec(self, text: str, params: Mapping[str, Any]) -> list[Outcome]:
        tokens = statement_tokens(text)
        start = 1 if keyword(tokens[0]) in ("EXEC", "EXECUTE") else 0
        if start < len(tokens) and tokens[start].token_type == TokenType.L_PAREN:
            sql = self.scalar(text[tokens[start].start :], params)
            out: list[Outcome] = []
            self.run_batch(str(sql or ""), params, out)
            return out
        name_end = start
        expect_name = True
        while name_end < len(tokens):
            token = tokens[name_end]
            if token.token_type == TokenType.DOT:
                expect_name = True
            elif expect_name and token.token_type not in _NOT_NAMES:
                expect_name = False
            else:
                break
            name_end += 1
        if name_end == start:
            raise Failed(errors.syntax_error(text))
        name = text[tokens[start].start : tokens[name_end - 1].end + 1]
        arguments = [self._argument(group, text, params) for group in _split_arguments(tokens[name_end:])]
        return procedures.call(self, name, arguments)

    def _argument(self, tokens: Sequence[Token], text: str, params: Mapping[str, Any]) -> tuple[str, Any]:
        name = ""
        if len(tokens) > 3 and tokens[0].token_type == TokenType.PARAMETER and tokens[2].token_type == TokenType.EQ:
            name = "@" + tokens[1].text
            tokens = tokens[3:]
        expression = text[tokens[0].start : tokens[-1].end + 1]
        if len(tokens) == 1 and tokens[0].token_type in (TokenType.STRING, TokenType.NATIONAL_STRING):
            return name, tokens[0].text
        if keyword(tokens[0]) == "DEFAULT" and len(tokens) == 1:
            return name, None
        return name, self.scalar(expression, params)

    def _insert_exec(self, text: str, params: Mapping[str, Any]) -> Outcome:
        match = INSERT_EXEC.match(text)
        assert match is not None
        table, column_list, call = match.group(1).lower(), match.group(2), match.group(3)
        if table not in self._temp:
            raise Failed(errors.invalid_object(table))
        produced = self._exec(call, params)
        failures = [o for o in produced if isinstance(o, SqlError)]
        if failures:
            raise Failed(*failures)
        rows = [r for o in produced if isinstance(o, ResultSet) for r in o.rows]
        columns = (
            [c.strip().strip("[]") for c in column_list.split(",")]
            if column_list
            else [c.name for c in self._temp[table]]
        )
        if rows and len(rows[0]) != len(columns):
            raise Failed(SqlError(213, "Column name or number of supplied values does not match table definition."))
        if rows:
            placeholders = ", ".join("?" for _ in columns)
            quoted = ", ".join(f'"{c}"' for c in columns)
            self._con.executemany(f'INSERT INTO temp.main."{table}" ({quoted}) VALUES ({placeholders})', rows)
        return RowCount(None if self._nocount else len(rows))

    def _declare(self, text: str, params: Mapping[str, Any]) -> None:
        match = DECLARE.match(text)
        if match is None:
            raise Failed(errors.syntax_error(text.split()[-1]))
        name, type_text, expression = match.group(1).lower(), match.group(2), match.group(3)
        declared = from_datatype(exp.DataType.build(type_text, dialect="tsql"))
        self._variables[name] = (declared, None)
        if expression:
            self._assign(name, declared, expression, params)

    def _assign(self, name: str, declared: Column | None, expression: str, params: Mapping[str, Any]) -> None:
        value = self.scalar(expression, params)
        if declared is not None and declared.type is not SqlType.SQL_VARIANT and value is not None:
            converted = shape(declared, [value])
            value = converted[0] if converted else value
        self._variables[name] = (declared, value)

    def _set_variables(self, values: Mapping[str, Any]) -> None:
        """Change the session's DuckDB variables; they reach the connection when a statement reads them."""
        self._state.update(values)


_UNSET = object()
_NOT_COMPILED = frozenset({"SET", "DBCC", "EXEC", "EXECUTE", "DECLARE", "PRINT", "INSERT"})
"""Statements `_compile` leaves to run time: answered here without a query, or (INSERT) only into #temp tables."""
_TEMP_TABLE = "temp.main."
_BIND_ERRORS: dict[str, SqlError | None] = {}
"""Translated statement → the compile error DuckDB's binder gives it (None: it binds); see `_bind_check`."""
_BIND_CACHE_SIZE = 4096
_ROW_SET_VARIABLES = frozenset({"lg_i", "lg_instance"})
"""Variables that only pick the instance's rows: the catalog's `contents()` stands for them in a result's key."""


def _exact(value: Any) -> tuple[type, str]:
    """A value as a cache key part that tells apart what Python equates (1, True, 1.0; Decimal 1.0 and 1.00),
    since DuckDB binds them as different types."""
    return type(value), repr(value)


_NOT_NAMES = {
    TokenType.STRING,
    TokenType.NATIONAL_STRING,
    TokenType.NUMBER,
    TokenType.PARAMETER,
    TokenType.L_PAREN,
    TokenType.COMMA,
    TokenType.SEMICOLON,
    TokenType.EQ,
}


def _head(text: str) -> str:
    """A statement's first word, upper-cased: `EXEC(N'…')` starts with EXEC as much as `EXEC (N'…')` does."""
    match = re.match(r"\w+", text)
    return match.group(0).upper() if match else ""


def _failure_items(e: Failed | SqlError | duckdb.Error) -> tuple[SqlError, ...]:
    """The SQL Server errors a failure stands for (a DuckDB one mapped as the client would see it)."""
    if isinstance(e, Failed):
        return e.items
    if isinstance(e, SqlError):
        return (e,)
    return (errors.from_duckdb(e),)


def _looks_like_procedure(text: str) -> bool:
    """A batch may start with a bare procedure call: `sp_datatype_info_100 12,3` (FreeTDS sends that)."""
    return re.match(r"^[\w\[\]\.]+(\s+[^=(].*)?$", text, re.DOTALL) is not None and (
        text.split()[0].upper() not in STARTERS
    )


def _split_arguments(tokens: Sequence[Token]) -> list[list[Token]]:
    groups: list[list[Token]] = []
    current: list[Token] = []
    depth = 0
    for token in tokens:
        if token.token_type == TokenType.SEMICOLON:
            break
        if token.token_type == TokenType.L_PAREN:
            depth += 1
        elif token.token_type == TokenType.R_PAREN:
            depth -= 1
        if token.token_type == TokenType.COMMA and depth == 0:
            groups.append(current)
            current = []
        else:
            current.append(token)
    if current:
        groups.append(current)
    if any(not g for g in groups):
        raise Failed(errors.syntax_error(","))
    return groups
