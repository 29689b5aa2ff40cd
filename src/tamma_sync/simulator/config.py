"""The simulator's configuration: everything that shapes its state and behaviour."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Final

from tamma_sync.simulator.realism import QUIET_REALISM, Realism
from tamma_sync.simulator.versions import ElsaVersion

#: The admin key ELSA up to 3.7.x accepts with `UseAdminApiKey()`.
ADMIN_API_KEY: Final = "00000000-0000-0000-0000-000000000000"


@dataclass(frozen=True, slots=True)
class SimulatorConfig:
    """Everything that shapes a simulator; the same config always builds the same state."""

    seed: int = 1
    #: Number of definitionIds (the first is `tamma-autonomous-mentorship`).
    definitions: int = 12
    #: Number of seeded instances, spread over `history` before `start`.
    instances: int = 200
    #: Route prefix of the ELSA API ("" for none).
    prefix: str = "/elsa/api"
    #: Virtual clock start; seeded data lies before it.
    start: datetime = datetime(2025, 6, 2, 9, 0, tzinfo=UTC)
    history: timedelta = timedelta(days=30)
    #: Virtual clock step per mutation.
    quantum: timedelta = timedelta(seconds=1)
    #: Use the real time instead (the demo); seeded data then ends now.
    wall_clock: bool = False
    #: The ELSA release simulated (`GET /package/version`); routes, request fields and the
    #: workflow state follow it (see versions.py).
    package_version: str = "3.7.1"
    #: Require `ApiKey <key>` or `Bearer <access token>` on every ELSA route but login
    #: and package version.
    require_auth: bool = False
    api_keys: tuple[str, ...] = (ADMIN_API_KEY,)
    users: Mapping[str, str] = field(default_factory=lambda: {"admin": "password"})
    access_token_lifetime: float = 3600.0
    refresh_token_lifetime: float = 7200.0
    #: The server's local offset, which ELSA's midnight (whole-day) filter rule uses.
    server_utc_offset: timedelta = timedelta(0)
    #: How much it behaves like a live, busy production ELSA (default: quiet).
    realism: Realism = QUIET_REALISM

    def __post_init__(self) -> None:
        if self.definitions < 0 or self.instances < 0:
            raise ValueError("definitions and instances must not be negative")
        if self.instances and not self.definitions:
            raise ValueError("instances need at least one definition")
        if self.prefix and (not self.prefix.startswith("/") or self.prefix.endswith("/")):
            raise ValueError("prefix must start with '/' and not end with one, e.g. /elsa/api")
        ElsaVersion.parse(self.package_version)

    @property
    def release(self) -> ElsaVersion:
        """`package_version` parsed."""
        return ElsaVersion.parse(self.package_version)
