"""Secrets never leave the process: every text a report, log or terminal line carries passes through here.

Secrets are only ever referenced by environment-variable name; their values are known at run time
and replaced wherever they would appear, together with the password keywords of connection strings.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

MASK = "********"
_KEYWORDS = re.compile(r"(?i)\b(PWD|Password|ClientSecret|client_secret)\s*=\s*(\{[^}]*\}|[^;\s]*)")


class Redactor:
    """Replaces known secret values, and any `PWD=…` in connection strings, with a mask."""

    def __init__(self, secrets: Iterable[str] = ()) -> None:
        # Longest first, so a secret that contains another is masked whole.
        self._secrets = sorted({s for s in secrets if s and len(s) >= 4}, key=len, reverse=True)

    def add(self, secret: str) -> None:
        self._secrets = sorted({*self._secrets, secret} - {""}, key=len, reverse=True)

    def redact(self, text: str) -> str:
        for s in self._secrets:
            text = text.replace(s, MASK)
        return _KEYWORDS.sub(lambda m: f"{m.group(1)}={MASK}", text)
