"""The README's pictures, made from the demo: the dashboard and one instance's page.

    .venv/bin/python scripts/screenshots.py    # writes docs/images/dashboard.png, instance.png

Runs `tamma-sync demo` on free loopback ports in a temporary directory, waits until the
simulated ELSA is mirrored and has moved on for a while (so that an instance has a
timeline), then photographs the pages with Debian's chromium, driven by Playwright.
"""

from __future__ import annotations

import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import httpx
from playwright.sync_api import ViewportSize, sync_playwright

IMAGES = Path(__file__).resolve().parent.parent / "docs" / "images"
CHROMIUM = "/usr/bin/chromium"
VIEWPORT = ViewportSize(width=1280, height=860)
INSTANCES = 400
#: Seconds the demo's ELSA moves on after the mirror caught up: a few steps per instance.
SETTLE_SECONDS = 20


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _wait_for(condition: str, check: Callable[[], bool], timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if check():
                return
        except httpx.TransportError:
            pass
        time.sleep(0.5)
    raise SystemExit(f"screenshots: timed out waiting for {condition}")


def _busiest_instance(base_url: str) -> str:
    """A running instance with the longest observed history: the richest timeline."""
    listed = httpx.get(
        f"{base_url}/api/workflows/instances",
        params={"status": "Running", "orderBy": "updatedAt", "pageSize": 50},
    ).json()["data"]
    lengths: dict[str, int] = {
        str(item["id"]): len(
            httpx.get(f"{base_url}/api/workflows/instances/{item['id']}/history").json()["entries"]
        )
        for item in listed
    }
    return max(lengths, key=lambda instance_id: lengths[instance_id])


def main() -> None:
    IMAGES.mkdir(parents=True, exist_ok=True)
    port, elsa_port = _free_port(), _free_port()
    base_url = f"http://127.0.0.1:{port}"
    with tempfile.TemporaryDirectory() as directory:
        command = ["demo", "--port", str(port), "--elsa-port", str(elsa_port)]
        demo = subprocess.Popen(
            [sys.executable, "-m", "tamma_sync", *command, "--instances", str(INSTANCES)],
            cwd=directory,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            _wait_for("the server", lambda: httpx.get(f"{base_url}/readyz").status_code == 200)
            _wait_for(
                "the mirror",
                lambda: (
                    httpx.get(f"{base_url}/api/workflows/instances").json()["total"] >= INSTANCES
                ),
            )
            time.sleep(SETTLE_SECONDS)
            instance_id = _busiest_instance(base_url)
            with sync_playwright() as playwright:
                browser = playwright.chromium.launch(
                    executable_path=CHROMIUM, args=["--no-sandbox"]
                )
                page = browser.new_page(viewport=VIEWPORT, color_scheme="light")
                for name, path in [
                    ("dashboard", "/"),
                    ("instance", f"/instance?id={instance_id}"),
                ]:
                    page.goto(base_url + path)
                    page.wait_for_selector("#live[data-state='live']", timeout=15_000)
                    page.wait_for_timeout(1_000)  # the first live frames
                    page.screenshot(path=IMAGES / f"{name}.png")
                    print(f"wrote {IMAGES / name}.png")
                browser.close()
        finally:
            demo.terminate()
            demo.wait(timeout=20)


if __name__ == "__main__":
    main()
