"""Starts and stops a whole lab from a scenario: SQL instances, lab hosts, the ARM endpoint.

Used by `python -m linkgate.lab serve`, by `pytest --env demo` (through that command), and in-process
by the self-tests, which ask for ephemeral ports so that many labs can run side by side.
"""

from __future__ import annotations

import dataclasses
import os
import secrets
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from linkgate.lab.backend import InstanceBackend
from linkgate.lab.scenario import InstanceSpec, Scenario

PASSWORD_VARIABLE = "LINKGATE_LAB_PASSWORD"


@dataclass(frozen=True)
class Listening:
    """Where one simulated instance accepts connections."""

    name: str
    flavour: str
    address: str
    port: int


def ensure_password() -> str:
    """The lab login's password: the caller's LINKGATE_LAB_PASSWORD, else a random one for this process."""
    value = os.environ.get(PASSWORD_VARIABLE)
    if not value:
        value = "Lg!" + secrets.token_urlsafe(18)
        os.environ[PASSWORD_VARIABLE] = value
    return value


class Lab:
    """A running lab. Use as a context manager, or start()/stop()."""

    def __init__(self, scenario: Scenario, *, workdir: Path | None = None, ephemeral_ports: bool = False) -> None:
        self.scenario = scenario
        self.ephemeral_ports = ephemeral_ports
        self._own_workdir = workdir is None
        self.workdir = workdir or Path(tempfile.mkdtemp(prefix="linkgate-lab-"))
        self.listening: dict[str, Listening] = {}
        self.backends: dict[str, InstanceBackend] = {}
        self._sql: Any = None
        self.certificate: Path | None = None
        self.hosts: Any = None
        self.arm: Any = None
        self._engines: list[Any] = []

    def __enter__(self) -> Lab:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def start(self) -> Lab:
        """Start the hosts, the ARM endpoint and the instances; if any step fails, undo all of them first.

        A `with Lab(...)` whose start fails never reaches `__exit__`, so start() itself stops what it had
        started (network namespaces, sshd, listeners, threads) and removes the work folder it made.
        """
        try:
            self._start()
        except BaseException as failure:
            self.listening.clear()  # nothing listens: ready_document() and environment() must not say otherwise
            self.backends.clear()
            try:
                self.stop()
            except Exception as cleanup:  # the start's own failure is the one to report
                failure.add_note(f"stopping what had started failed too: {cleanup!r}")
            raise
        return self

    def _start(self) -> None:
        from linkgate.lab.certs import write_self_signed

        ensure_password()
        if self.scenario.hosts:
            from linkgate.lab.hosts import LabHosts, load_hosts

            self.hosts = LabHosts(load_hosts(self.scenario.hosts), relocate=self.ephemeral_ports)
            self.hosts.start()
        cert, key = write_self_signed(self.workdir, names=("localhost", "127.0.0.1"))
        self.certificate = cert
        if self.scenario.azure:
            from linkgate.lab.arm import ArmLab

            self.arm = ArmLab(
                self.scenario.azure,
                certificate=(cert, key),
                source=str(self.scenario.files[-1]),
                port=0 if self.ephemeral_ports else None,
                translate=self.hosts.translate if self.hosts is not None else None,
            )
            self.arm.start()
            os.environ.update(self.arm.credentials_environment())
        self._start_instances(cert, key)

    def _start_instances(self, cert: Path, key: Path) -> None:
        from linkgate.lab.engine import SimulatedInstance
        from linkgate.lab.engine.network import MachineNetwork
        from linkgate.lab.tds import LabSqlServer

        self._sql = LabSqlServer(cert_file=cert, key_file=key)
        self._sql.start()
        for name, spec in self.scenario.instances.items():
            if self.ephemeral_ports:
                spec = dataclasses.replace(spec, port=0)
            backend = SimulatedInstance(spec)
            self._engines.append(backend)  # closed by stop() even if it never gets to listen
            host, port = self._sql.add(backend, spec.address, spec.port)
            machine = self.hosts.spec.machines.get(name) if self.hosts is not None else None
            if machine is not None and machine.mssql_service:  # also serve it at the lab host's own address
                self._sql.add_socket(backend, self.hosts.listening_socket(name, machine.mssql_service.port))
            if machine is not None:  # Agent job steps connect from the machine; STARTED endpoints listen there
                backend.attach_network(MachineNetwork(self.hosts.netns(name), machine.etc_hosts))
            self.backends[name] = backend
            self.listening[name] = Listening(name, spec.flavour, host, port)

    def stop(self) -> None:
        """Stop whatever is running, in the reverse order of start(); safe after a partial start and twice.

        Every step runs even if an earlier one fails (the first failure is raised at the end): a listener
        left open or a namespace left behind would outlive the process that owns it.
        """
        failures: list[BaseException] = []
        for step in (self._stop_sql, self._stop_engines, self._stop_arm, self._stop_hosts, self._remove_workdir):
            try:
                step()
            except Exception as e:  # every later step must still run; the first failure is re-raised
                failures.append(e)
        if failures:
            raise failures[0]

    def _stop_sql(self) -> None:
        if self._sql is not None:
            sql, self._sql = self._sql, None
            sql.stop()

    def _stop_engines(self) -> None:
        while self._engines:  # stops their Agent jobs and endpoint listeners before the namespaces go
            self._engines.pop().close()

    def _stop_arm(self) -> None:
        if self.arm is not None:
            arm, self.arm = self.arm, None
            arm.stop()

    def _stop_hosts(self) -> None:
        if self.hosts is not None:
            hosts, self.hosts = self.hosts, None
            hosts.stop()

    def _remove_workdir(self) -> None:
        if self._own_workdir:
            shutil.rmtree(self.workdir, ignore_errors=True)

    def stats(self, name: str) -> Any:
        """The TDS server's counters for one instance: connections, logins, round trips (for benchmarks)."""
        return self._sql.stats(name)

    def ready_document(self) -> dict[str, Any]:
        """What `serve --ready-file` writes: where each instance listens (no secrets)."""
        return {
            "scenario": self.scenario.name,
            "instances": {n: dataclasses.asdict(v) for n, v in self.listening.items()},
            "certificate": str(self.certificate) if self.certificate else None,
            "azure": self.arm.environment_section() if self.arm is not None else None,
            "azure_credentials": {
                k: v for k, v in self.arm.credentials_environment().items() if k != "AZURE_CLIENT_SECRET"
            }
            if self.arm is not None
            else None,
        }

    def environment(self, *, name: str = "lab") -> dict[str, Any]:
        """An environment file's content that checks this running lab (for self-tests and `serve`)."""
        sql = {n: s for n, s in self.scenario.instances.items() if s.flavour == "sqlserver"}
        mi_name, mi_spec = next((n, s) for n, s in self.scenario.instances.items() if s.flavour != "sqlserver")
        env: dict[str, Any] = {
            "description": f"lab scenario {self.scenario.name}",
            "direction": "SQL_TO_MI",
            "cloud": "AzureCloud",
            "timeouts": {"connect": 5, "query": 10},
            "sql_servers": {n: self._sql_entry(n, s) for n, s in sql.items()},
            "managed_instance": {
                "name": mi_name,
                **self._connection(mi_name),
                "fqdn": _fqdn(mi_spec),
                "subnet": self._translate(str(self.scenario.environment.get("mi_subnet", "198.18.2.0/24"))),
            },
        }
        if self.arm is not None:
            env["azure"] = self.arm.environment_section()
        for key, value in self.scenario.environment.items():
            if key in ("direction", "cloud", "active_probes"):
                env[key] = value
        return env

    def _translate(self, address: str) -> str:
        return self.hosts.translate(address) if self.hosts is not None else address

    def write_environment(self, path: Path) -> Path:
        path.write_text(yaml.safe_dump(self.environment(), sort_keys=False), encoding="utf-8")
        return path

    def _connection(self, name: str) -> dict[str, Any]:
        where = self.listening[name]
        return {
            "server": where.address,
            "port": where.port,
            "user": "linkgate",
            "password_env": PASSWORD_VARIABLE,
            "encrypt": "mandatory",
            "trust_server_certificate": True,
        }

    def _sql_entry(self, name: str, spec: InstanceSpec) -> dict[str, Any]:
        return {
            **self._connection(name),
            "host_os": "linux" if spec.host.platform.lower() == "linux" else "windows",
            "instance": spec.instance_name or "MSSQLSERVER",
            "endpoint_port": 5022,
            "address_seen_by_mi": self._translate(str(self.scenario.environment.get("sql_ip", "198.18.1.10"))),
            "databases": [d for d in spec.databases if d not in ("master", "tempdb", "model", "msdb")],
            **(
                {
                    "host": {
                        "backend": "paramiko",
                        "address": str(self.hosts.address(name)),
                        "user": "root",
                        "identity_file": str(self.hosts.identity_file),
                        "known_hosts": str(self.hosts.known_hosts),
                    }
                }
                if self.hosts is not None and name in self.hosts.spec.machines
                else {}
            ),
        }


def _fqdn(spec: InstanceSpec) -> str:
    return (spec.fabric.dns_record_name if spec.fabric else None) or f"{spec.name}.a1b2c3d4e5f6.database.windows.net"
