"""Values as users write them: durations (``30s``, ``250ms``), sizes (``256MiB``), addresses.

Parsing returns plain numbers (float seconds, int bytes); formatting goes the other way, for
``gearmgr check``, the docs and ``import-ini``. ``parse_*(format_*(x)) == x`` holds for every
value the parsers can return, so a formatted value can be pasted back into a config.

Errors are ``ValueError`` with a message that says what was expected and what was given
(``expected a duration like "30s" or "250ms", got "lots"``); the config loader prefixes the
file, line and key path.

Addresses are ``HOST:PORT`` (``[::1]:4730`` for IPv6); :func:`parse_address` and
:func:`format_address` are shared by the config, the client and ``gearmgr submit -s``.
"""

from __future__ import annotations

import ipaddress
import json
import math
import re
from decimal import Decimal

DEFAULT_PORT = 4730  # Gearman's
# The longest duration: 24 days. A poll()/epoll wait takes a C int of milliseconds (at most
# 2**31 - 1, 24.8 days), and a longer sleep or lock timeout overflows too in some places.
MAX_DURATION = 24 * 86400.0
MAX_DURATION_TEXT = "576h (24 days)"
MAX_SIZE = 1024**5  # 1024TiB: far above any memory size, far below a C int64
DURATION_HINT = 'a duration like "30s" or "250ms"'
SIZE_HINT = 'a size like "256MiB"'

# Multipliers in seconds. "ms" divides instead (see _scale) so that "250ms" is exactly 0.25.
_DURATION_UNITS: dict[str, int] = {"ms": 1000, "s": 1, "m": 60, "h": 3600, "d": 86400}
# Binary units only: "MB" is ambiguous (10**6 or 2**20), so it is refused rather than guessed.
_SIZE_UNITS: dict[str, int] = {
    "b": 1,
    "kib": 1024,
    "mib": 1024**2,
    "gib": 1024**3,
    "tib": 1024**4,
}
_SIZE_NAMES: dict[str, str] = {"b": "B", "kib": "KiB", "mib": "MiB", "gib": "GiB", "tib": "TiB"}
_SHOW_MAX = 60  # characters of a value quoted back in an error message
# What JSON leaves as is but a terminal should not get: DEL, C1 controls, lone surrogates.
_UNPRINTABLE = re.compile("[\x7f-\x9f\ud800-\udfff]")
_NUMBER = r"(\d+(?:\.\d*)?|\.\d+)"
_NUMBER_UNIT = re.compile(rf"\s*{_NUMBER}\s*([A-Za-z]*)\s*")
# "1h30m", "1m30s", "250ms": one or more NUMBER UNIT parts, largest first by convention.
_DURATION_PART = re.compile(rf"{_NUMBER}\s*(ms|s|m|h|d)\s*", re.IGNORECASE)
_DURATION = re.compile(rf"\s*(?:{_NUMBER}\s*(?:ms|s|m|h|d)\s*)+", re.IGNORECASE)


def show_value(value: object) -> str:
    """Render a config value the way the user wrote it in YAML: ``"lots"``, ``5``, ``true``."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and not math.isfinite(value):
        return repr(value)
    if isinstance(value, int) and value.bit_length() > 200:  # str() refuses over 4300 digits
        return f"an integer of {int(value.bit_length() * math.log10(2)) + 1} digits"
    try:
        text = json.dumps(value, ensure_ascii=False, default=repr)
    except (TypeError, ValueError, RecursionError):  # keys JSON cannot have, a huge int inside
        try:
            text = repr(value)
        except (ValueError, RecursionError):
            text = f"a {type(value).__name__}"
    text = _UNPRINTABLE.sub(lambda match: f"\\u{ord(match.group()):04x}", text)
    return text if len(text) <= _SHOW_MAX else text[: _SHOW_MAX - 3] + "..."


def _is_number(value: object) -> bool:
    """An int or float, but not a bool (``True`` is an int to Python, not to a user)."""
    return isinstance(value, int | float) and not isinstance(value, bool)


def _split(value: str) -> tuple[str, str] | None:
    """``"1.5 GiB"`` -> ``("1.5", "gib")``; None when the text is not a number and a unit."""
    match = _NUMBER_UNIT.fullmatch(value)
    if match is None:
        return None
    return match.group(1), match.group(2).lower()


def parse_duration(value: object) -> float:
    """A duration in seconds from a number of seconds or a string such as ``"250ms"``, ``"7d"``.

    A string may join parts (``"1h30m"``, ``"1m30s"``); a bare number in a string (``"30"``) is
    seconds. Negative, infinite and NaN values are refused, and so is anything longer than
    :data:`MAX_DURATION`.
    """
    seconds = math.nan
    if _is_number(value):
        seconds = _float(value)
    elif isinstance(value, str):
        parts = _split(value)
        if parts is not None and parts[1] in ("", *_DURATION_UNITS):
            seconds = _seconds(*parts)
        elif _DURATION.fullmatch(value):
            seconds = sum(_seconds(n, u.lower()) for n, u in _DURATION_PART.findall(value))
    if seconds > MAX_DURATION:
        raise ValueError(
            f"expected a duration of at most {MAX_DURATION_TEXT}, got {show_value(value)}"
        )
    if seconds >= 0:  # False for NaN
        return seconds
    raise ValueError(f"expected {DURATION_HINT}, got {show_value(value)}")


def _float(value: object) -> float:
    """An int or float as a float; an int too big for one is infinity (a float would raise)."""
    try:
        return float(value)  # type: ignore[arg-type]
    except OverflowError:
        return math.inf


def _seconds(number: str, unit: str) -> float:
    # Dividing for "ms" keeps "250ms" exactly 0.25, the float nearest to 250/1000.
    if unit == "ms":
        return float(number) / 1000
    return float(number) * _DURATION_UNITS[unit or "s"]


def parse_size(value: object) -> int:
    """A size in bytes from a whole number of bytes or a string such as ``"256MiB"``.

    Units are binary and case-insensitive (``B``, ``KiB``, ``MiB``, ``GiB``, ``TiB``); a fraction
    (``"1.5GiB"``) is rounded to whole bytes. At most :data:`MAX_SIZE`.
    """
    size = math.nan
    if _is_number(value):
        number = _float(value)
        if not math.isfinite(number) or number == int(number):
            size = number
    elif isinstance(value, str):
        parts = _split(value)
        if parts is not None:
            number_text, unit = parts
            unit = unit or "b"
            if unit in _SIZE_UNITS:
                size = float(number_text) * _SIZE_UNITS[unit]
    if size > MAX_SIZE:
        raise ValueError(
            f"expected a size of at most {format_size(MAX_SIZE)}, got {show_value(value)}"
        )
    if size >= 0:  # False for NaN
        return int(value) if _is_number(value) else round(size)  # type: ignore[call-overload]
    raise ValueError(f"expected {SIZE_HINT}, got {show_value(value)}")


def format_duration(seconds: float) -> str:
    """A short human form that :func:`parse_duration` reads back exactly.

    ``30.0`` -> ``"30s"``, ``0.25`` -> ``"250ms"``, ``300`` -> ``"5m"``, ``5400`` -> ``"1h30m"``,
    ``3725`` -> ``"1h2m5s"``, ``1.5`` -> ``"1.5s"``, ``0`` -> ``"0s"``.
    """
    if not math.isfinite(seconds):
        raise ValueError(f"expected a finite number of seconds, got {seconds!r}")
    if seconds == int(seconds):
        hours, rest = divmod(int(seconds), 3600)
        minutes, secs = divmod(rest, 60)
        parts = [f"{n}{unit}" for n, unit in ((hours, "h"), (minutes, "m"), (secs, "s")) if n]
        return "".join(parts) or "0s"
    millis = round(seconds * 1000)
    if seconds < 1 and millis / 1000 == seconds:
        return f"{millis}ms"
    # Positional notation from the shortest exact repr: 1e-07 -> "0.0000001s", never "1e-07s".
    return f"{Decimal(repr(seconds)):f}s"


def format_size(size: int) -> str:
    """The largest binary unit that divides ``size`` exactly: ``268435456`` -> ``"256MiB"``.

    ``1536`` -> ``"1536B"`` (not ``"1.5KiB"``), ``0`` -> ``"0B"``.
    """
    for unit in ("tib", "gib", "mib", "kib"):
        factor = _SIZE_UNITS[unit]
        if size and size % factor == 0:
            return f"{size // factor}{_SIZE_NAMES[unit]}"
    return f"{size}B"


def parse_address(text: str, default_port: int | None = DEFAULT_PORT) -> tuple[str, int]:
    """``"HOST:PORT"`` -> ``(host, port)``; IPv6 as ``[::1]:4730`` or bare ``::1`` (default port).

    ``default_port`` None makes the port required. Raises ValueError.
    """
    text = text.strip()
    if text.startswith("["):
        host, bracket, rest = text[1:].partition("]")
        has_port, port_text = rest.startswith(":"), rest[1:]
        valid = bool(bracket) and (has_port or not rest)
    elif text.count(":") > 1:
        host, has_port, port_text, valid = text, False, "", True
    else:
        host, colon, port_text = text.partition(":")
        has_port, valid = bool(colon), True
    if valid and host and not _is_host(host):
        raise ValueError(f"not a valid host name or address: {show_value(host)}")
    if valid and host and not has_port and default_port is not None:
        return host, default_port
    if valid and host and _is_port(port_text):
        return host, int(port_text)
    raise ValueError(f'expected "HOST:PORT", got {show_value(text)}')


def _is_host(host: str) -> bool:
    """An IP address, or a DNS name of at most 253 characters in labels of 1 to 63 letters,
    digits, hyphens and underscores (what getaddrinfo can be asked without an encoding error)."""
    try:
        ipaddress.ip_address(host)
        return True
    except ValueError:
        pass
    name = host[:-1] if host.endswith(".") else host
    if not name or len(name) > 253:
        return False
    return all(
        0 < len(label) <= 63
        and label.isascii()
        and label.replace("-", "").replace("_", "").isalnum()
        for label in name.split(".")
    )


def _is_port(text: str) -> bool:
    """1 to 65535 in ASCII digits (``int()`` would also take "٤٧٣٠" and 5000 zeros)."""
    return text.isascii() and text.isdigit() and len(text) <= 5 and 0 < int(text) < 65536


def format_address(host: str, port: int) -> str:
    """``("::1", 4730)`` -> ``"[::1]:4730"``; ``("localhost", 4730)`` -> ``"localhost:4730"``."""
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def is_loopback(host: str) -> bool:
    """127.x.x.x, ::1 or localhost."""
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
