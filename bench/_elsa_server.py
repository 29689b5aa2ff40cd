"""Serve the ELSA simulator on loopback (a child process of the benchmarks).

`python -m bench._elsa_server --port 5080 --instances 100000`
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import time
from datetime import UTC, datetime

from tamma_sync.simulator import ElsaSimulator, SimulatorConfig, serve_simulator


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--instances", type=int, default=100_000)
    parser.add_argument("--definitions", type=int, default=12)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--loop", choices=["uvloop", "asyncio"], default="uvloop")
    parser.add_argument(
        "--ending-now",
        action="store_true",
        help="seed the history up to now (the trends then count it), not up to a fixed date",
    )
    args = parser.parse_args()
    started = time.perf_counter()
    config = SimulatorConfig(seed=args.seed, definitions=args.definitions, instances=args.instances)
    if args.ending_now:
        config = dataclasses.replace(
            config, start=datetime.now(UTC).replace(second=0, microsecond=0)
        )
    simulator = ElsaSimulator(config)
    print(f"simulator built in {time.perf_counter() - started:.2f}s", flush=True)
    serving = serve_simulator(simulator, "127.0.0.1", args.port, None, 1)
    if args.loop == "uvloop":
        import uvloop

        uvloop.run(serving)
    else:
        asyncio.run(serving)


if __name__ == "__main__":
    main()
