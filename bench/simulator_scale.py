"""Simulator at scale: building N ELSA instances (default 1,000,000), and the pages a sync
reads from them.

The demo, the tests and the other benchmarks build `ElsaSimulator`s of up to a million
instances, and a sync reads them a page at a time: a build should take seconds and bounded
memory, and a page should cost about the same at any depth. Each size is built in a child
process of its own (`--worker`), so the memory it reports is the build's alone:

1. `ElsaSimulator(SimulatorConfig(seed=4, instances=N))`: wall time; RSS growth (VmRSS
   after the build minus before) and peak growth (VmHWM minus VmRSS before);
2. `step(500)`, then the delta page a sync asks next: `POST /workflow-instances` by
   `UpdatedAt` ≥ the clock before the steps, 1,000 a page, its body parsed as the HTTP
   route parses it (the parse is not timed);
3. a deep page: 1,000 instances 90 % down the `CreatedAt` order;
4. the first page in that order: the baseline of both reads.

Each read is timed `--repeat` times, the first call included. The build's baseline, same
run: the same worker on `--baseline-instances` (10,000), for the time and the memory per
instance. Targets: build ≤ 10 s, RSS growth ≤ 300 MB, delta page ≤ 50 ms, deep page
≤ 0.2 s (the slowest of the repeats). `python -m bench.simulator_scale --help` for the
options.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import subprocess
import sys
import time
from typing import Any

import orjson

from bench._common import (
    NONE,
    TIMES,
    MachineLoad,
    Report,
    Table,
    child_env,
    common_arguments,
    fmt,
    machine_description,
    memory_kib,
    percentile,
    wait_for_quiet,
)
from tamma_sync.simulator import ElsaSimulator, SimulatorConfig
from tamma_sync.simulator.instances import InstanceQuery, Order
from tamma_sync.simulator.wire import Fields, instance_query

MODULE = "bench.simulator_scale"
SEED = 4
STEPS = 500
PAGE_SIZE = 1_000
DEEP_FRACTION = 0.9
TARGET_BUILD_S = 10.0
TARGET_GROWTH_MB = 300.0
TARGET_DELTA_S = 0.05
TARGET_DEEP_S = 0.2
#: The reads, in the order the worker makes them, and what each is.
READS = {
    "delta": "delta page (`UpdatedAt` ≥ the clock before the steps)",
    "deep": f"deep page ({DEEP_FRACTION * 100:.0f} % down the `CreatedAt` order)",
    "first": f"first page (`CreatedAt` order) {NONE} baseline",
}


# -- the worker: one build and its reads, in a process of its own ----------------------------


def delta_query(cursor: str) -> InstanceQuery:
    """The sync's delta request, parsed from its JSON body as the HTTP route parses it."""
    body = {
        "timestampFilters": [
            {"column": "UpdatedAt", "operator": "GreaterThanOrEqual", "timestamp": cursor}
        ],
        "orderBy": "UpdatedAt",
        "orderDirection": "Ascending",
        "page": 0,
        "pageSize": PAGE_SIZE,
    }
    return instance_query(Fields.from_body(orjson.dumps(body)), 0)


def _read(simulator: ElsaSimulator, query: InstanceQuery, repeat: int) -> dict[str, Any]:
    seconds = []
    for _ in range(repeat):
        started = time.perf_counter()
        page = simulator.list_instances(query)
        seconds.append(time.perf_counter() - started)
    items = page["items"]
    assert isinstance(items, list)
    return {"seconds": seconds, "total": page["totalCount"], "items": len(items)}


def _worker(instances: int, repeat: int) -> dict[str, Any]:
    """Build one simulator, step it, read its pages: the figures of one size."""
    gc.collect()
    before = memory_kib(os.getpid())["VmRSS"]
    started = time.perf_counter()
    simulator = ElsaSimulator(SimulatorConfig(seed=SEED, instances=instances))
    build_s = time.perf_counter() - started
    built = memory_kib(os.getpid())
    cursor = simulator.now()
    steps = simulator.step(STEPS)
    queries = {
        "delta": delta_query(cursor),
        "deep": InstanceQuery(
            page=int(instances * DEEP_FRACTION) // PAGE_SIZE,
            page_size=PAGE_SIZE,
            order=Order.Created,
        ),
        "first": InstanceQuery(page=0, page_size=PAGE_SIZE, order=Order.Created),
    }
    return {
        "instances": instances,
        "build_s": build_s,
        "rss_growth_kib": built["VmRSS"] - before,
        "peak_growth_kib": built["VmHWM"] - before,
        "created": len(steps.created),
        "changed": len(set(steps.created) | set(steps.updated)),
        "reads": {name: _read(simulator, queries[name], repeat) for name in READS},
    }


def run_worker(instances: int, repeat: int) -> dict[str, Any]:
    """One build in a fresh process; the cores the machine was busy meanwhile added."""
    load = MachineLoad.start()
    completed = subprocess.run(
        [
            sys.executable,
            "-m",
            MODULE,
            "--worker",
            f"--instances={instances}",
            f"--repeat={repeat}",
        ],
        env=child_env(),
        capture_output=True,
        text=True,
        check=False,
    )
    if completed.returncode != 0:
        raise RuntimeError(f"worker failed ({completed.returncode}):\n{completed.stderr[-4000:]}")
    result: dict[str, Any] = json.loads(completed.stdout.splitlines()[-1])
    result["busy_cores"] = load.busy_cores()
    return result


# -- the report ------------------------------------------------------------------------------


def mb(kib: float) -> str:
    return f"{kib * 1024 / 1e6:,.0f} MB"


def ms(seconds: float) -> str:
    return f"{seconds * 1000:,.2f} ms"


def times(value: float, baseline: float) -> str:
    return f"{value / baseline:,.2f}{TIMES}" if baseline else "n/a"


def verdict(met: bool) -> str:
    return "met" if met else "**missed**"


def per_instance(run: dict[str, Any], key: str) -> float:
    return float(run[key]) / float(run["instances"])


def build_report(args: argparse.Namespace, report: Report, runs: list[dict[str, Any]]) -> None:
    baseline, full = runs
    report.add(
        f"Setup: `ElsaSimulator(SimulatorConfig(seed={SEED}, instances=N))` built in a child "
        f"process of its own for N = {full['instances']:,} and, as the baseline, N = "
        f"{baseline['instances']:,}; then `step({STEPS})` and three reads of {PAGE_SIZE:,} "
        f"instances, each timed {args.repeat} times (the first call included). RSS growth: "
        "VmRSS after the build minus before; peak: VmHWM minus VmRSS before. `busy cores`: "
        "the whole machine while the worker ran (the worker's own core included)."
    )
    report.add(
        Table(
            "Build",
            ["instances", "build", "per instance", "RSS growth", "peak growth", "busy cores"],
            [
                [
                    f"{run['instances']:,}",
                    f"**{fmt(run['build_s'], 2)} s**",
                    f"{fmt(per_instance(run, 'build_s') * 1e6, 2)} µs",
                    f"**{mb(run['rss_growth_kib'])}**",
                    mb(run["peak_growth_kib"]),
                    fmt(run["busy_cores"], 2),
                ]
                for run in runs
            ],
        )
    )
    reads = full["reads"]
    slowest = {name: max(read["seconds"]) for name, read in reads.items()}
    p50 = {name: percentile(read["seconds"], 0.5) for name, read in reads.items()}
    report.add(
        Table(
            f"Reads at {full['instances']:,} instances, after {STEPS} steps",
            ["read", "first call", "p50", "max", "totalCount", "items"],
            [
                [
                    label,
                    ms(reads[name]["seconds"][0]),
                    f"**{ms(p50[name])}**",
                    ms(slowest[name]),
                    f"{reads[name]['total']:,}",
                    f"{reads[name]['items']:,}",
                ]
                for name, label in READS.items()
            ],
        )
    )
    growth_mb = full["rss_growth_kib"] * 1024 / 1e6
    per_baseline = f"the {baseline['instances']:,}-instance build, per instance"
    build_ratio = times(per_instance(full, "build_s"), per_instance(baseline, "build_s"))
    growth_ratio = times(
        per_instance(full, "rss_growth_kib"), per_instance(baseline, "rss_growth_kib")
    )
    report.add(
        Table(
            "Targets",
            ["target", "measured", "ratio", "verdict"],
            [
                [
                    f"build ≤ {TARGET_BUILD_S:g} s",
                    f"{fmt(full['build_s'], 2)} s",
                    f"{times(full['build_s'], TARGET_BUILD_S)} the target; "
                    f"{build_ratio} {per_baseline}",
                    verdict(full["build_s"] <= TARGET_BUILD_S),
                ],
                [
                    f"RSS growth ≤ {TARGET_GROWTH_MB:g} MB",
                    mb(full["rss_growth_kib"]),
                    f"{times(growth_mb, TARGET_GROWTH_MB)} the target; "
                    f"{growth_ratio} {per_baseline}",
                    verdict(growth_mb <= TARGET_GROWTH_MB),
                ],
                *(
                    [
                        f"{READS[name].split(' (')[0]} ≤ {target * 1000:g} ms, slowest call",
                        ms(slowest[name]),
                        f"{times(slowest[name], target)} the target; p50 "
                        f"{times(p50[name], p50['first'])} the first page's",
                        verdict(slowest[name] <= target),
                    ]
                    for name, target in (("delta", TARGET_DELTA_S), ("deep", TARGET_DEEP_S))
                ),
            ],
        )
    )
    expected = {
        "delta": (full["changed"], "instances the steps created or changed"),
        "deep": (full["instances"] + full["created"], "instances in all"),
    }
    report.add(
        "Checks:\n\n"
        + "\n".join(
            f"- the {name} page's totalCount: {reads[name]['total']:,}; {count:,} {what}"
            + ("" if reads[name]["total"] == count else " (**differs**)")
            for name, (count, what) in expected.items()
        )
    )
    report.raw = {"args": vars(args), "runs": runs}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m bench.simulator_scale",
        description="Build time and memory of a simulator of N instances, and its page reads.",
    )
    parser.add_argument("--instances", type=int, default=1_000_000, help="(1000000)")
    parser.add_argument(
        "--baseline-instances", type=int, default=10_000, help="the baseline build (10000)"
    )
    parser.add_argument("--repeat", type=int, default=20, help="timed calls per read (20)")
    common_arguments(parser, postgres=False)
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        print(json.dumps(_worker(args.instances, args.repeat)))
        return
    report = Report(
        f"Simulator scale: {args.instances:,} instances", MODULE, machine_description(None)
    )
    wait_for_quiet(args.quiet_wait)
    runs = [run_worker(n, args.repeat) for n in (args.baseline_instances, args.instances)]
    build_report(args, report, runs)
    report.publish(record=args.record)


if __name__ == "__main__":
    main()
