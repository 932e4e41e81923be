"""Conformance of the catalogue: every prerequisite is well formed, documented and fixable."""

from __future__ import annotations

from pathlib import Path

import pytest

from linkgate.catalog import ID_PATTERN, Catalog, Prereq, declared_ids
from linkgate.docs import load_catalog, render

ROOT = Path(__file__).resolve().parents[2]
REMEDIATION_FIELDS = {"target", "database", "server", "instance", "endpoint_port", "login", "sql_ip", "mi_name",
                      "mi_fqdn", "mi_subnet", "direction", "agent_service"}


@pytest.fixture(scope="module")
def catalog() -> Catalog:
    return load_catalog(ROOT / "tests")


def prereqs() -> list[Prereq]:
    return list(load_catalog(ROOT / "tests"))


@pytest.mark.parametrize("p", prereqs(), ids=lambda p: p.id)
def test_prerequisite_is_well_formed(p: Prereq) -> None:
    assert ID_PATTERN.match(p.id), p.id
    assert p.function_name == "test_" + p.id.replace("-", "_")
    assert p.title.endswith("."), "the docstring's first line is the desired state, as a sentence"
    assert p.why, "the docstring says why"
    assert p.docs.startswith("https://learn.microsoft.com/")
    assert set(p.fields) <= REMEDIATION_FIELDS, f"unknown remediation fields {set(p.fields) - REMEDIATION_FIELDS}"
    assert p.spec


def test_ids_declared_in_source_match_the_catalogue(catalog: Catalog) -> None:
    assert declared_ids(ROOT / "tests") == {p.id for p in catalog}


def test_readme_table_is_current(catalog: Catalog) -> None:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    assert render(readme, catalog) == readme, "run `python -m linkgate.docs` to regenerate the README table"


def test_remediation_fills_fields_and_keeps_unknown_ones_visible(catalog: Catalog) -> None:
    p = catalog.get("sql-db-full-recovery")
    assert p is not None
    text = p.remediation_for(server="sql01", database="SalesDB")
    assert "ALTER DATABASE [SalesDB] SET RECOVERY FULL" in text
    partial = p.remediation_for(server="sql01")
    assert "{database}" in partial
