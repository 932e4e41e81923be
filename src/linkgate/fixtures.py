"""The fixtures a prerequisite asks for: cheap handles over per-worker, per-target cached facts.

A check names what it looks at — `sql_server`, `database`, `sql_host`, `mi`, `mi_database`, `client_host` —
and the plugin fans it out over the environment's targets through `linkgate_target`. No SQL text and no assertion here.
"""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from linkgate.applicability import FactsContext, not_applicable_reason
from linkgate.catalog import prereq_of
from linkgate.environment import Environment
from linkgate.gate import GATE_KEY, RECORDER_KEY, Gate, NotApplicable
from linkgate.ledger import state_dir
from linkgate.probes.active import ActiveProbes
from linkgate.probes.azure import AzureView, LinkPeer, read_azure
from linkgate.probes.facts import EvidenceRecorder
from linkgate.probes.host import open_host, read_client_host
from linkgate.probes.net import HostNetwork
from linkgate.probes.sql import Tde
from linkgate.targets import Target
from linkgate.views import (
    ActiveProbesView,
    ClientHostView,
    DatabaseView,
    ManagedInstanceView,
    SqlHostView,
    SqlServerView,
    log_sector_reader,
)


def _gate(config: pytest.Config) -> Gate:
    gate = config.stash.get(GATE_KEY, None)
    if gate is None:
        raise pytest.UsageError("linkgate: choose an environment with --env NAME")
    return gate


@pytest.fixture(scope="session")
def environment(pytestconfig: pytest.Config) -> Environment:
    """The environment file this run checks (validated before anything connected)."""
    return _gate(pytestconfig).environment


@pytest.fixture
def linkgate_target() -> Target:
    """The target this test item checks: the plugin parametrizes every prerequisite with it."""
    raise pytest.UsageError("linkgate: linkgate_target is given by the gate's parametrization (run with --env)")


@pytest.fixture
def evidence() -> EvidenceRecorder:
    """Collects the evidence of every fact the check reads; the report shows it (the applicability
    fixture, which runs first, keeps it on the item)."""
    return EvidenceRecorder()


@pytest.fixture
def sql_server(pytestconfig: pytest.Config, linkgate_target: Target, evidence: EvidenceRecorder) -> SqlServerView:
    """The SQL Server under check; connecting happens once per worker, for every target at once.

    Its host's log-volume sector size (trace flag 1800) is read only if a check asks, and only when declared.
    """
    gate = _gate(pytestconfig)
    facts = gate.cache.sql_server(linkgate_target.server)
    reader = log_sector_reader(gate.cache, gate.environment.sql_servers[linkgate_target.server])
    return SqlServerView(linkgate_target.server, facts, evidence, log_sector=reader)


@pytest.fixture
def database(sql_server: SqlServerView, linkgate_target: Target) -> DatabaseView:
    """One database to link, on the SQL Server under check."""
    assert linkgate_target.database is not None
    return sql_server.database(linkgate_target.database)


@pytest.fixture
def mi(pytestconfig: pytest.Config, linkgate_target: Target, evidence: EvidenceRecorder) -> ManagedInstanceView:
    """The managed instance the environment links to."""
    gate = _gate(pytestconfig)
    facts = gate.cache.managed_instance()
    return ManagedInstanceView(gate.environment.managed_instance.name, facts, evidence)


@pytest.fixture
def sql_host(pytestconfig: pytest.Config, linkgate_target: Target, evidence: EvidenceRecorder) -> SqlHostView:
    """The machine that runs the SQL Server under check, reached over ssh or WinRM as the environment declares."""
    gate = _gate(pytestconfig)
    host, network = gate.cache.sql_host(linkgate_target.server)
    return SqlHostView(gate.environment.sql_servers[linkgate_target.server], host, network, evidence)


@pytest.fixture
def client_host(pytestconfig: pytest.Config, linkgate_target: Target, evidence: EvidenceRecorder) -> ClientHostView:
    """The machine that runs SSMS to create the link (the environment's client_host), reached over WinRM."""
    gate = _gate(pytestconfig)
    spec = gate.environment.client_host
    if spec is None:  # the applicability check says so first, at collection; this is the backstop
        raise NotApplicable("applies only when the environment declares client_host (the machine that runs SSMS)")
    timeout = gate.environment.timeouts.connect
    label = linkgate_target.label
    facts = gate.cache.other("client", lambda: read_client_host(open_host(spec, label, timeout=timeout), label))
    return ClientHostView(label, facts, evidence)


@pytest.fixture
def azure(pytestconfig: pytest.Config, linkgate_target: Target, evidence: EvidenceRecorder) -> AzureView:
    """The managed instance's resources in Azure Resource Manager, read once per worker."""
    gate = _gate(pytestconfig)
    env = gate.environment
    target = env.azure
    if target is None:
        raise NotApplicable("applies only when the environment declares its Azure resources (azure:)")
    facts = gate.cache.other("azure", lambda: read_azure(target, env.cloud, env.timeouts, env.managed_instance.name))
    return AzureView(facts, evidence)


@pytest.fixture
def azure_peer(environment: Environment, linkgate_target: Target) -> LinkPeer:
    """The SQL Server end of the link's flows, as the managed instance sees it."""
    return LinkPeer.of(environment, linkgate_target.server)


@pytest.fixture
def active(pytestconfig: pytest.Config, linkgate_target: Target, evidence: EvidenceRecorder) -> ActiveProbesView:
    """The opt-in probes that create objects on the targets and always remove them (only with --active-probes)."""
    gate = _gate(pytestconfig)
    if not gate.options.active_probes:  # the check's ACTIVE_PROBES condition says so first; this is the backstop
        raise NotApplicable("applies only when active probes are enabled (--active-probes or active_probes: true)")
    probes = gate.cache.other(
        "active-probes", lambda: ActiveProbes(gate.environment, gate.cache.session, state_dir() / "ledgers")
    )
    server = gate.environment.sql_servers[linkgate_target.server]

    def host() -> HostNetwork | None:  # only Linux needs it: there the host tests SQL Server → MI, not the Agent
        linux = server.host is not None and server.host_os.value == "linux"
        return gate.cache.sql_host(server.name)[1] if linux else None

    return ActiveProbesView(server.name, probes, lambda: gate.cache.managed_instance().fabric, host, evidence)


@dataclass(frozen=True)
class MiDatabase:
    name: str
    tde: Tde


@pytest.fixture
def mi_database(mi: ManagedInstanceView, linkgate_target: Target) -> MiDatabase:
    """One database on the managed instance (it is the initial primary)."""
    assert linkgate_target.database is not None
    return MiDatabase(linkgate_target.database, mi.database_tde(linkgate_target.database))


@pytest.fixture(autouse=True)
def _linkgate_applicability(request: pytest.FixtureRequest, pytestconfig: pytest.Config) -> None:
    """Reports a prerequisite that does not apply to this target as not applicable, with the reason."""
    prereq = prereq_of(request.node) if isinstance(request.node, pytest.Item) else None
    if prereq is None:
        return
    target: Target = request.getfixturevalue("linkgate_target")
    recorder: EvidenceRecorder = request.getfixturevalue("evidence")
    request.node.stash[RECORDER_KEY] = recorder
    gate = _gate(pytestconfig)
    reason = not_applicable_reason(gate, prereq, target, FactsContext(gate, target, recorder))
    if reason is not None:
        raise NotApplicable(reason)
