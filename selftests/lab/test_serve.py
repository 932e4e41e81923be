"""`python -m linkgate.lab serve` as a user runs it: printed connection strings that connect, Ctrl-C that stops
everything, and one clear line (from serve and from `pytest --env demo`) when the lab cannot run without root."""

from __future__ import annotations

import os
import queue
import re
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pyodbc
import pytest

from linkgate.drivers import find_drivers
from linkgate.lab_control import why_not_started
from linkgate.probes import sql_queries as q

pytestmark = pytest.mark.lab

ROOT = Path(__file__).resolve().parents[2]
PASSWORD_VARIABLE = "LINKGATE_LAB_PASSWORD"
READY_LINE = "Ctrl-C stops the lab."
NEEDS_ROOT = "the lab needs root to create network namespaces, routes and firewall rules (running as uid 65534)"
needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="the lab's hosts need root (network namespaces)")


@dataclass
class Serving:
    """A `serve` process and what it printed so far."""

    process: subprocess.Popen[str]
    lines: list[str] = field(default_factory=list)
    _queue: queue.Queue[str | None] = field(default_factory=queue.Queue)

    def __post_init__(self) -> None:
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self._queue.put(line.rstrip("\n"))
        self._queue.put(None)

    def until(self, wanted: str, timeout: float = 90) -> list[str]:
        """Lines up to and including `wanted`; fails with what was printed when it does not come in time."""
        deadline = time.monotonic() + timeout
        while wanted not in self.lines:
            try:
                line = self._queue.get(timeout=max(0.1, deadline - time.monotonic()))
            except queue.Empty:
                line = None
            if line is None:
                raise AssertionError(f"serve did not print {wanted!r}; printed: {self.lines}")
            self.lines.append(line)
        return self.lines


@pytest.fixture
def serving(tmp_path: Path) -> Iterator[Serving]:
    """`serve --scenario healthy --ephemeral-ports` as a user starts it: no password chosen, HOME its own."""
    env = {k: v for k, v in os.environ.items() if k != PASSWORD_VARIABLE}
    env["HOME"] = str(tmp_path)
    process = subprocess.Popen(
        [sys.executable, "-m", "linkgate.lab", "serve", "--scenario", "healthy", "--ephemeral-ports"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL, text=True, env=env, cwd=tmp_path,
    )  # fmt: skip
    served = Serving(process)
    try:
        yield served
    finally:
        if process.poll() is None:
            process.terminate()
            process.wait(timeout=30)


def connection_strings(lines: list[str]) -> dict[str, dict[str, str]]:
    """instance → driver kind → the printed string, from serve's output."""
    found: dict[str, dict[str, str]] = {}
    instance = ""
    for line in lines:
        header = re.fullmatch(r"(\S+) \((sqlserver|managed-instance)\) on 127\.0\.0\.1:\d+", line)
        if header:
            instance = header.group(1)
            found[instance] = {}
        driver = re.fullmatch(r"  (msodbc18|freetds)\s+(DRIVER=.*)", line)
        if driver:
            found[instance][driver.group(1)] = driver.group(2)
    return found


@needs_root
def test_serve_prints_a_working_connection_string_per_instance_and_driver_and_ctrl_c_stops_it(
    serving: Serving, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    lines = serving.until(READY_LINE)
    export = next(line for line in lines if line.startswith("login: "))
    password_file = tmp_path / ".cache/linkgate/lab/password"
    assert export.endswith(f'export {PASSWORD_VARIABLE}="$(cat {password_file})"')
    assert password_file.stat().st_mode & 0o077 == 0
    password = password_file.read_text(encoding="utf-8")
    assert password not in "\n".join(lines)  # the secret is referenced, never printed
    strings = connection_strings(lines)
    assert set(strings) == {"sql01", "mi01"}
    kinds = {d.kind for d in find_drivers()}
    monkeypatch.setenv(PASSWORD_VARIABLE, password)  # what the printed export line does in the user's shell
    ports = []
    for instance, by_driver in strings.items():
        assert set(by_driver) == kinds, instance
        for kind, text in by_driver.items():
            assert f"PWD={{${{{PASSWORD_VARIABLE}}}}};" in text
            ports.append(int(re.search(r"(?:,|PORT=)(\d+)", text).group(1)))  # type: ignore[union-attr]
            cnxn = pyodbc.connect(os.path.expandvars(text), autocommit=True, timeout=10)
            try:
                assert tuple(cnxn.cursor().execute(q.LOGIN).fetchone()) == (1, "linkgate"), (instance, kind)
                edition = cnxn.cursor().execute(q.PRODUCT).fetchone().engine_edition
                assert edition == (3 if instance == "sql01" else 8), (instance, kind)
            finally:
                cnxn.close()
    serving.process.send_signal(signal.SIGINT)
    assert serving.process.wait(timeout=60) == 0
    assert serving.process.stderr is not None
    assert serving.process.stderr.read() == ""  # no traceback, nothing at all
    for port in set(ports):
        with pytest.raises(ConnectionRefusedError):
            socket.create_connection(("127.0.0.1", port), timeout=2).close()
    assert not password_file.exists()  # the random password's file goes with the lab


def unprivileged(argv: list[str], home: Path, cwd: Path) -> subprocess.CompletedProcess[str]:
    """Run as uid/gid 65534 without any group or capability the lab needs, with HOME and TMPDIR of its own
    (`home`, `home/tmp`), so that what it leaves behind can be seen.

    The interpreter and its packages may live under a root-only directory (here /root/.pyenv); the process keeps
    CAP_DAC_READ_SEARCH alone, to read them — reading files grants nothing the lab checks for or would need.
    """
    if shutil.which("setpriv") is None:
        pytest.skip("setpriv (util-linux) is not installed")
    env = {**os.environ, "HOME": str(home), "TMPDIR": str(home / "tmp"), "PYTHONPATH": str(ROOT / "src")}
    env.pop(PASSWORD_VARIABLE, None)
    for directory in (home, home / "tmp"):
        directory.mkdir(exist_ok=True)
        directory.chmod(0o777)
    return subprocess.run(
        ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", "--inh-caps=-all,+dac_read_search",
         "--ambient-caps=-all,+dac_read_search", sys.executable, *argv],
        capture_output=True, text=True, env=env, cwd=cwd, timeout=120, check=False,
    )  # fmt: skip


@needs_root  # dropping to another uid needs root in the first place
def test_serve_without_root_says_so_in_one_line(tmp_path: Path) -> None:
    done = unprivileged(["-m", "linkgate.lab", "serve", "--scenario", "healthy"], tmp_path / "home", tmp_path)
    assert done.returncode == 2
    assert done.stdout == ""
    assert done.stderr.splitlines() == [
        f"linkgate.lab: {NEEDS_ROOT}; run it as root, e.g. sudo, or in a container with CAP_NET_ADMIN and CAP_SYS_ADMIN"
    ]
    assert list((tmp_path / "home" / "tmp").iterdir()) == []  # a failed start leaves no work directory behind


@needs_root
def test_the_gate_without_root_says_so_in_one_line(tmp_path: Path) -> None:
    """`pytest --env demo` as a non-root user: a usage error (exit 4) whose one line is the lab's reason."""
    env_dir = tmp_path / "environments"
    env_dir.mkdir()
    shutil.copy(ROOT / "environments" / "demo.yaml", env_dir / "demo.yaml")
    for path in (tmp_path, env_dir, env_dir / "demo.yaml"):
        path.chmod(0o755 if path.is_dir() else 0o644)
    done = unprivileged(
        ["-m", "pytest", f"--env={env_dir / 'demo.yaml'}", "-p", "no:cacheprovider", "-q"], tmp_path / "home", ROOT
    )
    assert done.returncode == 4
    output = [line for line in (done.stdout + done.stderr).splitlines() if line.strip()]
    assert output == [
        f"ERROR: linkgate: the lab for demo did not start: {NEEDS_ROOT}; run it as root, e.g. sudo, "
        "or in a container with CAP_NET_ADMIN and CAP_SYS_ADMIN"
    ]
    assert list((tmp_path / "home" / "tmp").iterdir()) == []


def test_a_lab_that_fails_without_its_own_reason_shows_the_log_tail() -> None:
    assert why_not_started("demo", "starting\nlinkgate.lab: scenario x: no such file\n") == (
        "linkgate: the lab for demo did not start: scenario x: no such file"
    )
    crashed = "Traceback (most recent call last):\n  File ...\nlinkgate.lab: looks like a reason\n"
    assert why_not_started("demo", crashed) == f"linkgate: the lab for demo did not start:\n{crashed}"
    assert why_not_started("demo", "x" * 3000).endswith("\n" + "x" * 2000)
