"""Secrets are masked wherever text leaves the process."""

from __future__ import annotations

from linkgate.redaction import MASK, Redactor


def test_known_secret_values_are_masked() -> None:
    r = Redactor(["Tr0ub4dor&3", "abc"])  # too short to mask safely: ignored
    assert r.redact("login with Tr0ub4dor&3 failed") == f"login with {MASK} failed"
    assert r.redact("abc") == "abc"


def test_connection_string_passwords_are_masked_even_when_unknown() -> None:
    r = Redactor()
    text = "DRIVER={x};SERVER=tcp:h,1433;UID=sa;PWD={p;w=d};Encrypt=yes;ClientSecret=zzz"
    out = r.redact(text)
    assert "p;w=d" not in out
    assert "zzz" not in out
    assert "UID=sa" in out


def test_longer_secret_wins_over_its_prefix() -> None:
    r = Redactor(["secret-one", "secret-one-and-more"])
    assert r.redact("x secret-one-and-more y") == f"x {MASK} y"


def test_a_quoted_tsql_password_is_masked_whole_but_a_placeholder_is_kept() -> None:
    """A real password in T-SQL evidence goes, quotes and spaces included; the remediation's '<…>' stays readable."""
    r = Redactor()
    assert r.redact("CREATE MASTER KEY ENCRYPTION BY PASSWORD = 'my secret pw';") == (
        f"CREATE MASTER KEY ENCRYPTION BY PASSWORD={MASK};"
    )
    fix = "USE master; CREATE MASTER KEY ENCRYPTION BY PASSWORD = '<strong password>';"
    assert r.redact(fix) == fix
    assert "hunter2" not in r.redact("PASSWORD = '<x>hunter2'")
