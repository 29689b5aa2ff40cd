"""Serve the ELSA simulator on loopback (a child process of the benchmarks).

`python -m bench._elsa_server --port 5080 --instances 100000`
"""

from __future__ import annotations

import argparse
import asyncio
import time

from tamma_sync.simulator import ElsaSimulator, SimulatorConfig, serve_simulator


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--instances", type=int, default=100_000)
    parser.add_argument("--definitions", type=int, default=12)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--loop", choices=["uvloop", "asyncio"], default="uvloop")
    args = parser.parse_args()
    started = time.perf_counter()
    simulator = ElsaSimulator(
        SimulatorConfig(seed=args.seed, definitions=args.definitions, instances=args.instances)
    )
    print(f"simulator built in {time.perf_counter() - started:.2f}s", flush=True)
    serving = serve_simulator(simulator, "127.0.0.1", args.port, None, 1)
    if args.loop == "uvloop":
        import uvloop

        uvloop.run(serving)
    else:
        asyncio.run(serving)


if __name__ == "__main__":
    main()
