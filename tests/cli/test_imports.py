"""The CLI starts with what its command needs: `keys`, `migrate` and `--help` load neither
the API, nor the sync and its ELSA client, nor the simulator."""

from __future__ import annotations

import subprocess
import sys

#: Packages only `serve`, `sync`, `demo` or `simulate-elsa` use.
COMMAND_ONLY = ["tamma_sync.api", "tamma_sync.sync", "tamma_sync.elsa", "tamma_sync.simulator"]


def test_importing_the_cli_loads_no_command_only_package() -> None:
    probe = "import sys, tamma_sync.cli; print('\\n'.join(sys.modules))"
    loaded = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True, timeout=60
    ).stdout.split()
    assert "tamma_sync.store" in loaded
    assert [name for name in loaded if name in COMMAND_ONLY] == []
