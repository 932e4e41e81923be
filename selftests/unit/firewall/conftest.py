"""Fixtures of the firewall evaluators' self-tests: the recorded listings and a throwaway namespace."""

from __future__ import annotations

import os
import secrets
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

DATA = Path(__file__).resolve().parent.parent / "data" / "firewall"


@pytest.fixture
def listing() -> Callable[[str], str]:
    """`listing("nftables/healthy.json")`: the text of a recorded (or labelled hand-made) listing."""
    return lambda name: (DATA / name).read_text(encoding="utf-8")


@pytest.fixture
def netns() -> Iterator[Callable[..., str]]:
    """A network namespace of its own, deleted afterwards; the fixture runs a command in it and returns stdout.

    Only rules are loaded and listed there: no interface is brought up and no packet is sent.
    """
    if os.geteuid() != 0:
        pytest.skip("loading nftables/iptables rules in a network namespace needs root")
    name = f"lgfw-{secrets.token_hex(3)}"
    subprocess.run(["ip", "netns", "add", name], check=True, timeout=10)

    def run(*argv: str, stdin: str | None = None) -> str:
        done = subprocess.run(
            ["ip", "netns", "exec", name, *argv], input=stdin, capture_output=True, text=True, timeout=10, check=False
        )
        assert done.returncode == 0, f"{' '.join(argv)}: {done.stderr}"
        return done.stdout

    try:
        yield run
    finally:
        subprocess.run(["ip", "netns", "del", name], check=False, timeout=10)
