"""tests/host/test_linux.py's mssql.conf trace-flag check on constructed facts: trace flag 1800 and 4 KB sectors."""

from __future__ import annotations

import pytest
import testinfra

from linkgate.environment import Auth, Connection, Encrypt, HostOS, SqlServer
from linkgate.probes.facts import EvidenceRecorder, Fact
from linkgate.probes.host import LinuxHostFacts, SectorSize, Shell, SqlHost, parse_mssql_conf
from linkgate.probes.net import HostNetwork
from linkgate.views import SqlHostView
from selftests.unit.test_probes_host import _gate_module

linux_checks = _gate_module("host/test_linux.py")
BOTH = "[traceflag]\ntraceflag0 = 1800\ntraceflag1 = 9567\n"
ONLY_9567 = "[traceflag]\ntraceflag0 = 9567\n"


def linux_view(conf_text: str, sector: SectorSize | str) -> tuple[SqlHostView, EvidenceRecorder]:
    """A Linux SqlHostView over given facts (the sector size, or why it could not be read)."""
    connection = Connection("198.18.1.20", 1433, Auth.SQL, "u", None, "auto", Encrypt.MANDATORY, True, None, None)
    server = SqlServer("sql01", connection, "MSSQLSERVER", HostOS.LINUX, 5022, None, ("SalesDB",), None)
    shell = Shell(testinfra.get_host("local://"), "sql01")  # never asked: every fact is given
    sector_fact: Fact[SectorSize] = (
        Fact("the log volume's sector size", "sql01", (), error=sector)
        if isinstance(sector, str)
        else Fact("the log volume's sector size", "sql01", (), sector)
    )
    facts = LinuxHostFacts(
        "sql01",
        service=Fact("service", "sql01", (), error="not read"),
        mssql_conf=Fact("mssql.conf", "sql01", (), parse_mssql_conf(conf_text)),
        sector_size=sector_fact,
        networks=Fact("networks", "sql01", (), error="not read"),
        firewall=Fact("firewall", "sql01", (), error="not read"),
    )
    recorder = EvidenceRecorder()
    host = SqlHost("sql01", HostOS.LINUX, shell, facts, None)
    return SqlHostView(server, host, HostNetwork(shell, windows=False), recorder), recorder


def disk(physical: int) -> SectorSize:
    return SectorSize("/var/opt/mssql/data", "/dev/sdb1", physical, 512)


def test_both_flags_persisted_passes_without_asking_the_disk() -> None:
    view, recorder = linux_view(BOTH, "must not be read")
    linux_checks.test_host_mssql_conf_traceflags(view)
    assert recorder.notes == []


def test_1800_missing_on_a_4k_log_volume_passes_with_the_reason() -> None:
    view, recorder = linux_view(ONLY_9567, disk(4096))
    linux_checks.test_host_mssql_conf_traceflags(view)
    assert recorder.notes == [
        "/var/opt/mssql/mssql.conf lacks trace flag 1800, which a log volume with 4096-byte physical sectors "
        "(the managed instance's) does not need"
    ]


@pytest.mark.parametrize(
    ("sector", "said"),
    [
        (disk(512), " (the log volume's physical sectors are 512 bytes, the managed instance's 4096)"),
        (SectorSize("/var/opt/mssql/data", "overlay", None, None), ""),
        ("df failed", ""),
    ],
)
def test_1800_missing_elsewhere_fails_and_an_unreadable_disk_never_errors(sector: SectorSize | str, said: str) -> None:
    view, _ = linux_view(ONLY_9567, sector)
    with pytest.raises(AssertionError) as caught:
        linux_checks.test_host_mssql_conf_traceflags(view)
    assert str(caught.value) == f"/var/opt/mssql/mssql.conf does not persist trace flag(s) 1800{said}"


def test_9567_missing_fails_even_on_a_4k_volume() -> None:
    view, _ = linux_view("[traceflag]\ntraceflag0 = 1800\n", disk(4096))
    with pytest.raises(AssertionError, match=r"does not persist trace flag\(s\) 9567$"):
        linux_checks.test_host_mssql_conf_traceflags(view)
