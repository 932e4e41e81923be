"""`pytest --env demo`: start the built-in lab for the run when the environment declares `lab:`.

The lab runs in its own process (`python -m linkgate.lab serve`), so it never competes with the gate
for the interpreter, and is stopped when the run ends. Its login password is random per run, handed
over in the environment variable the environment file names — it is never written anywhere.
"""

from __future__ import annotations

import dataclasses
import json
import os
import secrets
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest
import yaml

from linkgate.environment import Environment, lab_secret_variables, parse_yaml

READY_TIMEOUT = 60.0


class RunningLab:
    """A lab process started for this run."""

    def __init__(self, process: subprocess.Popen[bytes], workdir: Path) -> None:
        self.process = process
        self.workdir = workdir

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=5)


def declares_lab(path: Path) -> bool:
    try:
        data = parse_yaml(path.read_text(encoding="utf-8"))[1]
    except (OSError, yaml.YAMLError):
        return False  # the strict loader reports it
    return isinstance(data, dict) and isinstance(data.get("lab"), dict)


def prepare_secrets(path: Path, is_controller: bool) -> None:
    """Give the lab's secret variables a random value for this run, unless the user set them."""
    if not is_controller or not declares_lab(path):
        return
    for name in lab_secret_variables(path):
        if not os.environ.get(name):
            os.environ[name] = "Lg!" + secrets.token_urlsafe(18)
    # The lab's service principal: always a fresh secret, so a lab run never sends a real one anywhere.
    os.environ["AZURE_CLIENT_SECRET"] = secrets.token_urlsafe(30)


def with_timeouts(env: Environment, connect: float | None, query: float | None) -> Environment:
    timeouts = dataclasses.replace(
        env.timeouts,
        connect=connect if connect is not None else env.timeouts.connect,
        query=query if query is not None else env.timeouts.query,
    )
    return dataclasses.replace(env, timeouts=timeouts)


LAB_ERROR_PREFIX = "linkgate.lab: "


def why_not_started(env_name: str, log: str) -> str:
    """The usage error for a lab that did not start: the lab's own one-line reason when it gave one (it exits
    with `linkgate.lab: <reason>` for what a user can fix, such as not being root), else the log's tail."""
    lines = [line for line in log.splitlines() if line.strip()]
    if lines and lines[-1].startswith(LAB_ERROR_PREFIX) and "Traceback (most recent call last)" not in log:
        return f"linkgate: the lab for {env_name} did not start: {lines[-1].removeprefix(LAB_ERROR_PREFIX)}"
    return f"linkgate: the lab for {env_name} did not start:\n{log[-2000:]}"


def start_if_declared(env: Environment) -> RunningLab | None:
    """Start the lab the environment declares and wait until every instance listens."""
    if env.lab is None:
        return None
    workdir = Path(tempfile.mkdtemp(prefix="linkgate-lab-"))
    ready = workdir / "ready.json"
    command = [
        sys.executable,
        "-m",
        "linkgate.lab",
        "serve",
        "--scenario",
        env.lab.scenario,
        "--ready-file",
        str(ready),
        "--quiet",
    ]
    for overlay in env.lab.overlays:
        command += ["--overlay", str((env.path.parent / overlay).resolve())]
    log = (workdir / "lab.log").open("wb")
    process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    deadline = time.monotonic() + READY_TIMEOUT
    while not ready.exists():
        if process.poll() is not None or time.monotonic() > deadline:
            process.kill()
            process.wait(timeout=5)
            log.close()
            text = (workdir / "lab.log").read_text(errors="replace")
            shutil.rmtree(workdir, ignore_errors=True)
            raise pytest.UsageError(why_not_started(env.name, text))
        time.sleep(0.05)
    document = json.loads(ready.read_text())
    os.environ.update(document.get("azure_credentials") or {})  # tenant and client ids (not secret)
    return RunningLab(process, workdir)
