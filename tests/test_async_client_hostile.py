"""AsyncClient against a job server that answers a request with a packet of the wrong type
(a scripted fake server on a free loopback port; see tests/test_hostile_server.py for the
worker's side), or floods a job with WORK_WARNINGs (Client too). The answer is a clear error
naming the server, soon: never a hang, never a traceback from inside the client."""

from __future__ import annotations

import asyncio
import socket
import threading
from collections.abc import Callable

import pytest

from gearmgr import AsyncClient, JobFailed, ServerUnavailable
from gearmgr.wire.client import MAX_WARNINGS, Client
from gearmgr.wire.protocol import REQ, RES, Decoder, Packet, encode
from gearmgr.wire.protocol import PacketType as T

#: What the fake server sends back for each request it reads (None: no answer).
Answer = Callable[[Packet], bytes | None]


def hostile(answer: Answer) -> Answer:
    """OPTION_REQ is answered as gearmand does; every other request by ``answer``."""

    def reply(packet: Packet) -> bytes | None:
        if packet.type == T.OPTION_REQ:
            return encode(T.OPTION_RES, packet.args[0], magic=RES)
        return answer(packet)

    return reply


async def run_against(answer: Answer, call: Callable[[AsyncClient], object]) -> object:
    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        decoder = Decoder(expect=REQ)
        while data := await reader.read(65536):
            for packet in decoder.feed(data):
                out = answer(packet)
                if out is not None:
                    writer.write(out)
        writer.close()

    server = await asyncio.start_server(serve, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    client = AsyncClient([f"127.0.0.1:{port}"], connect_timeout=5)
    try:
        # the bound of this test, not the client's: a client that hangs fails here
        return await asyncio.wait_for(call(client), 20)  # type: ignore[arg-type]
    finally:
        await client.close()
        server.close()


STATUS = encode(T.STATUS_RES, b"H:x", b"1", b"0", b"0", b"0", magic=RES)
CREATED = encode(T.JOB_CREATED, b"H:x", magic=RES)


@pytest.mark.parametrize(
    "wrong", [STATUS, encode(T.ECHO_RES, b"hi", magic=RES)], ids=["STATUS_RES", "ECHO_RES"]
)
def test_a_submit_answered_with_the_wrong_packet_fails_naming_the_server(wrong: bytes):
    with pytest.raises(ServerUnavailable) as caught:
        asyncio.run(run_against(hostile(lambda p: wrong), lambda c: c.submit("f", b"x")))
    assert "expected JOB_CREATED" in str(caught.value) and "127.0.0.1:" in str(caught.value)


def test_a_status_answered_with_the_wrong_packet_fails_naming_the_server():
    with pytest.raises(ServerUnavailable) as caught:
        asyncio.run(run_against(hostile(lambda p: CREATED), lambda c: c.status("H:x")))
    assert "expected STATUS_RES" in str(caught.value) and "127.0.0.1:" in str(caught.value)


def test_a_server_that_answers_rightly_still_serves():
    def answer(packet: Packet) -> bytes | None:
        if packet.type == T.GET_STATUS:
            return STATUS
        return CREATED + encode(T.WORK_COMPLETE, b"H:x", b"done", magic=RES)

    async def both(client: AsyncClient) -> tuple[object, object]:
        return await client.submit("f", b"x"), await client.status("H:x")

    result, status = asyncio.run(run_against(hostile(answer), both))  # type: ignore[misc]
    assert result == b"done" and status.known


FLOOD = 10_000  # WORK_WARNINGs before the WORK_FAIL


def warned(packet: Packet) -> bytes | None:
    """A submit answered with JOB_CREATED, a flood of WORK_WARNINGs, then WORK_FAIL."""
    if packet.type != T.SUBMIT_JOB:
        return None
    flood = b"".join(encode(T.WORK_WARNING, b"H:x", b"w%d" % n, magic=RES) for n in range(FLOOD))
    return CREATED + flood + encode(T.WORK_FAIL, b"H:x", magic=RES)


def test_a_flood_of_warnings_keeps_the_last_ones_in_job_failed():
    with pytest.raises(JobFailed) as caught:
        asyncio.run(run_against(hostile(warned), lambda c: c.submit("f", b"x")))
    assert len(caught.value.warnings) == MAX_WARNINGS
    assert caught.value.warnings[-1] == f"w{FLOOD - 1}"
    assert len(str(caught.value)) < 20 * MAX_WARNINGS


def test_the_client_keeps_the_last_warnings_too():
    listener = socket.create_server(("127.0.0.1", 0))

    def serve() -> None:
        conn, _ = listener.accept()
        decoder = Decoder(expect=REQ)
        with conn:
            while data := conn.recv(65536):
                for packet in decoder.feed(data):
                    out = hostile(warned)(packet)
                    if out is not None:
                        conn.sendall(out)

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    port = listener.getsockname()[1]
    try:
        with Client([f"127.0.0.1:{port}"], timeout=20) as client, pytest.raises(JobFailed) as c:
            client.submit("f", b"x")
    finally:
        listener.close()
    thread.join(10)
    assert len(c.value.warnings) == MAX_WARNINGS and c.value.warnings[-1] == f"w{FLOOD - 1}"


def test_a_callback_that_raises_fails_its_own_submit_only():
    # Two submits on one connection; the first one's on_data raises: that submit raises it
    # (as Client.submit would), the other one gets its result, the connection stays up.
    def answer(packet: Packet) -> bytes | None:
        if packet.type != T.SUBMIT_JOB:
            return None
        handle = b"H:" + packet.args[2]
        return (
            encode(T.JOB_CREATED, handle, magic=RES)
            + encode(T.WORK_DATA, handle, b"chunk", magic=RES)
            + encode(T.WORK_COMPLETE, handle, b"done " + packet.args[2], magic=RES)
        )

    def broken(chunk: bytes) -> None:
        raise ValueError("the callback is broken")

    async def both(client: AsyncClient) -> list[object]:
        first = client.submit("f", b"a", on_data=broken)
        second = client.submit("f", b"b", on_data=lambda chunk: None)
        return await asyncio.gather(first, second, return_exceptions=True)

    first, second = asyncio.run(run_against(hostile(answer), both))  # type: ignore[misc]
    assert isinstance(first, ValueError) and str(first) == "the callback is broken"
    assert second == b"done b"
