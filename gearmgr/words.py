"""Counts in words, for every message that prints one: ``plural(1, "job")`` is "1 job"."""

from __future__ import annotations

_IRREGULAR = {"process": "processes", "is": "are", "was": "were", "has": "have"}


def plural(n: int, word: str, many: str | None = None) -> str:
    """``"1 job"``, ``"2 jobs"``, ``"0 processes"``: ``n`` and ``word`` agreeing with it."""
    return f"{n} {noun(n, word, many)}"


def noun(n: int, word: str, many: str | None = None) -> str:
    """``word`` in the singular for 1 and the plural otherwise, without the count."""
    if n == 1:
        return word
    return many or _IRREGULAR.get(word) or word + "s"
