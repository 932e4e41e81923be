"""Usage errors: exit 4 with one clear line naming what is wrong, before anything connects."""

from __future__ import annotations

from pathlib import Path

import pytest


def run(pytester: pytest.Pytester, *args: str) -> pytest.RunResult:
    return pytester.runpytest_subprocess(*args)


def error_lines(result: pytest.RunResult) -> list[str]:
    return [line for line in result.stderr.lines if line.startswith("ERROR:")]


def test_gate_without_env_names_the_environments(pytester: pytest.Pytester, gate_dir: Path) -> None:
    result = run(pytester)
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    assert error_lines(result) == ["ERROR: linkgate: choose an environment with --env NAME (available: demo, example)"]


def test_unknown_environment(pytester: pytest.Pytester, gate_dir: Path) -> None:
    result = run(pytester, "--env", "prod")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    (line,) = error_lines(result)
    assert "environment 'prod' not found" in line
    assert "available: demo, example" in line


def test_bad_key_names_file_line_and_key(pytester: pytest.Pytester, gate_dir: Path) -> None:
    env = gate_dir / "environments" / "broken.yaml"
    text = (gate_dir / "environments" / "demo.yaml").read_text()
    env.write_text(text.replace("    port: 14331", "    port: fourteen"))
    result = run(pytester, "--env", "broken")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    (line,) = error_lines(result)
    assert f"{env}:" in line
    assert "sql_servers.sql01.port: expected an integer from 1 to 65535, got 'fourteen'" in line


def test_missing_secret_variable(pytester: pytest.Pytester, gate_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("LINKGATE_SQL01_PASSWORD", raising=False)
    result = run(pytester, "--env", "example")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    (line,) = error_lines(result)
    assert "sql_servers.sql01.password_env: environment variable LINKGATE_SQL01_PASSWORD is not set" in line


def test_waiver_with_unknown_id(pytester: pytest.Pytester, gate_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for var in ("LINKGATE_SQL01_PASSWORD", "LINKGATE_SQL01_HOST_PASSWORD", "LINKGATE_MI_PASSWORD"):
        monkeypatch.setenv(var, "x-secret-x")
    env = gate_dir / "environments" / "waived.yaml"
    env.write_text(
        (gate_dir / "environments" / "example.yaml")
        .read_text()
        .replace("prerequisite: sql-trace-flag-1800", "prerequisite: sql-trace-flag-18000")
    )
    result = run(pytester, "--env", "waived", "-n", "2")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    (line,) = error_lines(result)
    assert "waivers.[0].prerequisite: unknown prerequisite id 'sql-trace-flag-18000'" in line
