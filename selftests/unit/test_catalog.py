"""Conformance of the catalogue: every prerequisite is well formed, documented and fixable."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from linkgate.catalog import ID_PATTERN, Catalog, Prereq, declared_ids
from linkgate.docs import load_catalog, render

ROOT = Path(__file__).resolve().parents[2]
SPEC = ROOT.parent / "shared" / "reference" / "prerequisites-spec.md"
SPEC_ID = r"(?:SQL|MI|ARM|HOST-[LW]|NET|CLIENT)-\d{2}"
# The spec's §2 check table, copied for checkouts without ../shared/reference (keep it in step with the spec).
SPEC_TABLE_IDS = (
    *(f"SQL-{n:02d}" for n in range(1, 21)),
    *(f"MI-{n:02d}" for n in range(1, 5)),
    *(f"ARM-{n:02d}" for n in range(1, 10)),
    *(f"HOST-L-{n:02d}" for n in range(1, 5)),
    *(f"HOST-W-{n:02d}" for n in range(1, 7)),
    *(f"NET-{n:02d}" for n in range(1, 5)),
    "CLIENT-01",
)
EXPECTED_MISSING: frozenset[str] = frozenset()  # spec ids knowingly left without a prerequisite: none
REMEDIATION_FIELDS = {
    "target",
    "database",
    "server",
    "instance",
    "endpoint_port",
    "login",
    "sql_ip",
    "mi_name",
    "mi_fqdn",
    "mi_subnet",
    "direction",
    "agent_service",
    "engine_service",
}


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


def spec_table_ids() -> list[str]:
    """The ids of the spec's §2 check table, read from the spec when it is there, else the copy above."""
    if not SPEC.is_file():
        return list(SPEC_TABLE_IDS)
    table = SPEC.read_text(encoding="utf-8").split("## 2. Check table", 1)[1].split("\n## ", 1)[0]
    return re.findall(rf"^\| ({SPEC_ID}) \|", table, flags=re.MULTILINE)


def test_the_spec_table_is_read_whole() -> None:
    ids = spec_table_ids()
    assert len(ids) == len(set(ids)) >= 40, ids
    assert {"SQL-01", "SQL-20", "MI-04", "ARM-09", "HOST-L-04", "HOST-W-05", "NET-04"} <= set(ids)
    if SPEC.is_file():
        assert ids == list(SPEC_TABLE_IDS), "the spec's §2 table changed: update SPEC_TABLE_IDS to match"


def test_every_check_of_the_spec_table_is_named_by_a_prerequisite(catalog: Catalog) -> None:
    named = {spec_id for p in catalog for spec_id in re.findall(rf"\b{SPEC_ID}\b", p.spec)}
    missing = [i for i in spec_table_ids() if i not in named and i not in EXPECTED_MISSING]
    assert not missing, f"no prerequisite names these spec ids in spec=: {', '.join(missing)}"
