"""Keys in the demo: created in the demo's database, they lock the API, and the demo's own
simulated engine goes on reporting with a key of its own."""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

import httpx

from tests.support.process import CLI, free_port, run_cli, wait_until_ready

#: Seconds a server trusts what it last read about keys (TAMMA_SYNC_AUTH_CACHE_SECONDS),
#: and one step of the demo's engine, with room to spare.
SETTLE_SECONDS = 5.0 + 3.0 + 2.0


def test_a_key_created_for_the_demo_leaves_its_engine_reporting(tmp_path: Path) -> None:
    port, elsa_port = free_port(), free_port()
    log = tmp_path / "demo.log"  # a file: a pipe read only at the end could fill up
    with log.open("wb") as log_file:
        demo = subprocess.Popen(
            [*CLI, "demo", "--port", str(port), "--elsa-port", str(elsa_port), "--instances", "20"],
            cwd=tmp_path,
            stdout=log_file,
            stderr=subprocess.STDOUT,
        )
    base_url = f"http://127.0.0.1:{port}"
    try:
        wait_until_ready(base_url, process=demo, log=log)
        created = run_cli(
            "keys",
            "create",
            "--scopes",
            "dashboard:view",
            "--database-url",
            "sqlite:///.tamma-sync/demo.db",
            cwd=tmp_path,
            timeout=30,
        )
        assert created.returncode == 0, created.stderr
        token = created.stdout.strip().splitlines()[-1]
        keyed_at = time.time() * 1000
        deadline = time.monotonic() + SETTLE_SECONDS + 15
        heartbeat = 0
        while heartbeat < keyed_at + SETTLE_SECONDS * 1000:
            assert time.monotonic() < deadline, "the demo's engine stopped reporting"
            time.sleep(0.5)
            engine = httpx.get(
                f"{base_url}/api/engines/tamma-demo",
                headers={"Authorization": f"Bearer {token}"},
                timeout=5,
            )
            assert engine.status_code == 200, engine.text
            heartbeat = engine.json()["lastHeartbeatAt"]
        # Keys are in use: without one, the engine's reports are refused too.
        assert httpx.get(f"{base_url}/api/engines", timeout=5).status_code == 401
    finally:
        demo.kill()
        demo.wait(timeout=10)
    output = log.read_text(errors="replace")
    # No refused report (the engine logs each as "cannot report: … 401 Unauthorized …"); a
    # bare "401" is no sign: ports and log times contain it.
    assert "cannot report" not in output, output[-2000:]
