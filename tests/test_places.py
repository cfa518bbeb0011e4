"""The session of a process with several places, sans-IO: GRABs never ahead of capacity,
grabbing after a NOOP until NO_JOB or full, PRE_SLEEP once the last GRAB is answered."""

from __future__ import annotations

from gearmgr.wire.places import Places, PlacesSession
from gearmgr.wire.protocol import REQ, RES, Decoder, PacketType, encode
from gearmgr.wire.session import Drop, Run, Send

T = PacketType


def res(ptype: int, *args: bytes) -> bytes:
    return encode(ptype, *args, magic=RES)


def types(data: bytes) -> list[int]:
    return [p.type for p in Decoder(expect=REQ).feed(data)]


def job(n: int, function: bytes = b"f") -> bytes:
    return res(T.JOB_ASSIGN_UNIQ, f"H:{n}".encode(), function, b"u", b"data")


def up(address: str = "127.0.0.1:4730", now: float = 100.0) -> PlacesSession:
    session = PlacesSession(address, ["f"], "me", jitter=lambda a, b: 1.0)
    session.connecting()
    first = session.connected(now)
    assert first is not None and T.GRAB_JOB_UNIQ not in types(first.data)
    assert types(first.data) == [T.SET_CLIENT_ID, T.CAN_DO]
    return session


def grabs(out: list[tuple[PlacesSession, bytes]]) -> list[int]:
    return [types(data).count(T.GRAB_JOB_UNIQ) for _, data in out]


def test_a_new_connection_grabs_one_job_then_doubles_its_window_with_each_job():
    session = up()
    places = Places(64, [session])
    assert grabs(places.fill()) == [1]
    assert places.fill() == []  # the window is one GRAB until a job comes
    [run] = session.feed(job(1), 101.0)
    assert isinstance(run, Run) and run.handle == b"H:1"
    places.take()
    assert grabs(places.fill()) == [2]
    actions = session.feed(job(2) + job(3), 101.0)
    assert [type(a) for a in actions] == [Run, Run]
    places.take()
    places.take()
    assert grabs(places.fill()) == [8]  # window 8 GRABs in flight, none out now
    assert places.running + places.in_flight() <= 64


def test_grabs_never_go_ahead_of_capacity():
    session = up()
    places = Places(3, [session])
    session.window = 100
    assert grabs(places.fill()) == [3]
    assert places.fill() == []
    for n in range(3):
        session.feed(job(n), 101.0)
        places.take()
    assert places.free() == 0 and places.fill() == []
    places.release()  # one job done: one place, one GRAB
    assert grabs(places.fill(first=session)) == [1]
    assert places.running + places.in_flight() == 3


def test_no_job_stops_grabbing_and_sleeps_once_every_grab_is_answered():
    session = up()
    places = Places(8, [session])
    session.window = 4
    assert grabs(places.fill()) == [4]
    assert session.feed(res(T.NO_JOB), 101.0) == []  # three GRABs still out: no PRE_SLEEP yet
    assert places.fill() == []  # starved: no more GRABs until a NOOP
    actions = session.feed(job(1) + res(T.NO_JOB), 101.0)
    assert [type(a) for a in actions] == [Run]
    [sleep] = session.feed(res(T.NO_JOB), 101.0)
    assert types(sleep.data) == [T.PRE_SLEEP] and session.sleeping and session.grabs == 0
    places.take()
    assert places.fill() == []
    # the NOOP wakes it: one GRAB, not a GRAB per free place
    assert session.feed(res(T.NOOP), 102.0) == []
    assert grabs(places.fill()) == [1]


def test_pre_sleep_follows_a_job_that_answered_the_last_grab():
    session = up()
    session.window = 2
    Places(8, [session]).fill()
    session.feed(res(T.NO_JOB), 101.0)
    actions = session.feed(job(1), 101.0)
    assert isinstance(actions[0], Run)
    assert isinstance(actions[1], Send) and types(actions[1].data) == [T.PRE_SLEEP]


def test_a_job_failed_back_frees_its_place_without_a_grab():
    session = up()
    places = Places(2, [session])
    places.fill()
    [reply] = session.feed(job(1, function=b"other"), 101.0)
    assert isinstance(reply, Send)
    assert types(reply.data) == [T.WORK_WARNING, T.WORK_FAIL]
    assert session.grabs == 0 and places.free() == 2


def test_a_lost_connection_forgets_its_grabs_and_places_go_to_the_other_server():
    a, b = up("127.0.0.1:1"), up("127.0.0.1:2")
    places = Places(4, [a, b])
    a.window = b.window = 4
    out = places.fill(first=a)
    assert [(s is a, n) for (s, _), n in zip(out, grabs(out), strict=True)] == [(True, 4)]
    [drop] = a.feed(res(T.ERROR, b"x", b"y"), 101.0)
    assert isinstance(drop, Drop) and a.grabs == 0
    out = places.fill()
    assert [(s is b, n) for (s, _), n in zip(out, grabs(out), strict=True)] == [(True, 4)]


def test_a_stopping_process_registers_nothing_and_fills_nothing():
    session = PlacesSession("h:1", ["f"], "me")
    assert session.connected(1.0, grab=False) is None
