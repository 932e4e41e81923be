"""bench/fleet.py: it runs end to end on a small fleet, and its own measuring parts are right."""

from __future__ import annotations

import importlib.util
import os
import re
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import pytest

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "bench" / "fleet.py"


def _fleet() -> ModuleType:
    spec = importlib.util.spec_from_file_location("linkgate_bench_fleet", SCRIPT)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses resolve their annotations through sys.modules
    spec.loader.exec_module(module)
    return module


fleet = _fleet()


def test_dead_targets_join_the_fleet_from_three_instances() -> None:
    assert fleet.fleet_names(1) == {"sql001": None}
    assert fleet.fleet_names(3) == {"sql001": None, "dead-refuses": "refuse", "dead-drops": "drop"}
    big = fleet.fleet_names(200)
    assert len(big) == 200
    assert [n for n, fault in big.items() if fault] == ["dead-refuses", "dead-drops"]


def test_default_sizes_are_the_standard_ones_below_the_fleet_then_the_fleet() -> None:
    assert fleet.parse_args([]).sizes == [1, 10, 50, 200]
    assert fleet.parse_args(["--instances", "30"]).sizes == [1, 10, 30]
    assert fleet.parse_args(["--sizes", "3,1,3"]).sizes == [1, 3]


def test_tree_memory_sums_the_peaks_of_every_descendant() -> None:
    """A parent that starts a child holding 200 MiB: the tree's peak counts the child's."""
    child = "import time; block = bytearray(200 * 2**20); time.sleep(1.5)"
    parent = f"import subprocess, sys; subprocess.run([sys.executable, '-c', {child!r}], check=True)"
    process = subprocess.Popen([sys.executable, "-c", parent])
    memory = fleet.TreeMemory(process.pid)
    assert process.wait(30) == 0
    assert memory.stop() > 200


@pytest.mark.lab
def test_small_fleet_prints_its_table_dead_targets_and_a_last_ratio_line() -> None:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT / "src"), os.environ.get("PYTHONPATH")]))}
    command = [sys.executable, str(SCRIPT), "--sizes", "1,3", "--latency-ms", "5", "--connect-timeout", "2"]
    proc = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=120, check=False)
    assert proc.returncode == 0, proc.stderr[-3000:]
    lines = proc.stdout.splitlines()
    rows = {int(line.split()[0]): line.split() for line in lines if re.match(r"\s+\d+\s+\d+\s+\d+\.\d\d\s", line)}
    assert sorted(rows) == [1, 3]
    assert rows[3][9] == "2.00"  # the floor counts one connect timeout once dead targets exist
    assert rows[1][9] == "0.00"
    assert rows[3][11] == "1"  # one connection per live target (one worker)
    for name in ("dead-refuses", "dead-drops"):
        (line,) = [line for line in lines if line.strip().startswith(f"{name} (")]
        assert "error" in line
        assert f"{name} is unreachable" in line
    assert re.fullmatch(r"ratio \d+\.\d\d", lines[-1])
    assert lines[-1] == f"ratio {rows[3][10]}"
