"""Unit tests: the process plan (GearmanManager's formula)."""

from __future__ import annotations

from gearmgr.config import config_from_dict
from gearmgr.supervisor.plan import make_plan

FUNCS = ["a", "b", "c"]


def keys(config: dict, functions=FUNCS) -> list[tuple[str, tuple[str, ...]]]:
    return [(p.key, p.functions) for p in make_plan(config_from_dict(config), functions)]


def test_default_is_one_dedicated_process_per_function():
    assert keys({}) == [("a#0", ("a",)), ("b#0", ("b",)), ("c#0", ("c",))]


def test_count_processes_register_every_function_then_dedicated_ones():
    plan = keys({"count": 2})
    assert plan[:2] == [("all#0", ("a", "b", "c")), ("all#1", ("a", "b", "c"))]
    assert plan[2:] == [("a#0", ("a",)), ("b#0", ("b",)), ("c#0", ("c",))]


def test_count_without_dedicated_processes_as_gearmanmanager_does():
    assert keys({"count": 3, "dedicated_count": 0}) == [
        ("all#0", ("a", "b", "c")),
        ("all#1", ("a", "b", "c")),
        ("all#2", ("a", "b", "c")),
    ]


def test_dedicated_only_stays_out_of_the_shared_processes():
    plan = keys({"count": 1, "functions": {"b": {"dedicated_only": True, "dedicated_count": 2}}})
    assert plan == [
        ("all#0", ("a", "c")),
        ("a#0", ("a",)),
        ("b#0", ("b",)),
        ("b#1", ("b",)),
        ("c#0", ("c",)),
    ]


def test_per_function_limits_and_shared_process_limits():
    config = config_from_dict(
        {"count": 1, "max_jobs": 10, "functions": {"a": {"max_jobs": 5, "timeout": "3s"}}}
    )
    plan = {p.key: p for p in make_plan(config, FUNCS)}
    assert plan["a#0"].limits.max_jobs == 5
    assert plan["b#0"].limits.max_jobs == 10
    assert plan["all#0"].limits.max_jobs == 10  # shared processes use the top-level limits
    assert dict(plan["all#0"].timeouts) == {"a": 3.0, "b": 0.0, "c": 0.0}  # timeouts per function


def test_no_functions_no_processes():
    assert keys({"count": 4}, functions=[]) == []
