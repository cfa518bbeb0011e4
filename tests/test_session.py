"""The worker's protocol session, sans-IO: bytes in, actions and deadlines out (no socket)."""

from __future__ import annotations

import math

import pytest

from gearmgr.wire import session as s
from gearmgr.wire.protocol import REQ, RES, Decoder, PacketType, encode
from gearmgr.wire.session import Connect, Drop, Run, Send, ServerSession

T = PacketType


def res(ptype: int, *args: bytes) -> bytes:
    return encode(ptype, *args, magic=RES)


def sent(action: Send) -> list[tuple[int, tuple[bytes, ...]]]:
    return [(p.type, p.args) for p in Decoder(expect=REQ).feed(action.data)]


def up_session(now: float = 100.0) -> ServerSession:
    session = ServerSession("127.0.0.1:4730", ["rev", "echo"], "me", jitter=lambda a, b: 1.0)
    session.connecting()
    session.connected(now)
    return session


def test_a_new_connection_registers_every_function_and_grabs():
    session = ServerSession("[::1]:4731", ["rev", "echo"], "host:1", jitter=lambda a, b: 1.0)
    assert (session.host, session.port) == ("::1", 4731)
    first = session.connected(5.0)
    assert first is not None and first.answer
    assert sent(first) == [
        (T.SET_CLIENT_ID, (b"host:1",)),
        (T.CAN_DO, (b"echo",)),
        (T.CAN_DO, (b"rev",)),
        (T.GRAB_JOB_UNIQ, ()),
    ]
    assert session.state == s.UP


def test_a_process_that_is_stopping_registers_nothing_on_reconnect():
    session = ServerSession("h:1", ["f"], "me")
    assert session.connected(1.0, grab=False) is None


def test_no_job_then_noop_sleeps_then_grabs_again():
    session = up_session()
    [pre_sleep] = session.feed(res(T.NO_JOB), 101.0)
    assert sent(pre_sleep) == [(T.PRE_SLEEP, ())] and session.sleeping
    [grab] = session.feed(res(T.NOOP), 102.0)
    assert sent(grab) == [(T.GRAB_JOB_UNIQ, ())] and grab.answer and not session.sleeping


def test_a_noop_while_stopping_grabs_nothing():
    session = up_session()
    session.feed(res(T.NO_JOB), 101.0)
    assert session.feed(res(T.NOOP), 102.0, grab=False) == []


@pytest.mark.parametrize("ptype", [T.JOB_ASSIGN_UNIQ, T.JOB_ASSIGN, T.JOB_ASSIGN_ALL])
def test_every_kind_of_assignment_runs_the_job(ptype: int):
    args = {
        T.JOB_ASSIGN_UNIQ: (b"H:1", b"rev", b"u", b"abc"),
        T.JOB_ASSIGN: (b"H:1", b"rev", b"abc"),
        T.JOB_ASSIGN_ALL: (b"H:1", b"rev", b"u", b"r", b"abc"),
    }[ptype]
    [run] = up_session().feed(res(ptype, *args), 101.0)
    unique = b"" if ptype == T.JOB_ASSIGN else b"u"
    assert run == Run(b"H:1", "rev", unique, b"abc")


@pytest.mark.parametrize(
    ("handle", "function", "why"),
    [
        (b"H:1", b"nope", b"gearmgr: this process does not serve that function"),
        (b"H:1", b"\xff", b"gearmgr: this process does not serve that function"),
        (b"H:\xc3(", b"rev", b"gearmgr: its handle is not UTF-8"),
    ],
)
def test_a_job_with_bad_names_is_failed_back_and_the_next_one_grabbed(handle, function, why):
    session = up_session()
    [reply] = session.feed(res(T.JOB_ASSIGN_UNIQ, handle, function, b"u", b"x"), 101.0)
    assert sent(reply) == [
        (T.WORK_WARNING, (handle, why)),
        (T.WORK_FAIL, (handle,)),
        (T.GRAB_JOB_UNIQ, ()),
    ]
    assert session.state == s.UP


def test_a_utf8_handle_that_is_not_ascii_is_served():
    [run] = up_session().feed(res(T.JOB_ASSIGN_UNIQ, b"H:\xc3\xa9", b"rev", b"", b""), 101.0)
    assert type(run) is Run


def test_a_job_without_a_handle_drops_the_connection_and_schedules_a_reconnect():
    session = up_session()
    actions = session.feed(res(T.JOB_ASSIGN_UNIQ, b"", b"rev", b"u", b"x") + res(T.NOOP), 101.0)
    assert [type(a) for a in actions] == [Drop]  # what followed belonged to the dropped stream
    assert session.state == s.DOWN and session.deadline() == session.retry_at > 101.0


def test_an_error_packet_or_garbage_drops_the_connection():
    session = up_session()
    [drop] = session.feed(res(T.ERROR, b"E1", b"bad\nline"), 101.0)
    assert "ERROR E1" in drop.why and "\n" not in drop.why and session.state == s.DOWN
    session = up_session()
    [drop] = session.feed(b"\0REQ" + bytes(20), 101.0)
    assert drop.why.startswith("protocol error") and session.state == s.DOWN


def test_an_oversized_job_is_failed_without_holding_its_body(monkeypatch):
    monkeypatch.setattr(s, "MAX_JOB_PACKET", 1000)
    session = up_session()
    packet = res(T.JOB_ASSIGN_UNIQ, b"H:big", b"rev", b"u", b"y" * 5000)
    actions = []
    for i in range(0, len(packet), 700):
        actions += session.feed(packet[i : i + 700], 101.0)
        assert session.decoder._size < 1000
    [reply] = actions
    assert [p[0] for p in sent(reply)] == [T.WORK_WARNING, T.WORK_FAIL, T.GRAB_JOB_UNIQ]


def test_a_silent_connection_is_pinged_then_dropped_and_the_deadlines_say_when():
    session = up_session(now=100.0)
    assert session.deadline() == 100.0 + s.KEEPALIVE_IDLE
    assert session.tick(100.0 + s.KEEPALIVE_IDLE - 1) is None
    echo = session.tick(100.0 + s.KEEPALIVE_IDLE)
    assert type(echo) is Send and sent(echo) == [(T.ECHO_REQ, (b"gearmgr",))]
    assert session.deadline() == 100.0 + s.KEEPALIVE_IDLE + s.KEEPALIVE_WAIT
    drop = session.tick(session.deadline() + 0.001)
    assert type(drop) is Drop and session.state == s.DOWN
    assert type(session.tick(session.deadline())) is Connect


def test_an_answered_echo_keeps_the_connection():
    session = up_session(now=100.0)
    session.tick(100.0 + s.KEEPALIVE_IDLE)
    assert session.feed(res(T.ECHO_RES, b"gearmgr"), 131.0) == []
    assert session.echo_deadline == 0.0 and session.deadline() == 131.0 + s.KEEPALIVE_IDLE
    assert session.tick(131.0 + s.KEEPALIVE_WAIT + 1) is None


def test_a_connect_in_progress_has_no_deadline():
    session = ServerSession("h:1", ["f"], "me")
    session.connecting()
    assert session.deadline() == math.inf and session.tick(1e9) is None


def test_backoff_doubles_to_its_cap_and_resets_after_a_stable_connection():
    session = ServerSession("h:1", ["f"], "me", jitter=lambda a, b: 1.0)
    delays = [session.lost(0.0, "refused") for _ in range(12)]
    assert delays[:3] == pytest.approx([0.1, 0.2, 0.4])
    assert max(delays) == s.RECONNECT_MAX
    session.connected(50.0)
    assert session.lost(50.0 + s.STABLE_AFTER - 1, "closed") == pytest.approx(50.0 + 9 + 30)
    session.connected(100.0)
    assert session.lost(100.0 + s.STABLE_AFTER, "closed") == pytest.approx(110.1)


def test_repeated_failures_warn_once_a_minute(caplog):
    session = ServerSession("h:1", ["f"], "me")
    with caplog.at_level("DEBUG", logger="gearmgr.worker"):
        for i in range(5):
            session.lost(float(i), "refused")
        session.lost(s.WARN_INTERVAL + 1, "refused")
    warnings = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert len(warnings) == 2 and "(4 more in the last" in warnings[1]


def test_an_unexpected_packet_is_ignored_with_one_warning(caplog):
    session = up_session()
    with caplog.at_level("WARNING", logger="gearmgr.worker"):
        for _ in range(3):
            assert session.feed(res(T.STATUS_RES, b"H", b"1", b"0", b"0", b"1"), 101.0) == []
    assert len(caplog.records) == 1 and "STATUS_RES" in caplog.records[0].getMessage()
    assert session.state == s.UP
