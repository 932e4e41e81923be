"""Trace flag 1800 and the log volume's physical sectors, through the real gate against the lab.

The article: trace flag 1800 aligns log I/O to the managed instance's 4 KB sectors, so it is not needed when
SQL Server's log volume has 4096-byte physical sectors already. The lab's machines report the log volume the
scenario declares (`log_volume:`, the `df` and `lsblk` stand-ins), so these runs do not depend on this machine's disk.
"""

from __future__ import annotations

import os
from typing import Any

import pytest

from selftests.e2e.harness import GateRun, GateRunner

pytestmark = [
    pytest.mark.lab,
    pytest.mark.needs_root,
    pytest.mark.skipif(os.geteuid() != 0, reason="the lab needs root"),
]

TRACE_FLAG_CHECKS = ("sql-trace-flag-1800", "host-mssql-conf-traceflags")


def record(run: GateRun, prerequisite: str, target: str = "sql01") -> dict[str, Any]:
    (found,) = [r for r in run.records() if r["prerequisite"] == prerequisite and r["target"] == target]
    return found


def evidence(r: dict[str, Any]) -> dict[str, str]:
    """A record's evidence as command → what it printed (the report's "exit N" line first)."""
    return {str(e["command"]): str(e["result"]) for e in r["evidence"]}


def test_without_trace_flag_1800_a_4k_log_volume_is_a_go_with_notes(gate: GateRunner) -> None:
    run = gate("sql-tf1800-off-4k-log-volume")
    assert run.returncode == 0, run.stdout[-3000:]
    assert run.summary["verdict"] == "go"
    assert run.records("failed", "error", "warning") == []
    sql, host = (record(run, i) for i in TRACE_FLAG_CHECKS)
    assert (sql["outcome"], host["outcome"]) == ("passed", "passed")
    assert sql["message"] == (
        "trace flag 1800 is off but not needed: the log volume of sql01 has 4096-byte physical sectors, "
        "as the managed instance does"
    )
    assert host["message"] == (
        "/var/opt/mssql/mssql.conf lacks trace flag 1800, which a log volume with 4096-byte physical sectors "
        "(the managed instance's) does not need"
    )
    sector = record(run, "host-log-sector-size")
    assert sector["outcome"] == "passed"
    assert evidence(sector)["lsblk -bdno PHY-SEC,LOG-SEC -- /dev/sdb1"] == "exit 0\n   4096     512"


def test_without_trace_flag_1800_a_512_byte_log_volume_warns_naming_the_size(gate: GateRunner) -> None:
    run = gate("sql-tf1800-off-512-log-volume")
    assert run.returncode == 0, run.stdout[-3000:]  # recommended checks warn: a go unless --fail-on-recommended
    flagged = {(r["prerequisite"], r["outcome"]) for r in run.records("failed", "error", "warning")}
    assert flagged == {(i, "warning") for i in TRACE_FLAG_CHECKS}
    sql = record(run, "sql-trace-flag-1800")
    assert "the log volume's physical sectors are 512 bytes, the managed instance's 4096" in sql["message"], sql
    host = record(run, "host-mssql-conf-traceflags")
    assert "persist trace flag(s) 1800 (the log volume's physical sectors are 512 bytes" in host["message"], host


def test_healthy_reads_the_log_volume_the_lab_declares(gate: GateRunner) -> None:
    """healthy declares no log volume: the lab's default, a 512-byte-sector /dev/sdb1, whatever this machine has."""
    run = gate("healthy", "tests/host")
    assert run.returncode == 0, run.stdout[-3000:]
    sector = record(run, "host-log-sector-size")
    assert sector["outcome"] == "passed"
    assert evidence(sector) == {
        "df --output=source -- /var/opt/mssql/data": "exit 0\nFilesystem\n/dev/sdb1",
        "lsblk -bdno PHY-SEC,LOG-SEC -- /dev/sdb1": "exit 0\n    512     512",
    }
