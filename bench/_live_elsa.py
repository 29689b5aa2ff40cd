"""The live ELSA of `bench.sync_live` and the two syncs that read it.

One simulator, served by uvicorn in threads of the benchmark process on one loopback port
per sync, each port behind a `CountingApp` that counts that sync's requests by kind; and
the syncs themselves as child processes: today's (the code of a past commit, unpacked from
git) and the new one (the working tree).
"""

from __future__ import annotations

import contextlib
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Iterator, MutableMapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson
import uvicorn

from bench._common import REPO, child_env
from tamma_sync.simulator import ADMIN_API_KEY

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
Asgi = Callable[[Scope, Receive, Send], Awaitable[None]]

ELSA_PREFIX = "/elsa/api"
#: Request kinds, in the order the report lists them.
DELTA = "delta listing"
SWEEP = "sweep listing"
DETAIL = "instance detail"
VARIABLES = "variables"
DEFINITIONS = "definitions"
OTHER = "other"
KINDS = (DELTA, SWEEP, DETAIL, VARIABLES, DEFINITIONS, OTHER)
#: Responses with a 5xx status, counted apart from the kinds.
ERRORS = "5xx answers"
#: Kinds whose times are kept too (`CountingApp.times`), to see when cycles and sweeps ran.
TIMED = (DELTA, SWEEP, ERRORS)


def listing_kind(body: bytes) -> str:
    """A `POST /workflow-instances` query: the delta when it filters or orders by
    `UpdatedAt`, the sweep when by `CreatedAt`."""
    with contextlib.suppress(orjson.JSONDecodeError):
        query = orjson.loads(body or b"{}")
        if isinstance(query, dict):
            columns = {
                str(item.get("column"))
                for item in query.get("timestampFilters") or []
                if isinstance(item, dict)
            }
            if "UpdatedAt" in columns:
                return DELTA
            if columns:
                return SWEEP
            return DELTA if query.get("orderBy") == "UpdatedAt" else SWEEP
    return OTHER


def request_kind(method: str, path: str) -> str:
    """What a request (other than the POST query) is, from its route."""
    route = path.removeprefix(ELSA_PREFIX).rstrip("/")
    parts = route.strip("/").split("/")
    if parts[0] == "workflow-definitions":
        return DEFINITIONS
    if parts[0] == "workflow-instances" and method == "GET":
        if len(parts) == 1:
            return SWEEP
        if len(parts) == 2:
            return DETAIL
        if len(parts) == 3 and parts[2] == "variables":
            return VARIABLES
    return OTHER


class CountingApp:
    """An ASGI wrapper that counts the requests that pass by kind (`KINDS`) and the 5xx
    answers, and keeps when the `TIMED` ones came (`time.monotonic()`); one wrapper per
    server thread."""

    def __init__(self, app: Asgi) -> None:
        self._app = app
        self.counts: Counter[str] = Counter()
        self.times: dict[str, list[float]] = {kind: [] for kind in TIMED}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self._app(scope, receive, send)
            return
        method, path = scope["method"], scope["path"]
        if method == "POST" and path.rstrip("/").endswith("/workflow-instances"):
            messages = [await receive()]
            while messages[-1].get("more_body"):
                messages.append(await receive())
            self._count(listing_kind(b"".join(m.get("body", b"") for m in messages)))
            receive = _replaying(messages, receive)
        else:
            self._count(request_kind(method, path))

        async def counting_send(message: Message) -> None:
            if message["type"] == "http.response.start" and message["status"] >= 500:
                self._count(ERRORS)
            await send(message)

        await self._app(scope, receive, counting_send)

    def _count(self, kind: str) -> None:
        self.counts[kind] += 1
        if kind in self.times:
            self.times[kind].append(time.monotonic())

    def take(self) -> tuple[Counter[str], dict[str, list[float]]]:
        """The counts and times so far, and start again from zero."""
        counts, self.counts = self.counts, Counter()
        times, self.times = self.times, {kind: [] for kind in TIMED}
        return counts, times


def _replaying(messages: list[Message], receive: Receive) -> Receive:
    """`receive` that first hands out the body messages already read."""
    queue = list(messages)

    async def replay() -> Message:
        return queue.pop(0) if queue else await receive()

    return replay


@contextlib.contextmanager
def serving(app: Asgi) -> Iterator[str]:
    """`app` served by uvicorn on a free loopback port, in a thread of this process;
    yields the base URL."""
    config = uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning", access_log=False)
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, name="live-elsa", daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError("the simulator did not start serving")
        time.sleep(0.01)
    port = server.servers[0].sockets[0].getsockname()[1]
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=30)


# -- the two syncs -----------------------------------------------------------------------------


@dataclass(frozen=True)
class SyncCode:
    """How to start one sync: its command and where its `tamma_sync` comes from."""

    label: str
    command: list[str]
    pythonpath: str


def new_sync_code() -> SyncCode:
    """The working tree's sync: `.venv/bin/tamma-sync sync`."""
    return SyncCode("new", [str(Path(sys.executable).parent / "tamma-sync"), "sync"], str(REPO))


def old_sync_code(commit: str, into: Path) -> SyncCode:
    """The sync of `commit`: its `src/` unpacked from git into `into` (nothing committed),
    run through its own CLI."""
    into.mkdir(parents=True, exist_ok=True)
    archive = subprocess.run(
        ["git", "archive", commit, "src"], cwd=REPO, capture_output=True, check=True, timeout=60
    )
    subprocess.run(["tar", "-x", "-C", str(into)], input=archive.stdout, check=True, timeout=60)
    command = [sys.executable, "-c", "from tamma_sync.cli import main; main()", "sync"]
    return SyncCode("today", command, str(into / "src"))


def imported_from(code: SyncCode) -> str:
    """Where the sync's interpreter imports `tamma_sync` from (a dry run)."""
    done = subprocess.run(
        [sys.executable, "-c", "import tamma_sync; print(tamma_sync.__file__)"],
        env=child_env({"PYTHONPATH": code.pythonpath}),
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    return done.stdout.strip()


def start_sync(
    code: SyncCode, elsa_url: str, database_url: str, workdir: Path, poll_interval: float
) -> subprocess.Popen[bytes]:
    """Start `tamma-sync sync` on one ELSA source and one database, its output in
    `workdir/sync-<label>.log`."""
    data_dir = workdir / f"{code.label}-data"
    data_dir.mkdir(parents=True, exist_ok=True)
    env = child_env(
        {
            "PYTHONPATH": code.pythonpath,
            "TAMMA_SYNC_ELSA_URL": elsa_url,
            "TAMMA_SYNC_ELSA_API_KEY": ADMIN_API_KEY,
            "TAMMA_SYNC_DATABASE_URL": database_url,
            "TAMMA_SYNC_DATA_DIR": str(data_dir),
            "TAMMA_SYNC_POLL_INTERVAL": str(poll_interval),
        }
    )
    log_file = workdir / f"sync-{code.label}.log"
    with log_file.open("wb") as log:
        process = subprocess.Popen(
            code.command, cwd=workdir, env=env, stdout=log, stderr=subprocess.STDOUT
        )
    return process
