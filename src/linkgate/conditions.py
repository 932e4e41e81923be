"""When a prerequisite applies, declared as data with a sentence that says why.

"Not applicable" is decided by the environment (direction, host OS) or by facts that describe the
target (its major version, whether a database is encrypted), never by a probe that failed: a target that
cannot be read makes the condition raise, and the check is reported as an error, not skipped.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from linkgate.environment import Environment, HostOS
    from linkgate.targets import Target


class Context(Protocol):
    """What a condition may look at: the environment, the target, and the target's facts (lazily)."""

    @property
    def environment(self) -> Environment: ...

    @property
    def target(self) -> Target: ...

    @property
    def active_probes(self) -> bool: ...

    def fact(self, name: str) -> object:
        """A named fact of the target (e.g. 'sql.major_version'); raises if it cannot be read."""
        ...


@dataclass(frozen=True)
class Condition:
    """A predicate over the context, with the sentence shown when it does not hold."""

    description: str
    holds: Callable[[Context], bool]

    def __and__(self, other: Condition) -> Condition:
        return Condition(
            f"{self.description} and {other.description}", lambda ctx: self.holds(ctx) and other.holds(ctx)
        )


ALWAYS = Condition("always", lambda ctx: True)


def direction_is(direction_name: str) -> Condition:
    """Applies only for one link direction (SQL_TO_MI or MI_TO_SQL)."""
    sentence = {
        "SQL_TO_MI": "SQL Server is the initial primary (direction SQL_TO_MI)",
        "MI_TO_SQL": "the managed instance is the initial primary (direction MI_TO_SQL)",
    }[direction_name]
    return Condition(sentence, lambda ctx: ctx.environment.direction.value == direction_name)


def host_os_is(os_name: HostOS | str) -> Condition:
    name = getattr(os_name, "value", os_name)
    return Condition(f"SQL Server runs on {str(name).capitalize()}", lambda ctx: ctx.target.host_os == name)


def fact_holds(description: str, name: str, predicate: Callable[[object], bool]) -> Condition:
    """Applies when a fact of the target satisfies `predicate` (reading it may raise: that's an error)."""
    return Condition(description, lambda ctx: predicate(ctx.fact(name)))


ACTIVE_PROBES = Condition(
    "active probes are enabled (--active-probes or active_probes: true)", lambda ctx: ctx.active_probes
)
SQL_TO_MI = direction_is("SQL_TO_MI")
MI_TO_SQL = direction_is("MI_TO_SQL")
