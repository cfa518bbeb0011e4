"""Reading a GearmanManager ini file the way PHP's ``parse_ini_file($file, true)`` reads it, and
its values the way GearmanManager sees them (``!empty()``, ``(int)``, ``is_numeric``)."""

from __future__ import annotations

import configparser
import re

from gearmgr.errors import GearmgrError

GLOBAL_SECTION = "GearmanManager"
# What PHP's parse_ini_file turns into "" (false); any other non-empty value but "0" is true.
_PHP_FALSE = {"", "0", "false", "off", "no", "none", "null"}


class IniError(GearmgrError, ValueError):
    """An ini file that cannot be parsed; the message is one line naming the file."""


def php_bool(raw: str) -> bool:
    """A value as GearmanManager's ``!empty()`` sees it after parse_ini_file."""
    return raw.strip().lower() not in _PHP_FALSE


def php_int(raw: str) -> int:
    """PHP's ``(int)`` cast: the leading digits, 0 when there are none (``"10abc"`` -> 10)."""
    match = re.match(r"\s*([+-]?\d+)", raw)
    return int(match.group(1)) if match else 0


def php_number(raw: str) -> float | None:
    """PHP's ``is_numeric``: the whole value is a number, else None."""
    try:
        return float(raw.strip())
    except ValueError:
        return None


def comma_list(raw: str) -> list[str]:
    return [part.strip() for part in raw.split(",") if part.strip()]


def read_ini(text: str, source: str = "<ini>") -> dict[str, dict[str, str]]:
    """Sections -> keys -> raw string values, in file order, as parse_ini_file sees them."""
    parser = configparser.ConfigParser(
        interpolation=None,
        strict=False,  # PHP lets a later key or section win
        delimiters=("=",),
        comment_prefixes=(";", "#"),
        inline_comment_prefixes=(";",),
        allow_no_value=True,
        empty_lines_in_values=False,
        default_section="\0",  # PHP has no [DEFAULT] section
    )
    parser.optionxform = str  # type: ignore[assignment,method-assign]  # PHP keys are case-sensitive
    try:
        parser.read_string(text, source)
    except configparser.MissingSectionHeaderError as exc:
        problem = f"expected a [section] before {exc.line.strip()!r}"
        raise IniError(f"{source}:{exc.lineno}: not a GearmanManager ini file: {problem}") from None
    except configparser.ParsingError as exc:
        lineno = exc.errors[0][0]
        line = text.splitlines()[lineno - 1].strip()
        raise IniError(f"{source}:{lineno}: expected KEY = VALUE, got {line!r}") from None
    except configparser.Error as exc:
        raise IniError(f"{source}: not a valid ini file: {exc}") from None
    return {
        name: {key: _unquote(value or "") for key, value in parser[name].items()}
        for name in parser.sections()
    }


def _unquote(value: str) -> str:
    value = value.strip()
    if len(value) >= 2 and value[0] == value[-1] and value[0] in "\"'":
        return value[1:-1]
    return value
