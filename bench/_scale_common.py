"""What the scale benchmarks share: one measured load scenario (client in
a process of its own, the server's CPU and peak RSS over exactly the measured window), and
the tables of the report."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from bench._common import (
    CLOCK_TICKS,
    NONE,
    BackendMeter,
    CpuMeter,
    MachineLoad,
    child_env,
    distribution_ms,
    fmt,
    memory_kib,
)
from bench._scale_http import MEASURE_END, MEASURE_START, LoadResult, LoadSpec

__all__ = [
    "Measurement",
    "Scenario",
    "peak_rss_reset",
    "run_scenario",
]


def _stat(pid: int) -> tuple[str, int, float] | None:
    """(command name, parent pid, CPU seconds) of a process, from /proc/<pid>/stat."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    name = text[text.index("(") + 1 : text.rindex(")")]
    fields = text.rsplit(")", 1)[1].split()
    return name, int(fields[1]), (int(fields[11]) + int(fields[12])) / CLOCK_TICKS


class ForeignCpu:
    """CPU used meanwhile by processes that are neither this benchmark's (this process and
    its descendants: servers, clients, loaders) nor PostgreSQL's, i.e. by someone else's
    work on a shared machine. A sign that a measurement was disturbed."""

    def __init__(self) -> None:
        self._before: dict[int, float] = {}
        self.seconds = 0.0

    @staticmethod
    def _foreign() -> dict[int, float]:
        stats: dict[int, tuple[str, int, float]] = {}
        for entry in Path("/proc").iterdir():
            if entry.name.isdigit() and (stat := _stat(int(entry.name))) is not None:
                stats[int(entry.name)] = stat
        ours = {os.getpid()}
        changed = True
        while changed:
            changed = False
            for pid, (_, parent, _) in stats.items():
                if parent in ours and pid not in ours:
                    ours.add(pid)
                    changed = True
        return {
            pid: cpu
            for pid, (name, parent, cpu) in stats.items()
            if pid not in ours and name != "postgres" and parent != 2 and pid != 2
        }

    def start(self) -> ForeignCpu:
        self._before = self._foreign()
        return self

    def stop(self) -> float:
        after = self._foreign()
        self.seconds = sum(cpu - self._before.get(pid, 0.0) for pid, cpu in after.items())
        return self.seconds


def peak_rss_reset(pid: int) -> bool:
    """Reset a process's peak RSS (VmHWM) to its current RSS (`clear_refs` 5)."""
    try:
        Path(f"/proc/{pid}/clear_refs").write_text("5")
        return True
    except OSError:
        return False


@dataclass(frozen=True)
class Scenario:
    key: str
    label: str
    paths: list[str]
    concurrency: int
    duration: float
    warmup: float = 2.0
    max_requests: int | None = None
    min_requests: int = 0
    max_time: float = 180.0
    headers: dict[str, str] = field(default_factory=dict)


@dataclass
class Measurement:
    key: str
    label: str
    concurrency: int
    requests: int
    elapsed: float
    latency_ms: dict[str, float]
    statuses: dict[str, int]
    errors: list[str]
    bytes_per_request: float
    server_cpu: float
    backend_cpu: float
    backend_sessions: int
    client_cpu: float
    busy_cpu: float
    foreign_cpu: float
    peak_rss_kib: int
    """Summed over the server's processes (supervisor and workers under --workers)."""
    rss_after_kib: int
    largest_peak_rss_kib: int
    """The peak of the largest single process."""
    extra: dict[str, Any] = field(default_factory=dict)
    latencies_s: list[float] = field(default_factory=list, repr=False)
    """Every measured request's latency (not recorded: `latency_ms` sums them up)."""

    @classmethod
    def merged(cls, parts: Sequence[Measurement]) -> Measurement:
        """The measurement of one scenario run in several slices, as if run in one."""
        first = parts[0]
        latencies = [latency for part in parts for latency in part.latencies_s]
        statuses: dict[str, int] = {}
        errors: list[str] = []
        for part in parts:
            for status, count in part.statuses.items():
                statuses[status] = statuses.get(status, 0) + count
            errors += part.errors
        requests = sum(part.requests for part in parts)
        return cls(
            key=first.key,
            label=first.label,
            concurrency=first.concurrency,
            requests=requests,
            elapsed=sum(part.elapsed for part in parts),
            latency_ms=distribution_ms(latencies),
            statuses=statuses,
            errors=errors[:5],
            bytes_per_request=(
                sum(part.bytes_per_request * part.requests for part in parts) / requests
                if requests
                else 0.0
            ),
            server_cpu=sum(part.server_cpu for part in parts),
            backend_cpu=sum(part.backend_cpu for part in parts),
            backend_sessions=max(part.backend_sessions for part in parts),
            client_cpu=sum(part.client_cpu for part in parts),
            busy_cpu=sum(part.busy_cpu for part in parts),
            foreign_cpu=sum(part.foreign_cpu for part in parts),
            peak_rss_kib=max(part.peak_rss_kib for part in parts),
            rss_after_kib=parts[-1].rss_after_kib,
            largest_peak_rss_kib=max(part.largest_peak_rss_kib for part in parts),
            extra={"slice_rates": [part.rate for part in parts]},
            latencies_s=latencies,
        )

    @property
    def rate(self) -> float:
        return self.requests / self.elapsed if self.elapsed else 0.0

    @property
    def ok(self) -> bool:
        return not self.errors and set(self.statuses) <= {"200"}

    def p(self, name: str) -> float:
        return self.latency_ms.get(name, float("nan"))

    def per_request_ms(self, seconds: float) -> float:
        return seconds / self.requests * 1000 if self.requests else float("nan")

    @property
    def foreign_cores(self) -> float:
        """Cores used by someone else's processes during the window (see ForeignCpu)."""
        return self.foreign_cpu / self.elapsed if self.elapsed else 0.0

    @property
    def other_cpu(self) -> float:
        """CPU the rest of the machine used meanwhile (not server, client or backends)."""
        return max(0.0, self.busy_cpu - self.server_cpu - self.backend_cpu - self.client_cpu)

    def as_json(self) -> dict[str, Any]:
        data = asdict(self)
        del data["latencies_s"]
        data["rate"] = self.rate
        return data


def run_scenario(
    scenario: Scenario,
    server_pids: Sequence[int],
    port: int,
    *,
    admin_url: str | None = None,
    database_url: str | None = None,
) -> Measurement:
    """Run one load scenario from a client process of its own and measure the servers."""
    spec = LoadSpec(
        host="127.0.0.1",
        port=port,
        paths=scenario.paths,
        headers=scenario.headers,
        concurrency=scenario.concurrency,
        duration=scenario.duration,
        warmup=scenario.warmup,
        max_requests=scenario.max_requests,
        min_requests=scenario.min_requests,
        max_time=scenario.max_time,
    )
    result_file = Path(tempfile.mkstemp(prefix="tamma-scale-load-", suffix=".json")[1])
    process = subprocess.Popen(
        [sys.executable, "-m", "bench._scale_http", str(result_file)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        env=child_env(),
        text=True,
    )
    assert process.stdin is not None and process.stdout is not None
    process.stdin.write(json.dumps(asdict(spec)))
    process.stdin.close()
    cpu = CpuMeter(server_pids)
    backends = BackendMeter(admin_url, database_url or "") if admin_url and database_url else None
    machine = MachineLoad()
    foreign = ForeignCpu()
    result: LoadResult | None = None
    busy = 0.0
    for raw in process.stdout:
        line = raw.strip()
        if line == MEASURE_START:
            for pid in server_pids:
                peak_rss_reset(pid)
            if backends is not None:
                backends.start()
            machine = MachineLoad.start()
            foreign.start()
            cpu.start()
        elif line == MEASURE_END:
            cpu.stop()
            busy = machine.busy_cpu_seconds()
            foreign.stop()
            if backends is not None:
                backends.stop()
    process.wait(timeout=60)
    if process.returncode == 0 and result_file.stat().st_size:
        result = LoadResult.from_json(json.loads(result_file.read_text()))
    result_file.unlink(missing_ok=True)
    if result is None:
        raise RuntimeError(f"load client for {scenario.key} gave no result ({process.returncode})")
    memory = [memory_kib(pid) for pid in server_pids]
    requests = len(result.latencies)
    return Measurement(
        key=scenario.key,
        label=scenario.label,
        concurrency=scenario.concurrency,
        requests=requests,
        elapsed=result.elapsed,
        latency_ms=distribution_ms(result.latencies),
        statuses=result.statuses,
        errors=result.errors[:5] + ([f"... {len(result.errors)} errors"] if result.errors else []),
        bytes_per_request=result.bytes / requests if requests else 0.0,
        server_cpu=cpu.seconds,
        backend_cpu=backends.seconds if backends is not None else 0.0,
        backend_sessions=backends.sessions if backends is not None else 0,
        client_cpu=result.client_cpu,
        busy_cpu=busy,
        foreign_cpu=foreign.seconds,
        peak_rss_kib=sum(m.get("VmHWM", 0) for m in memory),
        rss_after_kib=sum(m.get("VmRSS", 0) for m in memory),
        largest_peak_rss_kib=max((m.get("VmHWM", 0) for m in memory), default=0),
        latencies_s=result.latencies,
    )


def mib(kib: float) -> str:
    return f"{kib / 1024:,.0f} MiB"


def size(num_bytes: float) -> str:
    if num_bytes >= 1024 * 1024:
        return f"{num_bytes / 1024 / 1024:,.1f} MB"
    if num_bytes >= 1024:
        return f"{num_bytes / 1024:,.1f} KB"
    return f"{num_bytes:,.0f} B"


def ms(value: float) -> str:
    if value != value:  # NaN
        return NONE
    return f"{value:,.1f} ms" if value < 100 else f"{value:,.0f} ms"


def measurement_row(m: Measurement, database: str | None = None) -> list[str]:
    """The columns of `MEASUREMENT_HEADER`."""
    status = "ok" if m.ok else f"{m.statuses} {'; '.join(m.errors[:2])}"
    row = [
        m.label,
        str(m.concurrency),
        f"{m.requests:,}",
        f"{fmt(m.rate)}/s",
        ms(m.p("p50")),
        ms(m.p("p90")),
        ms(m.p("p99")),
        ms(m.p("max")),
        ms(m.per_request_ms(m.server_cpu)),
        ms(m.per_request_ms(m.backend_cpu)) if m.backend_cpu else NONE,
        f"{m.backend_sessions:,}" if m.backend_cpu else NONE,
        ms(m.per_request_ms(m.client_cpu)),
        size(m.bytes_per_request),
        mib(m.peak_rss_kib),
        f"{m.other_cpu:,.1f} s ({m.foreign_cpu:,.1f} s)",
        status,
    ]
    return ([database] if database is not None else []) + row


MEASUREMENT_HEADER = [
    "scenario",
    "conc.",
    "requests",
    "throughput",
    "p50",
    "p90",
    "p99",
    "max",
    "server CPU / req",
    "PostgreSQL CPU / req",
    "PostgreSQL connections opened",
    "client CPU / req",
    "response",
    "server peak RSS",
    "other CPU (of it: other users' processes)",
    "status",
]
