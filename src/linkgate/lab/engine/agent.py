"""SQL Server Agent in the lab: msdb's job procedures, and jobs that really run.

The article tests connectivity with Agent jobs whose PowerShell step runs `tnc <host> -port <n>`
(Test-NetConnection). The lab's Agent keeps jobs in msdb's own tables (sysjobs, sysjobsteps,
sysjobactivity, sysjobhistory, sysjobstepslogs — rows owned by the instance, see catalog.py) and runs
a started job on a thread: each `tnc` step really opens a TCP connection from the simulated server's
network namespace (`network.MachineNetwork`), so the result depends on the lab's routes, firewall
rules and listeners. Only Test-NetConnection is understood; any other command fails as PowerShell
fails on an unknown command.

As on SQL Server: only sysadmin or members of msdb's SQLAgent*Role may call the procedures (229);
SQL Server on Linux has no PowerShell subsystem (14234); a job without a job server cannot start
(14256); a stopped Agent cannot start a job (22022). sp_delete_job on a running job returns at once:
msdb's procedure deletes the rows and only notifies Agent, which drops the job from its cache and ends
the running step, so the lab removes the rows and tells the job's thread to stop writing.
"""

from __future__ import annotations

import datetime as dt
import itertools
import re
import threading
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from linkgate.lab.engine import errors
from linkgate.lab.engine.network import MachineNetwork, TcpAttempt
from linkgate.lab.results import Message, Outcome, SqlError

if TYPE_CHECKING:
    from linkgate.lab.engine.instance import SimulatedInstance
    from linkgate.lab.engine.session import EngineSession

AGENT_ROLES = {"sqlagentuserrole", "sqlagentreaderrole", "sqlagentoperatorrole", "db_owner"}
SUBSYSTEMS = {"tsql", "powershell", "cmdexec"}
LINUX_SUBSYSTEMS = {"tsql"}
FLAGS_LOG_TO_TABLE = 8 | 16
QUIT_SUCCESS, QUIT_FAILURE, NEXT_STEP, GO_TO_STEP = 1, 2, 3, 4
TNC = re.compile(
    r"^\s*(?:tnc|Test-NetConnection)\s+(?:-ComputerName\s+)?'?([\w.:-]+)'?\s+-Port\s+(\d+)"
    r"(\s+-InformationLevel\s+Quiet)?\s*(?:\|\s*select(?:-object)?\s+([\w\s,]+?)\s*(?:\|\s*Format-List\s*)?)?$",
    re.IGNORECASE,
)
DEFAULT_FIELDS = ("ComputerName", "RemoteAddress", "RemotePort", "TcpTestSucceeded")
Arguments = list[tuple[str, Any]]


def _arguments(arguments: Arguments, positional: tuple[str, ...]) -> dict[str, Any]:
    """(name, value) pairs → {name without @, lower case: value}; unnamed ones take `positional` names in order."""
    out: dict[str, Any] = {}
    for i, (name, value) in enumerate(arguments):
        key = name.lstrip("@").lower() if name else (positional[i] if i < len(positional) else f"#{i}")
        out[key] = value
    return out


@dataclass
class _Execution:
    """One run of a job: its thread, and whether the job was deleted (stopped) while it ran."""

    thread: threading.Thread
    stopped: threading.Event


class Agent:
    """One instance's SQL Server Agent: its jobs (rows in msdb) and the threads running them.

    A job's thread writes its rows under `_lock` and only while its execution is not stopped; sp_delete_job
    stops it and deletes the rows under the same lock, so a deleted job leaves no row behind, whenever its
    step ends.
    """

    def __init__(self, instance: SimulatedInstance) -> None:
        self._instance = instance
        self._lock = threading.Lock()
        self._running: dict[uuid.UUID, _Execution] = {}
        """Executions whose thread has not ended yet, deleted jobs' included (close() waits for them)."""
        self._targets: set[uuid.UUID] = set()
        """Jobs with a job server (sp_add_jobserver): only those can start."""
        self._history_ids = itertools.count(1)
        self.network: MachineNetwork | None = None
        """The machine the instance runs on (set by the lab); None: job steps reach nothing."""

    # ---- what the procedures need

    def _owned(self, table: str, key: tuple[str, Any] | None = None) -> list[dict[str, Any]]:
        return self._instance.catalog.owned(self._instance.own_id, table, key)

    def _insert(self, table: str, row: dict[str, Any]) -> None:
        self._instance.catalog.insert_owned(self._instance.own_id, table, row)

    def _update(self, table: str, key: tuple[str, Any], values: dict[str, Any]) -> None:
        self._instance.catalog.update_owned(self._instance.own_id, table, key, values)

    def _delete(self, table: str, key: tuple[str, Any]) -> int:
        return self._instance.catalog.delete_owned(self._instance.own_id, table, key)

    def job(self, args: Mapping[str, Any]) -> dict[str, Any]:
        """The job named by @job_id or @job_name; 14262 when there is none."""
        if args.get("job_id") is not None:
            job_id = args["job_id"]
            wanted = job_id if isinstance(job_id, uuid.UUID) else uuid.UUID(bytes=bytes(job_id))
            found = self._owned("dbo.sysjobs", ("job_id", wanted))
            label = f"@job_id ('{str(wanted).upper()}')"
        else:
            name = str(args.get("job_name") or "")
            found = [j for j in self._owned("dbo.sysjobs") if str(j["name"]).lower() == name.lower()]
            label = f"@job_name ('{name}')"
        if not found:
            raise SqlError(14262, f"The specified {label} does not exist.", severity=16)
        return found[0]

    # ---- procedures

    def add_job(self, session: EngineSession, args: Mapping[str, Any]) -> list[Outcome]:
        name = str(args.get("job_name") or "")
        if not name:
            raise SqlError(
                201, "Procedure or function 'sp_add_job' expects parameter '@job_name', which was not supplied."
            )
        if any(str(j["name"]).lower() == name.lower() for j in self._owned("dbo.sysjobs")):
            raise SqlError(14261, f"The specified @job_name ('{name}') already exists.", severity=16)
        now = dt.datetime.now().replace(microsecond=0)
        row = {
            "job_id": uuid.uuid4(),
            "originating_server_id": 0,
            "name": name,
            "enabled": int(args.get("enabled", 1) or 0),
            "description": args.get("description") or "No description available.",
            "start_step_id": int(args.get("start_step_id") or 1),
            "category_id": 0,
            "owner_sid": b"\x01",
            "date_created": now,
            "date_modified": now,
            "version_number": 1,
        }
        self._insert("dbo.sysjobs", row)
        self._insert("dbo.sysjobs_view", {**row, "originating_server": "(LOCAL)"})
        return []

    def add_jobstep(self, session: EngineSession, args: Mapping[str, Any]) -> list[Outcome]:
        job = self.job(args)
        subsystem = str(args.get("subsystem") or "TSQL")
        allowed = LINUX_SUBSYSTEMS if self._on_linux() else SUBSYSTEMS
        if subsystem.lower() not in allowed:
            raise SqlError(
                14234,
                "The specified '@subsystem' is invalid (valid values are returned by sp_enum_sqlsubsystems).",
                severity=16,
            )
        steps = self._owned("dbo.sysjobsteps", ("job_id", job["job_id"]))
        step_id = int(args.get("step_id") or len(steps) + 1)
        self._insert(
            "dbo.sysjobsteps",
            {
                "job_id": job["job_id"],
                "step_id": step_id,
                "step_name": str(args.get("step_name") or ""),
                "subsystem": subsystem,
                "command": str(args.get("command") or ""),
                "flags": int(args.get("flags") or 0),
                "cmdexec_success_code": int(args.get("cmdexec_success_code") or 0),
                "on_success_action": int(args.get("on_success_action") or QUIT_SUCCESS),
                "on_success_step_id": int(args.get("on_success_step_id") or 0),
                "on_fail_action": int(args.get("on_fail_action") or QUIT_FAILURE),
                "on_fail_step_id": int(args.get("on_fail_step_id") or 0),
                "database_name": args.get("database_name") or "master",
                "last_run_outcome": 0,
                "last_run_duration": 0,
                "last_run_date": 0,
                "last_run_time": 0,
                "step_uid": uuid.uuid4(),
            },
        )
        return []

    def update_job(self, session: EngineSession, args: Mapping[str, Any]) -> list[Outcome]:
        job = self.job(args)
        changes = {k: args[k] for k in ("enabled", "description", "start_step_id") if args.get(k) is not None}
        if changes:
            for table in ("dbo.sysjobs", "dbo.sysjobs_view"):
                self._update(table, ("job_id", job["job_id"]), changes)
        return []

    def add_jobserver(self, session: EngineSession, args: Mapping[str, Any]) -> list[Outcome]:
        job = self.job(args)
        server = str(args.get("server_name") or "(local)")
        if server.lower() not in ("(local)", self._instance.server_name.lower()):
            raise SqlError(14234, f"The specified '@server_name' ('{server}') is invalid.", severity=16)
        self._update("dbo.sysjobs", ("job_id", job["job_id"]), {"originating_server_id": 0})
        with self._lock:
            self._targets.add(job["job_id"])
        return []

    def start_job(self, session: EngineSession, args: Mapping[str, Any]) -> list[Outcome]:
        job = self.job(args)
        name, job_id = str(job["name"]), job["job_id"]
        if self._instance.spec.services.agent.status.lower() != "running" and not self._instance.profile.managed:
            raise SqlError(22022, "SQLServerAgent is not currently running so it cannot be notified of this action.")
        with self._lock:
            if job_id not in self._targets:
                raise SqlError(
                    14256,
                    f"Cannot start job '{name}' (ID {str(job_id).upper()}) because it does not have any job server or "
                    "servers defined. Associate the job with a job server by calling sp_add_jobserver.",
                    severity=16,
                )
            if job_id in self._running and self._running[job_id].thread.is_alive():
                raise SqlError(
                    22022,
                    f"SQLServerAgent Error: Request to run job {name} (from User {session.login_name}) refused "
                    "because the job is already running from a request by User "
                    f"{session.login_name}.",
                )
            now = dt.datetime.now().replace(microsecond=0)
            self._delete("dbo.sysjobactivity", ("job_id", job_id))
            self._insert(
                "dbo.sysjobactivity",
                {
                    "session_id": 1,
                    "job_id": job_id,
                    "run_requested_date": now,
                    "run_requested_source": "4",
                    "queued_date": None,
                    "start_execution_date": now,
                },
            )
            stopped = threading.Event()
            thread = threading.Thread(
                target=self._run, args=(job, session.login_name, stopped), name=f"lab-agent-{name}", daemon=True
            )
            self._running[job_id] = _Execution(thread, stopped)
            thread.start()
        return [Message(0, f"Job '{name}' started successfully.")]

    def delete_job(self, session: EngineSession, args: Mapping[str, Any]) -> list[Outcome]:
        """Delete the job's rows at once; a running job is stopped, not waited for.

        This runs on the TDS server's one loop thread: waiting here for a step (a `tnc` to a dropped port
        takes the network's timeout) would stall every instance's sessions, and SQL Server does not wait
        either (msdb's sp_delete_job only notifies Agent).
        """
        job = self.job(args)
        job_id = job["job_id"]
        with self._lock:
            execution = self._running.get(job_id)
            if execution is not None:
                execution.stopped.set()
            self._targets.discard(job_id)
            for step in self._owned("dbo.sysjobsteps", ("job_id", job_id)):
                self._delete("dbo.sysjobstepslogs", ("step_uid", step["step_uid"]))
            for table in (
                "dbo.sysjobsteps",
                "dbo.sysjobactivity",
                "dbo.sysjobhistory",
                "dbo.sysjobs_view",
                "dbo.sysjobs",
            ):
                self._delete(table, ("job_id", job_id))
        return []

    # ---- running a job

    def _on_linux(self) -> bool:
        return not self._instance.profile.managed and self._instance.spec.host.platform.lower() == "linux"

    def _step_budget(self) -> float:
        return (self.network.timeout if self.network else 0.0) * 4 + 5

    def _run(self, job: dict[str, Any], user: str, stopped: threading.Event) -> None:
        """The job's thread: run it, then leave `_running` (a deleted job's execution too)."""
        try:
            self._execute(job, user, stopped)
        finally:
            with self._lock:
                execution = self._running.get(job["job_id"])
                if execution is not None and execution.stopped is stopped:
                    del self._running[job["job_id"]]

    def _execute(self, job: dict[str, Any], user: str, stopped: threading.Event) -> None:
        """Run the job's steps in order; once `stopped` (the job was deleted), run no further step, write no row."""
        job_id = job["job_id"]
        steps = {s["step_id"]: s for s in self._owned("dbo.sysjobsteps", ("job_id", job_id))}
        step_id = int(job["start_step_id"])
        started = dt.datetime.now()
        succeeded, last = False, None
        for _ in range(len(steps)):  # bounded: a "go to step" loop cannot run forever
            step = steps.get(step_id)
            if step is None or stopped.is_set():
                break
            output, ok, seconds = self._step(step)
            last = step
            if not self._record_step(job_id, step, output, ok, seconds, stopped):
                return
            action = int(step["on_success_action"] if ok else step["on_fail_action"])
            if action == NEXT_STEP and step_id + 1 in steps:
                step_id += 1
                continue
            if action == GO_TO_STEP:
                step_id = int(step["on_success_step_id"] if ok else step["on_fail_step_id"])
                continue
            succeeded = ok if action == NEXT_STEP else action == QUIT_SUCCESS
            break
        outcome = "succeeded" if succeeded else "failed"
        tail = f"  The last step to run was step {last['step_id']} ({last['step_name']})." if last else ""
        with self._lock:
            if stopped.is_set():
                return
            history_id = self._history(
                job_id,
                0,
                "(Job outcome)",
                f"The job {outcome}.  The Job was invoked by User {user}.{tail}",
                int(succeeded),
                (dt.datetime.now() - started).total_seconds(),
                started,
            )
            self._update(
                "dbo.sysjobactivity",
                ("job_id", job_id),
                {
                    "stop_execution_date": dt.datetime.now().replace(microsecond=0),
                    "job_history_id": history_id,
                    "last_executed_step_id": last["step_id"] if last else None,
                    "last_executed_step_date": started.replace(microsecond=0),
                },
            )

    def _step(self, step: dict[str, Any]) -> tuple[str, bool, float]:
        started = time.monotonic()
        subsystem = str(step["subsystem"]).lower()
        if subsystem != "powershell":
            return f"The lab's Agent runs only PowerShell steps, not {step['subsystem']}.", False, 0.0
        output, exit_code = self._powershell(str(step["command"]))
        return output, exit_code == int(step["cmdexec_success_code"] or 0), time.monotonic() - started

    def _powershell(self, command: str) -> tuple[str, int]:
        """Run a PowerShell step's command: Test-NetConnection is the one cmdlet the lab knows."""
        match = TNC.match(command)
        if match is None:
            word = command.split()[0] if command.split() else command
            return (
                f"The term '{word}' is not recognized as the name of a cmdlet, function, script file, or operable "
                "program.",
                1,
            )
        host, port, quiet, selected = match.group(1), int(match.group(2)), bool(match.group(3)), match.group(4)
        attempt = (
            self.network.connect(host, port)
            if self.network is not None
            else TcpAttempt(host, None, port, False, "this lab instance has no machine (no hosts: section)")
        )
        lines = [f"WARNING: {attempt.warning}"] if attempt.warning else []
        if quiet:
            lines.append(str(attempt.succeeded))
        else:
            fields = [f.strip() for f in selected.split(",")] if selected else list(DEFAULT_FIELDS)
            values = {
                "computername": attempt.computer_name,
                "remoteaddress": attempt.remote_address or "",
                "remoteport": str(attempt.port),
                "tcptestsucceeded": str(attempt.succeeded),
            }
            width = max(len(f) for f in fields)
            lines += [f"{f.ljust(width)} : {values.get(f.lower(), '')}" for f in fields]
        return "\n".join(lines), 0

    def _record_step(
        self,
        job_id: uuid.UUID,
        step: dict[str, Any],
        output: str,
        ok: bool,
        seconds: float,
        stopped: threading.Event,
    ) -> bool:
        """Write a finished step's history and log; False (nothing written) when the job was deleted meanwhile."""
        now = dt.datetime.now()
        exit_code = 0 if ok else 1
        verdict = "The step succeeded." if ok else "The step failed."
        message = f"Executed as user: NT Service\\SQLSERVERAGENT. {output}  Process Exit Code {exit_code}.  {verdict}"
        with self._lock:
            if stopped.is_set():
                return False
            self._history(job_id, int(step["step_id"]), str(step["step_name"]), message[:4000], int(ok), seconds, now)
            if int(step["flags"] or 0) & FLAGS_LOG_TO_TABLE:
                self._delete("dbo.sysjobstepslogs", ("step_uid", step["step_uid"]))
                self._insert(
                    "dbo.sysjobstepslogs",
                    {
                        "log_id": next(self._history_ids),
                        "log": output,
                        "date_created": now.replace(microsecond=0),
                        "date_modified": now.replace(microsecond=0),
                        "log_size": len(output.encode()),
                        "step_uid": step["step_uid"],
                    },
                )
            self._update(
                "dbo.sysjobsteps",
                ("step_uid", step["step_uid"]),
                {"last_run_outcome": int(ok), "last_run_date": _run_date(now), "last_run_time": _run_time(now)},
            )
        return True

    def _history(
        self,
        job_id: uuid.UUID,
        step_id: int,
        step_name: str,
        message: str,
        status: int,
        seconds: float,
        when: dt.datetime,
    ) -> int:
        instance_id = next(self._history_ids)
        self._insert(
            "dbo.sysjobhistory",
            {
                "instance_id": instance_id,
                "job_id": job_id,
                "step_id": step_id,
                "step_name": step_name,
                "sql_message_id": 0,
                "sql_severity": 0,
                "message": message,
                "run_status": status,
                "run_date": _run_date(when),
                "run_time": _run_time(when),
                "run_duration": _duration(seconds),
                "retries_attempted": 0,
                "server": self._instance.server_name,
            },
        )
        return instance_id

    def close(self) -> None:
        """Stop running jobs and wait (bounded) for their threads, so none outlives the instance.

        Stopped, a job writes nothing more; the wait covers the step in progress (a `tnc` cannot be cut short).
        """
        with self._lock:
            executions = list(self._running.values())
            for execution in executions:
                execution.stopped.set()
        for execution in executions:
            execution.thread.join(timeout=self._step_budget())


def _run_date(when: dt.datetime) -> int:
    return when.year * 10000 + when.month * 100 + when.day


def _run_time(when: dt.datetime) -> int:
    return when.hour * 10000 + when.minute * 100 + when.second


def _duration(seconds: float) -> int:
    """sysjobhistory's run_duration: HHMMSS as an integer."""
    s = int(seconds)
    return (s // 3600) * 10000 + (s // 60 % 60) * 100 + s % 60


Handler = Callable[[Agent, "EngineSession", Mapping[str, Any]], list[Outcome]]
PROCEDURES: dict[str, tuple[Handler, tuple[str, ...]]] = {
    "sp_add_job": (Agent.add_job, ("job_name", "enabled", "description")),
    "sp_add_jobstep": (Agent.add_jobstep, ("job_id", "job_name", "step_id", "step_name", "subsystem", "command")),
    "sp_update_job": (Agent.update_job, ("job_id", "job_name")),
    "sp_add_jobserver": (Agent.add_jobserver, ("job_id", "job_name", "server_name")),
    "sp_start_job": (Agent.start_job, ("job_name", "job_id")),
    "sp_delete_job": (Agent.delete_job, ("job_id", "job_name")),
}
"""msdb.dbo's job procedures the lab's Agent answers: handler and the documented order of its first parameters."""


def call(session: EngineSession, name: str, arguments: Arguments) -> list[Outcome]:
    """Run one of msdb's job procedures (the caller already switched to msdb, as `msdb.dbo.sp_…` does)."""
    handler, positional = PROCEDURES[name]
    if session.database.lower() != "msdb":
        raise errors.unknown_procedure(name)
    if not session.sysadmin and not (session.database_roles("msdb") & AGENT_ROLES):
        raise SqlError(
            229,
            f"The EXECUTE permission was denied on the object '{name}', database 'msdb', schema 'dbo'.",
            severity=14,
            state=5,
        )
    return handler(session.instance.agent, session, _arguments(arguments, positional))
