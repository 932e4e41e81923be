"""Facts: typed values a probe read from a target, each with the evidence that produced it.

A fact group is read once per target; a group that could not be read keeps its error and its evidence,
so every check that needs it reports the original error (never a pass, never a skip).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Generic, TypeVar

from linkgate.evidence import Evidence

T = TypeVar("T")
U = TypeVar("U")


class FactUnavailable(Exception):
    """A fact could not be read from the target; the message is the original error (driver, ssh, ARM)."""

    def __init__(self, what: str, target: str, error: str, evidence: tuple[Evidence, ...] = ()) -> None:
        super().__init__(f"could not read {what} from {target}: {error}")
        self.what = what
        self.target = target
        self.error = error
        self.evidence = evidence


class TargetUnreachable(FactUnavailable):
    """Nothing could be read: connecting or logging in failed. Every check of the target errors with it."""

    def __init__(self, target: str, error: str, evidence: tuple[Evidence, ...] = ()) -> None:
        Exception.__init__(self, f"{target} is unreachable: {error}")
        self.what = "anything"
        self.target = target
        self.error = error
        self.evidence = evidence


@dataclass(frozen=True)
class Fact(Generic[T]):
    """A value read from a target, or the reason it could not be read; and how it was read."""

    what: str
    target: str
    evidence: tuple[Evidence, ...]
    value: T | None = None
    error: str | None = None

    def get(self) -> T:
        if self.error is not None:
            raise FactUnavailable(self.what, self.target, self.error, self.evidence)
        return self.value  # type: ignore[return-value]  # value is set whenever error is None

    def map(self, fn: Callable[[T], U]) -> Fact[U]:
        if self.error is not None:
            return Fact(self.what, self.target, self.evidence, None, self.error)
        return Fact(self.what, self.target, self.evidence, fn(self.get()))


@dataclass
class EvidenceRecorder:
    """Collects the evidence of the facts one check looked at, in the order it looked."""

    items: list[Evidence] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    """Sentences the check wants shown with its outcome even when it passes (a manual step that remains)."""

    def note(self, text: str) -> None:
        if text not in self.notes:
            self.notes.append(text)

    def add(self, evidence: tuple[Evidence, ...]) -> None:
        for e in evidence:
            if e not in self.items:
                self.items.append(e)

    def use(self, fact: Fact[T]) -> T:
        """Record the fact's evidence, then return its value (or raise FactUnavailable)."""
        self.add(fact.evidence)
        return fact.get()
