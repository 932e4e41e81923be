"""The pytest plugin: options and hooks only; each hook delegates to the module that does the work."""

from __future__ import annotations

import datetime as dt
import gc
import os
from collections.abc import Generator
from pathlib import Path

import pytest

from linkgate import lab_control, outcomes
from linkgate.applicability import decided_before_facts
from linkgate.catalog import CATALOG, declared_ids, prereq_of
from linkgate.environment import (
    EnvironmentFileError,
    available_environments,
    load_environment,
    resolve_environment_path,
)
from linkgate.gate import GATE_KEY, Gate, Options
from linkgate.gather import FactsCache
from linkgate.redaction import Redactor
from linkgate.report import Outcome, Record, summary, terminal_lines, unchecked, verdict, write_summary
from linkgate.targets import Target, fanout_kind, in_target_order, targets_for

pytest_plugins = ["linkgate.fixtures"]


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("linkgate", "linkgate: the Managed Instance link gate")
    group.addoption(
        "--env",
        dest="linkgate_env",
        metavar="NAME",
        help="Environment to check: environments/NAME.yaml, or a path to a .yaml file",
    )
    group.addoption(
        "--reports",
        dest="linkgate_reports",
        metavar="DIR",
        type=Path,
        help="Directory for linkgate.html, junit.xml and summary.json (default: reports/)",
    )
    group.addoption(
        "--fail-on-recommended",
        dest="linkgate_fail_on_recommended",
        action="store_true",
        help="Make failed recommended prerequisites block the gate (default: warnings)",
    )
    group.addoption(
        "--connect-timeout",
        dest="linkgate_connect_timeout",
        type=float,
        metavar="SECONDS",
        help="Override the environment's connect timeout",
    )
    group.addoption(
        "--query-timeout",
        dest="linkgate_query_timeout",
        type=float,
        metavar="SECONDS",
        help="Override the environment's query timeout",
    )
    group.addoption(
        "--active-probes",
        dest="linkgate_active_probes",
        action="store_true",
        help="Also run the opt-in probes that create objects on the targets (always cleaned up)",
    )
    group.addoption(
        "--today",
        dest="linkgate_today",
        type=dt.date.fromisoformat,
        metavar="YYYY-MM-DD",
        help="Date used to judge waiver expiry (default: today)",
    )


@pytest.hookimpl(tryfirst=True)
def pytest_configure(config: pytest.Config) -> None:
    # The plugin owns its marker: a checkout whose ini lacks it still runs under --strict-markers.
    config.addinivalue_line("markers", "prereq(p): a linkgate prerequisite (set by linkgate.catalog.prereq)")
    name = config.getoption("linkgate_env")
    if not name:
        if _collects_gate(config):
            envs = ", ".join(available_environments(config.rootpath)) or "none"
            raise pytest.UsageError(f"linkgate: choose an environment with --env NAME (available: {envs})")
        return
    path = resolve_environment_path(name, config.rootpath)
    if not path.is_file():
        envs = ", ".join(available_environments(config.rootpath)) or "none"
        raise pytest.UsageError(f"linkgate: environment {name!r} not found: {path} does not exist (available: {envs})")
    is_controller = not hasattr(config, "workerinput")
    lab_control.prepare_secrets(path, is_controller)
    try:
        env = load_environment(path, known_ids=declared_ids(config.rootpath / "tests").__contains__)
        env = lab_control.with_timeouts(
            env, config.getoption("linkgate_connect_timeout"), config.getoption("linkgate_query_timeout")
        )
    except EnvironmentFileError as e:
        raise pytest.UsageError(f"linkgate: {e}") from None
    reports = config.getoption("linkgate_reports") or config.rootpath / "reports"
    gate = Gate(
        environment=env,
        options=Options(
            reports,
            fail_on_recommended=config.getoption("linkgate_fail_on_recommended"),
            active_probes=config.getoption("linkgate_active_probes") or env.active_probes,
            today=config.getoption("linkgate_today") or dt.date.today(),
        ),
        cache=FactsCache(env),
        redactor=Redactor([*env.secrets(), os.environ.get("AZURE_CLIENT_SECRET", "")]),
        is_controller=is_controller,
    )
    config.stash[GATE_KEY] = gate
    if is_controller:
        if not config.option.htmlpath:
            config.option.htmlpath = str(reports / "linkgate.html")
            config.option.self_contained_html = True
        if not config.option.xmlpath:
            config.option.xmlpath = str(reports / "junit.xml")
        gate.lab = lab_control.start_if_declared(env)
        config.pluginmanager.register(RecordCollector(gate), "linkgate-records")
    if config.pluginmanager.hasplugin("html"):
        from linkgate import html_hooks

        config.pluginmanager.register(html_hooks, "linkgate-html")


def pytest_unconfigure(config: pytest.Config) -> None:
    gate = config.stash.get(GATE_KEY, None)
    if gate is not None:
        gate.cache.close()
        if gate.lab is not None:
            gate.lab.stop()
        # The run is over and its records are still referenced until exit. pytest's unraisable-exception
        # cleanup, which runs after this hook, calls gc.collect() five times over that heap: measured 5 s of
        # a 31 s gate at 200 SQL Servers. Frozen objects are left out of those collections.
        gc.freeze()


def _collects_gate(config: pytest.Config) -> bool:
    tests = (config.rootpath / "tests").resolve()
    for arg in config.args:
        p = Path(arg.split("::", 1)[0]).resolve()
        if p == tests or tests in p.parents:
            return True
    return False


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    gate = metafunc.config.stash.get(GATE_KEY, None)
    marker = metafunc.definition.get_closest_marker("prereq")
    if gate is None or marker is None:
        return
    kind = fanout_kind(list(metafunc.fixturenames))
    if kind is None:
        raise pytest.UsageError(f"linkgate: {metafunc.function.__name__} names no target fixture")
    targets = targets_for(gate.environment, kind)
    # Direct, not through the fixture: the value needs no setup, and a fixture call per item is measurable
    # at a fleet's 12,000 items.
    metafunc.parametrize("linkgate_target", targets, ids=[t.id for t in targets])


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Run the checks target by target, in the order their facts are read (targets.in_target_order);
    skip up front those the environment alone makes not applicable (applicability.decided_before_facts)."""
    gate = config.stash.get(GATE_KEY, None)
    if gate is None:
        return
    items[:] = in_target_order(gate.environment, items, _target_of)
    for item in items:
        prereq, target = prereq_of(item), _target_of(item)
        if prereq is not None and target is not None:
            reason = decided_before_facts(gate, prereq, target)
            if reason is not None:
                item.add_marker(pytest.mark.skip(reason=reason))


def _target_of(item: pytest.Item) -> Target | None:
    target = getattr(getattr(item, "callspec", None), "params", {}).get("linkgate_target")
    return target if isinstance(target, Target) else None


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> pytest.TestReport | None:
    """A prerequisite's verdict needs no traceback: build its report directly (outcomes.compact_report)."""
    if prereq_of(item) is None or item.config.stash.get(GATE_KEY, None) is None:
        return None
    return outcomes.compact_report(item, call)


@pytest.hookimpl(wrapper=True, specname="pytest_runtest_makereport")
def pytest_runtest_makereport_annotate(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    """Whoever built the report, linkgate's record and outcome go on it."""
    report = yield
    gate = item.config.stash.get(GATE_KEY, None)
    prereq = prereq_of(item)
    if gate is not None and prereq is not None:
        outcomes.annotate(gate, prereq, item, call, report)
    return report


def pytest_report_teststatus(report: pytest.TestReport, config: pytest.Config) -> tuple[str, str, object] | None:
    outcome = Record.property_of(getattr(report, "user_properties", ()), "outcome")
    if outcome is None or report.when == "teardown":
        return None
    status = {
        Outcome.WARNING: ("warning", "W", ("WARNING", {"yellow": True})),
        Outcome.WAIVED: ("waived", "w", ("WAIVED", {"cyan": True})),
        Outcome.NOT_APPLICABLE: ("not applicable", "n", ("N/A", {"light": True})),
    }
    return status.get(Outcome(outcome))


class RecordCollector:
    """Controller-side: gathers each item's record from the report of the phase that decided it."""

    def __init__(self, gate: Gate) -> None:
        self.gate = gate

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        record = Record.of_report(report)
        if record is not None:
            self.gate.records.append(record)


@pytest.hookimpl(trylast=True)
def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    gate = session.config.stash.get(GATE_KEY, None)
    if gate is None or not gate.is_controller:
        return
    env = gate.environment
    document = summary(
        env.name,
        str(env.path),
        env.direction.value,
        gate.records,
        started=gate.started,
        finished=dt.datetime.now().astimezone(),
        unchecked=unchecked(gate.records),
    )
    document["catalogue"] = len(CATALOG)
    write_summary(gate.options.reports / "summary.json", document, gate.redactor)


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter, config: pytest.Config) -> None:
    gate = config.stash.get(GATE_KEY, None)
    if gate is None or not gate.is_controller:
        return
    terminalreporter.section(
        "linkgate", sep="=", bold=True, green=verdict(gate.records) == "go", red=verdict(gate.records) != "go"
    )
    for line in terminal_lines(gate.records, gate.environment.name):
        terminalreporter.write_line(gate.redactor.redact(line))
    terminalreporter.write_line(f"reports: {gate.options.reports}/linkgate.html, junit.xml, summary.json")
