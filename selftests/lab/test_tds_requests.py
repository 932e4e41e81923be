"""Batches and RPCs through both drivers: parameters, big requests and results, several result sets,
errors with their SQLSTATEs, USE, transactions."""

from __future__ import annotations

import datetime as dt
import decimal
import struct
import uuid
from collections.abc import Callable
from typing import Any

import pyodbc
import pytest

from linkgate.drivers import OdbcDriver, connection_string
from linkgate.lab.results import Column, Message, Outcome, ResultSet, RowCount, SqlError, SqlType
from linkgate.lab.tds.procs import SP_EXECUTE, SP_EXECUTESQL, SP_PREPARE, Procedures, bind, declared_names
from linkgate.lab.tds.requests import RpcCall, RpcParam
from linkgate.lab.tds.response import Response
from linkgate.lab.tds.tokens import Token
from linkgate.lab.tds.wire import b_varchar
from selftests.lab.conftest import PASSWORD, SERVER_NAME, USER, CannedBackend, Served, sqlstate
from selftests.lab.relay import (
    COLMETADATA,
    DONE,
    DONE_COUNT,
    DONE_ERROR,
    DONE_MORE,
    DONEINPROC,
    DONEPROC,
    ERROR,
    RETURNSTATUS,
    ROW,
    Relay,
    Tok,
    read_tokens,
    tds_messages,
)

pytestmark = pytest.mark.lab

OK: list[Outcome] = [ResultSet((Column("ok", SqlType.INT),), [(1,)])]


def _placeholders(sql: str) -> str:
    """The statement as both drivers send it: each `?` becomes @P1, @P2, …"""
    parts = sql.split("?")
    return "".join(p + (f"@P{i}" if i < len(parts) else "") for i, p in enumerate(parts, start=1))


PARAMETERS: list[tuple[str, Any]] = [
    ("str", "app_db"),
    ("unicode", "Ünïcødé ✓"),
    ("int", 42),
    ("bigint", 2**40),
    ("negative", -7),
    ("float", 1.25),
    ("decimal", decimal.Decimal("12.3400")),
    ("bool", True),
    ("none", None),
    ("datetime", dt.datetime(2024, 1, 2, 3, 4, 5)),
    ("datetime_ms", dt.datetime(2024, 1, 2, 3, 4, 5, 123000)),
    ("date", dt.date(2024, 1, 2)),
    ("bytes", b"\x00\x01\xff"),
    ("long_str", "é" * 5000),  # NVARCHAR(MAX) as PLP
    ("uuid", uuid.UUID("12345678-1234-5678-9abc-def012345678")),
]


def test_datetime_parameters_keep_what_sp_datatype_info_allows(
    serve: Callable[..., Served], driver: OdbcDriver
) -> None:
    """pyodbc sends the fraction SQLGetTypeInfo(SQL_TYPE_TIMESTAMP) allows: datetime's 23 → milliseconds,
    as against SQL Server; without that answer it would send whole seconds."""
    served = serve({"select ok where d = @P1": OK})
    with served.connect(driver) as cnxn:
        cnxn.cursor().execute("select ok where d = ?", dt.datetime(2024, 1, 2, 3, 4, 5, 123456))
    assert served.backend.statements[-1].params == {"P1": dt.datetime(2024, 1, 2, 3, 4, 5, 123000)}


def test_pyodbc_asks_for_type_info_once_per_connection_string(serve: Callable[..., Served], driver: OdbcDriver) -> None:
    """pyodbc keeps SQLGetTypeInfo's answers per connection string for the process: a second connect with
    the same string asks nothing. Why Served gives each backend its own APP, and why a gate worker pays
    the type-info round trips once per target, not once per connection."""
    served = serve()
    with served.connect(driver):
        pass
    first = len(served.backend.statements)
    with served.connect(driver):
        pass
    assert first > 0
    assert len(served.backend.statements) == first


@pytest.mark.parametrize(("label", "value"), PARAMETERS, ids=[label for label, _ in PARAMETERS])
def test_a_parameter_reaches_the_backend_by_name_with_its_value(
    serve: Callable[..., Served], driver: OdbcDriver, label: str, value: Any
) -> None:
    sql = "select ok from t where a = ? and b = ?"
    served = serve({_placeholders(sql): OK})
    with served.connect(driver) as cnxn:
        assert cnxn.cursor().execute(sql, value, 7).fetchall()[0][0] == 1
    executed = [s for s in served.backend.statements if s.kind == "rpc"]
    assert executed[-1].text == _placeholders(sql)
    assert dict(executed[-1].params) == {"P1": value, "P2": 7}


def test_a_prepared_statement_is_reused_by_handle(serve: Callable[..., Served], driver: OdbcDriver) -> None:
    sql = "select ok from t where a = ?"
    served = serve({_placeholders(sql): OK})
    with served.connect(driver) as cnxn:
        cursor = cnxn.cursor()
        for n in range(3):
            assert cursor.execute(sql, n).fetchall()[0][0] == 1
    assert [s.params for s in served.backend.statements if s.kind == "rpc"] == [{"P1": 0}, {"P1": 1}, {"P1": 2}]


def test_5000_rows_cross_many_packets(serve: Callable[..., Served], driver: OdbcDriver) -> None:
    columns = (Column("n", SqlType.INT), Column("name", SqlType.NVARCHAR, 64))
    rows = [(n, f"database_{n:05d}_ñ") for n in range(5000)]
    served = serve({"select n, name from big": [ResultSet(columns, rows)]})
    with served.connect(driver) as cnxn:
        assert [tuple(r) for r in cnxn.cursor().execute("select n, name from big").fetchall()] == rows


@pytest.mark.parametrize("as_rpc", [False, True], ids=["batch", "rpc"])
def test_a_17kb_request_crosses_packets(serve: Callable[..., Served], driver: OdbcDriver, as_rpc: bool) -> None:
    sql = "select ok /* " + "x" * 17_000 + " */ where 1 = " + ("?" if as_rpc else "1")
    served = serve({_placeholders(sql): OK})
    with served.connect(driver) as cnxn:
        cursor = cnxn.cursor().execute(sql, 1) if as_rpc else cnxn.cursor().execute(sql)
        assert cursor.fetchall()[0][0] == 1
    assert served.backend.statements[-1].text == _placeholders(sql)


def test_several_result_sets_and_messages_in_one_batch(serve: Callable[..., Served], driver: OdbcDriver) -> None:
    first = ResultSet((Column("a", SqlType.INT),), [(1,), (2,)])
    second = ResultSet((Column("b", SqlType.NVARCHAR, 10),), [("x",)])
    served = serve({"multi": [first, Message(50000, "between the sets"), RowCount(3), second]})
    with served.connect(driver) as cnxn:
        cursor = cnxn.cursor().execute("multi")
        sets = [[tuple(r) for r in cursor.fetchall()]]
        while cursor.nextset():
            if cursor.description is not None:
                sets.append([tuple(r) for r in cursor.fetchall()])
    assert sets == [[(1,), (2,)], [("x",)]]


@pytest.mark.parametrize(
    ("error", "state"),
    [
        (
            SqlError(
                229,
                "The SELECT permission was denied on the object 'backupset', database 'msdb', schema 'dbo'.",
                state=5,
                severity=14,
            ),
            "42000",
        ),
        (SqlError(208, "Invalid object name 'sys.nope'.", state=1, severity=16), "42S02"),
        (SqlError(207, "Invalid column name 'nope'.", state=1, severity=16), "42S22"),
    ],
)
@pytest.mark.parametrize("as_rpc", [False, True], ids=["batch", "rpc"])
def test_errors_surface_with_sql_servers_sqlstate_and_the_connection_survives(
    serve: Callable[..., Served], driver: OdbcDriver, error: SqlError, state: str, as_rpc: bool
) -> None:
    sql = "select denied where 1 = " + ("?" if as_rpc else "1")
    served = serve({_placeholders(sql): [error], "select 1": OK})
    with served.connect(driver) as cnxn:
        with pytest.raises(pyodbc.ProgrammingError) as caught:
            cnxn.cursor().execute(sql, 1) if as_rpc else cnxn.cursor().execute(sql)
        assert sqlstate(caught.value) == state
        assert f"{error.message} ({error.number})" in str(caught.value)
        assert cnxn.cursor().execute("select 1").fetchone()[0] == 1


def test_rows_before_an_error_are_delivered(serve: Callable[..., Served], driver: OdbcDriver) -> None:
    served = serve({"partial": [*OK, SqlError(208, "Invalid object name 'x'.")]})
    with served.connect(driver) as cnxn:
        cursor = cnxn.cursor().execute("partial")
        assert cursor.fetchall()[0][0] == 1
        with pytest.raises(pyodbc.ProgrammingError, match="Invalid object name 'x'"):
            cursor.nextset()


def test_use_changes_the_drivers_current_database(serve: Callable[..., Served], driver: OdbcDriver) -> None:
    served = serve()
    with served.connect(driver) as cnxn:
        cnxn.cursor().execute("use msdb")
        assert cnxn.getinfo(pyodbc.SQL_DATABASE_NAME) == "msdb"


def test_a_procedure_called_by_name_gets_its_named_parameters(serve: Callable[..., Served], driver: OdbcDriver) -> None:
    served = serve({"proc:sys.sp_helpdb": OK})
    with served.connect(driver) as cnxn:
        assert cnxn.cursor().execute("{call sys.sp_helpdb (?)}", "msdb").fetchall()[0][0] == 1
    call = [s for s in served.backend.statements if s.kind == "proc" and s.text == "sys.sp_helpdb"]
    assert [list(c.params.values()) for c in call] == [["msdb"]]


def test_an_unknown_procedure_is_2812(serve: Callable[..., Served], driver: OdbcDriver) -> None:
    served = serve()
    with (
        served.connect(driver) as cnxn,
        pytest.raises(pyodbc.Error, match=r"Could not find stored procedure 'dbo.nope'. \(2812\)"),
    ):
        cnxn.cursor().execute("{call dbo.nope}")


def test_transactions_requested_by_the_driver_are_acknowledged(
    serve: Callable[..., Served], driver: OdbcDriver
) -> None:
    """autocommit off: the drivers send TM BEGIN after login, COMMIT/ROLLBACK on demand, and need ENVCHANGEs."""
    served = serve({"select 1": OK})
    with served.connect(driver, autocommit=False) as cnxn:
        assert cnxn.cursor().execute("select 1").fetchone()[0] == 1
        cnxn.commit()
        assert cnxn.cursor().execute("select 1").fetchone()[0] == 1
        cnxn.rollback()
        assert cnxn.cursor().execute("select 1").fetchone()[0] == 1


def test_declared_names_follow_the_declaration_order() -> None:
    assert declared_names("@P1 nvarchar(12),@P2 decimal(18,4), @when DATETIME2(7) OUTPUT") == ("P1", "P2", "when")


def test_bind_prefers_a_values_own_name_and_refuses_surplus_values() -> None:
    assert bind(("P1", "P2"), [RpcParam("", 1), RpcParam("@x", 2)]) == {"P1": 1, "x": 2}
    with pytest.raises(SqlError) as caught:
        bind(("P1",), [RpcParam("", 1), RpcParam("", 2)])
    assert caught.value.number == 8144


def test_sp_prepare_sp_execute_and_sp_executesql_by_id() -> None:
    """The RPCs pyodbc does not use on its own but other clients do: prepare, execute by handle, executesql."""
    backend = CannedBackend(answers={"select @a": OK})
    procs = Procedures(backend.login(USER, PASSWORD, None))
    out = Response(SERVER_NAME)
    procs.run(
        RpcCall(SP_PREPARE, "", (RpcParam("@h", None, output=True), RpcParam("", "@a int"), RpcParam("", "select @a"))),
        out,
    )
    (handle,) = procs.prepared
    procs.run(RpcCall(SP_EXECUTE, "", (RpcParam("", handle), RpcParam("", 5))), out)
    procs.run(RpcCall(SP_EXECUTESQL, "", (RpcParam("", "select @a"), RpcParam("", "@a int"), RpcParam("", 6))), out)
    procs.run(RpcCall(SP_EXECUTE, "", (RpcParam("", 999),)), out)
    assert [s.params for s in backend.statements] == [{"a": 5}, {"a": 6}]
    tokens = out.finish()
    assert bytes([Token.RETURNVALUE]) + struct.pack("<H", 0) + b_varchar("@h") in tokens
    assert "Could not find prepared statement with handle 999.".encode("utf-16-le") in tokens


def test_freetds_unprepares_each_prepared_statement_and_the_server_answers(
    serve: Callable[..., Served], freetds: OdbcDriver
) -> None:
    """FreeTDS follows every sp_prepexec with sp_unprepare (ProcID 15) of the handle it was given: read on the wire
    (Encryption=off, so a relay sees plain TDS), it arrives, names handle 1 and is answered RETURNSTATUS 0, DONEPROC."""
    sql = "select ok from t where a = ?"
    served = serve({_placeholders(sql): OK})
    relay = Relay((served.host, served.port))
    text = connection_string(
        freetds, "127.0.0.1", relay.port, user=USER, password=PASSWORD, encrypt="off", app_name=served.app_name
    )
    cnxn = pyodbc.connect(text, autocommit=True, timeout=5)
    cursor = cnxn.cursor()
    assert cursor.execute(sql, 1).fetchall()[0][0] == 1
    cursor.close()
    assert cnxn.cursor().execute(sql, 2).fetchall()[0][0] == 1  # the connection goes on after the unprepare
    cnxn.close()  # (pyodbc's `with` does not close): the relay's record is complete once both sides have closed
    relay.join()
    requests, responses = tds_messages(bytes(relay.sent)), tds_messages(bytes(relay.received))
    assert [k for k, _ in requests][:2] == [0x12, 0x10]  # PRELOGIN, LOGIN7: nothing was encrypted
    assert len(requests) == len(responses)  # one answer per request, in order
    calls = [(body, responses[i][1]) for i, (kind, body) in enumerate(requests) if kind == 0x03]
    proc_ids = [struct.unpack_from("<HH", body, struct.unpack_from("<I", body)[0]) for body, _ in calls]
    assert {ids[0] for ids in proc_ids} == {0xFFFF}  # system procedures called by id, not by name
    unprepares = [(body, answer) for (body, answer), ids in zip(calls, proc_ids, strict=True) if ids == (0xFFFF, 15)]
    assert [ids[1] for ids in proc_ids] == [13, 15, 13, 15]  # each execution is prepared, then unprepared
    assert [_handle_of(body) for body, _ in unprepares] == [1, 2]  # the handles sp_prepexec returned, in turn
    for _, answer in unprepares:
        assert answer.startswith(bytes([Token.RETURNSTATUS]) + struct.pack("<i", 0))
        assert answer[-13] == Token.DONEPROC
        assert struct.unpack_from("<H", answer, len(answer) - 12)[0] & 0x02 == 0  # DONE_ERROR not set


def _handle_of(body: bytes) -> int:
    """The @handle of an sp_unprepare RPC: after ALL_HEADERS, the ProcID switch and id and the option flags come
    the parameter's name (B_VARCHAR), its status byte, INTN(4) and the value."""
    at = struct.unpack_from("<I", body)[0] + 6
    at += 1 + 2 * body[at] + 1
    assert body[at : at + 3] == bytes([0x26, 4, 4])
    return int(struct.unpack_from("<i", body, at + 3)[0])


DENIED = SqlError(
    229,
    "The SELECT permission was denied on the object 'backupset', database 'msdb', schema 'dbo'.",
    state=5,
    severity=14,
)
TWO = ResultSet((Column("b", SqlType.INT),), [(2,)])


def test_an_error_the_batch_runs_on_after_is_its_own_statement_in_the_stream() -> None:
    """ERROR, then DONE with DONE_ERROR | DONE_MORE (MS-TDS 2.2.7.6), then the next result set; the last DONE is
    the last statement's own: DONE_COUNT with its row count, no DONE_MORE, no DONE_ERROR."""
    out = Response(SERVER_NAME)
    assert out.outcomes([*OK, DENIED, TWO]) == []
    assert read_tokens(out.finish()) == [
        Tok(COLMETADATA, count=1),
        Tok(ROW, values=(1,)),
        Tok(DONE, status=DONE_COUNT | DONE_MORE, curcmd=0xC1, count=1),
        Tok(ERROR, number=229),
        Tok(DONE, status=DONE_ERROR | DONE_MORE),
        Tok(COLMETADATA, count=1),
        Tok(ROW, values=(2,)),
        Tok(DONE, status=DONE_COUNT, curcmd=0xC1, count=1),
    ]


def test_errors_of_one_statement_share_its_done_and_the_last_ones_are_left_to_close_the_response() -> None:
    """300 then 297 are one failed statement: two ERROR tokens, one DONE. Errors the outcomes end with are
    returned (all of them, not only the first) for the caller to close with."""
    state = [
        SqlError(300, "VIEW SERVER STATE permission was denied on object 'server', database 'master'.", severity=14),
        SqlError(297, "The user does not have permission to perform this action."),
    ]
    out = Response(SERVER_NAME)
    trailing = out.outcomes([*state, *OK, *state])
    assert trailing == state
    out.errors(trailing)
    assert [(t.kind, t.number, t.status) for t in read_tokens(out.finish())] == [
        (ERROR, 300, 0),
        (ERROR, 297, 0),
        (DONE, 0, DONE_ERROR | DONE_MORE),
        (COLMETADATA, 0, 0),
        (ROW, 0, 0),
        (DONE, 0, DONE_COUNT | DONE_MORE),
        (ERROR, 300, 0),
        (ERROR, 297, 0),
        (DONE, 0, DONE_ERROR),
    ]


def test_in_an_rpc_a_statement_error_is_a_doneinproc_and_the_call_still_returns_its_status() -> None:
    """sp_executesql whose batch runs on after a 229: DONEINPROC with DONE_ERROR | DONE_MORE, the next result set,
    RETURNSTATUS 0 and a final DONEPROC. A call that ends on its error: ERROR and DONEPROC with DONE_ERROR only."""
    backend = CannedBackend(answers={"mixed": [*OK, DENIED, TWO], "ends": [*OK, DENIED]})
    procs = Procedures(backend.login(USER, PASSWORD, None))
    mixed, ends = Response(SERVER_NAME), Response(SERVER_NAME)
    procs.run(RpcCall(SP_EXECUTESQL, "", (RpcParam("", "mixed"),)), mixed)
    procs.run(RpcCall(SP_EXECUTESQL, "", (RpcParam("", "ends"),)), ends)
    assert [(t.kind, t.number, t.status) for t in read_tokens(mixed.finish())] == [
        (COLMETADATA, 0, 0),
        (ROW, 0, 0),
        (DONEINPROC, 0, DONE_COUNT | DONE_MORE),
        (ERROR, 229, 0),
        (DONEINPROC, 0, DONE_ERROR | DONE_MORE),
        (COLMETADATA, 0, 0),
        (ROW, 0, 0),
        (DONEINPROC, 0, DONE_COUNT | DONE_MORE),
        (RETURNSTATUS, 0, 0),
        (DONEPROC, 0, 0),
    ]
    assert [(t.kind, t.number, t.status) for t in read_tokens(ends.finish())][-2:] == [
        (ERROR, 229, 0),
        (DONEPROC, 0, DONE_ERROR),
    ]
