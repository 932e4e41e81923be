"""Is a statement read-only? The audit behind "the gate changes nothing on any target".

Read-only: SELECT (not INTO a permanent table), SET, USE, DECLARE, PRINT, DBCC TRACESTATUS, transaction
control, #temp tables (tempdb, the session's own), and the read-only procedures (sp_executesql of a
read-only statement, the drivers' catalog procedures). Everything else — CREATE/ALTER/DROP of permanent
objects, INSERT/UPDATE/DELETE/MERGE outside #temp, BACKUP, GRANT, DBCC TRACEON, other procedures — is a
write. Unparseable text is a write: the audit must never call something it cannot read harmless.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Literal

import sqlglot
from sqlglot import exp
from sqlglot.errors import ParseError, TokenError

from linkgate.lab.backend import LoggedStatement
from linkgate.lab.engine.batch import STARTERS, Block, IfStatement, Node, Statement, split_batch
from linkgate.lab.results import SqlError

Verdict = Literal["read", "write"]
READ_ONLY_PROCEDURES = {"sp_datatype_info_100", "sp_datatype_info", "sp_describe_undeclared_parameters"}
_EXEC = re.compile(r"^(?:EXEC(?:UTE)?\s+)?(?:@\w+\s*=\s*)?([\w\[\]\.\"]+)\s*(.*)$", re.IGNORECASE | re.DOTALL)
_STRING = re.compile(r"^N?'((?:[^']|'')*)'", re.DOTALL)
_OBJECT_DDL = re.compile(r"^(CREATE|ALTER|DROP)\s+(CERTIFICATE|ENDPOINT|PROC|PROCEDURE)\b", re.IGNORECASE)
"""DDL sqlglot cannot parse (it would say so on stderr); a write whatever follows."""
_HARMLESS = re.compile(
    r"^(SET|USE|DECLARE|PRINT|BEGIN\s+TRAN|BEGIN\s+TRANSACTION|COMMIT|ROLLBACK|DBCC\s+TRACESTATUS)\b", re.IGNORECASE
)


def classify(text: str, kind: str = "batch") -> Verdict:
    """'read' when every statement of `text` (a batch, or a procedure name for kind 'proc') is read-only."""
    if kind == "proc":
        name = text.split(".")[-1].strip('[]"').lower()
        return "read" if name in READ_ONLY_PROCEDURES else "write"
    try:
        nodes = split_batch(text)
    except SqlError:
        return "write"
    return "read" if all(_node(n) == "read" for n in nodes) else "write"


def writes(log: Iterable[LoggedStatement]) -> list[LoggedStatement]:
    """The logged statements that are not read-only (sp_executesql by name is judged by its statement)."""
    out = []
    for entry in log:
        text = entry.text
        if entry.kind == "proc" and text.split(".")[-1].strip("[]").lower() == "sp_executesql":
            statement = next(iter(entry.params.values()), "")
            verdict = classify(str(statement))
        else:
            verdict = classify(text, entry.kind)
        if verdict == "write":
            out.append(entry)
    return out


def _node(node: Node) -> Verdict:
    if isinstance(node, IfStatement):
        parts = [node.then] + ([node.otherwise] if node.otherwise else [])
        return "read" if all(_node(p) == "read" for p in parts) else "write"
    if isinstance(node, Block):
        return "read" if all(_node(p) == "read" for p in node.body) else "write"
    return _statement(node)


def _statement(node: Statement) -> Verdict:
    text = node.text.strip().rstrip(";").strip()
    if _OBJECT_DDL.match(text):
        return "write"
    if _HARMLESS.match(text) and not re.match(r"^SET\s+@\w+\s*=.*\bEXEC", text, re.IGNORECASE | re.DOTALL):
        return "read"
    bare_call = text.split()[0].upper() not in STARTERS and re.match(r"^[\w\[\]\.]+(\s+[^=(]|$)", text)
    if bare_call or re.match(r"^(EXEC|EXECUTE)\b|^INSERT\s+(INTO\s+)?#", text, re.IGNORECASE):
        return _exec_or_insert(text)
    try:
        tree = sqlglot.parse_one(text, read="tsql")
    except (ParseError, TokenError):
        return "write"
    return _tree(tree)


def _exec_or_insert(text: str) -> Verdict:
    insert = re.match(r"^INSERT\s+(?:INTO\s+)?#\w+\s*(?:\([^)]*\))?\s*(.*)$", text, re.IGNORECASE | re.DOTALL)
    if insert:
        rest = insert.group(1)
        if re.match(r"^(EXEC|EXECUTE)\b", rest, re.IGNORECASE):
            return _exec_or_insert(rest)
        return classify(rest) if rest else "write"
    dynamic = re.match(r"^EXEC(?:UTE)?\s*\(\s*(N?'.*')\s*\)$", text, re.IGNORECASE | re.DOTALL)
    if dynamic:
        literal = _STRING.match(dynamic.group(1))
        return classify(literal.group(1).replace("''", "'")) if literal else "write"
    match = _EXEC.match(text)
    if match is None:
        return "write"
    name = match.group(1).split(".")[-1].strip('[]"').lower()
    if name in READ_ONLY_PROCEDURES:
        return "read"
    if name == "sp_executesql":
        literal = _STRING.match(match.group(2).strip())
        return classify(literal.group(1).replace("''", "'")) if literal else "write"
    return "write"


def _tree(tree: exp.Expr) -> Verdict:
    if isinstance(tree, exp.Query):
        into = tree.args.get("into")
        return "read" if into is None or _temp_only(into.find_all(exp.Table)) else "write"
    if isinstance(tree, exp.Create | exp.Drop | exp.Insert):
        tables = [tree.this.this if isinstance(tree.this, exp.Schema) else tree.this]
        tables += (
            list(tree.args.get("tables") or tree.args.get("expressions") or []) if isinstance(tree, exp.Drop) else []
        )
        kind = str(tree.args.get("kind") or "TABLE").upper()
        if kind == "TABLE" and _temp_only(t for t in tables if isinstance(t, exp.Table)):
            source = tree.args.get("expression") if isinstance(tree, exp.Insert) else None
            return _tree(source) if isinstance(source, exp.Query) else "read"
    return "write"


def _temp_only(tables: Iterable[exp.Table]) -> bool:
    found = list(tables)
    return bool(found) and all(t.this.args.get("temporary") or t.name.startswith("#") for t in found)
