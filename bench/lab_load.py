"""Lab load benchmark: what one simulated SQL Server costs the lab, in CPU per fact read and memory.

The fleet benchmark (bench/fleet.py) runs the whole gate against hundreds of lab instances on a 2-core
machine, where the lab's CPU competes with the gate's and the lab's memory counts against the issue's
1 GiB. This script isolates the lab's share, so that a change to the simulator can be judged alone: it
starts one lab process as fleet.py does (its `_serve_lab`: N SQL Servers cloned from the `healthy`
scenario's sql01, and its managed instance, every response after `--latency-ms`), then reads every
instance's facts once the way the gate does (`read_sql_server` over the gate's `OdbcSession`, from a
thread pool as `linkgate.gather` does), and prints:

- ready s: from spawning the lab process to its environment arriving (imports + `Lab.start()`);
- cpu ms/read: the lab process's CPU seconds during the reads, per target read (login, pyodbc's
  type-info requests, the two fact batches);
- RSS MiB after startup and after the reads (VmRSS of the lab process), and per instance;
- a digest of every fact read (values and errors, not timings), equal across runs when the lab's
  answers are unchanged — compare it before and after a change to the simulator.

A baseline lab with one instance is measured the same way, so that the marginal cost of an instance
(MiB and startup) is shown apart from the process's fixed cost (Python, DuckDB, sqlglot). Usage (from
the repository root)::

    PYTHONPATH=src python bench/lab_load.py                  # 50 instances, 20 ms, one read each
    PYTHONPATH=src python bench/lab_load.py --instances 100 --rounds 2 --latency-ms 0
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import multiprocessing
import os
import sys
import tempfile
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # `python bench/lab_load.py` puts bench/, not the root, on sys.path
    sys.path.insert(0, str(ROOT))

from bench.fleet import _serve_lab, stop_lab_process  # noqa: E402  (after the path fix above)

READY_SECONDS = 300.0


@dataclass(frozen=True)
class Usage:
    """One lab process's resident set now and at its peak (MiB), and its CPU seconds so far."""

    rss_mib: float
    peak_mib: float
    cpu_seconds: float


@dataclass(frozen=True)
class LoadResult:
    instances: int
    ready_seconds: float
    after_start: Usage
    after_reads: Usage
    read_seconds: float
    reads: int
    failed_facts: int
    digest: str

    @property
    def cpu_ms_per_read(self) -> float:
        return 1000 * (self.after_reads.cpu_seconds - self.after_start.cpu_seconds) / max(1, self.reads)


def _memory(pid: int) -> tuple[float, float]:
    """(VmRSS, VmHWM) of a process in MiB, read from /proc."""
    fields: dict[str, float] = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            fields[key] = int(value.split()[0]) / 1024
    return fields["VmRSS"], fields["VmHWM"]


def _usage(pid: int, parent: Connection) -> Usage:
    parent.send("usage")
    _max_rss_kib, cpu = parent.recv()
    rss, peak = _memory(pid)
    return Usage(rss, peak, float(cpu))


def _normal(value: Any, target: str) -> Any:
    """A fact value as plain data, with timings dropped and the target's own name made generic."""
    from linkgate.probes.facts import Fact

    if isinstance(value, Fact):
        return ("fact", value.what, _normal(value.value, target), value.error)
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return tuple(
            (f.name, _normal(getattr(value, f.name), target))
            for f in dataclasses.fields(value)
            if f.name not in ("target", "connections_opened", "round_trips")
        )
    if isinstance(value, dict):
        return tuple(sorted((str(k), _normal(v, target)) for k, v in value.items()))
    if isinstance(value, tuple | list | frozenset | set):
        items = [_normal(v, target) for v in value]
        return tuple(sorted(items, key=repr)) if isinstance(value, frozenset | set) else tuple(items)
    if isinstance(value, str):
        return value.replace(target, "<target>")
    return value


def _failed(facts: Any) -> int:
    from linkgate.probes.facts import Fact

    count = 0
    for f in dataclasses.fields(facts):
        value = getattr(facts, f.name)
        if isinstance(value, Fact) and value.error is not None:
            count += 1
        elif isinstance(value, dict):
            count += sum(_failed(v) for v in value.values() if dataclasses.is_dataclass(v))
    return count


def read_all(env_file: Path, rounds: int) -> tuple[int, int, str, float]:
    """Read every SQL Server's facts `rounds` times as the gate does; (reads, failed facts, digest, seconds)."""
    from linkgate.environment import load_environment
    from linkgate.gather import MAX_CONCURRENCY  # here, not at the top: spawned lab processes import this module
    from linkgate.probes.odbc import OdbcSession
    from linkgate.probes.sql import SqlServerFacts, read_sql_server

    env = load_environment(env_file)

    def read(name: str) -> SqlServerFacts:
        server = env.sql_servers[name]
        session = OdbcSession(name, server.connection, env.timeouts)
        try:
            return read_sql_server(session, server.databases)
        finally:
            session.close()

    names = [n for _ in range(rounds) for n in env.sql_servers]
    started = time.monotonic()
    with ThreadPoolExecutor(min(MAX_CONCURRENCY, len(env.sql_servers) + 1), thread_name_prefix="lab-load") as pool:
        results = list(pool.map(read, names))
    seconds = time.monotonic() - started
    digest = hashlib.sha256()
    for facts in results:
        digest.update(repr(_normal(facts, facts.target)).encode())
    return len(results), sum(_failed(f) for f in results), digest.hexdigest()[:16], seconds


def measure(instances: int, latency_ms: float, rounds: int, workdir: Path) -> LoadResult:
    """Start a lab process with `instances` SQL Servers, read them all, stop it."""
    context = multiprocessing.get_context("spawn")
    parent, child = context.Pipe()
    names: dict[str, str | None] = {f"sql{i:03d}": None for i in range(1, instances + 1)}
    started = time.monotonic()
    process = context.Process(
        target=_serve_lab, args=(child, names, latency_ms, False), name="linkgate-lab-load", daemon=True
    )
    process.start()
    child.close()
    try:
        if not parent.poll(READY_SECONDS):
            raise RuntimeError("the lab process did not start in time")
        environment, _credentials = parent.recv()
        ready = time.monotonic() - started
        assert process.pid is not None
        after_start = _usage(process.pid, parent)
        env_file = workdir / f"lab-load-{instances}.yaml"
        env_file.write_text(yaml.safe_dump(environment, sort_keys=False))
        reads, failed, digest, seconds = read_all(env_file, rounds)
        after_reads = _usage(process.pid, parent)
    finally:
        stop_lab_process(process, parent)
    return LoadResult(instances, ready, after_start, after_reads, seconds, reads, failed, digest)


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="bench/lab_load.py",
        description=__doc__.split("\n\n", 1)[0] if __doc__ else None,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--instances", type=int, default=50, metavar="N", help="SQL Servers in the lab (default 50)")
    parser.add_argument(
        "--latency-ms", type=float, default=20.0, metavar="MS", help="Latency per round trip (default 20)"
    )
    parser.add_argument("--rounds", type=int, default=1, metavar="R", help="Reads of every instance (default 1)")
    parser.add_argument("--no-baseline", action="store_true", help="Skip the one-instance baseline lab")
    options = parser.parse_args(argv)
    if options.instances < 2 or options.rounds < 1:
        parser.error("--instances must be at least 2 and --rounds at least 1")
    return options


def report(result: LoadResult, baseline: LoadResult | None) -> list[str]:
    r = result
    lines = [
        f"instances {r.instances}, {r.reads} target reads in {r.read_seconds:.2f} s "
        f"({r.failed_facts} failed facts; digest {r.digest})",
        f"ready s       {r.ready_seconds:8.2f}",
        f"cpu ms/read   {r.cpu_ms_per_read:8.1f}   "
        f"(lab CPU {r.after_reads.cpu_seconds - r.after_start.cpu_seconds:.2f} s for the reads)",
        f"RSS MiB       {r.after_start.rss_mib:8.1f} after startup, {r.after_reads.rss_mib:.1f} after reads, "
        f"peak {r.after_reads.peak_mib:.1f}",
        f"MiB/instance  {r.after_reads.rss_mib / r.instances:8.2f}   (after reads, whole process)",
    ]
    if baseline is not None:
        extra = r.instances - baseline.instances
        lines += [
            f"baseline (1 instance): ready {baseline.ready_seconds:.2f} s, RSS {baseline.after_start.rss_mib:.1f} MiB "
            f"after startup, {baseline.after_reads.rss_mib:.1f} after reads",
            f"marginal per instance: {(r.after_start.rss_mib - baseline.after_start.rss_mib) / extra:.2f} MiB "
            f"after startup, {(r.after_reads.rss_mib - baseline.after_reads.rss_mib) / extra:.2f} MiB after reads, "
            f"{1000 * (r.ready_seconds - baseline.ready_seconds) / extra:.1f} ms of startup",
        ]
    return lines


def main(argv: Sequence[str] | None = None) -> int:
    options = parse_args(argv)
    from linkgate.lab.runner import ensure_password

    ensure_password()  # before the lab process starts: it and the readers share the login's password
    os.environ["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT / "src"), os.environ.get("PYTHONPATH")) if p)
    print(
        f"linkgate lab load: {options.instances} instances in one lab process, latency {options.latency_ms:g} ms, "
        f"{options.rounds} read(s) of each",
        flush=True,
    )
    with tempfile.TemporaryDirectory(prefix="linkgate-lab-load-") as tmp:
        baseline = None if options.no_baseline else measure(1, options.latency_ms, options.rounds, Path(tmp))
        result = measure(options.instances, options.latency_ms, options.rounds, Path(tmp))
    print("\n".join(report(result, baseline)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
