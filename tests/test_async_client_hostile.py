"""AsyncClient against a job server that answers a request with a packet of the wrong type
(a scripted fake server on a free loopback port; see tests/test_hostile_server.py for the
worker's side). The answer is a clear error naming the server, soon: never a hang, never a
traceback from inside the client."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import pytest

from gearmgr import AsyncClient, ServerUnavailable
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
