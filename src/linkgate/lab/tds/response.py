"""Turning a batch's or a procedure call's outcomes into one response's token stream.

The DONE family frames statements: each result set or row count ends with a DONE (DONEINPROC inside
an RPC), every DONE but the last of the response carries DONE_MORE, and a failed statement is its
ERROR token(s) followed by one DONE with DONE_ERROR (MS-TDS 2.2.7.6: "an error occurred on the current
SQL statement"). An error the batch runs on after (229, 297/300, or a scope-ending error inside dynamic
SQL) is therefore ERROR, DONE(DONE_ERROR | DONE_MORE), then the next statement's tokens, as SQL Server
sends it; the last DONE carries the last statement's own status, without DONE_MORE. An error that ends
the response is left to the caller, which closes it with DONE (DONEPROC in an RPC) and DONE_ERROR.
A response that produced nothing still ends with a DONE, because clients read until a final DONE.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from linkgate.lab.results import (
    DatabaseChanged,
    Message,
    Outcome,
    ResultSet,
    ReturnStatus,
    RowCount,
    SqlError,
)
from linkgate.lab.tds.tokens import (
    CURCMD_EXECUTE,
    CURCMD_SELECT,
    Done,
    Env,
    Token,
    colmetadata,
    done,
    env_text,
    message,
    returnstatus,
    row,
)


class ResetMidResult(Exception):
    """The instance's reset_after_rows fault fired: `partial` is what goes out before the RST."""

    def __init__(self, partial: bytes) -> None:
        super().__init__("connection reset mid-result (fault injection)")
        self.partial = partial


@dataclass
class _PendingDone:
    status: Done
    count: int
    curcmd: int
    token: Token


class Response:
    """Accumulates the tokens of one response; `finish()` returns them with the DONE flags settled."""

    def __init__(self, server_name: str, *, reset_after_rows: int | None = None) -> None:
        self.server_name = server_name
        self.reset_after_rows = reset_after_rows
        self._out = bytearray()
        self._pending: _PendingDone | None = None
        self._open = True  # tokens were written since the last DONE (or nothing at all yet)

    def token(self, data: bytes) -> None:
        self._settle(more=True)
        self._out += data
        self._open = True

    def done(self, status: Done, count: int = 0, *, curcmd: int = 0, token: Token = Token.DONE) -> None:
        self._settle(more=True)
        self._pending = _PendingDone(status, count, curcmd, token)
        self._open = False

    def outcomes(self, outcomes: Sequence[Outcome], *, token: Token = Token.DONE) -> list[SqlError]:
        """Encode outcomes; the errors they end with (if any) are returned for the caller to close the response.

        Consecutive errors belong to one statement (300 then 297), so they share one DONE; an error group
        that anything follows is a statement the batch ran on after, and goes out with its DONE_ERROR DONE.
        """
        pending: list[SqlError] = []
        for outcome in outcomes:
            if isinstance(outcome, SqlError):
                pending.append(outcome)
                continue
            if pending:
                self.errors(pending, token=token)
                pending = []
            if isinstance(outcome, ResultSet):
                self.result_set(outcome, token=token)
            elif isinstance(outcome, RowCount):
                status = Done.FINAL if outcome.count is None else Done.COUNT
                self.done(status, outcome.count or 0, token=token)
            elif isinstance(outcome, Message):
                self.token(
                    message(
                        Token.INFO,
                        outcome.number,
                        outcome.message,
                        state=outcome.state,
                        severity=outcome.severity,
                        server=self.server_name,
                    )
                )
            elif isinstance(outcome, DatabaseChanged):
                self.token(env_text(Env.DATABASE, outcome.new, outcome.old))
            elif isinstance(outcome, ReturnStatus) and token is Token.DONE:
                self.token(returnstatus(outcome.value))  # in an RPC the caller sends it before DONEPROC
        return pending

    def result_set(self, rs: ResultSet, *, token: Token = Token.DONE) -> None:
        self.token(colmetadata(rs.columns))
        for number, values in enumerate(rs.rows):
            if number == self.reset_after_rows:
                raise ResetMidResult(bytes(self._out))
            self._out += row(rs.columns, values)
        if len(rs.rows) == self.reset_after_rows:
            raise ResetMidResult(bytes(self._out))
        self.done(Done.COUNT, len(rs.rows), curcmd=CURCMD_SELECT, token=token)

    def error(self, e: SqlError, *, token: Token = Token.DONE) -> None:
        self.errors([e], token=token)

    def errors(self, items: Sequence[SqlError], *, token: Token = Token.DONE) -> None:
        """One failed statement: an ERROR token per error, then one DONE-family token with DONE_ERROR."""
        for e in items:
            self.token(
                message(
                    Token.ERROR,
                    e.number,
                    e.message,
                    state=e.state,
                    severity=e.severity,
                    server=self.server_name,
                    procedure=e.procedure,
                    line=e.line,
                )
            )
        self.done(Done.ERROR, curcmd=CURCMD_EXECUTE if token is Token.DONEPROC else 0, token=token)

    def finish(self) -> bytes:
        if self._open:
            self.done(Done.FINAL)
        self._settle(more=False)
        return bytes(self._out)

    def _settle(self, *, more: bool) -> None:
        """Write the pending DONE, with DONE_MORE when anything follows it (DONEINPROC: always)."""
        pending = self._pending
        if pending is None:
            return
        status = pending.status
        if more or pending.token is Token.DONEINPROC:
            status |= Done.MORE
        self._out += done(status, pending.count, curcmd=pending.curcmd, token=pending.token)
        self._pending = None
