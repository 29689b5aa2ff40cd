"""The README's command sections run as written, top to bottom, on fresh data.

Only what cannot run here is replaced: the ELSA server is the simulator on loopback, the
database gets a fresh name, the server a free port. Everything else is the README's text,
run by bash.
"""

from __future__ import annotations

import asyncio
import os
import re
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tamma_sync.simulator import ADMIN_API_KEY, ElsaSimulator, SimulatorConfig
from tests.conftest import _admin, postgres_admin_url
from tests.support.process import free_port, wait_until_ready
from tests.support.server import serve_in_thread

README = Path(__file__).resolve().parent.parent / "README.md"
#: A key, as `keys create` prints it alone on its last line.
KEY_LINE = re.compile(r"^tsk_[A-Za-z0-9_-]{32,}$")


def readme_block(heading: str) -> str:
    """The first bash block after the README's `heading` line."""
    text = README.read_text()
    after = text[text.index(f"\n{heading}\n") :]
    start = after.index("```bash\n") + len("```bash\n")
    return after[start : after.index("```", start)]


@pytest.fixture
def elsa_url() -> Iterator[str]:
    simulator = ElsaSimulator(SimulatorConfig(seed=11, definitions=3, instances=40))
    with serve_in_thread(simulator.app) as url:
        yield url


@pytest.fixture
def fresh_database_name() -> Iterator[str]:
    if postgres_admin_url() is None:
        pytest.skip("the README's PostgreSQL section needs TAMMA_SYNC_TEST_POSTGRES_URL")
    name = f"tamma_readme_{uuid.uuid4().hex[:10]}"
    yield name
    asyncio.run(_admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


def test_mirroring_a_real_elsa_into_postgresql_runs_as_written(
    elsa_url: str, fresh_database_name: str, tmp_path: Path
) -> None:
    script = readme_block("### Mirroring a real ELSA into PostgreSQL")
    assert script.rstrip().endswith("tamma-sync serve --host 0.0.0.0")
    port = free_port()
    script = (
        script.replace(" tamma\n", f" {fresh_database_name}\n")
        .replace("/tamma\n", f"/{fresh_database_name}\n")
        .replace("http://elsa:5000", elsa_url)
        .replace("your-elsa-api-key", ADMIN_API_KEY)
        .replace(
            "tamma-sync serve --host 0.0.0.0", f"exec tamma-sync serve --host 0.0.0.0 --port {port}"
        )
    )
    environment = {
        **{name: value for name, value in os.environ.items() if not name.startswith("TAMMA_SYNC_")},
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
    }
    log = tmp_path / "serve.log"  # stderr: a pipe read only at the end could fill up
    with log.open("w") as log_file:
        process = subprocess.Popen(
            ["bash", "-euo", "pipefail", "-c", script],
            cwd=tmp_path,
            env=environment,
            stdout=subprocess.PIPE,
            stderr=log_file,
            text=True,
        )
    printed: list[str] = []
    stdout = process.stdout
    assert stdout is not None
    reader = threading.Thread(
        target=lambda: printed.extend(line.strip() for line in iter(stdout.readline, "")),
        daemon=True,
    )
    reader.start()
    base_url = f"http://127.0.0.1:{port}"
    try:
        wait_until_ready(base_url, timeout=60, process=process, log=log)
        [key] = [line for line in printed if KEY_LINE.match(line)]
        with httpx.Client(base_url=base_url, timeout=10) as http:
            assert http.get("/api/workflows/instances").status_code == 401
            headers = {"Authorization": f"Bearer {key}"}
            for _ in range(100):
                listed = http.get("/api/workflows/instances", headers=headers).json()
                if listed["total"] == 40:
                    break
                time.sleep(0.2)
            assert listed["total"] == 40, "the key reads what the sync mirrored"
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=20)
        finally:
            if process.poll() is None:
                process.kill()
            reader.join(timeout=5)
    with process:  # closes its stdout
        assert process.returncode == 0, log.read_text()[-2000:]
