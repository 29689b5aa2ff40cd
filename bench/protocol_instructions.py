"""The .NET protocol in instructions: the server's own work on tamma-sync against the
framework's floor, counted rather than timed.

Timings on these 2-core virtual machines drift by 20-40 % within an hour and differ up to
3x between hosts of one kind, which hides a change of a few percent. An instruction count
hardly drifts: valgrind's callgrind counts the instructions a process executes (its
threads included), within 1 % from run to run on a quiet machine. (On a busy one a slowed
server runs its timers more often a request: run it alone.)

Each server runs under callgrind in turn: the same routes in memory
(`bench/_memory_server.py`, FastAPI on uvicorn without a database: the floor of what
tamma-sync is built on), then `tamma-sync serve` on SQLite and on PostgreSQL. Counting is
on only while a measured phase runs:

1. `--warmup` new instances, not counted (caches and prepared statements filled);
2. `--instances` new instances, sequentially as the .NET service sends them: PUT (404),
   then POST. Instructions a new instance;
3. as many PUTs of instances the server does not hold: instructions a PUT answered 404;
4. a later cycle: each new instance PUT again with a new `updatedAt`, one in ten with a
   new status. Instructions a PUT.

Then the stored instances are read back: each must be there with the status last sent.
Neither the client's nor PostgreSQL's instructions are counted: this is the server's
share of the work, the share a change to tamma-sync's code moves. Under callgrind a server
runs many times slower, so this run says nothing of rates: `bench.compat_api` times the
same protocol.

`python -m bench.protocol_instructions [--databases sqlite,postgresql] [--record]`
Needs valgrind (Debian's package `valgrind`).
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bench._common import (
    TIMES,
    Report,
    Table,
    common_arguments,
    start_run,
)
from bench.compat_api import DotnetClient, started

MODULE = "bench.protocol_instructions"
#: Numbers of the warm-up instances, and of those PUT but never created, apart from the
#: measured ones.
WARMUP_FROM = 900_000
MISSING_FROM = 800_000
#: How long a dump may take to appear once asked for.
DUMP_TIMEOUT_SECONDS = 120.0


class Callgrind:
    """A process run under callgrind with counting off, counted phase by phase."""

    def __init__(self, out_file: Path) -> None:
        self.out_file = out_file

    @property
    def launcher(self) -> list[str]:
        return [
            "valgrind",
            "--tool=callgrind",
            "--instr-atstart=no",
            f"--callgrind-out-file={self.out_file}",
        ]

    def count(self, pid: int, phase: Callable[[], Any]) -> int:
        """The instructions `pid` executes while `phase` runs."""
        dumps = set(self._dumps())
        _control(pid, "--zero")
        _control(pid, "--instr=on")
        phase()
        _control(pid, "--instr=off")
        _control(pid, "--dump")
        deadline = time.monotonic() + DUMP_TIMEOUT_SECONDS
        while time.monotonic() < deadline:
            for dump in set(self._dumps()) - dumps:
                total = _totals(dump)
                if total is not None:
                    return total
            time.sleep(0.2)
        raise RuntimeError(f"callgrind wrote no dump of process {pid}")

    def _dumps(self) -> list[Path]:
        return list(self.out_file.parent.glob(f"{self.out_file.name}.*"))


def _control(pid: int, option: str) -> None:
    subprocess.run(["callgrind_control", option, str(pid)], check=True, capture_output=True)


def _totals(dump: Path) -> int | None:
    """A dump's instruction total; None while it is being written."""
    for line in dump.read_text(errors="replace").splitlines():
        if line.startswith("totals:"):
            return int(line.split()[1])
    return None


def measure(kind: str, args: argparse.Namespace, admin_url: str, workdir: Path) -> dict[str, Any]:
    """The server's instructions per request of each phase, and the stored rows' check."""
    callgrind = Callgrind(workdir / f"callgrind-{kind}.out")
    created_at = int(time.time() * 1000) - 86_400_000
    count = args.instances
    measured = range(count)
    with started(kind, admin_url, workdir, callgrind.launcher) as server:
        [pid] = server.pids
        client = DotnetClient(server.base_url)
        client.definitions()
        client.new_instances(range(WARMUP_FROM, WARMUP_FROM + args.warmup), created_at)
        new = callgrind.count(pid, lambda: client.new_instances(measured, created_at))
        missing = callgrind.count(
            pid, lambda: client.missing(range(MISSING_FROM, MISSING_FROM + count))
        )
        sent: dict[str, str] = {}
        put = callgrind.count(pid, lambda: sent.update(client.later_cycle(measured, created_at)))
        stored = client.stored_statuses()
        client.close()
    return {
        "instances": count,
        "new_instructions": new / count,
        "missing_instructions": missing / count,
        "put_instructions": put / count,
        "statuses": client.statuses,
        "stored": len(stored),
        "expected": count + args.warmup,
        "wrong_or_missing": sum(stored.get(key) != status for key, status in sent.items()),
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog=f"python -m {MODULE}", description=__doc__.split("\n")[0])
    parser.add_argument("--databases", default="sqlite,postgresql")
    parser.add_argument("--instances", type=int, default=300, help="counted (300)")
    parser.add_argument("--warmup", type=int, default=200, help="not counted, first (200)")
    common_arguments(parser)
    args = parser.parse_args(argv)
    if shutil.which("valgrind") is None or shutil.which("callgrind_control") is None:
        sys.exit("bench.protocol_instructions needs valgrind: apt-get install valgrind")
    databases = args.databases.split(",")
    report, admin_url, _ = start_run("The .NET protocol in instructions", MODULE, args, databases)
    results: dict[str, dict[str, Any]] = {}
    with tempfile.TemporaryDirectory(prefix="tamma-bench-") as tmp:
        for kind in ["memory", *databases]:
            name = "in memory" if kind == "memory" else f"tamma-sync {kind}"
            print(f"[{name}] under callgrind ...", file=sys.stderr, flush=True)
            results[name] = measure(kind, args, admin_url, Path(tmp))
    report.raw = {"args": vars(args), "results": results}
    write_report(report, args, results)
    report.publish(record=args.record)


def write_report(
    report: Report, args: argparse.Namespace, results: dict[str, dict[str, Any]]
) -> None:
    floor = results["in memory"]
    report.add(
        f"Each server under callgrind in turn; {args.warmup} new instances to warm up, not "
        f"counted; then the server's instructions over {args.instances} new instances (PUT → "
        f"404 → POST), over {args.instances} PUTs of instances it does not hold (404), and "
        "over a later cycle of PUTs of the new ones (a new `updatedAt` each, a new status "
        "for one in ten). Baseline: the same routes in memory on the same framework "
        "(`bench/_memory_server.py`). The client's and PostgreSQL's instructions are not "
        "counted."
    )
    rows = []
    for name, result in results.items():
        cells = [name]
        for phase in ("new", "missing", "put"):
            ours, base = result[f"{phase}_instructions"], floor[f"{phase}_instructions"]
            cells += [f"{ours / 1000:,.0f}k", f"{ours / base:.2f}{TIMES}"]
        cells.append(f"{result['stored']:,} stored, {result['wrong_or_missing']} wrong or missing")
        rows.append(cells)
    report.add(
        Table(
            "Server instructions a request, .NET protocol, sequential",
            [
                "server",
                "a new instance (PUT, POST)",
                "vs memory",
                "a PUT answered 404",
                "vs memory",
                "a PUT (later cycle)",
                "vs memory",
                "check",
            ],
            rows,
        )
    )
    for name, result in results.items():
        whole = result["wrong_or_missing"] == 0 and result["stored"] == result["expected"]
        report.verdict(f"- **{name}**: nothing lost: {'met' if whole else '**missed**'}")


if __name__ == "__main__":
    main()
