"""Slow clients cannot hold connections: a request's head and body must arrive in time.

A real `tamma-sync serve` with a 1 s request timeout, and raw sockets that send nothing,
send a head or a body a little at a time, or wait between keep-alive requests. Responses
are not limited: an SSE stream outlives the timeout many times over.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Iterator
from pathlib import Path

import httpx

from tests.support.process import running_server

TIMEOUT_SECONDS = 1.0
#: How long a slow connection may stay open at most: the timeout and some slack.
CUT_WITHIN = TIMEOUT_SECONDS + 2.5
#: Seconds between the pieces a slow client sends.
TRICKLE_SECONDS = 0.2
HEAD = b"GET /healthz HTTP/1.1\r\nHost: test\r\n"


@contextlib.contextmanager
def _server(tmp_path: Path) -> Iterator[int]:
    env = {
        "TAMMA_SYNC_DATA_DIR": str(tmp_path),
        "TAMMA_SYNC_REQUEST_TIMEOUT_SECONDS": str(TIMEOUT_SECONDS),
        "TAMMA_SYNC_SSE_HEARTBEAT_SECONDS": "0.2",
    }
    with running_server(env, tmp_path) as (url, _, _):
        yield httpx.URL(url).port or 0


async def _trickle(writer: asyncio.StreamWriter, piece: bytes) -> None:
    with contextlib.suppress(ConnectionError):
        while not writer.is_closing():
            await asyncio.sleep(TRICKLE_SECONDS)
            writer.write(piece)
            await writer.drain()


async def _until_closed(reader: asyncio.StreamReader) -> bytes:
    """Everything the server sends until it closes the connection."""
    answer = b""
    with contextlib.suppress(ConnectionError):
        while chunk := await reader.read(65536):
            answer += chunk
    return answer


async def _slow_client(port: int, first: bytes, piece: bytes | None) -> tuple[bytes, float]:
    """Send `first`, then `piece` again and again (or nothing): what the server answered,
    and how long it kept the connection."""
    started = time.monotonic()
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    return await _slowly(reader, writer, first, piece, started)


async def _keep_alive_then_slow(port: int) -> tuple[bytes, float]:
    """One whole request and its answer, then the next request's head a piece at a time
    on the same connection."""
    started = time.monotonic()
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(HEAD + b"\r\n")
    head = await reader.readuntil(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200")
    length = next(
        int(line.partition(b":")[2])
        for line in head.split(b"\r\n")
        if line.lower().startswith(b"content-length:")
    )
    await reader.readexactly(length)
    return await _slowly(reader, writer, HEAD, b"X-Slow: 1\r\n", started)


async def _slowly(
    reader: asyncio.StreamReader,
    writer: asyncio.StreamWriter,
    first: bytes,
    piece: bytes | None,
    started: float,
) -> tuple[bytes, float]:
    """A connection still open after CUT_WITHIN fails. `started` is taken before the
    connection opened: the server's clock for it cannot have started earlier, however
    late this client gets to run."""
    writer.write(first)
    trickle = asyncio.create_task(_trickle(writer, piece)) if piece else None
    try:
        answer = await asyncio.wait_for(_until_closed(reader), CUT_WITHIN)
    finally:
        if trickle is not None:
            trickle.cancel()
        writer.close()
    return answer, time.monotonic() - started


async def _sse_stays_open(port: int, seconds: float) -> int:
    """Heartbeats an SSE stream delivered over `seconds`; fails if the server closed it."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(b"GET /api/events HTTP/1.1\r\nHost: test\r\n\r\n")
    received = b""
    deadline = time.monotonic() + seconds
    try:
        while (left := deadline - time.monotonic()) > 0:
            with contextlib.suppress(TimeoutError):
                chunk = await asyncio.wait_for(reader.read(65536), left)
                assert chunk, "the server closed the SSE stream"
                received += chunk
    finally:
        writer.close()
    assert received.startswith(b"HTTP/1.1 200")
    return received.count(b":heartbeat")


def _assert_cut(results: list[tuple[bytes, float]], *, answer: bytes) -> None:
    for received, seconds in results:
        assert received.startswith(answer), received[:200]
        assert TIMEOUT_SECONDS - 0.1 <= seconds <= CUT_WITHIN


def test_slow_request_heads_are_cut_but_streams_are_not(tmp_path: Path) -> None:
    async def scenario(port: int) -> None:
        sse = asyncio.create_task(_sse_stays_open(port, 4 * TIMEOUT_SECONDS))
        silent, slow, idle_then_slow = await asyncio.gather(
            asyncio.gather(*(_slow_client(port, b"", None) for _ in range(80))),
            asyncio.gather(*(_slow_client(port, HEAD, b"X-Slow: 1\r\n") for _ in range(80))),
            asyncio.gather(*(_keep_alive_then_slow(port) for _ in range(40))),
        )
        _assert_cut(silent, answer=b"")  # nothing came: nothing to answer
        assert all(received == b"" for received, _ in silent)
        _assert_cut(slow, answer=b"HTTP/1.1 408 Request Timeout\r\n")
        _assert_cut(idle_then_slow, answer=b"HTTP/1.1 408 Request Timeout\r\n")
        assert await sse >= 10
        async with httpx.AsyncClient() as client:
            assert (await client.get(f"http://127.0.0.1:{port}/healthz")).status_code == 200

    with _server(tmp_path) as port:
        asyncio.run(scenario(port))


def test_slow_request_bodies_are_cut_but_steady_uploads_are_not(tmp_path: Path) -> None:
    body = b'{"sourceId": "s", "padding": "' + b"x" * 60_000 + b'"}'
    head = (
        b"POST /api/sync/batch HTTP/1.1\r\nHost: test\r\nContent-Type: application/json\r\n"
        b"Content-Length: %d\r\n\r\n" % len(body)
    )

    async def steady_upload(port: int) -> tuple[bytes, float]:
        """The body in 10 pieces over about twice the timeout: 30 KB/s, above the least
        rate that earns more time."""
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        started = time.monotonic()
        writer.write(head)
        for offset in range(0, len(body), len(body) // 10 + 1):
            await asyncio.sleep(TIMEOUT_SECONDS / 5)
            writer.write(body[offset : offset + len(body) // 10 + 1])
        answer = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), CUT_WITHIN)
        writer.close()
        return answer, time.monotonic() - started

    async def scenario(port: int) -> None:
        steady = asyncio.create_task(steady_upload(port))
        slow = await asyncio.gather(*(_slow_client(port, head + b"{", b" ") for _ in range(100)))
        _assert_cut(slow, answer=b"HTTP/1.1 408 Request Timeout\r\n")
        assert all(received.endswith(b'came too slowly"}') for received, _ in slow)
        answer, seconds = await steady
        assert seconds > TIMEOUT_SECONDS * 1.5
        assert not answer.startswith(b"HTTP/1.1 408"), answer

    with _server(tmp_path) as port:
        asyncio.run(scenario(port))
