"""Fleet benchmark: the gate against N simulated SQL Servers, compared with its floor.

The floor is what no gate can beat on this machine, measured in the same run: (a) pytest running the same
number of trivial parametrized items with the same report plugins (HTML, JUnit), plus (b) one target's
round trips × the injected latency, plus (c) one connect timeout when dead targets exist. The lab runs in
its own process; the gate runs as the user runs it (`pytest --env=FILE`). Prints one row per size and, last,
`ratio <x>` for the largest size.

    python bench/fleet.py                       # N = 1, 10, 50, 200 at 20 ms
    python bench/fleet.py --sizes 200 --latency-ms 20 --xdist 2 --compare-sequential
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import multiprocessing as mp
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
DEAD = {"dead-refuse": {"refuse": True}, "dead-drop": {"drop": True}}


def _serve(n: int, latency_ms: float, dead: bool, workdir: str, conn: Any) -> None:
    """Child process: start the fleet lab, hand over its environment file, report counters when told."""
    import yaml

    from linkgate.lab.backend import Faults
    from linkgate.lab.runner import Lab, ensure_password
    from linkgate.lab.scenario import load_scenario

    ensure_password()
    base = load_scenario("healthy")
    template = base.instances["sql01"]
    instances: dict[str, Any] = {}
    for i in range(n):
        name = f"sql{i:03d}"
        instances[name] = dataclasses.replace(template, name=name, port=0, faults=Faults(latency_ms=latency_ms))
    if dead:
        for name, fault in DEAD.items():
            faults = Faults(refuse=fault.get("refuse", False), drop=fault.get("drop", False))
            instances[name] = dataclasses.replace(template, name=name, port=0, faults=faults)
    instances["mi01"] = dataclasses.replace(base.instances["mi01"], port=0, faults=Faults(latency_ms=latency_ms))
    scenario = dataclasses.replace(base, name=f"fleet-{n}", instances=instances, hosts={}, azure={})
    with Lab(scenario, ephemeral_ports=True) as lab:
        env = lab.environment()
        env["timeouts"] = {"connect": 3, "query": 20}
        path = Path(workdir) / "fleet.yaml"
        path.write_text(yaml.safe_dump(env, sort_keys=False))
        conn.send(str(path))
        conn.recv()  # the gate has finished
        stats = {name: (lab.stats(name).connections, lab.stats(name).round_trips) for name in instances}
        conn.send((stats, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss))


def run_gate(env: Path, reports: Path, xdist: int) -> tuple[float, dict[str, Any]]:
    command = [
        sys.executable,
        "-m",
        "pytest",
        f"--env={env}",
        f"--reports={reports}",
        "-q",
        "-p",
        "no:cacheprovider",
        "-n",
        str(xdist),
    ]
    started = time.perf_counter()
    subprocess.run(command, cwd=ROOT, capture_output=True, text=True, check=False)
    wall = time.perf_counter() - started
    return wall, json.loads((reports / "summary.json").read_text())


def trivial_items(count: int, workdir: Path, xdist: int) -> float:
    """Floor (a): `count` trivial parametrized items, with HTML and JUnit reports, in a bare project."""
    project = workdir / "trivial"
    project.mkdir(exist_ok=True)
    (project / "pytest.ini").write_text("[pytest]\n")
    (project / "test_trivial.py").write_text(
        f"import pytest\n\n@pytest.mark.parametrize('i', range({count}))\ndef test_item(i):\n    assert i >= 0\n"
    )
    command = [
        sys.executable,
        "-m",
        "pytest",
        "-q",
        "-p",
        "no:cacheprovider",
        "-n",
        str(xdist),
        f"--html={project / 'r.html'}",
        "--self-contained-html",
        f"--junitxml={project / 'r.xml'}",
    ]
    started = time.perf_counter()
    subprocess.run(command, cwd=project, capture_output=True, text=True, check=False)
    return time.perf_counter() - started


def measure(n: int, latency_ms: float, xdist: int, workdir: Path) -> dict[str, Any]:
    dead = n >= 10
    here, there = mp.Pipe()
    lab = mp.get_context("spawn").Process(target=_serve, args=(n, latency_ms, dead, str(workdir), there))
    lab.start()
    if not here.poll(120):
        lab.kill()
        raise SystemExit(f"the lab for N={n} did not start (exit code {lab.exitcode})")
    env = Path(here.recv())
    wall, summary = run_gate(env, workdir / f"reports-{n}", xdist)
    here.send("done")
    stats, lab_rss_kb = here.recv()
    lab.join(timeout=30)
    gate_rss_kb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    records = summary["records"]
    live = [s for name, s in stats.items() if name.startswith("sql") and s[0]]
    min_round_trips = min(rt for _, rt in live) if live else 0
    floor = trivial_items(len(records), workdir, xdist) + min_round_trips * latency_ms / 1000 + (3.0 if dead else 0)
    dead_errors = sorted({r["target"].split("/")[0] for r in records if r["outcome"] == "error"})
    return {
        "n": n,
        "wall": wall,
        "floor": floor,
        "ratio": wall / floor,
        "items": len(records),
        "connections": max(c for c, _ in live) if live else 0,
        "round_trips": max(rt for _, rt in live) if live else 0,
        "min_round_trips": min_round_trips,
        "peak_mb": (gate_rss_kb + lab_rss_kb) / 1024,
        "dead_errors": dead_errors,
        "verdict": summary["verdict"],
        "outcomes": {(r["prerequisite"], r["target"]): r["outcome"] for r in records},
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--instances", type=int, default=200, help="The largest fleet size (default 200)")
    parser.add_argument("--sizes", default=None, help="Comma-separated fleet sizes (default 1,10,50,INSTANCES)")
    parser.add_argument("--latency-ms", type=float, default=20.0, help="Latency per round trip (default 20)")
    parser.add_argument("--xdist", type=int, default=0, help="Run the gate with -n XDIST (default 0)")
    parser.add_argument(
        "--compare-sequential",
        action="store_true",
        help="Also run the largest size with -n 0 and -n 2 and compare every outcome",
    )
    args = parser.parse_args()
    from linkgate.lab.runner import ensure_password

    ensure_password()  # before the lab process starts, so the lab and the gate share the secret
    sizes = [int(s) for s in args.sizes.split(",")] if args.sizes else sorted({1, 10, 50, args.instances})
    print(
        f"{'N':>5} {'items':>6} {'wall s':>8} {'floor s':>8} {'ratio':>6} {'conn/target':>11} "
        f"{'round trips/target':>18} {'peak MB':>8}  dead targets reported as errors"
    )
    last: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="linkgate-fleet-") as tmp:
        for n in sizes:
            last = measure(n, args.latency_ms, args.xdist, Path(tmp))
            print(
                f"{n:>5} {last['items']:>6} {last['wall']:>8.2f} {last['floor']:>8.2f} {last['ratio']:>6.2f} "
                f"{last['connections']:>11} {last['min_round_trips']:>8}–{last['round_trips']:<9} "
                f"{last['peak_mb']:>8.0f}  {', '.join(last['dead_errors']) or '-'}",
                flush=True,
            )
        if args.compare_sequential:
            n = sizes[-1]
            a = measure(n, args.latency_ms, 0, Path(tmp))
            b = measure(n, args.latency_ms, 2, Path(tmp))
            same = a["outcomes"] == b["outcomes"]
            print(
                f"-n 0 vs -n 2 at N={n}: {'same outcomes' if same else 'OUTCOMES DIFFER'} "
                f"({len(a['outcomes'])} records; wall {a['wall']:.2f} s vs {b['wall']:.2f} s)"
            )
    print(f"ratio {last['ratio']:.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
