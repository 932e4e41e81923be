"""The log volume a lab machine reports: the `df` and `lsblk` stand-ins answer for /var/opt/mssql as the scenario
says, over real ssh, and leave every other path and device to the real tools.

The lab's /var/opt/mssql is a folder on this machine's own disk, so without the stand-ins trace flag 1800's
checks would depend on where the self-tests run (a 4096-byte-sector virtual disk, an overlay in a container).
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from typing import Any

import pytest

from linkgate.lab.hosts import LabHosts, LogVolume, load_hosts
from linkgate.probes.host import Shell, read_sector_size
from selftests.lab.test_hosts import Plan, ssh

pytestmark = [
    pytest.mark.lab,
    pytest.mark.needs_root,
    pytest.mark.skipif(os.geteuid() != 0, reason="the lab needs root"),
]

ADVANCED_FORMAT = {"device": "/dev/mapper/vg-mssqllog", "physical": 4096, "logical": 512}


@pytest.fixture(scope="module", params=[(17, None), (18, ADVANCED_FORMAT)], ids=["default", "512e"])
def volume_lab(request: pytest.FixtureRequest) -> Iterator[tuple[LabHosts, LogVolume]]:
    """A lab whose sql01 declares no log volume (the default) or a 512e one under a device-mapper name."""
    i, declared = request.param
    sql01: dict[str, Any] = {} if declared is None else {"log_volume": declared}
    with LabHosts(load_hosts(Plan.of(i).hosts(sql01=sql01))) as hosts:
        yield hosts, LogVolume(**declared) if declared else LogVolume()


def real(command: list[str]) -> tuple[int, str]:
    """What a real tool says here, outside the lab (the stand-ins must give the same for anything not theirs)."""
    done = subprocess.run(command, capture_output=True, text=True, timeout=10, check=False)
    return done.returncode, done.stdout


def test_the_default_is_a_classic_512_byte_sector_disk() -> None:
    """Where trace flag 1800 matters, as the article assumes; the 4 KB exemption only where a scenario asks."""
    assert LogVolume() == LogVolume("/dev/sdb1", 512, 512)
    spec = load_hosts(Plan.of(17).hosts())
    assert spec.machines["sql01"].log_volume == LogVolume()


def test_the_gates_commands_read_the_declared_volume_over_ssh(volume_lab: tuple[LabHosts, LogVolume]) -> None:
    lab, volume = volume_lab
    sector, evidence = read_sector_size(Shell(ssh(lab), "sql01"), "/var/opt/mssql/data")
    assert (sector.source, sector.physical, sector.logical) == (volume.device, volume.physical, volume.logical)
    assert [e.command for e in evidence] == [
        "df --output=source -- /var/opt/mssql/data",
        f"lsblk -bdno PHY-SEC,LOG-SEC -- {volume.device}",
    ]


def test_df_names_the_device_only_in_the_rows_of_mssql_paths(volume_lab: tuple[LabHosts, LogVolume]) -> None:
    """One df over both kinds of path: the mssql row names the volume, keeps the real mount point and sizes."""
    lab, volume = volume_lab
    host = ssh(lab)
    rows = host.check_output("df -P /var/tmp /var/opt/mssql/data /var/opt/mssql/mssql.conf").splitlines()
    real_tmp = real(["df", "-P", "/var/tmp"])[1].splitlines()[1]
    assert rows[1].split()[0] == real_tmp.split()[0], "another path's row is the real df's"
    for row in rows[2:]:
        source, *_, mounted_on = row.split()
        assert (source, mounted_on) == (volume.device, "/var/opt/mssql")
    reordered = host.check_output("df --output=target,source -- /var/opt/mssql").splitlines()[1].split()
    assert reordered == ["/var/opt/mssql", volume.device]
    assert host.check_output("df --output=target -- /var/opt/mssql").splitlines()[1] == "/var/opt/mssql"
    missing = host.run("df --output=source -- /var/opt/mssql/nothing-here")
    assert missing.rc == 1
    assert "No such file or directory" in missing.stderr


def test_lsblk_answers_its_columns_and_formats(volume_lab: tuple[LabHosts, LogVolume]) -> None:
    lab, volume = volume_lab
    host = ssh(lab)
    device, p, lg = volume.device, volume.physical, volume.logical
    assert host.check_output(f"lsblk -r -o name,PATH,phy-sec,LOG-SEC {device}") == (
        f"NAME PATH PHY-SEC LOG-SEC\n{volume.name} {device} {p} {lg}"
    )
    assert host.check_output(f"lsblk -P -o KNAME,PHY-SEC {device}") == f'KNAME="{volume.name}" PHY-SEC="{p}"'
    table = host.check_output(f"lsblk -d -o NAME,PHY-SEC,LOG-SEC {device}").splitlines()
    assert table[0].split() == ["NAME", "PHY-SEC", "LOG-SEC"]
    assert table[1].split() == [volume.name, str(p), str(lg)]
    assert len(table[0]) == len(table[1]), "the table's columns line up, numbers right-aligned as lsblk does"
    unknown = host.run(f"lsblk -o NAME,SIZE {device}")
    assert (unknown.rc, unknown.stdout) == (1, "")
    assert "column SIZE is not modelled by the linkgate lab" in unknown.stderr
    assert host.run(f"lsblk {device}").rc == 1, "no default columns: the stand-in does not invent a size"


def test_other_paths_and_devices_get_the_real_tools(volume_lab: tuple[LabHosts, LogVolume]) -> None:
    lab, _ = volume_lab
    host = ssh(lab)
    rc, out = real(["df", "--output=source", "--", "/var/tmp"])
    there = host.run("df --output=source -- /var/tmp")
    assert (there.rc, there.stdout) == (rc, out)
    disk = out.splitlines()[1]
    sectors = ["lsblk", "-bdno", "PHY-SEC,LOG-SEC", "--", disk]
    there = host.run(" ".join(sectors))
    assert (there.rc, there.stdout) == real(sectors), "the machine's own disk, as the real lsblk reports it"
    nowhere = host.run("lsblk -bdno PHY-SEC -- /dev/linkgate-no-such-disk")
    assert nowhere.rc == real(["lsblk", "-bdno", "PHY-SEC", "--", "/dev/linkgate-no-such-disk"])[0] != 0


def test_a_log_on_no_block_device_is_read_as_such_over_ssh() -> None:
    """`device: overlay` (a container's root): df names it, lsblk is the real one, the probe finds no sectors."""
    with LabHosts(load_hosts(Plan.of(19).hosts(sql01={"log_volume": {"device": "overlay"}}))) as lab:
        shell = Shell(ssh(lab), "sql01")
        sector, evidence = read_sector_size(shell, "/var/opt/mssql/data")
        lsblk = shell.run("lsblk -bdno PHY-SEC -- overlay")
    assert (sector.source, sector.physical, sector.logical) == ("overlay", None, None)
    assert [e.command for e in evidence] == ["df --output=source -- /var/opt/mssql/data"]
    assert (lsblk.rc, lsblk.stdout) == real(["lsblk", "-bdno", "PHY-SEC", "--", "overlay"])
    assert lsblk.rc != 0
