"""Fleet benchmark: the whole gate against N simulated SQL Servers, compared with its floor.

linkgate's wall time for a fleet should stay close to its floor: what pytest itself costs for that many
test items (with the same plugins and reports), plus the longest single target's chain of network round
trips, plus one connect timeout when dead targets exist — never the sum over targets.

For each fleet size the script starts a lab in child processes (never in the gate's process): N SQL
Servers cloned from the `healthy` scenario's sql01 (two databases to link each), its managed instance
and ARM endpoint, every instance answering after `--latency-ms` per round trip. From N = 3 on, two of the N are dead:
one refuses connections, one accepts and never answers. The lab has no network-namespace hosts (its
`hosts:` section is dropped), so the host checks report "not applicable". Then it runs the real gate
(`python -m pytest --env FILE`, the project's defaults and report plugins) and measures:

- gate: wall time of the gate subprocess;
- floor: (a) the same number of trivial parametrized items with the same plugins, reports and `-n`,
  (b) the minimal round trips of one target × latency — the handshake as counted by the lab for one
  bare connection of the gate's own session class, plus the two fact batches of `linkgate.probes.sql` —
  (c) one connect timeout when dead targets exist;
- conn/target and rt/target: connections and round trips the lab counted for each SQL Server during the
  gate (min–max over the live ones);
- lab cpu s: the simulator's CPU time (a real fleet answers in parallel; the lab from one thread per process);
- peak MiB: the sum of the gate process tree's and the lab processes' peak RSS.

Then the issue's targets for the largest size, each `ok` or `MISS` (`--check`: exit 1 on a miss), and,
last, `ratio <x>` for the largest N run. Usage (from the repository root)::

    PYTHONPATH=src python bench/fleet.py                          # N = 1, 10, 50, 200 at 20 ms
    PYTHONPATH=src python bench/fleet.py --sizes 1,3 --latency-ms 5 --xdist 2 --compare-sequential
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import math
import multiprocessing
import os
import secrets
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[1]
STANDARD_SIZES = (1, 10, 50, 200)
FACT_BATCHES = 2
"""Round trips `read_sql_server` needs after login: the server-wide batch, then the version-dependent one."""
DEAD = {"dead-refuses": "refuse", "dead-drops": "drop"}
"""The dead targets (name → fault) present from MIN_FLEET_WITH_DEAD instances on, in place of live ones."""
MIN_FLEET_WITH_DEAD = 3
INSTANCES_PER_LAB = 100
"""A lab process serves its instances from one asyncio thread, at about 35 ms of CPU per target read (its
result cache shares the clones' answers; bench/lab_load.py measures it): 100 per process answer every
login well within a 3 s connect timeout at N = 200 on two cores, and each process costs ~85 MiB of
fixed memory (DuckDB), so fewer processes keep the run's peak down (measured: 4 × 50 → 463 MiB, 2 × 100
→ 249 MiB)."""
LAB_READY_SECONDS = 120.0
GATE_TIMEOUT_SECONDS = 3600.0
MEMORY_SAMPLE_SECONDS = 0.2
TARGET_RATIO = 1.5
MEMORY_LIMIT_MIB = 1024.0


# --------------------------------------------------------------------------------------------------
# The fleet and its lab


def fleet_names(size: int) -> dict[str, str | None]:
    """The SQL Servers of a fleet of `size`, in order: name → the fault of a dead one (None: alive)."""
    dead = dict(DEAD) if size >= MIN_FLEET_WITH_DEAD else {}
    live = size - len(dead)
    names: dict[str, str | None] = {f"sql{i:03d}": None for i in range(1, live + 1)}
    names.update(dead)
    return names


def _serve_lab(conn: Connection, names: dict[str, str | None], latency_ms: float, azure: bool) -> None:
    """Child process: a lab with these SQL Servers, the managed instance (and, if `azure`, the ARM endpoint).

    It first sends the environment file's content and the ARM credential's (non-secret) variables.
    Requests: "stats" → {name: [connections, logins, round_trips]}; "usage" → [max RSS KiB, CPU seconds];
    "stop" (or the parent going away) → stop the lab and exit.
    """
    import resource

    from linkgate.lab.backend import Faults
    from linkgate.lab.runner import Lab
    from linkgate.lab.scenario import load_scenario

    healthy = load_scenario("healthy")
    sql = healthy.instances["sql01"]
    mi_name, mi = next((n, s) for n, s in healthy.instances.items() if s.is_managed_instance)
    instances = {
        name: dataclasses.replace(
            sql,
            name=name,
            server_name=name,
            machine_name=name,
            port=0,
            faults=Faults(latency_ms=latency_ms, refuse=fault == "refuse", drop=fault == "drop"),
        )
        for name, fault in names.items()
    }
    instances[mi_name] = dataclasses.replace(mi, port=0, faults=Faults(latency_ms=latency_ms))
    scenario = dataclasses.replace(healthy, instances=instances, hosts={}, azure=healthy.azure if azure else {})
    with Lab(scenario, ephemeral_ports=True) as lab:
        conn.send((lab.environment(name="fleet"), lab.ready_document().get("azure_credentials") or {}))
        while True:
            try:
                request = conn.recv()
            except EOFError:
                return
            if request == "stats":
                conn.send({n: [s.connections, s.logins, s.round_trips] for n in instances for s in [lab.stats(n)]})
            elif request == "usage":
                usage = resource.getrusage(resource.RUSAGE_SELF)
                conn.send([usage.ru_maxrss, usage.ru_utime + usage.ru_stime])
            else:
                return


def lab_processes(size: int) -> int:
    return math.ceil(size / INSTANCES_PER_LAB)


class FleetLab:
    """The lab processes of one fleet; the first one's managed instance is the one the gate checks."""

    def __init__(self, size: int, latency_ms: float) -> None:
        names = list(fleet_names(size).items())
        step = math.ceil(size / lab_processes(size))
        context = multiprocessing.get_context("spawn")
        self._children: list[tuple[multiprocessing.process.BaseProcess, Connection]] = []
        self.environment: dict[str, Any] = {}
        for start in range(0, len(names), step):
            parent, child = context.Pipe()
            process = context.Process(
                target=_serve_lab,
                args=(child, dict(names[start : start + step]), latency_ms, not self._children),
                name="linkgate-fleet-lab",
                daemon=True,
            )
            process.start()
            child.close()
            self._children.append((process, parent))
        for _process, parent in self._children:
            if not parent.poll(LAB_READY_SECONDS):
                self.stop()
                raise RuntimeError("a lab process did not start in time")
            environment, credentials = parent.recv()
            if not self.environment:
                self.environment = environment
                os.environ.update(credentials)  # tenant and client ids, as `pytest --env demo` does
            else:
                self.environment["sql_servers"].update(environment["sql_servers"])

    def _ask(self, request: str) -> list[Any]:
        answers = []
        for _process, parent in self._children:
            parent.send(request)
            answers.append(parent.recv())
        return answers

    def stats(self) -> dict[str, tuple[int, int, int]]:
        """Per instance: connections accepted, logins, round trips (the managed instance: the gate's one only)."""
        merged: dict[str, tuple[int, int, int]] = {}
        for i, answer in enumerate(self._ask("stats")):
            for name, (connections, logins, round_trips) in answer.items():
                if i == 0 or name in self.environment["sql_servers"]:
                    merged[name] = (connections, logins, round_trips)
        return merged

    def usage(self) -> tuple[float, float]:
        """Summed peak RSS (MiB) and CPU seconds of the lab processes."""
        answers = self._ask("usage")
        return sum(a[0] for a in answers) / 1024, sum(a[1] for a in answers)

    def stop(self) -> None:
        for process, parent in self._children:
            stop_lab_process(process, parent)
        self._children.clear()


def stop_lab_process(process: multiprocessing.process.BaseProcess, parent: Connection) -> None:
    """Ask a `_serve_lab` child to stop, wait for it (terminate it if it hangs) and close its pipe."""
    with contextlib.suppress(OSError):
        parent.send("stop")
    process.join(30)
    if process.is_alive():
        process.terminate()
        process.join(10)
    parent.close()


@contextlib.contextmanager
def fleet_lab(size: int, latency_ms: float) -> Iterator[FleetLab]:
    lab = FleetLab(size, latency_ms)
    try:
        yield lab
    finally:
        lab.stop()


def handshake_round_trips(lab: FleetLab, env_file: Path, target: str) -> int:
    """Round trips the lab counts for one bare connection of the gate's own session (PRELOGIN, LOGIN7, the
    driver's own requests), opened and closed here before the gate runs."""
    from linkgate.environment import load_environment
    from linkgate.probes.odbc import OdbcSession

    env = load_environment(env_file)
    before = lab.stats()[target][2]
    session = OdbcSession(target, env.sql_servers[target].connection, env.timeouts)
    try:
        session.connect()
    finally:
        session.close()
    return lab.stats()[target][2] - before


# --------------------------------------------------------------------------------------------------
# Running pytest and measuring it


@dataclass(frozen=True)
class Run:
    """One pytest subprocess: exit code, wall seconds, summed peak RSS of its process tree, its output."""

    returncode: int
    seconds: float
    peak_mib: float
    output: str


def _children_by_parent() -> dict[int, list[int]]:
    table: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        table.setdefault(ppid, []).append(int(entry.name))
    return table


def _peak_kib(pid: int) -> int | None:
    """VmHWM: the process's peak resident set so far (None: it is gone)."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    except OSError:
        return None
    return None


class TreeMemory:
    """Samples the peak RSS of a process and all its descendants until stopped; `peak_mib` sums them.

    A process's VmHWM only grows, so the last value seen of each is its peak up to one sample period.
    """

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self._peaks: dict[int, int] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="fleet-memory", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while True:
            self.sample()
            if self._stop.wait(MEMORY_SAMPLE_SECONDS):
                return

    def sample(self) -> None:
        table = _children_by_parent()
        pending = [self.pid]
        while pending:
            pid = pending.pop()
            peak = _peak_kib(pid)
            if peak is not None:
                self._peaks[pid] = max(peak, self._peaks.get(pid, 0))
            pending.extend(table.get(pid, ()))

    def stop(self) -> float:
        self._stop.set()
        self._thread.join()
        return sum(self._peaks.values()) / 1024


def run_pytest(args: Sequence[str], cwd: Path, log: Path) -> Run:
    """`python -m pytest ARGS` in `cwd`, output to `log`, with the repository's src/ importable."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT / "src"), env.get("PYTHONPATH")) if p)
    started = time.monotonic()
    with log.open("wb") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "pytest", *args],
            cwd=cwd,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )
        memory = TreeMemory(process.pid)
        try:
            returncode = process.wait(GATE_TIMEOUT_SECONDS)
        except subprocess.TimeoutExpired:
            process.kill()
            returncode = process.wait()
        finally:
            peak = memory.stop()
    return Run(returncode, time.monotonic() - started, peak, log.read_text(errors="replace"))


def xdist_args(workers: int | None) -> list[str]:
    return [] if workers is None else ["-n", str(workers)]


def run_gate(env_file: Path, reports: Path, connect_timeout: float, workers: int | None) -> Run:
    """The real gate, as a user runs it, with the given connect timeout and `-n`."""
    args = [
        f"--rootdir={ROOT}",
        f"--env={env_file}",
        f"--reports={reports}",
        "-p",
        "no:cacheprovider",
        "-q",
        f"--connect-timeout={connect_timeout:g}",
        *xdist_args(workers),
    ]
    return run_pytest(args, ROOT, reports.with_suffix(".log"))


FLOOR_TEST = '''\
import pytest


@pytest.mark.parametrize("item", range({count}))
def test_item(item: int) -> None:
    """A check with nothing to check: what pytest and the report plugins cost per item."""
'''


def run_floor(items: int, workdir: Path, workers: int | None) -> Run:
    """`items` trivial parametrized tests with the gate's plugins and reports (HTML, JUnit) and the same `-n`."""
    workdir.mkdir(parents=True, exist_ok=True)
    (workdir / "test_floor.py").write_text(FLOOR_TEST.format(count=items))
    args = [
        f"--rootdir={workdir}",
        "-p",
        "no:cacheprovider",
        "-p",
        "linkgate.plugin",
        "--strict-markers",
        "-q",
        f"--junitxml={workdir / 'junit.xml'}",
        f"--html={workdir / 'report.html'}",
        "--self-contained-html",
        *xdist_args(workers),
        "test_floor.py",
    ]
    return run_pytest(args, workdir, workdir / "floor.log")


# --------------------------------------------------------------------------------------------------
# One fleet size, measured


@dataclass(frozen=True)
class Measurement:
    size: int
    items: int
    gate: Run
    floor_pytest: Run
    chain_round_trips: int
    chain_seconds: float
    timeout_seconds: float
    connections: tuple[int, int]
    round_trips: tuple[int, int]
    not_logged_in: tuple[str, ...]
    """Live SQL Servers no gate worker logged into: an overloaded lab or machine, not the gate's verdict."""
    mi: tuple[int, int]
    lab_cpu: float
    lab_mib: float
    records: list[dict[str, Any]]

    @property
    def floor(self) -> float:
        return self.floor_pytest.seconds + self.chain_seconds + self.timeout_seconds

    @property
    def ratio(self) -> float:
        return self.gate.seconds / self.floor

    @property
    def peak_mib(self) -> float:
        return self.gate.peak_mib + self.lab_mib


class BenchError(Exception):
    """A run that cannot be measured (the gate crashed or reported nothing); the message says why."""


def read_records(reports: Path, run: Run) -> list[dict[str, Any]]:
    """summary.json's records; a gate that did not finish its checks (exit ≥ 2) is an error with its output."""
    summary = reports / "summary.json"
    if run.returncode not in (0, 1) or not summary.is_file():
        tail = "\n".join(run.output.splitlines()[-25:])
        raise BenchError(f"the gate exited with {run.returncode}; its output ends with:\n{tail}")
    records: list[dict[str, Any]] = json.loads(summary.read_text())["records"]
    return records


def _span(values: Sequence[int]) -> tuple[int, int]:
    return (min(values), max(values)) if values else (0, 0)


def measure(size: int, options: argparse.Namespace, workdir: Path) -> Measurement:
    here = workdir / f"n{size}"
    here.mkdir(parents=True)
    with fleet_lab(size, options.latency_ms) as lab:
        env_file = here / "fleet.yaml"
        env_file.write_text(yaml.safe_dump(lab.environment, sort_keys=False))
        names = fleet_names(size)
        live = [n for n, fault in names.items() if fault is None]
        handshake = handshake_round_trips(lab, env_file, live[0])
        before = lab.stats()
        gate = run_gate(env_file, here / "reports", options.connect_timeout, options.xdist)
        after = lab.stats()
        lab_mib, lab_cpu = lab.usage()
    records = read_records(here / "reports", gate)
    delta = {n: tuple(a - b for a, b in zip(after[n], before[n], strict=True)) for n in after}
    mi_name = lab.environment["managed_instance"]["name"]
    floor = run_floor(len(records), here / "floor", options.xdist)
    if floor.returncode != 0:
        raise BenchError(f"the floor run exited with {floor.returncode}:\n{floor.output[-2000:]}")
    chain = handshake + FACT_BATCHES
    return Measurement(
        size=size,
        items=len(records),
        gate=gate,
        floor_pytest=floor,
        chain_round_trips=chain,
        chain_seconds=chain * options.latency_ms / 1000,
        timeout_seconds=options.connect_timeout if len(live) < size else 0.0,
        connections=_span([delta[n][0] for n in live]),
        round_trips=_span([delta[n][2] for n in live]),
        not_logged_in=tuple(n for n in live if delta[n][1] < 1),
        mi=(delta[mi_name][0], delta[mi_name][2]),
        lab_cpu=lab_cpu,
        lab_mib=lab_mib,
        records=records,
    )


def dead_target_lines(m: Measurement) -> list[str]:
    """Per dead target: how its checks were reported, and the first reason."""
    lines = []
    for name, fault in fleet_names(m.size).items():
        if fault is None:
            continue
        own = [r for r in m.records if r["target"].split("/", 1)[0] == name]
        outcomes = Counter(r["outcome"] for r in own)
        reasons = sorted({r["message"] for r in own if r["outcome"] == "error"})
        shown = ", ".join(f"{count} {outcome}" for outcome, count in sorted(outcomes.items()))
        lines.append(f"  {name} ({fault}): {shown or 'no checks'}; reason: {reasons[0] if reasons else '—'}")
    return lines


def dead_all_errors(m: Measurement) -> bool:
    """Every SQL check of each dead target errs with a reason naming it (or is not applicable by data).

    Checks that read only other sources (ARM) may still pass: their facts do not come from the dead server.
    """
    for name, fault in fleet_names(m.size).items():
        if fault is None:
            continue
        sql = [r for r in m.records if r["target"].split("/", 1)[0] == name and r["prerequisite"].startswith("sql-")]
        checked = [r for r in sql if r["outcome"] != "not-applicable"]
        if not checked or any(r["outcome"] != "error" or name not in r["message"] for r in checked):
            return False
    return True


def outcome_keys(records: list[dict[str, Any]]) -> Counter[tuple[str, str, str]]:
    return Counter((r["prerequisite"], r["target"], r["outcome"]) for r in records)


def compare_sequential(size: int, options: argparse.Namespace, workdir: Path) -> list[str]:
    """Run the gate with `-n 0` and `-n 2` against one lab; the lines describing any difference in outcomes."""
    here = workdir / f"compare-n{size}"
    here.mkdir(parents=True)
    keys = {}
    with fleet_lab(size, options.latency_ms) as lab:
        env_file = here / "fleet.yaml"
        env_file.write_text(yaml.safe_dump(lab.environment, sort_keys=False))
        for workers in (0, 2):
            reports = here / f"reports-n{workers}"
            run = run_gate(env_file, reports, options.connect_timeout, workers)
            keys[workers] = outcome_keys(read_records(reports, run))
    only_sequential = sorted(keys[0] - keys[2])
    only_parallel = sorted(keys[2] - keys[0])
    if not (only_sequential or only_parallel):
        return []
    return [
        *(f"  only with -n 0: {k}" for k in only_sequential[:10]),
        *(f"  only with -n 2: {k}" for k in only_parallel[:10]),
        f"  ({len(only_sequential)} and {len(only_parallel)} differences in "
        f"{sum(keys[0].values())} and {sum(keys[2].values())} records)",
    ]


# --------------------------------------------------------------------------------------------------
# The command line


def _sizes(text: str) -> list[int]:
    try:
        sizes = sorted({int(part) for part in text.split(",") if part.strip()})
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected sizes like 1,10,50,200, got {text!r}") from None
    if not sizes or sizes[0] < 1:
        raise argparse.ArgumentTypeError(f"sizes must be at least 1, got {text!r}")
    return sizes


def _positive(text: str) -> float:
    value = float(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"expected a positive number, got {text!r}")
    return value


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="bench/fleet.py",
        description=__doc__.split("\n\n", 1)[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--instances", type=int, default=200, metavar="N", help="Largest fleet: SQL Servers in the lab (default 200)"
    )
    parser.add_argument(
        "--sizes",
        type=_sizes,
        metavar="N,N,...",
        help="Fleet sizes to run (default: those of 1,10,50,200 below --instances, and --instances)",
    )
    parser.add_argument(
        "--latency-ms",
        type=float,
        default=20.0,
        metavar="MS",
        help="Latency the lab adds to every round trip (default 20, as over a VPN to Azure)",
    )
    parser.add_argument(
        "--connect-timeout",
        type=_positive,
        default=3.0,
        metavar="SECONDS",
        help="The gate's connect timeout (default 3)",
    )
    parser.add_argument("--xdist", type=int, metavar="N", help="Run the gate (and the floor) with -n N")
    parser.add_argument(
        "--compare-sequential",
        action="store_true",
        help="At the largest size, also check that -n 0 and -n 2 report the same outcomes",
    )
    parser.add_argument(
        "--check",
        action="store_true",
        help="Exit 1 unless the largest size meets the issue's targets (ratio, connections, memory)",
    )
    parser.add_argument(
        "--workdir",
        type=Path,
        metavar="DIR",
        help="Keep environments, reports and logs here (default: a temporary directory, removed)",
    )
    options = parser.parse_args(argv)
    if options.instances < 1:
        parser.error("--instances must be at least 1")
    if options.sizes is None:
        options.sizes = [s for s in STANDARD_SIZES if s < options.instances] + [options.instances]
    return options


HEADER = (
    f"{'N':>5} {'items':>6} {'gate s':>8} {'floor s':>8} = {'pytest':>6} + {'chain':>5} + {'timeout':>7}"
    f" {'ratio':>6} {'conn/target':>11} {'rt/target':>9} {'lab cpu s':>9} {'peak MiB':>8}"
)


def _range(span: tuple[int, int]) -> str:
    return str(span[0]) if span[0] == span[1] else f"{span[0]}–{span[1]}"


def row(m: Measurement) -> str:
    return (
        f"{m.size:>5} {m.items:>6} {m.gate.seconds:>8.2f} {m.floor:>8.2f} = {m.floor_pytest.seconds:>6.2f} + "
        f"{m.chain_seconds:>5.2f} + {m.timeout_seconds:>7.2f} {m.ratio:>6.2f} {_range(m.connections):>11} "
        f"{_range(m.round_trips):>9} {m.lab_cpu:>9.1f} {m.peak_mib:>8.0f}"
    )


def checks(m: Measurement, workers: int | None) -> list[tuple[str, bool]]:
    per_worker = max(1, workers or 1)
    missing = ", ".join(m.not_logged_in[:5]) + (", …" if len(m.not_logged_in) > 5 else "")
    return [
        (f"gate within {TARGET_RATIO}× its floor (ratio {m.ratio:.2f})", m.ratio <= TARGET_RATIO),
        (
            f"one connection per target per worker ({_range(m.connections)} for {per_worker} worker(s))",
            m.connections[1] <= per_worker,
        ),
        (f"peak memory under {MEMORY_LIMIT_MIB:.0f} MiB ({m.peak_mib:.0f} MiB)", m.peak_mib < MEMORY_LIMIT_MIB),
        ("dead targets reported as errors with the reason", dead_all_errors(m)),
        (f"every live target logged into{f' (not: {missing})' if missing else ''}", not m.not_logged_in),
    ]


def main(argv: Sequence[str] | None = None) -> int:
    options = parse_args(argv)
    from linkgate.lab.arm import SECRET_VARIABLE
    from linkgate.lab.runner import ensure_password

    # Before the lab processes start: they and the gate read the same variables. The ARM endpoint's service
    # principal gets a fresh secret, so that a bench run never sends a real one anywhere.
    ensure_password()
    os.environ[SECRET_VARIABLE] = secrets.token_urlsafe(30)
    workdir = options.workdir or Path(tempfile.mkdtemp(prefix="linkgate-fleet-"))
    workdir.mkdir(parents=True, exist_ok=True)
    print(
        f"linkgate fleet benchmark: sizes {','.join(map(str, options.sizes))}, latency {options.latency_ms:g} ms "
        f"per round trip, connect timeout {options.connect_timeout:g} s, "
        f"{'-n ' + str(options.xdist) if options.xdist is not None else 'no -n (project default)'}; "
        f"dead targets from N={MIN_FLEET_WITH_DEAD}: {', '.join(f'{n} ({f})' for n, f in DEAD.items())}; "
        "lab without network-namespace hosts (host checks not applicable)",
        flush=True,
    )
    print(HEADER, flush=True)
    try:
        results = []
        for size in options.sizes:
            results.append(measure(size, options, workdir))
            print(row(results[-1]), flush=True)
        last = results[-1]
        verdicts = checks(last, options.xdist)
        print(details(last, options.latency_ms))
        if options.compare_sequential:
            differences = compare_sequential(last.size, options, workdir)
            verdicts.append((f"same outcomes with -n 0 and -n 2 at N={last.size}", not differences))
            print("\n".join(differences) or f"-n 0 and -n 2 at N={last.size}: the same outcomes")
    except BenchError as e:
        print(f"bench/fleet.py: {e}", file=sys.stderr)
        return 2
    finally:
        if options.workdir is None:
            shutil.rmtree(workdir, ignore_errors=True)
    for text, ok in verdicts:
        print(f"{'ok  ' if ok else 'MISS'} {text}")
    print(f"ratio {last.ratio:.2f}")
    return 1 if options.check and not all(ok for _, ok in verdicts) else 0


def details(m: Measurement, latency_ms: float) -> str:
    """What the table cannot show: how the chain is counted, the managed instance, the dead targets."""
    dead = dead_target_lines(m)
    return "\n".join(
        [
            f"chain: {m.chain_round_trips} round trips (handshake {m.chain_round_trips - FACT_BATCHES} + "
            f"{FACT_BATCHES} fact batches) × {latency_ms:g} ms",
            f"managed instance at N={m.size}: {m.mi[0]} connection(s), {m.mi[1]} round trips",
            f"peak memory at N={m.size}: gate {m.gate.peak_mib:.0f} MiB (its process tree) + lab {m.lab_mib:.0f} MiB "
            f"({lab_processes(m.size)} process(es), one asyncio thread per {INSTANCES_PER_LAB} instances)",
            f"dead targets at N={m.size}:" if dead else f"no dead targets (they start at N={MIN_FLEET_WITH_DEAD})",
            *dead,
        ]
    )


if __name__ == "__main__":
    raise SystemExit(main())
