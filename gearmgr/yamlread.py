"""Reading a YAML document within bounds, with the line of every mapping key.

A config is a few dozen lines; a hostile or broken one must fail fast and in one line, never hang,
exhaust memory or raise something other than :class:`YAMLProblem`. Before anything is built, the
event stream (libyaml's parser when PyYAML has it) is checked in one pass without recursion:

* nesting at most :data:`MAX_DEPTH` collections deep (Python's composer recurses per level);
* at most :data:`MAX_VALUES` values, counting each use of an alias as a copy of what it names,
  so an "alias bomb" (a kilobyte that expands to billions of values) stops at once;
* integers of at most :data:`MAX_INT_DIGITS` digits (Python refuses to convert more than 4300,
  and no setting needs more than a few);
* mapping keys that are text (``1:``, ``on:`` or ``[a]:`` as a key is an error);
* no control characters (NUL, newlines, escapes...) or lone surrogates in any string.

Only then is the document composed and built, which the bounds keep short.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

import yaml

from gearmgr.units import show_value

MAX_DEPTH = 20  # nested lists/mappings; a config needs 4 (functions.NAME.key: [list])
MAX_VALUES = 50_000  # scalars and collections, with aliases expanded
MAX_INT_DIGITS = 20

KeyPath = tuple[str, ...]

# libyaml's parser when PyYAML was built with it: about 20 times faster than the pure-Python one.
_LOADER: Any = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
_RESOLVER = yaml.resolver.Resolver()
_STR = "tag:yaml.org,2002:str"
_INT = "tag:yaml.org,2002:int"
_MERGE = "tag:yaml.org,2002:merge"
# Unicode's control characters (C0, DEL, C1) and lone surrogates: never in a name or a path.
_KINDS = {
    "int": "a number",
    "float": "a number",
    "bool": "a boolean",
    "null": "null",
    "timestamp": "a date",
}
_FORBIDDEN = re.compile("[\x00-\x1f\x7f-\x9f\ud800-\udfff]")


class YAMLProblem(Exception):
    """Why a text is refused: ``problem`` with the ``line``, ``column`` and ``key`` it concerns
    (1-based; None when unknown)."""

    def __init__(
        self,
        problem: str,
        line: int | None = None,
        column: int | None = None,
        key: str | None = None,
    ) -> None:
        super().__init__(problem)
        self.problem = problem
        self.line = line
        self.column = column
        self.key = key


def read_yaml(text: str) -> tuple[Any, dict[KeyPath, int]]:
    """The document in ``text`` and the line of every mapping key, by key path.

    Raises :class:`YAMLProblem` for bad YAML and for anything past the bounds above.
    """
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise YAMLProblem(f"not UTF-8 text: {exc.reason} at character {exc.start}") from None
    try:
        check_bounds(text)
        loader = type("Loader", (_MarkedConstructor, _LOADER), {})(text)
        try:
            node = loader.get_single_node()
            if node is None:
                return None, {}
            lines: dict[KeyPath, int] = {(): node.start_mark.line + 1}
            _record_lines(node, (), lines)
            return loader.construct_document(node), lines
        finally:
            loader.dispose()
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line, column = (mark.line + 1, mark.column + 1) if mark else (None, None)
        what = ", ".join(part for part in (exc.context, exc.problem) if part)
        raise YAMLProblem(f"invalid YAML: {what}", line, column) from None
    except yaml.YAMLError as exc:
        raise YAMLProblem(f"invalid YAML: {exc}") from None


class _MarkedConstructor:
    """A constructor whose own errors (``!!int "x"``, ``!!timestamp 2001-13-01``, ``!!int ``:
    ValueError, IndexError and the like) become YAML errors with the node's line and column."""

    def construct_object(self, node: yaml.Node, deep: bool = False) -> Any:
        try:
            return super().construct_object(node, deep)  # type: ignore[misc]
        except yaml.YAMLError:
            raise
        except Exception as exc:  # PyYAML's constructors trust their text: IndexError, ...
            what = f"cannot read {show_value(node.value)} as {node.tag}: {exc}"
            raise yaml.constructor.ConstructorError(None, None, what, node.start_mark) from None


def _record_lines(node: yaml.Node, path: KeyPath, lines: dict[KeyPath, int]) -> None:
    """Walk mappings, noting each key's line; a key given twice is an error, not "last wins".

    Recursion is bounded by :data:`MAX_DEPTH` and the walk by :data:`MAX_VALUES`."""
    if not isinstance(node, yaml.MappingNode):
        return
    for key_node, value_node in node.value:
        if not isinstance(key_node, yaml.ScalarNode) or key_node.tag == _MERGE:
            continue
        key_path = (*path, key_node.value)
        line = key_node.start_mark.line + 1
        if key_path in lines:
            where = ".".join(key_path)
            raise YAMLProblem(f"{where} is given twice (first on line {lines[key_path]})", line)
        lines[key_path] = line
        _record_lines(value_node, key_path, lines)


# --- the bounds, checked on the event stream --------------------------------------------------


@dataclass
class _Open:
    """A list or mapping whose end has not been seen yet."""

    path: KeyPath
    mapping: bool
    start: int  # values counted before it began
    anchor: str | None
    index: int = 0  # a list: the next item's index; a mapping: even for a key, odd for a value
    key: str = ""  # a mapping: the key whose value comes next


def _path_of_next(parent: _Open | None) -> KeyPath:
    """The key path of the node that comes next in ``parent`` (a key names its mapping)."""
    if parent is None:
        return ()
    if not parent.mapping:
        return (*parent.path, str(parent.index))
    return parent.path if parent.index % 2 == 0 else (*parent.path, parent.key)


def _fail(problem: str, event: yaml.Event, parent: _Open | None) -> YAMLProblem:
    """The problem with the node ``event`` begins, which comes next in ``parent``."""
    line = event.start_mark.line + 1 if event.start_mark is not None else None
    return YAMLProblem(problem, line, None, ".".join(_path_of_next(parent)) or None)


def _check_scalar(event: yaml.ScalarEvent, parent: _Open | None, is_key: bool) -> str:
    """The scalar's tag, once its text is known to be within bounds."""
    tag = event.tag
    if tag is None or tag == "!":
        tag = _RESOLVER.resolve(yaml.ScalarNode, event.value, event.implicit)
    value = event.value
    if is_key and tag not in (_STR, _MERGE):
        kind = _KINDS.get(tag.rsplit(":", 1)[-1], tag)
        given = f"{show_value(value)[1:-1] or 'null'}, which YAML reads as {kind}"
        raise _fail(f"expected a key name (text), got {given} (quote it)", event, parent)
    if tag == _INT:
        digits = sum(char.isdigit() for char in value)
        if digits > MAX_INT_DIGITS:
            given = f"{value[:12]}... ({digits} digits)"
            raise _fail(
                f"expected an integer of at most {MAX_INT_DIGITS} digits, got {given}",
                event,
                parent,
            )
    elif tag == _STR and _FORBIDDEN.search(value):
        raise _fail(
            f"expected text without control characters, got {show_value(value)}", event, parent
        )
    return tag


def check_bounds(text: str) -> None:
    """Raise :class:`YAMLProblem` if ``text`` goes past a bound; bad syntax raises yaml's errors.

    One pass over the parser's events, in constant stack depth: every value is counted once
    where it is written and once more for every alias that repeats it.
    """
    stack: list[_Open] = []
    anchors: dict[str, int] = {}  # anchor -> how many values it stands for
    total = 0
    for event in yaml.parse(text, Loader=_LOADER):
        if isinstance(event, yaml.CollectionEndEvent):
            done = stack.pop()
            if done.anchor is not None:
                anchors[done.anchor] = total - done.start
            if stack:
                stack[-1].index += 1
            continue
        if not isinstance(event, yaml.NodeEvent):
            continue  # stream and document start and end
        parent = stack[-1] if stack else None
        is_key = parent is not None and parent.mapping and parent.index % 2 == 0
        if isinstance(event, yaml.AliasEvent):
            if is_key:
                raise _fail(
                    f"expected a key name (text), got the alias *{event.anchor}", event, parent
                )
            if any(frame.anchor == event.anchor for frame in stack):
                problem = f"the alias *{event.anchor} is inside the value it names (a loop)"
                raise _fail(problem, event, parent)
            total += anchors.get(event.anchor or "", 1)  # an unknown one: the composer says so
        elif isinstance(event, yaml.ScalarEvent):
            tag = _check_scalar(event, parent, is_key)
            if is_key and parent is not None:
                parent.key = event.value if tag == _STR else "<<"
            total += 1
            if event.anchor is not None:
                anchors[event.anchor] = 1
        else:  # the start of a list or a mapping
            if is_key:
                raise _fail("expected a key name (text), got a list or mapping", event, parent)
            if len(stack) >= MAX_DEPTH:
                problem = f"expected at most {MAX_DEPTH} nested lists or mappings, got more"
                raise _fail(problem, event, parent)
            total += 1
            mapping = isinstance(event, yaml.MappingStartEvent)
            stack.append(_Open(_path_of_next(parent), mapping, total - 1, event.anchor))
        if total > MAX_VALUES:
            problem = (
                f"expected at most {MAX_VALUES} values (each use of an alias counts as a copy"
                " of what it names), got more"
            )
            raise _fail(problem, event, parent)
        if parent is not None and not isinstance(
            event, yaml.SequenceStartEvent | yaml.MappingStartEvent
        ):
            parent.index += 1
