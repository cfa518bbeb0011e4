"""Text measured in terminal cells, for tables a terminal shows (``gearmgr top``).

``len()`` counts characters, a terminal cells: a CJK character or an emoji takes two
(``unicodedata.east_asian_width`` W or F), a combining mark or a format character (a zero-width
joiner) none, a character in a narrow or ambiguous class one. Cutting never splits a wide
character (a space fills the cell it would have half taken) and keeps the combining marks of the
last character kept.
"""

from __future__ import annotations

import unicodedata
from functools import lru_cache


@lru_cache(maxsize=4096)
def char_width(char: str) -> int:
    """Cells ``char`` takes: 0, 1 or 2."""
    if char.isascii():
        return 1 if char.isprintable() else 0
    if unicodedata.combining(char) or unicodedata.category(char) in ("Mn", "Me", "Cf"):
        return 0
    return 2 if unicodedata.east_asian_width(char) in ("W", "F") else 1


def width(text: str) -> int:
    """Cells ``text`` takes."""
    if text.isascii() and text.isprintable():
        return len(text)
    return sum(char_width(c) for c in text)


def cut(text: str, cells: int) -> str:
    """The longest start of ``text`` that fits in ``cells`` (a wide character that would not
    fit whole is left out)."""
    if width(text) <= cells:
        return text
    used = 0
    for i, char in enumerate(text):
        used += char_width(char)
        if used > cells:
            return text[:i]
    return text


def pad(text: str, cells: int) -> str:
    """``text`` and spaces up to ``cells`` (as ``str.ljust`` does with characters)."""
    return text + " " * (cells - width(text))


def fit(text: str, cells: int) -> str:
    """``text`` cut or padded to exactly ``cells`` cells."""
    return pad(cut(text, cells), cells)


def clip(text: str, cells: int) -> str:
    """``text`` within ``cells`` cells, ending in ``~`` where it was cut (not padded)."""
    if width(text) <= cells:
        return text
    if cells <= 0:
        return ""
    return cut(text, max(0, cells - 1)) + "~"


def cell(text: str, cells: int) -> str:
    """``text`` as a table column ``cells`` wide: clipped with ``~``, then padded."""
    return pad(clip(text, cells), cells)
