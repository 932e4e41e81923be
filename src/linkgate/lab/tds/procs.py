"""RPC semantics: the system procedures drivers use for parameterised statements, and calls by name.

Both drivers run `cursor.execute(sql, *params)` as sp_prepexec (id 13): handle (OUTPUT), the
`@params` declaration, the statement, then the values positionally; FreeTDS follows with
sp_unprepare (15). This module keeps the per-connection prepared handles, maps positional values to
the declared names (`@P1 nvarchar(12),@P2 int` → {"P1": …, "P2": …}) and answers as SQL Server:
statement tokens with DONEINPROC, RETURNVALUE for an OUTPUT handle, RETURNSTATUS, DONEPROC.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from linkgate.lab.backend import Session
from linkgate.lab.results import Column, Outcome, ReturnStatus, SqlError, SqlType
from linkgate.lab.tds.requests import RpcCall, RpcParam
from linkgate.lab.tds.response import Response
from linkgate.lab.tds.tokens import CURCMD_EXECUTE, Done, Token, returnstatus, returnvalue

SP_EXECUTESQL, SP_PREPARE, SP_EXECUTE, SP_PREPEXEC, SP_PREPEXECRPC, SP_UNPREPARE = 10, 11, 12, 13, 14, 15
PROC_IDS = {
    "sp_executesql": SP_EXECUTESQL,
    "sp_prepare": SP_PREPARE,
    "sp_execute": SP_EXECUTE,
    "sp_prepexec": SP_PREPEXEC,
    "sp_prepexecrpc": SP_PREPEXECRPC,
    "sp_unprepare": SP_UNPREPARE,
}
_DECLARED_NAME = re.compile(r"@([^\s,()]+)")
_HANDLE = Column("", SqlType.INT)


@dataclass(frozen=True)
class Prepared:
    """A prepared statement (`statement` is SQL) or, from sp_prepexecrpc, a procedure (`statement` is its name)."""

    statement: str
    names: tuple[str, ...]
    procedure: bool = False


def procedure_name(call: RpcCall) -> str:
    """The called name without bracket quoting: `[sys].[sp_datatype_info_100]` → `sys.sp_datatype_info_100`."""
    return call.name.replace("[", "").replace("]", "")


class Procedures:
    """One connection's RPC handling: prepared statements live as long as the connection."""

    def __init__(self, session: Session) -> None:
        self.session = session
        self.prepared: dict[int, Prepared] = {}
        self._next_handle = 1

    def text_of(self, call: RpcCall) -> str:
        """What a stall pattern is matched against: the SQL a call runs, else the procedure's name."""
        proc = _system_proc(call)
        values = [p.value for p in call.params]
        if proc == SP_EXECUTESQL and values:
            return str(values[0])
        if proc in (SP_PREPEXEC, SP_PREPARE) and len(values) > 2:
            return str(values[2])
        if proc == SP_PREPEXECRPC and len(values) > 1:
            return str(values[1])
        if proc == SP_EXECUTE and values and isinstance(values[0], int) and values[0] in self.prepared:
            return self.prepared[values[0]].statement
        return procedure_name(call) or f"rpc {call.proc_id}"

    def run(self, call: RpcCall, out: Response) -> None:
        """Execute one call and write its tokens, ending with DONEPROC (error or not)."""
        proc = _system_proc(call)
        params = list(call.params)
        try:
            if proc == SP_EXECUTESQL:
                self._executesql(params, out)
            elif proc in (SP_PREPARE, SP_PREPEXEC):
                self._prepare(params, out, execute=proc == SP_PREPEXEC)
            elif proc == SP_PREPEXECRPC:
                self._prepexecrpc(params, out)
            elif proc == SP_EXECUTE:
                self._execute(params, out)
            elif proc == SP_UNPREPARE:
                self.prepared.pop(int(_value(params, 0, "handle")), None)
                self._end(out, [returnstatus(0)])
            elif call.proc_id is not None:
                raise SqlError(
                    2812, f"Could not find stored procedure 'system procedure {call.proc_id}'.", state=62, severity=16
                )
            else:
                self._statement(self.session.call_procedure(procedure_name(call), _named(params)), out, [])
        except SqlError as e:
            out.error(e, token=Token.DONEPROC)

    def _executesql(self, params: list[RpcParam], out: Response) -> None:
        statement = str(_value(params, 0, "stmt"))
        if len(params) < 2:
            self._statement(self.session.execute(statement), out, [])
            return
        names = declared_names(str(params[1].value or ""))
        self._statement(self.session.execute(statement, bind(names, params[2:])), out, [])

    def _prepare(self, params: list[RpcParam], out: Response, *, execute: bool) -> None:
        handle_param = params[0] if params else RpcParam("", None, output=True)
        prepared = Prepared(str(_value(params, 2, "stmt")), declared_names(str(_value(params, 1, "params") or "")))
        outcomes: list[Outcome] = []
        if execute:
            outcomes = self.session.execute(prepared.statement, bind(prepared.names, params[3:]))
        handle = self._keep(prepared)
        self._statement(outcomes, out, [returnvalue(0, handle_param.name, _HANDLE, handle)])

    def _prepexecrpc(self, params: list[RpcParam], out: Response) -> None:
        """ODBC `{call proc(?)}` under Driver 18: handle (OUTPUT), the procedure's name, its parameters."""
        handle_param = params[0] if params else RpcParam("", None, output=True)
        prepared = Prepared(str(_value(params, 1, "RPCCall")).replace("[", "").replace("]", ""), (), procedure=True)
        outcomes = self.session.call_procedure(prepared.statement, _named(params[2:]))
        handle = self._keep(prepared)
        self._statement(outcomes, out, [returnvalue(0, handle_param.name, _HANDLE, handle)])

    def _execute(self, params: list[RpcParam], out: Response) -> None:
        handle = int(_value(params, 0, "handle"))
        prepared = self.prepared.get(handle)
        if prepared is None:
            raise SqlError(8179, f"Could not find prepared statement with handle {handle}.", state=4, severity=16)
        if prepared.procedure:
            outcomes = self.session.call_procedure(prepared.statement, _named(params[1:]))
        else:
            outcomes = self.session.execute(prepared.statement, bind(prepared.names, params[1:]))
        self._statement(outcomes, out, [])

    def _keep(self, prepared: Prepared) -> int:
        handle = self._next_handle
        self._next_handle += 1
        self.prepared[handle] = prepared
        return handle

    def _statement(self, outcomes: Sequence[Outcome], out: Response, return_values: list[bytes]) -> None:
        failed = out.outcomes(outcomes, token=Token.DONEINPROC)
        if failed:  # the call ended on them: no return value or status, DONEPROC with DONE_ERROR
            out.errors(failed, token=Token.DONEPROC)
            return
        for value in return_values:
            out.token(value)
        status = next((o.value for o in outcomes if isinstance(o, ReturnStatus)), 0)
        self._end(out, [returnstatus(status)])

    @staticmethod
    def _end(out: Response, tokens: list[bytes]) -> None:
        for token in tokens:
            out.token(token)
        out.done(Done.FINAL, curcmd=CURCMD_EXECUTE, token=Token.DONEPROC)


def declared_names(declaration: str) -> tuple[str, ...]:
    """Parameter names, without '@', in declaration order: '@P1 nvarchar(12),@P2 decimal(18,4)' → ('P1', 'P2')."""
    return tuple(_DECLARED_NAME.findall(declaration))


def bind(names: Sequence[str], params: Sequence[RpcParam]) -> dict[str, Any]:
    """Values by name without '@': a value's own name when sent, else the declaration's name at its position."""
    if len(params) > len(names) and not all(p.name for p in params):
        raise SqlError(8144, "Procedure or function has too many arguments specified.", state=2, severity=16)
    return {(p.name.lstrip("@") if p.name else names[i]): p.value for i, p in enumerate(params)}


def _named(params: Sequence[RpcParam]) -> list[tuple[str, Any]]:
    """A procedure's parameters for Session.call_procedure: names without '@' ("" when positional)."""
    return [(p.name.lstrip("@"), p.value) for p in params]


def _system_proc(call: RpcCall) -> int | None:
    if call.proc_id is not None:
        return call.proc_id
    return PROC_IDS.get(procedure_name(call).rsplit(".", 1)[-1].lower())


def _value(params: Sequence[RpcParam], index: int, what: str) -> Any:
    if index >= len(params):
        raise SqlError(
            201, f"Procedure or function expects parameter '@{what}', which was not supplied.", state=4, severity=16
        )
    return params[index].value
