"""Start-up mistakes end in one line saying what is wrong, not in a traceback."""

from __future__ import annotations

import pytest

from tests.support.process import run_cli

#: sysfs refuses files even to root, as a read-only mount does: an existing directory no
#: file can be made in, and one that cannot be made.
UNWRITABLE = ["/sys/kernel", "/sys/kernel/tamma-sync"]


@pytest.mark.parametrize("data_dir", UNWRITABLE)
@pytest.mark.parametrize("command", [["serve", "--port", "0"], ["migrate"]])
def test_an_unwritable_data_directory_is_one_line(data_dir: str, command: list[str]) -> None:
    result = run_cli(*command, env={"TAMMA_SYNC_DATA_DIR": data_dir}, timeout=30)
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert data_dir in lines[0]
    assert "TAMMA_SYNC_DATA_DIR" in lines[0]
    assert "Traceback" not in result.stderr
