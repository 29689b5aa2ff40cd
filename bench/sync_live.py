"""Live sync: today's sync against the new one, both mirroring one live, busy ELSA.

One `ElsaSimulator(SimulatorConfig(seed=1, definitions=12, instances=N, wall_clock=True,
realism=LIVE_REALISM))` is served from this process (uvicorn in threads) on two loopback
ports, one per sync, each behind a wrapper that counts that sync's requests by kind; the
simulator's state is shared, so both read the same ELSA. Both syncs are `tamma-sync sync`
child processes with default settings (poll interval 2 s), each on a fresh database:
today's is the code of commit 2973a3c (`git archive` into a temporary directory, run with
that directory on PYTHONPATH; checked by a dry import), the new one is the working tree's
`.venv/bin/tamma-sync`.

Once both have finished a first cycle (or failed twice), the benchmark drives churn with
`sim.step(1)` at `--rate` steps a second for `--duration` seconds (the live realism mixes
creations, status changes, status-free commits and deletions), then makes every pending
commit visible and lets the syncs settle for `--settle` seconds. Measured for each sync:

1. commit -> mirror lag: from a commit becoming visible in ELSA (the simulator's
   `commit_observer`) to the mirror's change log first holding that state of the instance
   or a later one (`changes.at`); commits never reflected are lost updates;
2. the staleness of running instances' details (current activity, variables), sampled
   every 2 s against `sim.snapshot()`;
3. deletion -> mirror: from `step()` returning a deletion to the mirror's delete;
4. ELSA requests per second by kind;
5. the mirror against `sim.snapshot()` after the settle.

`python -m bench.sync_live --help` for the options.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import functools
import math
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

from bench._common import (
    NONE,
    REPO,
    CpuMeter,
    MachineLoad,
    Report,
    Table,
    code_checkpoint,
    common_arguments,
    fmt,
    fresh_database,
    retrying,
    start_run,
)
from bench._live_elsa import (
    ERRORS,
    KINDS,
    CountingApp,
    SyncCode,
    imported_from,
    new_sync_code,
    old_sync_code,
    serving,
    start_sync,
)
from bench._live_figures import (
    NEVER,
    Mirror,
    Staleness,
    WallClock,
    commit_lags,
    deletion_lags,
    end_state,
    running_truth,
)
from bench._servers import stop_process
from tamma_sync.simulator import LIVE_REALISM, CommitEvent, ElsaSimulator, SimulatorConfig

MODULE = "bench.sync_live"
TODAY_COMMIT = "2973a3c"
POLL_INTERVAL = 2.0
SAMPLE_INTERVAL = 2.0
NAMES = {"today": "today's sync", "new": "new sync"}


def progress(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


# -- one run on one kind of database ---------------------------------------------------------


async def _first_cycles(
    mirrors: dict[str, Mirror],
    processes: dict[str, subprocess.Popen[bytes]],
    patience: float,
    clock: WallClock,
) -> dict[str, dict[str, Any]]:
    """Wait until each sync has finished a first cycle, or failed two, or `patience`
    seconds have passed."""
    started = time.monotonic()
    outcome: dict[str, dict[str, Any]] = {}
    while len(outcome) < len(mirrors):
        for label, mirror in mirrors.items():
            if label in outcome:
                continue
            state = await mirror.state()
            failed = (state.get("counters") or {}).get("failedCycles", 0)
            if state.get("lastSuccessAt"):
                seconds = (state["lastSuccessAt"] - clock.ms(started)) / 1000
                outcome[label] = {"first_cycle_s": seconds, "error": None}
            elif (
                failed >= 2
                or processes[label].poll() is not None
                or time.monotonic() > (started + patience)
            ):
                error = state.get("lastError") or f"exit code {processes[label].poll()}"
                outcome[label] = {"first_cycle_s": None, "error": error}
        await asyncio.sleep(0.5)
    return outcome


async def _churn(
    simulator: ElsaSimulator, rate: float, duration: float, deleted: dict[str, float]
) -> dict[str, Any]:
    """`step(1)` on a steady schedule; deletions stamped when `step` returns."""
    total = round(rate * duration)
    started = time.monotonic()
    done: Counter[str] = Counter()
    late = 0.0
    for number in range(total):
        wait = started + number / rate - time.monotonic()
        if wait > 0:
            await asyncio.sleep(wait)
        late = max(late, -wait)
        report = simulator.step(1)
        now = time.monotonic()
        deleted.update(dict.fromkeys(report.deleted, now))
        done.update(
            created=len(report.created),
            updated=len(report.updated),
            silent=len(report.silent),
            deleted=len(report.deleted),
        )
    return {"steps": total, **done, "max_late_s": late, "elapsed_s": time.monotonic() - started}


async def _sample(
    simulator: ElsaSimulator,
    mirrors: dict[str, Mirror],
    staleness: dict[str, Staleness],
    poisoned: set[str],
    stop: asyncio.Event,
    timings: list[float],
) -> None:
    """Every SAMPLE_INTERVAL: ELSA's running instances' details against each mirror's."""
    while not stop.is_set():
        began = time.monotonic()
        truth = await asyncio.to_thread(running_truth, simulator, poisoned)
        timings.append(time.monotonic() - began)
        for label, mirror in mirrors.items():
            staleness[label].observe(began, truth, await mirror.rows(running_only=True))
        with contextlib.suppress(TimeoutError):
            left = SAMPLE_INTERVAL - (time.monotonic() - began)
            await asyncio.wait_for(stop.wait(), max(left, 0.0))


async def run_database(
    kind: str, args: argparse.Namespace, admin_url: str, workdir: Path, codes: list[SyncCode]
) -> dict[str, Any]:
    """Both syncs against one live simulator, each on a fresh database of `kind`."""
    realism = LIVE_REALISM.tuned(poisoned_details=args.poisoned_details)
    simulator = ElsaSimulator(
        SimulatorConfig(
            seed=1,
            definitions=12,
            instances=args.instances,
            wall_clock=True,
            realism=realism,
        )
    )
    events: list[CommitEvent] = []
    simulator.commit_observer = events.append
    seeded = simulator.snapshot(details=False).instances.values()
    system_ids = {truth.id for truth in seeded if truth.is_system}
    poisoned = set(simulator.poisoned_ids())
    clock = WallClock()
    counters = {code.label: CountingApp(simulator.app) for code in codes}
    rundir = workdir / kind
    rundir.mkdir(parents=True, exist_ok=True)
    deleted: dict[str, float] = {}
    staleness = {code.label: Staleness() for code in codes}
    timings: list[float] = []
    with contextlib.ExitStack() as stack:
        urls = {label: stack.enter_context(serving(app)) for label, app in counters.items()}
        databases = {
            code.label: stack.enter_context(
                fresh_database(kind, admin_url, rundir, f"live_{code.label}")
            )
            for code in codes
        }
        mirrors = {label: Mirror(url) for label, url in databases.items()}
        code_checkpoint(kind)
        processes = {
            code.label: start_sync(
                code, urls[code.label], databases[code.label], rundir, POLL_INTERVAL
            )
            for code in codes
        }
        try:
            progress(f"[{kind}] waiting for both syncs' first cycle ...")
            first = await _first_cycles(mirrors, processes, args.initial_timeout, clock)
            progress(f"[{kind}] first cycles: {first}")
            for app in counters.values():
                app.take()
            meters = {label: CpuMeter([p.pid]).start() for label, p in processes.items()}
            load = MachineLoad.start()
            stop = asyncio.Event()
            sampler = asyncio.create_task(
                _sample(simulator, mirrors, staleness, poisoned, stop, timings)
            )
            window_started = time.monotonic()
            progress(f"[{kind}] churn: {args.rate:g} steps/s for {args.duration:g} s ...")
            churn = await _churn(simulator, args.rate, args.duration, deleted)
            churn["flushed"] = simulator.flush_commits()
            progress(f"[{kind}] churn done {churn}; settling {args.settle:g} s ...")
            await asyncio.sleep(args.settle)
            stop.set()
            await sampler
            window = time.monotonic() - window_started
            requests = {label: app.take() for label, app in counters.items()}
            cpu = {label: meter.stop() for label, meter in meters.items()}
            busy = load.busy_cores()
        finally:
            for process in processes.values():
                stop_process(process, timeout=30)
        exits = {label: process.returncode for label, process in processes.items()}
        truth = simulator.snapshot()
        system_ids |= {event.instance_id for event in events if event.is_system}
        commits = [e for e in events if e.kind != "silent" and not e.is_system]
        deleted_at = {
            key: (at, clock.ms(at)) for key, at in deleted.items() if key not in system_ids
        }
        per_sync: dict[str, Any] = {}
        for label, mirror in mirrors.items():
            history = await mirror.history()
            rows = await mirror.rows()
            state = await mirror.state()
            await mirror.close()
            per_sync[label] = {
                "first": first[label],
                "lag": commit_lags(commits, history, deleted_at, clock),
                "deletion": deletion_lags(deleted_at, history, set(rows)),
                "staleness": staleness[label].figures(),
                "requests": dict(requests[label][0]),
                "request_times": requests[label][1],
                "cpu_s": cpu[label],
                "end": end_state(truth, rows, deleted_at, poisoned),
                "state": state,
                "exit": exits[label],
                "log_tail": (rundir / f"sync-{label}.log")
                .read_text(errors="replace")
                .splitlines()[-20:],
            }
    return {
        "kind": kind,
        "window_s": window,
        "busy_cores": busy,
        "churn": churn,
        "commits": len(commits),
        "silent_commits": sum(e.kind == "silent" for e in events),
        "deletions": len(deleted_at),
        "window_started": window_started,
        "system_ids": len(system_ids),
        "poisoned": sorted(poisoned),
        "snapshot_s": {"mean": sum(timings) / len(timings), "max": max(timings)} if timings else {},
        "syncs": per_sync,
    }


def _measure(
    kind: str, args: argparse.Namespace, admin_url: str, workdir: Path, codes: list[SyncCode]
) -> dict[str, Any]:
    return asyncio.run(run_database(kind, args, admin_url, workdir, codes))


# -- the report --------------------------------------------------------------------------------


def _seconds(value: float) -> str:
    if value == NEVER:
        return "never"
    if math.isnan(value):
        return NONE
    return f"{value:,.1f} s" if abs(value) >= 10 else f"{value:,.2f} s"


def _lags(figures: dict[str, Any], what: str) -> str:
    if not figures.get("n"):
        return f"n/a: 0 {what}"
    return f"{_seconds(figures['p50'])} / {_seconds(figures['p99'])}"


def _of(count: int, total: int) -> str:
    return f"{count:,} of {total:,}"


def _column(sync: dict[str, Any], result: dict[str, Any]) -> list[tuple[str, str]]:
    """One sync's figures, as (measure, value) in the table's order."""
    window = result["window_s"]
    lag, deletion, stale, end = sync["lag"], sync["deletion"], sync["staleness"], sync["end"]
    counters = sync["state"].get("counters") or {}
    first = sync["first"]
    requests: dict[str, int] = sync["requests"]
    held = f"deletions of instances the mirror held ({result['deletions']:,} in ELSA)"
    cells = [
        (
            "first complete cycle (initial mirror), from start",
            _seconds(first["first_cycle_s"])
            if first["first_cycle_s"] is not None
            else f"never: {first['error']}",
        ),
        ("commit → mirror lag, p50 / p99", _lags(lag, "commits")),
        ("commits never reflected (lost updates)", _of(lag.get("never", 0), lag["n"])),
        (
            "running instances' details stale: longest / p99",
            f"{_seconds(stale['max_s'])} / {_seconds(stale['p99_s'])}"
            if stale["observations"]
            else "n/a: it held no running instance",
        ),
        (
            "running instances' details stale: share of observations",
            f"{stale['differing_share'] * 100:.1f} % of {stale['observations']:,}",
        ),
        ("deletion → mirror, p50 / p99", _lags(deletion, held)),
        (
            "deleted instances it had held and still lists at the end",
            _of(deletion["still_listed"], deletion["n"]),
        ),
    ]
    for kind in (*KINDS, ERRORS):
        cells.append((f"ELSA requests/s: {kind}", fmt(requests.get(kind, 0) / window, 2)))
    total = sum(count for kind, count in requests.items() if kind != ERRORS)
    cells.append(("ELSA requests/s: all", fmt(total / window, 2)))
    cells += [
        ("at the end: missing", _of(end["missing"], end["elsa"])),
        ("at the end: wrong state (older than ELSA's)", f"{end['wrong']:,} ({end['older']:,})"),
        ("at the end: deleted in ELSA but listed", f"{end['extra']:,}"),
        ("at the end: running with stale details", f"{end['stale_details']:,}"),
        ("at the end: system-workflow instances listed", f"{end['system_listed']:,}"),
        ("sync CPU, % of one core", fmt(sync["cpu_s"] / window * 100, 1)),
        (
            "cycles since start (failed)",
            f"{counters.get('cycles', 0):,} ({counters.get('failedCycles', 0):,})",
        ),
    ]
    return cells


def _figures_table(result: dict[str, Any], labels: list[str]) -> Table:
    columns = [_column(result["syncs"][label], result) for label in labels]
    rows = [
        [measure, *(column[index][1] for column in columns)]
        for index, (measure, _) in enumerate(columns[0])
    ]
    return Table(result["kind"], ["measure", *(NAMES[label] for label in labels)], rows)


def _write_report(
    report: Report,
    args: argparse.Namespace,
    results: list[dict[str, Any]],
    imports: dict[str, str],
    busy_before: float,
) -> None:
    labels = ["today", "new"]
    report.add(
        f"Setup: one ELSA simulator (`SimulatorConfig(seed=1, definitions=12, instances="
        f"{args.instances:,}, wall_clock=True, realism=LIVE_REALISM"
        + (
            ""
            if args.poisoned_details == LIVE_REALISM.poisoned_details
            else f".tuned(poisoned_details={args.poisoned_details})"
        )
        + ")`: commits visible after up to 1.5 s, out of stamp order; 15 % of steps "
        "status-free commits, 10 % deletions; tied stamps and per-request tie orders; ELSA's "
        f"system workflow; {args.poisoned_details} poisoned instance(s) whose details answer "
        "500 for good) served from the benchmark process by uvicorn in two threads, one "
        "loopback port per sync behind a counting wrapper, the state shared. Both syncs are "
        "`tamma-sync sync` child processes "
        f"with default settings (poll interval {POLL_INTERVAL:g} s), each on a fresh database. "
        f"Today's sync: commit {args.today}, `git archive` into a temporary directory and run "
        'as `python -c "from tamma_sync.cli import main; main()" sync` with it on PYTHONPATH '
        f"(it imported `{imports['today']}`); new sync: `.venv/bin/tamma-sync sync` (it "
        f"imported `{imports['new']}`). Once both had finished a first cycle (or failed two), "
        f"`sim.step(1)` ran {args.rate:g} times a second for {args.duration:g} s, then "
        f"`sim.flush_commits()` and {args.settle:g} s of settle. Machine busy before start: "
        f"{busy_before:.2f} cores (other processes)."
    )
    for result in results:
        churn = result["churn"]
        report.add(_figures_table(result, labels))
        report.add(
            f"Churn ({result['kind']}): {churn['steps']:,} steps "
            f"({churn.get('created', 0):,} created, {churn.get('updated', 0):,} status "
            f"changes, {churn.get('silent', 0):,} status-free commits, "
            f"{churn.get('deleted', 0):,} deleted; at most "
            f"{churn['max_late_s'] * 1000:.0f} ms behind schedule); {result['commits']:,} "
            "commits with a stamp became visible (system workflows left out), "
            f"{churn['flushed']:,} of them flushed at the end. Measured over "
            f"{result['window_s']:.0f} s (churn and settle); the machine was "
            f"{result['busy_cores']:.2f} cores busy on average (all processes, these "
            "included). Sampling ELSA's running instances took "
            f"{result['snapshot_s'].get('mean', 0) * 1000:.0f} ms of the simulator "
            f"(max {result['snapshot_s'].get('max', 0) * 1000:.0f} ms) every "
            f"{SAMPLE_INTERVAL:g} s."
        )
        notes = []
        for label in labels:
            sync = result["syncs"][label]
            state = sync["state"]
            lag, deletion = sync["lag"], sync["deletion"]
            notes.append(
                f"{NAMES[label]}: slowest commit reflected after "
                f"{_seconds(lag.get('max_seen', math.nan))}, slowest deletion after "
                f"{_seconds(deletion.get('max_seen', math.nan))}; "
                f"last error {state.get('lastError')!r}; "
                f"{len(state.get('rejections') or []):,} rejections listed; "
                f"{lag.get('superseded', 0):,} commits not reflected before ELSA deleted "
                f"the instance (left out of the lag); {deletion['never_held']:,} deleted "
                f"instances it never held (left out); {deletion['resurrected']:,} deleted "
                f"and then written again; exit code {sync['exit']}"
            )
        report.add(f"Notes ({result['kind']}):\n\n" + "\n".join(f"- {line}" for line in notes))
    report.add(
        "How to read it. Lag: from the moment a commit became visible in ELSA (the "
        "simulator's `commit_observer`) to the first row of the mirror's change log holding "
        "that `updatedAt` and `subStatus` or a later `updatedAt` (its `at`, the writing "
        "transaction's clock); a commit never held counts as `never` in the percentiles, "
        "and one whose instance ELSA deleted before the mirror held it is left out. "
        "Details: every "
        f"{SAMPLE_INTERVAL:g} s, ELSA's running instances (not system, not poisoned) against "
        "the mirror's `current_activity` and `variables` (variables only where ELSA can tell "
        "them); an instance's age is the time since the first sample that found it "
        "different, 0 while it matches; instances the mirror lacks are the lag's. Deletion: "
        "from `step()` returning it to the mirror's `delete` change, over the deleted "
        "instances the mirror had held; one never deleted counts as `never`. Requests: every "
        "request the sync sent during the churn and the settle, per second of that window "
        "(delta: `POST /workflow-instances` by `UpdatedAt`; sweep: by `CreatedAt`, or "
        "`GET /workflow-instances`). At the end: the mirror's live rows against "
        "`sim.snapshot()` after the settle, ELSA's system-workflow instances left out on both "
        "sides (the new sync leaves them out by default; today's sync has no such filter "
        "and mirrors them, counted in the last end row)."
    )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--instances", type=int, default=5_000, help="seeded instances (5000)")
    parser.add_argument("--rate", type=float, default=20.0, help="steps per second (20)")
    parser.add_argument("--duration", type=float, default=180.0, help="seconds of churn (180)")
    parser.add_argument("--settle", type=float, default=30.0, help="seconds after churn (30)")
    parser.add_argument(
        "--databases", default="sqlite", help="comma-separated: sqlite, postgresql (sqlite)"
    )
    parser.add_argument(
        "--poisoned-details",
        type=int,
        default=LIVE_REALISM.poisoned_details,
        help="instances whose details answer 500 for good "
        f"(LIVE_REALISM's {LIVE_REALISM.poisoned_details})",
    )
    parser.add_argument(
        "--today", default=TODAY_COMMIT, help=f"commit of today's sync ({TODAY_COMMIT})"
    )
    parser.add_argument(
        "--initial-timeout",
        type=float,
        default=120.0,
        help="seconds to wait at most for the syncs' first cycle (120)",
    )
    common_arguments(parser)
    args = parser.parse_args(argv)
    databases = [kind.strip() for kind in args.databases.split(",") if kind.strip()]
    title = f"Live sync: today's sync against the new one, {args.instances:,} instances"
    if args.poisoned_details != LIVE_REALISM.poisoned_details:
        title += f", {args.poisoned_details} poisoned"
    report, admin_url, busy_before = start_run(title, MODULE, args, databases)
    results: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="tamma-bench-") as tmp:
        workdir = Path(tmp)
        codes = [old_sync_code(args.today, workdir / "today-code"), new_sync_code()]
        imports = {code.label: imported_from(code) for code in codes}
        if not imports["today"].startswith(str(workdir)) or not imports["new"].startswith(
            str(REPO / "src")
        ):
            raise SystemExit(f"the syncs import the wrong code: {imports}")
        progress(f"today's sync imports {imports['today']}; the new one {imports['new']}")
        for kind in databases:
            measure = functools.partial(_measure, kind, args, admin_url, workdir, codes)
            results.append(
                retrying(f"{kind} live sync", measure, admin_url if kind != "sqlite" else None)
            )
    report.raw = {"args": vars(args), "imports": imports, "results": results}
    _write_report(report, args, results, imports, busy_before)
    report.publish(record=args.record)


if __name__ == "__main__":
    main()
