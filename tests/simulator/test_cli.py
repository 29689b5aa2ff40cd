"""`tamma-sync simulate-elsa`: realism and release options are checked before serving."""

from __future__ import annotations

import logging
from typing import get_args

from typer.testing import CliRunner

from tamma_sync.cli import RealismName, app
from tamma_sync.simulator import RealismProfile


def test_simulate_elsa_refuses_an_unknown_release_or_profile() -> None:
    handlers = list(logging.getLogger().handlers)
    runner = CliRunner()
    release = runner.invoke(app, ["simulate-elsa", "--package-version", "2.1.0"])
    assert release.exit_code == 2 and "3.x" in release.output
    profile = runner.invoke(app, ["simulate-elsa", "--realism", "chaotic"])
    assert profile.exit_code == 2
    shares = runner.invoke(app, ["simulate-elsa", "--silent-share", "0.8", "--delete-share", "0.5"])
    assert shares.exit_code == 2 and "share" in shares.output
    # Refused before logging is set up: the process's logs still go where they went.
    assert logging.getLogger().handlers == handlers


def test_the_cli_offers_every_realism_profile() -> None:
    """The CLI names the profiles itself, so as not to import the simulator to start."""
    assert get_args(RealismName) == tuple(RealismProfile)
