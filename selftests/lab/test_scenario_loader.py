"""Scenario files: every bundled one loads; overlays deep-merge, delete with null, and fail clearly."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest

from linkgate.catalog import declared_ids
from linkgate.lab.engine import SimulatedInstance
from linkgate.lab.hosts import MSSQL_CONF_WRITTEN, HostsSpecError, load_hosts
from linkgate.lab.scenario import SCENARIO_DIR, ScenarioError, list_scenarios, load_scenario
from selftests.lab.engine_fixtures import PASSWORD, lab_password, login, result, run, scenario, write_overlay

PREREQUISITE_IDS = declared_ids(Path(__file__).resolve().parents[2] / "tests")
# Checks the lab cannot fail for real: Windows hosts (tested on recorded WinRM output in
# selftests/unit/test_probes_host.py) and the SSMS client (a Windows machine too).
NO_LAB_SCENARIO = {
    "host-windows-services",
    "host-windows-agent-service",
    "host-windows-startup-params",
    "host-windows-hadr-enabled",
    "host-windows-os-edition",
    "host-windows-failover-clustering",
    "client-ssms-version",
}


def test_healthy_is_listed_and_names_are_kebab_case() -> None:
    names = list_scenarios()
    assert "healthy" in names
    assert all(n == n.lower() and " " not in n and "_" not in n for n in names)


@pytest.mark.parametrize("name", list_scenarios())
def test_every_scenario_loads_and_builds(name: str) -> None:
    loaded = scenario(name)
    assert loaded.name == name
    assert loaded.description
    for spec in loaded.instances.values():
        session = SimulatedInstance(spec).login("linkgate", PASSWORD, None)
        assert result(run(session, "SELECT @@SERVERNAME")).rows == [(spec.server_name or spec.name,)]


@pytest.mark.parametrize("name", [n for n in list_scenarios() if n != "healthy"])
def test_scenarios_expect_known_prerequisites(name: str) -> None:
    loaded = scenario(name)
    assert loaded.description, f"{name} must say what it changes"
    # An empty expect is a variant that must still pass (latency, another firewall backend).
    assert set(loaded.expect) <= PREREQUISITE_IDS


def test_healthy_expects_nothing_and_every_prerequisite_has_a_failing_scenario() -> None:
    assert scenario().expect == ()
    covered = {i for n in list_scenarios() for i in scenario(n).expect}
    assert PREREQUISITE_IDS - covered - NO_LAB_SCENARIO == set()


def test_the_no_lab_list_names_only_prerequisites_that_have_no_scenario() -> None:
    covered = {i for n in list_scenarios() for i in scenario(n).expect}
    assert NO_LAB_SCENARIO <= PREREQUISITE_IDS, f"not prerequisites: {NO_LAB_SCENARIO - PREREQUISITE_IDS}"
    assert not NO_LAB_SCENARIO & covered, f"these have a scenario now: {NO_LAB_SCENARIO & covered}"


def test_overlay_merges_deeply_and_lists_replace(tmp_path: Path) -> None:
    path = write_overlay(
        tmp_path,
        "mine.yaml",
        """extends: healthy
description: only SalesDB changes
expect: [sql-db-full-recovery]
instances:
  sql01:
    databases:
      SalesDB: {recovery_model: SIMPLE}
    trace_flags: {running: [1800]}
""",
    )
    sql01 = scenario(path).instances["sql01"]
    assert sql01.databases["SalesDB"].recovery_model == "SIMPLE"
    assert sql01.databases["SalesDB"].backups[0].finished == dt.datetime(2025, 11, 2, 23, 10, 5)
    assert sql01.databases["InventoryDB"].recovery_model == "FULL"
    assert sql01.trace_flags.running == (1800,)
    assert sql01.trace_flags.startup == (1800, 9567)


def test_null_deletes_and_relative_extends_chain(tmp_path: Path) -> None:
    write_overlay(
        tmp_path, "base.yaml", "extends: healthy\ndescription: base\ninstances: {sql01: {master_key: false}}\n"
    )
    path = write_overlay(
        tmp_path,
        "child.yaml",
        """extends: base.yaml
description: child
instances:
  sql01:
    databases: {InventoryDB: null}
""",
    )
    loaded = scenario(path)
    assert list(loaded.instances["sql01"].databases) == ["SalesDB"]
    assert loaded.instances["sql01"].master_key is False
    assert [p.name for p in loaded.files] == ["healthy.yaml", "base.yaml", "child.yaml"]


def test_overlays_argument_applies_in_order(tmp_path: Path) -> None:
    first = write_overlay(tmp_path, "a.yaml", "instances: {mi01: {fabric: {hadr_port: 11500}}}\n")
    second = write_overlay(tmp_path, "b.yaml", "extends: ignored-here\ninstances: {mi01: {update_type: Continuous}}\n")
    mi = scenario("healthy", [first, second]).instances["mi01"]
    assert mi.fabric is not None
    assert (mi.fabric.hadr_port, mi.fabric.node) == (11500, "DB123")
    assert mi.update_type == "Continuous"


@pytest.mark.parametrize(
    ("text", "key", "message"),
    [
        ("instances: {sql01: {colation: x}}", "instances.sql01.colation", "unknown key"),
        ("instances: {sql01: {port: many}}", "instances.sql01.port", "expected an integer"),
        (
            "instances: {sql01: {databases: {SalesDB: {recovery_model: PARTIAL}}}}",
            "instances.sql01.databases.SalesDB.recovery_model",
            "expected one of FULL, BULK_LOGGED, SIMPLE",
        ),
        ("instances: {sql01: {logins: {x: {password: hunter2}}}}", "instances.sql01.logins.x.password", "password_env"),
        (
            "instances: {sql01: {endpoints: {e: {certificate: nope}}}}",
            "instances.sql01.endpoints.e.certificate",
            "no certificate 'nope'",
        ),
        ("instances: {sql01: {databases: {msdb: {}}}}", "instances.sql01.databases.msdb", "system databases"),
        ("instances: {sql01: {version: '16.0'}}", "instances.sql01.version", "expected a build"),
        (
            "instances: {sql01: {tables: {sys.nosuch: {rows: []}}}}",
            "instances.sql01.tables.sys.nosuch",
            "no system table",
        ),
        (
            "instances: {sql01: {tables: {sys.configurations: {rows: [{nam: x}]}}}}",
            "instances.sql01.tables.sys.configurations.rows.0.nam",
            "has no column",
        ),
        ("expect: sql-sysadmin", "expect", "expected a list"),
        ("hosts: []", "hosts", "expected a mapping"),
        ("surprise: 1", "surprise", "unknown key"),
    ],
)
def test_validation_errors_name_the_file_and_key(tmp_path: Path, text: str, key: str, message: str) -> None:
    path = write_overlay(tmp_path, "bad.yaml", f"extends: healthy\n{text}\n")
    with pytest.raises(ScenarioError) as caught:
        scenario(path)
    assert caught.value.file == str(path.resolve())
    assert caught.value.key == key
    assert message in caught.value.message


def test_errors_in_the_base_name_the_base_file(tmp_path: Path) -> None:
    write_overlay(tmp_path, "base.yaml", "extends: healthy\ninstances: {sql01: {hadr: {enabled: maybe}}}\n")
    path = write_overlay(tmp_path, "child.yaml", "extends: base.yaml\ndescription: fine\n")
    with pytest.raises(ScenarioError) as caught:
        scenario(path)
    assert caught.value.file.endswith("base.yaml")
    assert caught.value.key == "instances.sql01.hadr.enabled"


def test_missing_password_variable_fails_clearly() -> None:
    with lab_password(None), pytest.raises(ScenarioError) as caught:
        load_scenario("healthy")
    assert caught.value.key == "instances.sql01.logins.linkgate.password_env"
    assert "LINKGATE_LAB_PASSWORD is not set" in caught.value.message


def test_unknown_scenario_and_circular_extends(tmp_path: Path) -> None:
    with pytest.raises(ScenarioError, match="no scenario named 'nope'"):
        scenario("nope")
    write_overlay(tmp_path, "a.yaml", "extends: b.yaml\n")
    write_overlay(tmp_path, "b.yaml", "extends: a.yaml\n")
    with pytest.raises(ScenarioError, match="circular extends"):
        scenario(tmp_path / "a.yaml")


def test_raw_table_rows_escape_hatch(tmp_path: Path) -> None:
    path = write_overlay(
        tmp_path,
        "rows.yaml",
        """extends: healthy
instances:
  sql01:
    tables:
      sys.configurations:
        replace: true
        rows:
          - {configuration_id: 16384, name: Agent XPs, value: 0, value_in_use: 0}
      SalesDB.sys.tables:
        rows:
          - {name: Orders, object_id: 42, is_filetable: false, is_memory_optimized: true}
      master.sys.certificates:
        rows:
          - {name: Extra, certificate_id: 999, thumbprint: "0x0102", expiry_date: 2031-01-01 00:00:00}
""",
    )
    with lab_password():
        instance = SimulatedInstance(load_scenario(path).instances["sql01"])
        session = instance.login("linkgate", PASSWORD, "SalesDB")
    assert result(run(session, "SELECT COUNT(*) FROM sys.configurations")).rows == [(1,)]
    assert result(run(session, "SELECT name FROM sys.tables WHERE is_memory_optimized = 1")).rows == [("Orders",)]
    certificate = (
        "SELECT CONVERT(varchar(10), thumbprint, 1), expiry_date FROM master.sys.certificates WHERE name = 'Extra'"
    )
    assert result(run(session, certificate)).rows == [("0x0102", dt.datetime(2031, 1, 1))]


def test_bundled_scenarios_live_next_to_the_module() -> None:
    assert (SCENARIO_DIR / "healthy.yaml").is_file()
    assert login().database == "master"


def test_mssql_conf_predates_the_start_in_healthy_and_postdates_it_where_a_restart_is_pending() -> None:
    # The gate compares the file's mtime with sqlserver_start_time, both local times of the lab's machine.
    def conf_and_start(name: str) -> tuple[dt.datetime, dt.datetime]:
        loaded = scenario(name)
        start = loaded.instances["sql01"].start_time
        assert start is not None
        return load_hosts(dict(loaded.hosts)).machines["sql01"].mssql_conf_modified, start

    written, started = conf_and_start("healthy")
    assert written == MSSQL_CONF_WRITTEN < started
    written, started = conf_and_start("host-mssql-conf-restart-pending")
    assert written > started


def test_mssql_conf_modified_is_a_local_time() -> None:
    raw = dict(scenario().hosts)
    raw["machines"] = {"sql01": {**raw["machines"]["sql01"], "mssql_conf_modified": "yesterday"}}
    with pytest.raises(HostsSpecError, match=r"hosts\.machines\.sql01\.mssql_conf_modified: expected a local date"):
        load_hosts(raw)
    raw["machines"]["sql01"]["mssql_conf_modified"] = dt.datetime(2025, 11, 3, 7, 0, tzinfo=dt.UTC)
    with pytest.raises(HostsSpecError, match="no zone"):
        load_hosts(raw)
