"""What every benchmark shares: the machine's description, CPU and memory readings from
/proc, throwaway PostgreSQL databases, percentiles, and the report of a run."""

from __future__ import annotations

import argparse
import asyncio
import concurrent.futures
import contextlib
import datetime as dt
import hashlib
import importlib.metadata
import json
import os
import platform
import shlex
import socket
import sqlite3
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Awaitable, Callable, Coroutine, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import asyncpg
import httpx

REPO = Path(__file__).resolve().parents[1]
RESULTS_DIR = REPO / "bench" / "results"
DEFAULT_POSTGRES_URL = "postgresql://postgres@127.0.0.1:5432/postgres"
POSTGRES_URL_ENV = "TAMMA_BENCH_POSTGRES_URL"
_T = TypeVar("_T")
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
PAGE_SIZE = os.sysconf("SC_PAGE_SIZE")

# -- processes and the machine ---------------------------------------------------------------


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process (all its threads), in seconds."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    # After the ")": state is field 3, utime field 14, stime field 15 (1-based, man proc).
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS


def try_cpu_seconds(pid: int) -> float | None:
    try:
        return cpu_seconds(pid)
    except (FileNotFoundError, ProcessLookupError, IndexError):
        return None


def memory_kib(pid: int) -> dict[str, int]:
    """VmRSS and VmHWM (peak RSS) of a process, in KiB."""
    values: dict[str, int] = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        name, _, rest = line.partition(":")
        if name in ("VmRSS", "VmHWM"):
            values[name] = int(rest.split()[0])
    return values


def machine_busy_jiffies() -> tuple[int, int]:
    """(busy, total) jiffies of all CPUs since boot, from /proc/stat."""
    first = Path("/proc/stat").read_text().splitlines()[0].split()[1:]
    numbers = [int(value) for value in first]
    idle = numbers[3] + numbers[4]  # idle + iowait
    total = sum(numbers[:8])  # guest time is already counted in user
    return total - idle, total


@dataclass
class MachineLoad:
    """Busy cores of the whole machine over an interval (to notice other activity)."""

    busy: int = 0
    total: int = 0
    started: float = 0.0

    @classmethod
    def start(cls) -> MachineLoad:
        busy, total = machine_busy_jiffies()
        return cls(busy, total, time.monotonic())

    def busy_cores(self) -> float:
        busy, total = machine_busy_jiffies()
        if total == self.total:
            return 0.0
        return (busy - self.busy) / (total - self.total) * (os.cpu_count() or 1)

    def busy_cpu_seconds(self) -> float:
        busy, _ = machine_busy_jiffies()
        return (busy - self.busy) / CLOCK_TICKS


def wait_for_quiet(max_wait: float, threshold_cores: float = 0.15) -> float:
    """Wait (up to `max_wait` s) until the machine is nearly idle; returns the busy cores
    measured last. Other work on a 2-core machine would distort every figure."""
    deadline = time.monotonic() + max_wait
    while True:
        load = MachineLoad.start()
        time.sleep(2.0)
        busy = load.busy_cores()
        if busy <= threshold_cores or time.monotonic() >= deadline:
            if busy > threshold_cores:
                print(
                    f"warning: the machine is busy ({busy:.2f} cores used by other processes); "
                    "figures may be distorted",
                    file=sys.stderr,
                )
            return busy
        print(f"waiting for a quiet machine ({busy:.2f} cores busy)...", file=sys.stderr)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def wait_http_ok(url: str, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(httpx.TransportError):
            if httpx.get(url, timeout=2).status_code == 200:
                return
        time.sleep(0.05)
    raise TimeoutError(f"{url} did not answer 200 within {timeout:.0f}s")


def raise_fd_limit(wanted: int) -> int:
    """Raise the soft open-files limit towards `wanted` (up to the hard limit)."""
    import resource

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
    if soft < target:
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
        soft = target
    return soft


# -- PostgreSQL ------------------------------------------------------------------------------


def postgres_admin_url(cli_value: str | None = None) -> str:
    return cli_value or os.environ.get(POSTGRES_URL_ENV) or DEFAULT_POSTGRES_URL


def _plain_dsn(url: str) -> str:
    scheme, sep, rest = url.partition("://")
    return f"postgresql://{rest}" if sep and scheme.startswith("postgres") else url


async def _pg_execute(admin_url: str, statement: str) -> str | None:
    connection = await asyncpg.connect(_plain_dsn(admin_url), timeout=10)
    try:
        value = await connection.fetchval(statement)
        return None if value is None else str(value)
    finally:
        await connection.close()


def _blocking(coroutine: Coroutine[Any, Any, _T]) -> _T:
    """Run a coroutine to completion from synchronous code, even inside an event loop
    (then in a thread of its own)."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(coroutine)
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        return pool.submit(asyncio.run, coroutine).result()


def postgres_version(admin_url: str) -> str:
    try:
        return _blocking(_pg_execute(admin_url, "SHOW server_version")) or "?"
    except (OSError, asyncpg.PostgresError) as exc:
        return f"unreachable ({exc})"


def with_database(url: str, name: str) -> str:
    """`url` pointing at database `name` (query string kept)."""
    base, sep, query = url.partition("?")
    head, _, _ = base.rpartition("/")
    return f"{head}/{name}{sep}{query}"


def wait_for_postgres(admin_url: str, timeout: float = 120.0) -> bool:
    """Wait until PostgreSQL answers (it may be restarting); False if it never did."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            _blocking(_pg_execute(admin_url, "SELECT 1"))
            return True
        except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError):
            time.sleep(1.0)
    return False


#: Attempts at one measurement before a benchmark gives up (the machine is shared: another
#: user's test run may restart PostgreSQL under a run).
ATTEMPTS = 3


def retrying(label: str, attempt: Callable[[], _T], admin_url: str | None = None) -> _T:
    """Run one measurement, again (up to ATTEMPTS) if it failed, e.g. because PostgreSQL
    restarted under it; failures are printed and kept in `FAILURES` for the report."""
    for number in range(1, ATTEMPTS + 1):
        try:
            return attempt()
        except Exception as exc:
            if number == ATTEMPTS or type(exc).__name__ == "SyncTimeout":
                raise
            FAILURES.append(f"{label}: attempt {number} failed ({_short(exc)}); measured again")
            print(f"warning: {FAILURES[-1]}", file=sys.stderr)
            if admin_url is not None:
                wait_for_postgres(admin_url)
            time.sleep(2.0)
    raise AssertionError("unreachable")


async def retrying_async(
    label: str, attempt: Callable[[], Awaitable[_T]], admin_url: str | None = None
) -> _T:
    for number in range(1, ATTEMPTS + 1):
        try:
            return await attempt()
        except Exception as exc:
            if number == ATTEMPTS:
                raise
            FAILURES.append(f"{label}: attempt {number} failed ({_short(exc)}); measured again")
            print(f"warning: {FAILURES[-1]}", file=sys.stderr)
            if admin_url is not None:
                await asyncio.to_thread(wait_for_postgres, admin_url)
            await asyncio.sleep(2.0)
    raise AssertionError("unreachable")


FAILURES: list[str] = []


def _short(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    last = text[-1] if text else type(exc).__name__
    return f"{type(exc).__name__}: {last[:200]}"


@contextlib.contextmanager
def temp_postgres_database(admin_url: str, label: str = "") -> Iterator[str]:
    """A fresh database `tamma_bench_<random>`, dropped afterwards; yields its plain URL."""
    suffix = f"{label}_" if label else ""
    name = f"tamma_bench_{suffix}{uuid.uuid4().hex[:10]}"
    _blocking(_pg_execute(admin_url, f'CREATE DATABASE "{name}"'))
    try:
        yield with_database(_plain_dsn(admin_url), name)
    finally:
        _blocking(_pg_execute(admin_url, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


@contextlib.contextmanager
def fresh_database(kind: str, admin_url: str | None, workdir: Path, label: str) -> Iterator[str]:
    """A fresh database of `kind`: an SQLite file `<label>.db` in `workdir`, or a throwaway
    PostgreSQL database (which needs `admin_url`); yields its plain URL."""
    if kind == "sqlite":
        yield f"sqlite:///{workdir / f'{label}.db'}"
    else:
        assert admin_url is not None, "a PostgreSQL database needs the admin URL"
        with temp_postgres_database(admin_url, label) as url:
            yield url


def database_name(database_url: str) -> str:
    return _plain_dsn(database_url).partition("?")[0].rsplit("/", 1)[1]


class BackendMeter:
    """CPU of the PostgreSQL backends serving one database between `start()` and `stop()`.

    Backends come and go (a pool that opens and closes connections under load), so a
    sampler thread lists them every `interval` seconds and keeps each one's latest CPU
    time: a backend that exits is counted up to its last sample. `backends_seen` counts the
    distinct backends (connections) sampled, `sessions` the change of pg_stat_database's
    session counter (which PostgreSQL updates as sessions end). The sampler's queries run
    on a connection to the admin database, not the measured one.
    """

    def __init__(self, admin_url: str | None, database_url: str, interval: float = 0.2) -> None:
        self._admin_url = admin_url
        self._name = database_name(database_url)
        self._interval = interval
        self._baseline: dict[int, float] = {}
        self._latest: dict[int, float] = {}
        self._sessions_before = 0
        self._stop = threading.Event()
        self._ready = threading.Event()
        self._thread: threading.Thread | None = None
        self.seconds = 0.0
        self.sessions = 0
        self.backends_seen = 0

    def start(self) -> BackendMeter:
        if self._admin_url is None:
            return self
        self._thread = threading.Thread(
            target=asyncio.run, args=(self._sample(),), name="backend-meter", daemon=True
        )
        self._thread.start()
        self._ready.wait(30)
        return self

    def stop(self) -> float:
        if self._thread is None:
            return 0.0
        self._stop.set()
        self._thread.join(30)
        self.seconds = sum(cpu - self._baseline.get(pid, 0.0) for pid, cpu in self._latest.items())
        self.backends_seen = len(self._latest)
        return self.seconds

    async def _sample(self) -> None:
        assert self._admin_url is not None
        connection = await asyncpg.connect(_plain_dsn(self._admin_url), timeout=10)
        try:
            self._sessions_before = await self._session_count(connection)
            self._baseline = await self._read(connection)
            self._latest = dict(self._baseline)
            self._ready.set()
            while not self._stop.is_set():
                await asyncio.sleep(self._interval)
                self._latest.update(await self._read(connection))
            self.sessions = await self._session_count(connection) - self._sessions_before
        finally:
            self._ready.set()
            await connection.close()

    async def _read(self, connection: asyncpg.Connection) -> dict[int, float]:
        rows = await connection.fetch(
            "SELECT pid FROM pg_stat_activity WHERE datname = $1", self._name
        )
        values = {}
        for row in rows:
            cpu = try_cpu_seconds(int(row["pid"]))
            if cpu is not None:
                values[int(row["pid"])] = cpu
        return values

    async def _session_count(self, connection: asyncpg.Connection) -> int:
        value = await connection.fetchval(
            "SELECT sessions FROM pg_stat_database WHERE datname = $1", self._name
        )
        return int(value or 0)


class CpuMeter:
    """CPU seconds used by a set of processes between `start()` and `stop()`."""

    def __init__(self, pids: Sequence[int]) -> None:
        self.pids = list(pids)
        self._before: dict[int, float] = {}
        self._started = 0.0
        self.elapsed = 0.0
        self.seconds = 0.0

    def start(self) -> CpuMeter:
        self._before = {
            pid: value for pid in self.pids if (value := try_cpu_seconds(pid)) is not None
        }
        self._started = time.monotonic()
        return self

    def stop(self) -> float:
        self.elapsed = time.monotonic() - self._started
        total = 0.0
        for pid, before in self._before.items():
            after = try_cpu_seconds(pid)
            if after is not None:
                total += after - before
        self.seconds = total
        return total

    @property
    def cores(self) -> float:
        return self.seconds / self.elapsed if self.elapsed else 0.0


# -- figures ---------------------------------------------------------------------------------


def percentile(values: Sequence[float], fraction: float) -> float:
    """Linear-interpolated percentile (`fraction` in 0..1) of a non-empty sample."""
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    position = (len(ordered) - 1) * fraction
    low = int(position)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


def distribution_ms(latencies_s: Sequence[float]) -> dict[str, float]:
    """p50/p90/p99/max (and mean) of latencies given in seconds, in milliseconds."""
    if not latencies_s:
        return {}
    return {
        "n": float(len(latencies_s)),
        "min": min(latencies_s) * 1000,
        "p50": percentile(latencies_s, 0.50) * 1000,
        "p90": percentile(latencies_s, 0.90) * 1000,
        "p99": percentile(latencies_s, 0.99) * 1000,
        "max": max(latencies_s) * 1000,
        "mean": sum(latencies_s) / len(latencies_s) * 1000,
    }


def fmt(value: float, digits: int = 1) -> str:
    return f"{value:,.{digits}f}"


#: The multiplication sign and the en dash, spelled so that the source stays ASCII-clean.
TIMES = "\u00d7"
NONE = "\u2013"


def ratio(value: float, baseline: float) -> str:
    return f"{value / baseline:,.1f}{TIMES}" if baseline else "n/a"


def table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


# -- the machine and the report --------------------------------------------------------------


def _cpu_model() -> str:
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor() or "?"


def _ram_gib() -> float:
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemTotal:"):
            return int(line.split()[1]) / 1024 / 1024
    return 0.0


def _version(package: str) -> str:
    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return "-"


def _git(*args: str) -> str:
    return subprocess.run(
        ["git", *args], cwd=REPO, capture_output=True, text=True, check=True, timeout=10
    ).stdout.strip()


def _git_state() -> str:
    try:
        head = _git("rev-parse", "--short", "HEAD")
        dirty = _git("status", "--porcelain", "--", "src")
    except (OSError, subprocess.SubprocessError):
        return "?"
    state = f"commit {head}"
    if dirty:
        state += " + uncommitted changes in src/"
    return f"{state} (src/**/*.py digest {src_digest()})"


def src_digest() -> str:
    """A digest of the code under test: other people edit src/ while benchmarks run."""
    digest = hashlib.sha256()
    for path in sorted((REPO / "src").rglob("*.py")):
        digest.update(path.relative_to(REPO).as_posix().encode())
        with contextlib.suppress(OSError):
            digest.update(path.read_bytes())
    return digest.hexdigest()[:12]


#: The code digest each measurement started with (see `code_checkpoint`).
CODE_VERSIONS: list[tuple[str, str]] = []


def code_checkpoint(label: str) -> None:
    """Note which code a measurement is about to run (its child processes import it now)."""
    CODE_VERSIONS.append((label, src_digest()))


def machine_description(postgres_url: str | None) -> dict[str, str]:
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:
        cores = os.cpu_count() or 0
    description = {
        "CPU": f"{_cpu_model()} ({os.cpu_count()} logical CPUs, {cores} usable)",
        "RAM": f"{_ram_gib():.1f} GiB",
        "OS": f"{platform.system()} {platform.release()}",
        "Python": f"{platform.python_implementation()} {platform.python_version()}",
        "SQLite": sqlite3.sqlite_version,
        "PostgreSQL": postgres_version(postgres_url) if postgres_url else "not used",
        "Libraries": ", ".join(
            f"{name} {_version(name)}"
            for name in (
                "fastapi",
                "uvicorn",
                "uvloop",
                "httptools",
                "sqlalchemy",
                "aiosqlite",
                "asyncpg",
                "httpx",
            )
        ),
        "tamma-sync": _git_state(),
    }
    return description


def command_line(module: str) -> str:
    return " ".join([".venv/bin/python", "-m", module, *map(shlex.quote, sys.argv[1:])])


def head_commit() -> str | None:
    """The short hash of the checked-out commit, if git can tell."""
    try:
        return _git("rev-parse", "--short", "HEAD") or None
    except (OSError, subprocess.SubprocessError):
        return None


def plain(markdown: str) -> str:
    """Text without its bold markers: what a record keeps of a cell or a verdict."""
    return markdown.replace("**", "")


@dataclass
class Table:
    """One table of a report: printed under its title (if any), recorded as data."""

    title: str
    header: Sequence[str]
    rows: Sequence[Sequence[str]]

    def markdown(self) -> str:
        heading = f"### {self.title}\n\n" if self.title else ""
        return heading + table(self.header, self.rows)

    def as_json(self) -> dict[str, Any]:
        return {
            "title": self.title,
            "header": [plain(cell) for cell in self.header],
            "rows": [[plain(cell) for cell in row] for row in self.rows],
        }


@dataclass
class Report:
    """One run of one benchmark. Printed as markdown; with `--record`, appended as one JSON
    line to its history, bench/results/<benchmark>.jsonl. docs/benchmarks.md, the page of
    current figures, is updated by hand from what a run printed."""

    title: str
    module: str
    machine: dict[str, str]
    started: dt.datetime = field(default_factory=lambda: dt.datetime.now(dt.UTC))
    commit: str | None = field(default_factory=head_commit)
    blocks: list[str | Table] = field(default_factory=list)
    """Prose (markdown) and tables, in the order they print."""
    verdicts: list[str] = field(default_factory=list)
    """Lines that say whether a target was met, printed last."""
    raw: dict[str, Any] = field(default_factory=dict)
    """The figures behind the tables, unformatted."""

    @property
    def benchmark(self) -> str:
        return self.module.rpartition(".")[2]

    @property
    def command(self) -> str:
        return command_line(self.module)

    def add(self, block: str | Table) -> None:
        self.blocks.append(block.strip() if isinstance(block, str) else block)

    def verdict(self, line: str) -> None:
        self.verdicts.append(line)

    def _run_notes(self) -> list[str]:
        """What the run itself noticed: code that changed under it, repeated measurements."""
        notes = []
        if len({digest for _, digest in CODE_VERSIONS}) > 1:
            notes.append(
                "**src/ changed during this run** (other people edit it), so these figures mix "
                "code versions — measurement: digest of src/**/*.py at its start:\n\n"
                + "\n".join(f"- {label}: {digest}" for label, digest in CODE_VERSIONS)
            )
        if FAILURES:
            notes.append(
                "Repeated measurements (the machine is shared):\n\n"
                + "\n".join(f"- {line}" for line in FAILURES)
            )
        return notes

    def markdown(self) -> str:
        stamp = self.started.strftime("%Y-%m-%d %H:%M UTC")
        machine = "\n".join(f"- **{key}:** {value}" for key, value in self.machine.items())
        parts = [block if isinstance(block, str) else block.markdown() for block in self.blocks]
        body = "\n\n".join([*parts, *self.verdicts, *self._run_notes()])
        return (
            f"## {self.title} — {stamp}\n\n"
            f"Command (from the repository root):\n\n```bash\n{self.command}\n```\n\n"
            f"Machine:\n\n{machine}\n\n{body}\n"
        )

    def record(self) -> dict[str, Any]:
        """The run as one record of its history (NaN and infinite figures become null)."""
        figures = json.loads(json.dumps(self.raw, default=str), parse_constant=lambda _: None)
        return {
            "benchmark": self.benchmark,
            "title": self.title,
            "time": self.started.strftime("%Y-%m-%dT%H:%M:%SZ"),
            "commit": self.commit,
            "machine": self.machine,
            "command": self.command,
            "notes": [b for b in self.blocks if isinstance(b, str)] + self._run_notes(),
            "tables": [b.as_json() for b in self.blocks if isinstance(b, Table)],
            "verdicts": [plain(line) for line in self.verdicts],
            "figures": figures,
        }

    def publish(self, *, record: bool) -> None:
        """Print the report; with `record`, append it to the benchmark's history."""
        print()
        print(self.markdown())
        if record:
            history = RESULTS_DIR / f"{self.benchmark}.jsonl"
            history.parent.mkdir(parents=True, exist_ok=True)
            with history.open("a") as out:
                out.write(json.dumps(self.record(), ensure_ascii=False) + "\n")
            print(f"recorded in {history.relative_to(REPO)}")


def common_arguments(parser: argparse.ArgumentParser, *, postgres: bool = True) -> None:
    if postgres:
        parser.add_argument(
            "--postgres-url",
            default=None,
            help=f"admin URL of the PostgreSQL server (env {POSTGRES_URL_ENV}; "
            f"default {DEFAULT_POSTGRES_URL}); a fresh database is created and dropped per run",
        )
    parser.add_argument(
        "--record",
        action="store_true",
        help="append the run to its history, bench/results/<benchmark>.jsonl",
    )
    parser.add_argument(
        "--quiet-wait",
        type=float,
        default=120.0,
        help="seconds to wait at most for other processes to leave the CPUs idle (default 120)",
    )


def start_run(
    title: str, module: str, args: argparse.Namespace, databases: Sequence[str]
) -> tuple[Report, str, float]:
    """The report of a run on `databases` (PostgreSQL described only when used), the
    PostgreSQL admin URL, and the busy cores measured once the machine was quiet."""
    admin_url = postgres_admin_url(args.postgres_url)
    machine = machine_description(admin_url if "postgresql" in databases else None)
    report = Report(title, module, machine)
    busy = wait_for_quiet(args.quiet_wait)
    print(f"machine busy before start: {busy:.2f} cores", file=sys.stderr)
    return report, admin_url, busy


def child_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    """The environment for child processes: no TAMMA_SYNC_* leaks in from ours, and the
    repository root importable (for `-m bench...`)."""
    env = {key: value for key, value in os.environ.items() if not key.startswith("TAMMA_SYNC_")}
    env["PYTHONPATH"] = os.pathsep.join([str(REPO), *filter(None, [os.environ.get("PYTHONPATH")])])
    env.update(extra or {})
    return env
