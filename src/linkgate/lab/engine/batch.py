"""Split a T-SQL batch into statements, as SQL Server does: semicolons are optional.

The splitter works on sqlglot's T-SQL tokens (so strings, brackets and comments are never cut) and
knows the few block forms the lab answers: `IF <condition> <statement> [ELSE <statement>]` and
`BEGIN … END`. A new statement starts at a statement keyword at nesting depth 0, unless that keyword
continues the current statement (`INSERT … SELECT`, `… UNION SELECT`, `UPDATE … SET`, `WITH … SELECT`).
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import ClassVar

from sqlglot.dialects.tsql import TSQL
from sqlglot.errors import TokenError
from sqlglot.tokenizer_core import Token, TokenType

from linkgate.lab.results import SqlError

STARTERS = {
    "SELECT",
    "INSERT",
    "UPDATE",
    "DELETE",
    "MERGE",
    "CREATE",
    "ALTER",
    "DROP",
    "TRUNCATE",
    "SET",
    "DECLARE",
    "USE",
    "DBCC",
    "EXEC",
    "EXECUTE",
    "PRINT",
    "IF",
    "BEGIN",
    "COMMIT",
    "ROLLBACK",
    "GRANT",
    "REVOKE",
    "DENY",
    "BACKUP",
    "RESTORE",
    "RETURN",
    "WITH",
    "SAVE",
    "WAITFOR",
    "RAISERROR",
    "THROW",
    "KILL",
    "SHUTDOWN",
    "RECONFIGURE",
    "CHECKPOINT",
    "WHILE",
    "BREAK",
    "CONTINUE",
    "GOTO",
}
CONTINUES = {
    # first keyword of the statement → keywords that continue it rather than start a new one
    "INSERT": {"SELECT", "EXEC", "EXECUTE", "WITH"},
    "UPDATE": {"SET"},
    "MERGE": {"UPDATE", "INSERT", "DELETE", "SET"},
    "WITH": {"SELECT", "INSERT", "UPDATE", "DELETE", "MERGE"},
    "CREATE": {
        "SELECT",
        "WITH",
        "BEGIN",
        "SET",
        "INSERT",
        "UPDATE",
        "DELETE",
        "EXEC",
        "EXECUTE",
        "RETURN",
        "DECLARE",
        "IF",
    },
    "ALTER": {"SET", "SELECT", "WITH", "BEGIN"},
    "GRANT": {"SELECT", "INSERT", "UPDATE", "DELETE", "EXECUTE", "EXEC", "ALTER", "CREATE", "SET"},
    "DENY": {"SELECT", "INSERT", "UPDATE", "DELETE", "EXECUTE", "EXEC", "ALTER", "CREATE", "SET"},
    "REVOKE": {"SELECT", "INSERT", "UPDATE", "DELETE", "EXECUTE", "EXEC", "ALTER", "CREATE", "SET"},
}
AFTER_CONTINUES = {"UNION", "ALL", "EXCEPT", "INTERSECT", "AS", "FOR"}
NOT_BLOCKS = {"TRAN", "TRANSACTION", "DISTRIBUTED", "DIALOG", "CONVERSATION"}
_TEXT_TOKENS = {TokenType.STRING, TokenType.NATIONAL_STRING, TokenType.IDENTIFIER}


@dataclass(frozen=True)
class Statement:
    """One simple statement: its exact text in the batch."""

    text: str


@dataclass(frozen=True)
class IfStatement:
    condition: str
    then: Node
    otherwise: Node | None
    text: str


@dataclass(frozen=True)
class Block:
    body: tuple[Node, ...]
    text: str


Node = Statement | IfStatement | Block


class _Tokenizer(TSQL.Tokenizer):
    """sqlglot's T-SQL tokenizer without "command" mode, which swallows what follows `; END` into one string."""

    COMMANDS: ClassVar[set[TokenType]] = set()


def tokenize(sql: str) -> list[Token]:
    """T-SQL tokens with their offsets in `sql` (strings, [identifiers] and comments kept whole)."""
    return _Tokenizer().tokenize(sql)


@functools.lru_cache(maxsize=2048)
def statement_tokens(statement: str) -> tuple[Token, ...]:
    """`tokenize(statement)`, kept: a driver's EXEC statements come back at every connection, and the
    tokenizer costs a tenth of a millisecond per statement. The tokens are only ever read."""
    return tuple(tokenize(statement))


@functools.lru_cache(maxsize=2048)
def split_batch(sql: str) -> tuple[Node, ...]:
    """The batch's statements in order; unbalanced blocks raise SqlError 102 as SQL Server would."""
    try:
        tokens = tokenize(sql)
    except TokenError as e:
        raise SqlError(105, f"Unclosed quotation mark after the character string '{sql[-20:]}'.", severity=15) from e
    parser = _Parser(sql, tokens)
    nodes = []
    while not parser.done():
        if parser.word() == ";":
            parser.i += 1
            continue
        nodes.append(parser.statement())
    return tuple(nodes)


def keyword(token: Token) -> str:
    """A token's keyword (upper case), or '' for strings and [identifiers]."""
    return "" if token.token_type in _TEXT_TOKENS else token.text.upper()


class _Parser:
    def __init__(self, sql: str, tokens: list[Token]) -> None:
        self.sql = sql
        self.tokens = tokens
        self.i = 0

    def done(self) -> bool:
        return self.i >= len(self.tokens)

    def word(self, offset: int = 0) -> str:
        j = self.i + offset
        return keyword(self.tokens[j]) if j < len(self.tokens) else ""

    def text(self, start: int, end: int) -> str:
        return self.sql[self.tokens[start].start : self.tokens[end - 1].end + 1]

    def statement(self) -> Node:
        first = self.word()
        if first == "IF":
            return self.if_statement()
        if first == "BEGIN" and self.word(1) not in NOT_BLOCKS:
            return self.block()
        return self.simple()

    def if_statement(self) -> IfStatement:
        start = self.i
        self.i += 1
        cond_start = self.i
        depth = 0
        while not self.done():
            w = self.word()
            if w == "(":
                depth += 1
            elif w == ")":
                depth -= 1
            elif depth == 0 and w in STARTERS and self.i > cond_start:
                break
            self.i += 1
        if self.done() or self.i == cond_start:
            raise _syntax_error(self.tokens[-1].text)
        condition = self.text(cond_start, self.i)
        then = self.statement()
        self._skip_semicolons()
        otherwise = None
        if self.word() == "ELSE":
            self.i += 1
            otherwise = self.statement()
        return IfStatement(condition, then, otherwise, self.text(start, self.i))

    def block(self) -> Block:
        start = self.i
        self.i += 1
        body: list[Node] = []
        while True:
            self._skip_semicolons()
            if self.done():
                raise _syntax_error(self.tokens[-1].text)
            if self.word() == "END":
                self.i += 1
                return Block(tuple(body), self.text(start, self.i))
            body.append(self.statement())

    def simple(self) -> Statement:
        start = self.i
        first = self.word()
        depth = 0
        cases = 0
        self.i += 1
        while not self.done():
            w = self.word()
            if w == "(":
                depth += 1
            elif w == ")":
                depth -= 1
            elif depth == 0:
                if w == ";" or (w in ("END", "ELSE") and cases == 0):
                    break
                if w == "CASE":
                    cases += 1
                elif w == "END":
                    cases -= 1
                elif w in STARTERS and cases == 0 and not self._continues(first, w):
                    break
            self.i += 1
        return Statement(self.text(start, self.i))

    def _continues(self, first: str, w: str) -> bool:
        if w == "WITH" and not (self.word(2) in ("AS", "(") and self.word(1) not in ("", "(")):
            return True  # table hints, DBCC/BACKUP options: only `WITH name AS (` / `WITH name (` opens a CTE
        previous = self.word(-1)
        if previous in AFTER_CONTINUES or previous == "(":
            return True
        if first == "SET" and w == "SELECT":
            return False
        return w in CONTINUES.get(first, set())

    def _skip_semicolons(self) -> None:
        while self.word() == ";":
            self.i += 1


def _syntax_error(near: str) -> SqlError:
    return SqlError(102, f"Incorrect syntax near '{near}'.", severity=15)
