"""Exit codes of `tamma-sync`, shared by the CLI and the server's worker processes."""

from typing import Final

#: A usage error: a bad option or setting, refused before anything started (click's own).
USAGE: Final = 2
#: The server or a command never started (bad database URL, refused exposure, a migration
#: refused): starting it again would fail the same way, so a supervisor stops instead.
STARTUP_FAILED: Final = 3
