"""The SQL Server and managed-instance check functions of tests/sql and tests/mi, on constructed views.

The e2e self-tests run each check through the drivers against a lab scenario; these pin what a scenario can't
cheaply vary: the exact messages, and the edge cases (no endpoint, two endpoints, a cluster member name in
another case, rows missing optional columns, the host's log sector size known, unknown or unreachable).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import socket
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import testinfra

from linkgate.docs import load_catalog
from linkgate.environment import Environment, load_environment
from linkgate.evidence import Evidence
from linkgate.gather import FactsCache
from linkgate.probes.facts import EvidenceRecorder, Fact, TargetUnreachable
from linkgate.probes.host import SectorSize, Shell, read_sector_size
from linkgate.probes.odbc import Rows
from linkgate.probes.sql import (
    AgentState,
    AgMembership,
    DatabaseFacts,
    DatabaseState,
    Endpoint,
    Fabric,
    Hadr,
    HostInfo,
    Login,
    ManagedInstanceFacts,
    MasterKey,
    Product,
    SqlServerFacts,
    StartupParameters,
    StorageFeatures,
    Tde,
    Wsfc,
    _endpoints,
    _wsfc,
)
from linkgate.views import DatabaseView, ManagedInstanceView, SqlServerView, log_sector_reader
from selftests.unit.test_environment import VALID, write

load_catalog(Path(__file__).resolve().parents[2] / "tests")
server_checks: Any = sys.modules["linkgate_gate_sql_test_server"]
database_checks: Any = sys.modules["linkgate_gate_sql_test_databases"]
mi_checks: Any = sys.modules["linkgate_gate_mi_test_managed_instance"]
"""The gate's own check modules, under the names the catalogue loader gives them (one registration)."""

NOW = dt.datetime.now()


def fact(value: Any, what: str = "a fact", target: str = "sql01") -> Fact[Any]:
    return Fact(what, target, (Evidence(target, "SQL", f"-- {what}", "(rows)"),), value)


def product(edition: str = "Developer Edition (64-bit)", update_type: str | None = None) -> Product:
    return Product(
        (16, 0, 4135, 4),
        "16.0.4135.4",
        "RTM",
        "CU15",
        None,
        edition,
        3,
        "SQL_Latin1_General_CP1_CI_AS",
        update_type,
        "Microsoft SQL Server 2022",
    )


def endpoint(name: str = "Hadr_endpoint", port: int = 5022, expiry: dt.datetime | None = None) -> Endpoint:
    return Endpoint(name, "STARTED", "CERTIFICATE", True, "AES", port, "link_cert" if expiry else None, expiry)


def database_facts(**changes: Fact[Any]) -> DatabaseFacts:
    facts = DatabaseFacts(
        state=fact(DatabaseState("SalesDB", True, "FULL", "ONLINE", None, True)),
        last_full_backup=fact(None),
        tde=fact(Tde(None, None, None, None)),
        storage=fact(StorageFeatures(0, None, 1, 0, 0)),
        availability_groups=fact(AgMembership(())),
        accelerated_recovery=fact(True),
        log_file_paths=fact(("/var/opt/mssql/data/SalesDB_log.ldf",)),
    )
    return dataclasses.replace(facts, **changes)


def sql_facts(**changes: Any) -> SqlServerFacts:
    facts = SqlServerFacts(
        target="sql01",
        login=fact(Login("checker", True)),
        product=fact(product()),
        host_info=fact(HostInfo("Linux", "Ubuntu", "22.04")),
        master_key=fact(MasterKey(True, "##MS_DatabaseMasterKey##")),
        hadr=fact(Hadr(1, 1)),
        trace_flags=fact(frozenset({1800, 9567})),
        startup_parameters=fact(StartupParameters(())),
        agent=fact(AgentState("Running", "Automatic", 1)),
        agent_operator=fact(False),
        endpoints=fact(()),
        wsfc=fact(None),
        start_time=fact(NOW),
        databases={"SalesDB": database_facts()},
    )
    wrapped: dict[str, Any] = {k: v if isinstance(v, dict) else fact(v) for k, v in changes.items()}
    return dataclasses.replace(facts, **wrapped)


def sql_view(
    recorder: EvidenceRecorder | None = None,
    log_sector: Callable[[], Fact[SectorSize] | None] | None = None,
    **changes: Any,
) -> SqlServerView:
    return SqlServerView("sql01", sql_facts(**changes), recorder or EvidenceRecorder(), log_sector=log_sector)


def failure(check: Callable[..., None], *args: Any) -> str | None:
    """The check's failure message, or None when it passes."""
    try:
        check(*args)
    except AssertionError as e:
        return str(e).split("\nassert ", 1)[0]
    return None


@pytest.fixture
def environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Environment:
    monkeypatch.setenv("LG_TEST_PW", "s3cret-value")
    return load_environment(write(tmp_path, VALID))  # sql01's endpoint_port: the default 5022


# --- SQL-02: the evaluation edition ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("edition", "message"),
    [
        ("Developer Edition (64-bit)", None),
        ("Enterprise Edition: Core-based Licensing (64-bit)", None),
        (
            "Enterprise Evaluation Edition (64-bit)",
            "sql01 runs Enterprise Evaluation Edition (64-bit), which expires after its 180-day evaluation period",
        ),
        (
            "Enterprise Evaluation Edition: Core-based Licensing (64-bit)",
            "sql01 runs Enterprise Evaluation Edition: Core-based Licensing (64-bit), which expires after its 180-day "
            "evaluation period",
        ),
    ],
)
def test_evaluation_edition_is_flagged_by_name(edition: str, message: str | None) -> None:
    assert failure(server_checks.test_sql_edition_not_evaluation, sql_view(product=product(edition))) == message


# --- SQL-08: trace flag 1800 and the log volume's sector size --------------------------------------


def sector(physical: int | None, error: str | None = None) -> Callable[[], Fact[SectorSize] | None]:
    """What the declared host reports for the log volume (as log_sector_reader hands it over)."""
    size = SectorSize("/var/opt/mssql/data", "/dev/sdb1", physical, 512) if error is None else None
    evidence = (Evidence("sql01", "host", "lsblk -bdno PHY-SEC,LOG-SEC -- /dev/sdb1", f"{physical} 512"),)
    return lambda: Fact("the log volume's sector size", "sql01", evidence, size, error)


def never() -> Fact[SectorSize] | None:
    raise AssertionError("the host was read although trace flag 1800 runs")


def test_tf1800_running_passes_without_reading_the_host() -> None:
    recorder = EvidenceRecorder()
    server_checks.test_sql_trace_flag_1800(sql_view(recorder, never))
    assert recorder.notes == []


def test_tf1800_off_on_4k_log_sectors_passes_with_a_note_and_the_hosts_evidence() -> None:
    recorder = EvidenceRecorder()
    server_checks.test_sql_trace_flag_1800(sql_view(recorder, sector(4096), trace_flags=frozenset({9567})))
    assert recorder.notes == [
        "trace flag 1800 is off but not needed: the log volume of sql01 has 4096-byte physical sectors, as the "
        "managed instance does"
    ]
    assert "lsblk -bdno PHY-SEC,LOG-SEC -- /dev/sdb1" in [e.command for e in recorder.items]


@pytest.mark.parametrize(
    ("log_sector", "startup", "message"),
    [
        (
            sector(512),
            (),
            "trace flag 1800 is not enabled globally (the log volume's physical sectors are 512 bytes, "
            "the managed instance's 4096)",
        ),
        (
            sector(512),
            ("-T1800",),
            "trace flag 1800 is not enabled globally — configured at startup: restart pending "
            "(the log volume's physical sectors are 512 bytes, the managed instance's 4096)",
        ),
        (
            sector(8192),
            (),
            "trace flag 1800 is not enabled globally (the log volume's physical sectors are 8192 "
            "bytes, the managed instance's 4096)",
        ),
        (None, (), "trace flag 1800 is not enabled globally"),  # no host declared: as before
        (sector(None), (), "trace flag 1800 is not enabled globally"),  # the log is not on a block device
        (sector(None, "lsblk: /dev/sdb1: not a block device"), (), "trace flag 1800 is not enabled globally"),
    ],
    ids=["512", "512-restart-pending", "8192", "no-host", "no-block-device", "unreadable"],
)
def test_tf1800_off_fails_naming_the_sector_size_when_known(
    log_sector: Callable[[], Fact[SectorSize] | None] | None, startup: tuple[str, ...], message: str
) -> None:
    view = sql_view(None, log_sector, trace_flags=frozenset({9567}), startup_parameters=StartupParameters(startup))
    assert failure(server_checks.test_sql_trace_flag_1800, view) == message


def test_tf1800_off_with_an_unreachable_host_fails_as_without_a_host() -> None:
    """The host being out of reach is the host checks' error, never the SQL check's: the size is unknown."""

    def unreachable() -> Fact[SectorSize] | None:
        raise TargetUnreachable("sql01", "ssh: connect to host 198.18.1.10 port 22: Connection refused")

    recorder = EvidenceRecorder()
    view = sql_view(recorder, unreachable, trace_flags=frozenset())
    assert failure(server_checks.test_sql_trace_flag_1800, view) == "trace flag 1800 is not enabled globally"
    assert all(e.source == "SQL" for e in recorder.items)


# --- the reader through the gate's real cache ------------------------------------------------------


class SqlFromScenario(FactsCache):
    """The gate's cache, with SQL Server's facts given (no SQL Server runs here): hosts are read for real."""

    def __init__(self, env: Environment, facts: SqlServerFacts) -> None:
        super().__init__(env)
        self.facts = facts

    def sql_server(self, name: str) -> SqlServerFacts:
        return self.facts


def with_host(host: str) -> str:
    return VALID.replace("    host_os: linux\n", f"    host_os: linux\n    host: {host}\n")


def test_reader_without_a_declared_host_reads_nothing(environment: Environment) -> None:
    cache = SqlFromScenario(environment, sql_facts())
    assert environment.sql_servers["sql01"].host is None
    assert log_sector_reader(cache, environment.sql_servers["sql01"])() is None


def test_reader_with_an_unreachable_host_leaves_the_size_unknown(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A host whose ssh port refuses (a loopback port bound but not listening): the SQL check sees None."""
    monkeypatch.setenv("LG_TEST_PW", "s3cret-value")
    with socket.socket() as closed:
        closed.bind(("127.0.0.1", 0))
        port = closed.getsockname()[1]
        env = load_environment(
            write(
                tmp_path,
                with_host(
                    f"{{backend: paramiko, address: 127.0.0.1, port: {port}, user: checker, password_env: LG_TEST_PW}}"
                ),
            )
        )
        cache = SqlFromScenario(env, sql_facts())
        try:
            read = log_sector_reader(cache, env.sql_servers["sql01"])
            with pytest.raises(TargetUnreachable, match="sql01 is unreachable"):
                read()
            view = SqlServerView("sql01", cache.facts, EvidenceRecorder(), log_sector=read)
            assert view.log_sector_size is None
        finally:
            cache.close()


def test_reader_reads_the_log_volume_of_the_first_database_on_the_host(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """This machine as the declared host (local://): the size is what lsblk says under the log's directory."""
    monkeypatch.setenv("LG_TEST_PW", "s3cret-value")
    env = load_environment(write(tmp_path, with_host("{backend: local}")))
    log = tmp_path / "log" / "SalesDB_log.ldf"
    log.parent.mkdir()
    facts = sql_facts(databases={"SalesDB": database_facts(log_file_paths=fact((str(log),))), "HrDB": database_facts()})
    cache = SqlFromScenario(env, facts)
    try:
        recorder = EvidenceRecorder()
        view = SqlServerView("sql01", facts, recorder, log_sector=log_sector_reader(cache, env.sql_servers["sql01"]))
        expected, _ = read_sector_size(Shell(testinfra.get_host("local://"), "sql01"), str(log.parent))
        assert view.log_sector_size == expected.physical
        assert f"df --output=source -- {log.parent}" in [e.command for e in recorder.items]
    finally:
        cache.close()


# --- SQL-07: SQL Server 2016 on a failover cluster -------------------------------------------------

GRANTS = frozenset({"ALTER ANY AVAILABILITY GROUP", "CONNECT SQL", "VIEW SERVER STATE"})
CLUSTER = ({"cluster_name": "sqlclu"},)


def wsfc(members: tuple[dict[str, Any], ...], local: str | None = "SQL01", grants: frozenset[str] = GRANTS) -> Wsfc:
    return Wsfc(CLUSTER, members, grants, local)


@pytest.mark.parametrize(
    ("cluster", "message"),
    [
        (wsfc(({"member_name": "sql01", "member_state_desc": "UP"},)), None),  # NetBIOS names: any case
        (wsfc(({"member_name": "SQL01", "member_state_desc": "up"},)), None),
        (None, "no Windows Server failover cluster (sys.dm_hadr_cluster is empty)"),
        (Wsfc((), (), frozenset(), "SQL01"), "no Windows Server failover cluster (sys.dm_hadr_cluster is empty)"),
        (wsfc(({"member_name": "SQL02", "member_state_desc": "UP"},)), "SQL01 is not a member of cluster sqlclu"),
        (wsfc(({"member_name": "SQL01", "member_state_desc": "DOWN"},)), "cluster node SQL01 is DOWN, not UP"),
        (wsfc(({"member_name": "SQL01"},)), "cluster node SQL01 is in no reported state, not UP"),
        (
            wsfc(({"member_state_desc": "UP"},), local=None),  # neither name known: no match on the empty name
            "this computer (ComputerNamePhysicalNetBIOS unknown) is not a member of cluster sqlclu",
        ),
        (
            wsfc(({"member_name": "SQL01", "member_state_desc": "UP"},), grants=frozenset({"CONNECT SQL"})),
            "NT AUTHORITY\\SYSTEM lacks: ALTER ANY AVAILABILITY GROUP, VIEW SERVER STATE",
        ),
    ],
    ids=["lower-member", "lower-state", "none", "no-cluster", "other-node", "down", "no-state", "no-name", "grants"],
)
def test_2016_wsfc_node_state(cluster: Wsfc | None, message: str | None) -> None:
    assert failure(server_checks.test_sql_2016_wsfc, sql_view(wsfc=cluster)) == message


def rows(columns: tuple[str, ...], *values: tuple[Any, ...]) -> Rows:
    return Rows(columns, list(values), Evidence("sql01", "SQL", "-- query", "(rows)"))


def test_wsfc_rows_without_optional_columns_parse() -> None:
    """A member row without its state, grants only GRANT-ish, the computer name NULL: nothing raises."""
    parsed = _wsfc(
        rows(("cluster_name",), ("sqlclu",)),
        rows(("member_name",), ("SQL01",)),
        rows(
            ("permission_name", "state_desc"), ("CONNECT SQL", "GRANT_WITH_GRANT_OPTION"), ("VIEW SERVER STATE", "DENY")
        ),
        rows(("physical_node",), (None,)),
    )
    assert (parsed.local_node, parsed.system_grants) == (None, frozenset({"CONNECT SQL"}))
    assert parsed.local_member_state() is None


# --- SQL-16: the existing mirroring endpoint -------------------------------------------------------


@pytest.mark.parametrize(
    ("endpoints", "message"),
    [
        ((), None),
        ((endpoint(),), None),
        ((endpoint(port=5023),), "Hadr_endpoint listens on 5023, but endpoint_port of sql01 is 5022"),
        ((endpoint(), endpoint("Mirroring", 7022)), "Mirroring listens on 7022, but endpoint_port of sql01 is 5022"),
        (
            (endpoint(port=5023), endpoint("Mirroring", 7022)),
            "Hadr_endpoint listens on 5023; Mirroring listens on 7022, but endpoint_port of sql01 is 5022",
        ),
    ],
    ids=["none", "declared", "elsewhere", "two-one-elsewhere", "two-both-elsewhere"],
)
def test_mirroring_endpoint_port(
    environment: Environment, endpoints: tuple[Endpoint, ...], message: str | None
) -> None:
    view = sql_view(endpoints=endpoints)
    assert failure(server_checks.test_sql_mirroring_endpoint_port, view, environment) == message


EXPIRED = dt.datetime(2024, 3, 1)
VALID_UNTIL = NOW + dt.timedelta(days=365)


@pytest.mark.parametrize(
    ("endpoints", "message"),
    [
        ((), None),
        ((endpoint(expiry=None),), None),  # Windows authentication: no certificate to expire
        ((endpoint(expiry=VALID_UNTIL),), None),
        ((endpoint(expiry=EXPIRED),), "Hadr_endpoint certificate link_cert expired on 2024-03-01"),
        (
            (endpoint(expiry=VALID_UNTIL), endpoint("Old", 5023, EXPIRED)),
            "Old certificate link_cert expired on 2024-03-01",
        ),
    ],
    ids=["none", "no-certificate", "valid", "expired", "two-one-expired"],
)
def test_mirroring_endpoint_certificate(endpoints: tuple[Endpoint, ...], message: str | None) -> None:
    view = sql_view(endpoints=endpoints)
    assert failure(server_checks.test_sql_mirroring_endpoint_certificate, view) == message


def test_endpoint_rows_without_a_certificate_parse() -> None:
    """An endpoint authenticating with Windows has no certificate row: the LEFT JOIN's columns may be absent."""
    (parsed,) = _endpoints(
        rows(
            (
                "name",
                "state_desc",
                "connection_auth_desc",
                "is_encryption_enabled",
                "encryption_algorithm_desc",
                "port",
            ),
            ("Hadr_endpoint", "STARTED", "NEGOTIATE", 1, None, 5022),
        )
    )
    assert (parsed.certificate, parsed.certificate_expiry, parsed.algorithm) == (None, None, "")
    assert failure(server_checks.test_sql_mirroring_endpoint, sql_view(endpoints=(parsed,))) == (
        "Hadr_endpoint authenticates with NEGOTIATE, not a certificate; Hadr_endpoint encryption is off, not AES"
    )


# --- SQL-14 and SQL-18: per database ---------------------------------------------------------------


def database_view(recorder: EvidenceRecorder | None = None, **changes: Fact[Any]) -> DatabaseView:
    return DatabaseView("SalesDB", database_facts(**changes), recorder or EvidenceRecorder())


def test_tde_certificate_pass_notes_the_manual_migration() -> None:
    recorder = EvidenceRecorder()
    tde = Tde(3, "CERTIFICATE", "TDE_Sales", VALID_UNTIL)
    database_checks.test_sql_db_tde_certificate(database_view(recorder, tde=fact(tde)))
    (note,) = recorder.notes
    assert note.startswith(
        "manual step: migrate certificate TDE_Sales (with its private key) to the managed instance before creating "
        "the link; the gate can't see it there (not in sys.certificates): https://learn.microsoft.com/"
    )


@pytest.mark.parametrize(
    ("tde", "message"),
    [
        (Tde(3, "CERTIFICATE", "TDE_Sales", EXPIRED), "certificate TDE_Sales of SalesDB expired on 2024-03-01"),
        (
            Tde(3, "ASYMMETRIC KEY", None, None),
            "SalesDB is encrypted (ASYMMETRIC KEY) by a key not found in master.sys.certificates",
        ),
    ],
)
def test_tde_certificate_failure_leaves_no_note(tde: Tde, message: str) -> None:
    recorder = EvidenceRecorder()
    assert failure(database_checks.test_sql_db_tde_certificate, database_view(recorder, tde=fact(tde))) == message
    assert recorder.notes == []


@pytest.mark.parametrize(
    ("adr", "message"),
    [
        (True, None),
        (False, "accelerated database recovery is off in SalesDB"),
        (None, "database 'SalesDB' does not exist"),
    ],
)
def test_accelerated_recovery(adr: bool | None, message: str | None) -> None:
    view = database_view(accelerated_recovery=fact(adr))
    assert failure(database_checks.test_sql_db_accelerated_recovery, view) == message


# --- MI-02: failing back from an Always-up-to-date managed instance --------------------------------


@pytest.mark.parametrize(
    ("update_type", "message"),
    [
        ("CU", None),
        (None, None),  # mi-update-policy (required) reports a missing ProductUpdateType
        (
            "Continuous",
            "mi01 is Always-up-to-date (ProductUpdateType Continuous): after a failover to it, the link "
            "can't replicate or fail back to SQL Server",
        ),
        (
            "continuous",
            "mi01 is Always-up-to-date (ProductUpdateType continuous): after a failover to it, the link "
            "can't replicate or fail back to SQL Server",
        ),
    ],
)
def test_update_policy_failback(update_type: str | None, message: str | None) -> None:
    facts = ManagedInstanceFacts(
        "mi01",
        fact(Login("checker", True), target="mi01"),
        fact(product(update_type=update_type), target="mi01"),
        fact(Fabric(None, None, None, None, None), target="mi01"),
        fact(True, target="mi01"),
        {},
    )
    view = ManagedInstanceView("mi01", facts, EvidenceRecorder())
    assert failure(mi_checks.test_mi_update_policy_failback, view) == message
