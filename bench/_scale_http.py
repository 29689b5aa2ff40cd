"""A lean closed-loop HTTP/1.1 load generator, run as a process of its own.

`python -m bench._scale_http RESULT_FILE < spec.json` — the spec is one JSON object:
`{"host", "port", "paths": [...], "headers": {...}, "concurrency", "duration", "warmup",
"max_requests", "min_requests", "max_time", "timeout"}`. Each of `concurrency` workers keeps
one keep-alive connection and sends the next request as soon as the previous answer has been
read (closed loop), taking paths round-robin from the list, with `headers` on every request.
After `warmup` seconds (not counted; every worker then finishes its warm-up request, so none
is in flight when the window opens) it prints `MEASURE-START` and sends requests for
`duration` seconds, and on until `min_requests` were sent (so a slow endpoint still gets a
sample), but never more than `max_requests` nor for longer than `max_time`; it prints
`MEASURE-END` once every in-flight request has finished, then writes RESULT_FILE (JSON:
latencies in seconds, statuses, bytes as received, the measured window and the client's
own CPU seconds) and prints `RESULT`.

Raw asyncio streams on uvloop, no HTTP library: a request costs the client a few tens of
microseconds, so on a shared 2-core machine the client takes as little CPU from the
server as it can. The parent reads the markers to measure the server over exactly the
measured window.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import sys
import time
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

MEASURE_START = "MEASURE-START"
MEASURE_END = "MEASURE-END"
RESULT = "RESULT"


@dataclass(frozen=True)
class LoadSpec:
    host: str
    port: int
    paths: list[str]
    headers: dict[str, str] = field(default_factory=dict)
    concurrency: int = 16
    duration: float = 10.0
    warmup: float = 2.0
    max_requests: int | None = None
    min_requests: int = 0
    max_time: float = 180.0
    timeout: float = 300.0


@dataclass
class LoadResult:
    latencies: list[float] = field(default_factory=list)
    statuses: dict[str, int] = field(default_factory=dict)
    errors: list[str] = field(default_factory=list)
    bytes: int = 0
    elapsed: float = 0.0
    client_cpu: float = 0.0

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> LoadResult:
        return cls(**data)


class _Connection:
    def __init__(self, host: str, port: int, headers: dict[str, str]) -> None:
        self._host = host
        self._port = port
        self._headers = "".join(f"{name}: {value}\r\n" for name, value in headers.items())
        self._reader: asyncio.StreamReader | None = None
        self._writer: asyncio.StreamWriter | None = None

    async def get(self, path: str) -> tuple[int, int]:
        """Send one GET; returns (status, body bytes). Reconnects if the server closed."""
        if self._writer is None or self._reader is None:
            self._reader, self._writer = await asyncio.open_connection(self._host, self._port)
        request = f"GET {path} HTTP/1.1\r\nHost: {self._host}:{self._port}\r\n{self._headers}\r\n"
        self._writer.write(request.encode())
        reader = self._reader
        head = await reader.readuntil(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        status = int(lines[0].split(" ", 2)[1])
        length: int | None = None
        chunked = False
        close = False
        for line in lines[1:]:
            name, _, value = line.partition(":")
            lowered = name.strip().lower()
            if lowered == "content-length":
                length = int(value.strip())
            elif lowered == "transfer-encoding" and "chunked" in value.lower():
                chunked = True
            elif lowered == "connection" and "close" in value.lower():
                close = True
        size = 0
        if chunked:
            while True:
                chunk_size = int((await reader.readuntil(b"\r\n")).split(b";")[0], 16)
                await reader.readexactly(chunk_size + 2)
                size += chunk_size
                if chunk_size == 0:
                    break
        elif length is not None:
            await reader.readexactly(length)
            size = length
        if close:
            await self.close()
        return status, size

    async def close(self) -> None:
        if self._writer is not None:
            self._writer.close()
            with contextlib.suppress(OSError):
                await self._writer.wait_closed()
        self._reader = self._writer = None


async def run_load(spec: LoadSpec) -> LoadResult:
    result = LoadResult()
    statuses: Counter[int] = Counter()
    paths = itertools.cycle(spec.paths)
    loop = asyncio.get_running_loop()
    connections = [_Connection(spec.host, spec.port, spec.headers) for _ in range(spec.concurrency)]
    # Warm-up ends once its time is up and every worker has finished its warm-up request:
    # the measured window starts with no warm-up request still in flight.
    barrier = asyncio.Barrier(spec.concurrency + 1)
    warm_until = loop.time() + spec.warmup
    window = {"started": 0.0}
    issued = 0

    async def get(connection: _Connection, measuring: bool) -> None:
        # perf_counter, not loop.time(): uvloop's clock has millisecond resolution and is
        # read once per loop iteration.
        started = time.perf_counter()
        try:
            status, size = await asyncio.wait_for(connection.get(next(paths)), spec.timeout)
        except (OSError, asyncio.IncompleteReadError, TimeoutError, ValueError) as exc:
            await connection.close()
            if measuring:
                result.errors.append(f"{type(exc).__name__}: {exc}"[:200])
            return
        if measuring:
            result.latencies.append(time.perf_counter() - started)
            statuses[status] += 1
            result.bytes += size

    def more() -> bool:
        """Whether a worker should send another measured request."""
        elapsed = time.perf_counter() - window["started"]
        if spec.max_requests is not None and issued >= spec.max_requests:
            return False
        if elapsed >= spec.max_time:
            return False
        return elapsed < spec.duration or issued < spec.min_requests

    async def worker(connection: _Connection) -> None:
        nonlocal issued
        while loop.time() < warm_until:
            await get(connection, measuring=False)
        await barrier.wait()
        while more():
            issued += 1
            await get(connection, measuring=True)

    workers = [asyncio.create_task(worker(connection)) for connection in connections]
    await barrier.wait()
    window["started"] = time.perf_counter()
    cpu_before = time.process_time()
    print(MEASURE_START, flush=True)
    await asyncio.gather(*workers)
    result.elapsed = time.perf_counter() - window["started"]
    print(MEASURE_END, flush=True)
    result.client_cpu = time.process_time() - cpu_before
    result.statuses = {str(code): count for code, count in sorted(statuses.items())}
    for connection in connections:
        await connection.close()
    return result


def main() -> None:
    spec = LoadSpec(**json.loads(sys.stdin.read()))
    import uvloop

    result = uvloop.run(run_load(spec))
    # To a file, not stdout: after uvloop has run, a large write to a pipe whose reader is
    # busy can come out truncated at the pipe's 64 KiB.
    Path(sys.argv[1]).write_text(json.dumps(asdict(result)))
    print(RESULT, flush=True)


if __name__ == "__main__":
    main()
