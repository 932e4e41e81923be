"""Facts gathered once per target and worker, all targets at once.

The first check that needs any target starts reading every target of the environment concurrently
(pyodbc releases the GIL while it waits on the network), so the gate's wall time stays close to the
slowest target's round trips instead of their sum. Results and failures are both cached: a dead target
costs one connect timeout, and every one of its checks reports the same original error.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any, TypeVar

from linkgate.environment import Environment
from linkgate.probes.host import SqlHost, read_sql_host
from linkgate.probes.net import HostNetwork
from linkgate.probes.odbc import OdbcSession
from linkgate.probes.sql import (
    ManagedInstanceFacts,
    SqlServerFacts,
    log_directory,
    read_managed_instance,
    read_sql_server,
)
from linkgate.targets import Kind, targets_for

T = TypeVar("T")
MAX_CONCURRENCY = 64


class FactsCache:
    """Per-worker cache of every target's facts, filled concurrently on first use."""

    def __init__(self, env: Environment) -> None:
        self.env = env
        self._lock = threading.Lock()
        self._futures: dict[str, Future[Any]] = {}
        self._sessions: list[OdbcSession] = []
        self._executor: ThreadPoolExecutor | None = None
        self._prefetched = False

    def _submit(self, key: str, fn: Callable[[], T]) -> Future[T]:
        with self._lock:
            future = self._futures.get(key)
            if future is None:
                if self._executor is None:
                    workers = min(MAX_CONCURRENCY, max(2, len(self.env.sql_servers) + 1))
                    self._executor = ThreadPoolExecutor(workers, thread_name_prefix="linkgate-facts")
                future = self._executor.submit(fn)
                self._futures[key] = future
            return future

    def prefetch(self) -> None:
        """Start reading every SQL target now (once); checks then wait only for their own target."""
        if self._prefetched:
            return
        self._submit(f"mi:{self.env.managed_instance.name}", self._read_mi)
        for name in self.env.sql_servers:
            self._submit(f"sql:{name}", lambda n=name: self._read_sql(n))  # type: ignore[misc]
        self._prefetched = True  # after: a concurrent caller submits again, which _submit makes a no-op

    def sql_server(self, name: str) -> SqlServerFacts:
        self.prefetch()
        result: SqlServerFacts = self._futures[f"sql:{name}"].result()
        return result

    def managed_instance(self) -> ManagedInstanceFacts:
        self.prefetch()
        result: ManagedInstanceFacts = self._futures[f"mi:{self.env.managed_instance.name}"].result()
        return result

    def other(self, key: str, fn: Callable[[], T]) -> T:
        """Any other per-target fact source (hosts, ARM), cached and shared the same way."""
        result: T = self._submit(key, fn).result()
        return result

    def sql_host(self, name: str) -> tuple[SqlHost, HostNetwork]:
        """The host facts of one SQL Server's machine (read once, all facts in one go) and its network questions."""
        host = self.other(
            f"host:{name}",
            lambda: read_sql_host(
                self.env.sql_servers[name],
                timeout=self.env.timeouts.connect,
                log_path=log_directory(lambda: self.sql_server(name), self.env.sql_servers[name].databases),
            ),
        )
        network = self.other(f"net:{name}", lambda: HostNetwork(host.shell, windows=host.windows is not None))
        return host, network

    def session(self, name: str) -> OdbcSession:
        """A new session of the gate's own to SQL Server `name` or the managed instance, closed with the cache.

        The active probes (probes/active.py) run their statements on it, apart from the fact readers'.
        """
        mi = self.env.managed_instance
        return self._session(name, mi if name == mi.name else self.env.sql_servers[name])

    def _session(self, target: str, server: Any) -> OdbcSession:
        session = OdbcSession(target, server.connection, self.env.timeouts)
        with self._lock:
            self._sessions.append(session)
        return session

    def _read_sql(self, name: str) -> SqlServerFacts:
        server = self.env.sql_servers[name]
        return read_sql_server(self._session(name, server), server.databases)

    def _read_mi(self) -> ManagedInstanceFacts:
        mi = self.env.managed_instance
        databases = tuple(t.database for t in targets_for(self.env, Kind.MI_DATABASE) if t.database)
        return read_managed_instance(self._session(mi.name, mi), databases)

    def close(self) -> None:
        if self._executor is not None:
            self._executor.shutdown(wait=True, cancel_futures=True)
        for s in self._sessions:
            s.close()
