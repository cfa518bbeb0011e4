"""``gearmgr top`` with function names a terminal shows two cells wide (CJK, emoji) or with
combining marks: every line of the frame is exactly the terminal's width in cells, and each
column starts at the same cell in every row, as the header says (``cli/cells.py``)."""

from __future__ import annotations

import pytest

from gearmgr.cli import cells
from gearmgr.cli import topframe as tf
from gearmgr.ops.top import TopFeed
from tests.test_top_unit import proc, snap, stats

NAMES = ("报告_生成", "😀job", "cafe\u0301", "plain")


def test_cells_counts_what_a_terminal_shows() -> None:
    assert cells.width("报告_生成") == 9
    assert cells.width("😀job") == 5
    assert cells.width("cafe\u0301") == 4  # e and its combining acute: one cell
    assert cells.width("plain") == 5
    assert cells.fit("报告_生成", 4) == "报告"
    assert cells.fit("报告_生成", 3) == "报 "  # a wide character is never cut in half
    assert cells.clip("报告_生成", 6) == "报告_~"
    assert cells.clip("报告_生成", 5) == "报告~"
    assert cells.cell("😀job", 8) == "😀job   "
    assert cells.fit("cafe\u0301!", 4) == "cafe\u0301"  # the mark stays with its letter
    for name in NAMES:
        for n in range(0, 12):
            assert cells.width(cells.fit(name, n)) == n
            assert cells.width(cells.cell(name, n)) == n


def start(line: str, token: str) -> int:
    """The cell where ``token`` starts in ``line``."""
    return cells.width(line[: line.index(token)])


def frame_answer() -> dict:
    functions = {name: stats(3) for name in NAMES}
    procs = tuple(proc(100 + i, "idle", i, (name,)) for i, name in enumerate(NAMES))
    return TopFeed().answer(snap(functions, procs), 1.0, 5.0)


@pytest.mark.parametrize("width, height", [(80, 24), (140, 40), (100, 30)])
def test_double_width_names_keep_every_line_and_column_aligned(width: int, height: int) -> None:
    answer = frame_answer()
    lines = [t for t, _ in tf.render(answer, width, height, tf.View(selected="报告_生成"))]
    assert len(lines) == height and all(cells.width(t) == width for t in lines)
    head = next(t for t in lines if "FUNCTION" in t and "B/I/S" in t)
    rows = [t for t in lines if t[2:].startswith(NAMES)]
    assert len(rows) == len(NAMES)
    for row in rows:  # the counts (right-aligned, as is their heading) in the same cells
        assert start(row, "0/1/0") == start(head, "B/I/S")
    process_head = next(t for t in lines if "PID" in t and "STATE" in t)
    for name in NAMES:
        row = next(t for t in lines if name in t and "idle" in t)
        assert start(row, "idle") == start(process_head, "STATE")


def test_once_aligns_double_width_names_too() -> None:
    text = tf.plain(frame_answer(), 80)
    lines = text.splitlines()
    assert all(cells.width(t) <= 80 for t in lines)
    head = next(t for t in lines if "B/I/S" in t)
    for name in NAMES:
        row = next(t for t in lines if t[2:].startswith(name))
        assert start(row, "0/1/0") == start(head, "B/I/S")


def test_a_long_double_width_name_is_cut_with_a_tilde_within_its_column() -> None:
    name = "报告" * 30
    answer = TopFeed().answer(snap({name: stats(1)}), 1.0, 5.0)
    lines = [t for t, _ in tf.render(answer, 80, 24, tf.View(selected=name))]
    row = next(t for t in lines if t.startswith("> 报告"))
    head = next(t for t in lines if "B/I/S" in t)
    assert "~" in row and cells.width(row) == 80
    assert start(row, "0/0/0") == start(head, "B/I/S")
