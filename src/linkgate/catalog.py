"""The catalogue of prerequisites: id, severity, when it applies, how to fix it, where it is documented.

A prerequisite is a pytest test function decorated with `@prereq(...)`. The decorator records its
metadata in a typed registry (never in tags or titles to be recovered by regex) and marks the function,
so the plugin can parametrize it over the environment's targets, decide applicability, apply waivers
and put the metadata in every report.
"""

from __future__ import annotations

import ast
import enum
import re
import string
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import pytest

from linkgate.conditions import ALWAYS, Condition

ID_PATTERN = re.compile(r"^(sql|mi|host|net|azure|client)(-[a-z0-9]+)+$")
AREAS = ("sql", "mi", "host", "net", "azure", "client")
"""Where a prerequisite is checked, in report order; `client` is the machine that runs SSMS to create the link."""
DOCS = "https://learn.microsoft.com/azure/azure-sql/managed-instance/managed-instance-link-preparation"


class Severity(enum.Enum):
    """What a failure means for the gate.

    REQUIRED: the link cannot be created or will not work; a failure makes the verdict no-go.
    RECOMMENDED: the documentation recommends it; a failure is a warning (blocking with an option).
    INFO: facts an operator should see; reported, never blocking.
    """

    REQUIRED = "required"
    RECOMMENDED = "recommended"
    INFO = "info"


@dataclass(frozen=True)
class Prereq:
    """One prerequisite of the article, as the gate checks it."""

    id: str
    title: str
    why: str
    severity: Severity
    applies: Condition
    remediation: str
    docs: str
    spec: str
    area: str
    function_name: str
    module: str
    fields: tuple[str, ...] = field(default=())

    def remediation_for(self, **values: object) -> str:
        """The remediation with the failing object's names filled in; unknown fields stay visible."""
        return string.Formatter().vformat(self.remediation, (), _KeepMissing(values))


class _KeepMissing(dict[str, object]):
    def __missing__(self, key: str) -> str:
        return "{" + key + "}"


class Catalog:
    """The registry of prerequisites, filled at import time of the gate's test modules."""

    def __init__(self) -> None:
        self._by_id: dict[str, Prereq] = {}

    def add(self, p: Prereq) -> None:
        existing = self._by_id.get(p.id)
        if existing is not None and (existing.module, existing.function_name) != (p.module, p.function_name):
            raise ValueError(f"prerequisite id {p.id!r} is used twice: {existing.module} and {p.module}")
        self._by_id[p.id] = p

    def get(self, prereq_id: str) -> Prereq | None:
        return self._by_id.get(prereq_id)

    def __iter__(self) -> Iterator[Prereq]:
        return iter(sorted(self._by_id.values(), key=lambda p: (AREAS.index(p.area), p.id)))

    def __len__(self) -> int:
        return len(self._by_id)

    def __contains__(self, prereq_id: object) -> bool:
        return prereq_id in self._by_id


CATALOG = Catalog()

F = TypeVar("F", bound=Callable[..., Any])


def prereq(
    prereq_id: str,
    *,
    severity: Severity,
    remediation: str,
    spec: str,
    applies: Condition = ALWAYS,
    docs: str = DOCS,
) -> Callable[[F], F]:
    """Declare a test function as the check of one prerequisite.

    The function's docstring gives the title (first line: the desired state, as a sentence) and the
    why (the rest). `remediation` is a template over the test's parameters (e.g. `{database}`,
    `{target}`), scoped to the failing object.
    """

    def decorate(fn: F) -> F:
        doc = (fn.__doc__ or "").strip()
        title, _, why = doc.partition("\n")
        fields = tuple(name for _, name, _, _ in string.Formatter().parse(remediation) if name)
        p = Prereq(
            id=prereq_id,
            title=title.strip(),
            why=" ".join(why.split()),
            severity=severity,
            applies=applies,
            remediation=remediation,
            docs=docs,
            spec=spec,
            area=prereq_id.split("-", 1)[0],
            function_name=fn.__name__,
            module=fn.__module__,
            fields=fields,
        )
        CATALOG.add(p)
        marked: F = pytest.mark.prereq(p)(fn)
        return marked

    return decorate


def prereq_of(item: pytest.Item) -> Prereq | None:
    """The prerequisite a collected test item checks, if it is one."""
    marker = item.get_closest_marker("prereq")
    if marker is None or not marker.args or not isinstance(marker.args[0], Prereq):
        return None
    return marker.args[0]


def declared_ids(tests_dir: Path) -> set[str]:
    """The prerequisite ids the gate's test modules declare, read from their source without importing them.

    Waivers are validated against these before collection, so a waiver naming an unknown id is a usage
    error up front (under xdist too). A conformance self-test proves this set equals the catalogue.
    """
    ids: set[str] = set()
    for path in sorted(tests_dir.rglob("test_*.py")):
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        for node in ast.walk(tree):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                for deco in node.decorator_list:
                    if (
                        isinstance(deco, ast.Call)
                        and isinstance(deco.func, ast.Name)
                        and deco.func.id == "prereq"
                        and deco.args
                        and isinstance(deco.args[0], ast.Constant)
                        and isinstance(deco.args[0].value, str)
                    ):
                        ids.add(deco.args[0].value)
    return ids
