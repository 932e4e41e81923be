"""The ledger of objects the active probes create on targets: written before each creation.

An active probe records an object here *before* it sends the statement that creates it, and forgets
it only after the statement that removes it succeeded. So whatever ends a run — success, a failed
check, a timeout, Ctrl-C, SIGTERM, or SIGKILL and a power cut — the ledger names everything that may
still exist on a target. The next run finds ledgers whose owner process is dead and removes their
objects first (`stale()`); a live run's ledger is never touched, so two gates never interfere.

One ledger is one JSON file per run (`<state>/ledgers/<run id>.json`), rewritten atomically (write,
fsync, rename) on every change. The state directory is `$LINKGATE_STATE_DIR`, else
`$XDG_STATE_HOME/linkgate`, else `~/.local/state/linkgate`.
"""

from __future__ import annotations

import json
import os
import re
import socket
import threading
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

KINDS = ("job", "endpoint", "certificate")
OBJECT_NAME = re.compile(r"^linkgate_[0-9a-f]{8}_\w{1,64}$")
"""Every object a probe creates is named linkgate_<run id>_<what>: nothing else is ever removed."""
RUN_ID = re.compile(r"^[0-9a-f]{8}$")


class LedgerError(Exception):
    """A ledger file that cannot be read as one (kept in place, named in the message)."""


@dataclass(frozen=True)
class Entry:
    """One object on one target. `address` (server,port) tells which server `target` meant for that run."""

    target: str
    address: str
    kind: str
    name: str

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise LedgerError(f"unknown object kind {self.kind!r} (known: {', '.join(KINDS)})")
        if not OBJECT_NAME.match(self.name):
            raise LedgerError(f"{self.name!r} is not a name linkgate gives its objects")

    def describe(self) -> str:
        return f"{self.kind} {self.name} on {self.target}"


def state_dir() -> Path:
    """Where linkgate keeps state between runs (see the module docstring)."""
    explicit = os.environ.get("LINKGATE_STATE_DIR")
    if explicit:
        return Path(explicit)
    base = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(base) / "linkgate"


def _process_start(pid: int) -> str | None:
    """The kernel's start time of `pid` (field 22 of /proc/PID/stat), None when no such process exists."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return stat.rsplit(")", 1)[1].split()[19]


class Ledger:
    """The ledger of one run (one process): `record()` before creating, `forget()` after removing."""

    def __init__(self, directory: Path, run_id: str, entries: tuple[Entry, ...] = ()) -> None:
        if not RUN_ID.match(run_id):
            raise ValueError(f"a run id is 8 lowercase hex digits, got {run_id!r}")
        self.directory = directory
        self.run_id = run_id
        self.path = directory / f"{run_id}.json"
        self._entries: list[Entry] = list(entries)
        self._lock = threading.Lock()

    @property
    def entries(self) -> tuple[Entry, ...]:
        with self._lock:
            return tuple(self._entries)

    def record(self, entry: Entry) -> None:
        """Note an object that is about to be created (the file is on disk before this returns)."""
        with self._lock:
            self._entries.append(entry)
            self._write()

    def forget(self, entry: Entry) -> None:
        """The object is gone; the ledger file goes with its last entry."""
        with self._lock:
            if entry in self._entries:
                self._entries.remove(entry)
            self._write()

    def claim(self) -> None:
        """Rewrite the file under this process, so another run does not take it for a dead one's."""
        with self._lock:
            self._write()

    def _write(self) -> None:
        if not self._entries:
            self.path.unlink(missing_ok=True)
            return
        self.directory.mkdir(parents=True, exist_ok=True)
        pid = os.getpid()
        document = {
            "run_id": self.run_id,
            "pid": pid,
            "started": _process_start(pid),
            "host": socket.gethostname(),
            "entries": [asdict(e) for e in self._entries],
        }
        tmp = self.path.with_suffix(".tmp")
        with tmp.open("w", encoding="utf-8") as f:
            json.dump(document, f, indent=1)
            f.flush()
            os.fsync(f.fileno())
        tmp.replace(self.path)


@dataclass(frozen=True)
class StaleLedger:
    """A ledger left by a run whose process is gone: its objects may still exist."""

    path: Path
    run_id: str
    pid: int
    entries: tuple[Entry, ...]

    def adopt(self) -> Ledger:
        """A Ledger over this file, so removals are forgotten one by one, as the run itself would have."""
        ledger = Ledger(self.path.parent, self.run_id, self.entries)
        ledger.claim()
        return ledger


def stale(directory: Path) -> list[StaleLedger]:
    """The ledgers in `directory` whose owner process (same host, same pid and start time) no longer runs."""
    found: list[StaleLedger] = []
    for path in sorted(directory.glob("*.json")) if directory.is_dir() else []:
        document = _read(path)
        if document.get("host") != socket.gethostname():
            continue  # another machine's run: its process cannot be checked from here
        pid = int(document["pid"])
        if pid == os.getpid() or _process_start(pid) == document.get("started"):
            continue  # this run's own, or its owner still runs
        entries = tuple(Entry(**e) for e in document["entries"])
        found.append(StaleLedger(path, str(document["run_id"]), pid, entries))
    return found


def _read(path: Path) -> dict[str, Any]:
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
        if not isinstance(document, dict) or not RUN_ID.match(str(document.get("run_id", ""))):
            raise ValueError("not a ledger document")
        int(document["pid"])
        if not isinstance(document.get("entries"), list):
            raise ValueError("no entries")
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise LedgerError(f"{path}: unreadable ledger ({e}); remove the objects it names by hand, then the file") from e
    return document
