"""A PostgreSQL cluster of a test's own, for tests that make the database die.

Restarting the machine's shared server would take down every other user of it (a
concurrent test run among them), so these tests `initdb` a cluster in a temporary
directory from the same binaries, on a free loopback port with its socket in that
directory, and stop and remove it afterwards. initdb and postgres refuse to run as root:
as root, they run as the `postgres` OS account (through `runuser`, else `su`).
"""

from __future__ import annotations

import glob
import os
import pwd
import re
import shlex
import shutil
import subprocess
import tempfile
import uuid
from pathlib import Path
from types import TracebackType

import pytest

from tests.support.process import free_port

COMMAND_TIMEOUT_SECONDS = 60
START_ATTEMPTS = 3
SUPERUSER = "postgres"
OS_ACCOUNT_WHEN_ROOT = "postgres"

#: Marks a test that uses the `throwaway_postgres` fixture: with the suite in parallel, all
#: of them run in one worker, which starts one cluster for them.
THROWAWAY_POSTGRES = pytest.mark.xdist_group("throwaway-postgres")


class PostgresUnavailable(RuntimeError):
    """No usable PostgreSQL binaries or OS account here: the caller skips or fails."""


def find_bindir() -> Path:
    """The directory holding `initdb`, `pg_ctl` and `postgres`: `pg_config --bindir`, then
    the one on PATH, then Debian's and RHEL's versioned directories (newest first)."""
    candidates: list[Path] = []
    pg_config = shutil.which("pg_config")
    if pg_config is not None:
        try:
            out = subprocess.run(
                [pg_config, "--bindir"], capture_output=True, text=True, timeout=10, check=True
            ).stdout.strip()
            candidates.append(Path(out))
        except (OSError, subprocess.SubprocessError):
            pass
    on_path = shutil.which("pg_ctl")
    if on_path is not None:
        candidates.append(Path(on_path).resolve().parent)
    versioned = glob.glob("/usr/lib/postgresql/*/bin") + glob.glob("/usr/pgsql-*/bin")
    candidates += sorted((Path(p) for p in versioned), key=_version, reverse=True)
    for bindir in candidates:
        if all((bindir / tool).is_file() for tool in ("initdb", "pg_ctl", "postgres")):
            return bindir
    raise PostgresUnavailable(
        "no PostgreSQL server binaries (initdb, pg_ctl, postgres) found via pg_config, "
        "PATH or /usr/lib/postgresql/*/bin"
    )


def _version(bindir: Path) -> tuple[int, ...]:
    return tuple(int(n) for n in re.findall(r"\d+", str(bindir))) or (0,)


class ThrowawayPostgres:
    """A cluster in a temporary directory, trust auth, superuser `postgres`, fsync off.

    `create()` makes and starts it; `restart()`, `stop()` and `start()` act on this
    cluster only; `destroy()` stops it at once and removes its directory.
    """

    def __init__(self, bindir: Path, root: Path, port: int, account: str | None) -> None:
        self.bindir = bindir
        self.root = root
        self.data = root / "data"
        self.log = root / "postgres.log"
        self.port = port
        self.account = account

    @classmethod
    def create(cls) -> ThrowawayPostgres:
        """initdb a new cluster and start it; PostgresUnavailable if that cannot be done."""
        bindir = find_bindir()
        account = None
        if os.geteuid() == 0:
            account = OS_ACCOUNT_WHEN_ROOT
            try:
                owner = pwd.getpwnam(account)
            except KeyError:
                raise PostgresUnavailable(
                    f"running as root and there is no {account!r} OS account to run "
                    "initdb/postgres as"
                ) from None
        root = Path(tempfile.mkdtemp(prefix="tamma-pg-"))
        cluster = cls(bindir, root, free_port(), account)
        try:
            if account is not None:
                os.chown(root, owner.pw_uid, owner.pw_gid)
            cluster._run(
                "initdb",
                "-D",
                str(cluster.data),
                "-U",
                SUPERUSER,
                "--auth=trust",
                "--no-sync",
                "--no-locale",
                "-E",
                "UTF8",
            )
            cluster._start_on_a_free_port()
        except BaseException:
            cluster.destroy()
            raise
        return cluster

    @property
    def url(self) -> str:
        """The `postgres` maintenance database, as a plain `postgresql://` URL."""
        return self.database_url(SUPERUSER)

    def database_url(self, name: str) -> str:
        return f"postgresql://{SUPERUSER}@127.0.0.1:{self.port}/{name}"

    def start(self) -> None:
        """Start the stopped cluster on its port; waits until it accepts connections."""
        self._pg_ctl("start", "-w", "-l", str(self.log), "-o", self._server_options())

    def stop(self, *, crash: bool = False) -> None:
        """Stop it: `fast` (clients disconnected, clean shutdown) or, with `crash`,
        `immediate` (no shutdown checkpoint: recovery on the next start)."""
        self._pg_ctl("stop", "-w", "-m", "immediate" if crash else "fast")

    def restart(self) -> None:
        """What the tests used to do to the machine's server, done to this one."""
        self._pg_ctl(
            "restart", "-w", "-m", "fast", "-l", str(self.log), "-o", self._server_options()
        )

    def is_running(self) -> bool:
        status = self._run("pg_ctl", "status", "-D", str(self.data), check=False)
        return status.returncode == 0

    def create_database(self) -> str:
        """A new, empty database in this cluster; its plain URL."""
        name = f"tamma_test_{uuid.uuid4().hex[:12]}"
        self._run("psql", "-X", "-q", *self._psql_target(), "-c", f'CREATE DATABASE "{name}"')
        return self.database_url(name)

    def destroy(self) -> None:
        """Stop the server if it runs (immediately: nothing in it is kept) and remove its
        directory."""
        try:
            if self.data.is_dir() and self.is_running():
                self.stop(crash=True)
        finally:
            shutil.rmtree(self.root, ignore_errors=True)

    def __enter__(self) -> ThrowawayPostgres:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.destroy()

    def _start_on_a_free_port(self) -> None:
        """Start it; another process may take the free port first: retry on a new one."""
        for attempt in range(START_ATTEMPTS):
            try:
                self.start()
                return
            except PostgresUnavailable:
                if attempt == START_ATTEMPTS - 1 or self.is_running():
                    raise
                self.port = free_port()

    def _server_options(self) -> str:
        return shlex.join(
            [
                "-p",
                str(self.port),
                "-k",
                str(self.root),
                "-c",
                "listen_addresses=127.0.0.1",
                "-c",
                "fsync=off",
                "-c",
                "synchronous_commit=off",
                "-c",
                "full_page_writes=off",
            ]
        )

    def _psql_target(self) -> list[str]:
        return ["-h", str(self.root), "-p", str(self.port), "-U", SUPERUSER, "-d", SUPERUSER]

    def _pg_ctl(self, *args: str) -> None:
        self._run("pg_ctl", "-D", str(self.data), "-t", str(COMMAND_TIMEOUT_SECONDS - 5), *args)

    def _run(self, tool: str, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        """Run a PostgreSQL tool (as the non-root account when root), in the cluster's
        directory, with PG* variables cleared so only the arguments choose the server."""
        command = [str(self.bindir / tool), *args]
        if self.account is not None:
            runuser = shutil.which("runuser") or "/usr/sbin/runuser"
            if Path(runuser).is_file():
                command = [runuser, "-u", self.account, "--", *command]
            else:
                command = ["su", "-s", "/bin/sh", self.account, "-c", shlex.join(command)]
        env = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
        try:
            done = subprocess.run(
                command,
                cwd=self.root,
                env=env,
                stdin=subprocess.DEVNULL,
                capture_output=True,
                text=True,
                timeout=COMMAND_TIMEOUT_SECONDS,
            )
        except (OSError, subprocess.TimeoutExpired) as error:
            raise PostgresUnavailable(f"{shlex.join(command)}: {error}") from error
        if check and done.returncode != 0:
            raise PostgresUnavailable(
                f"{shlex.join(command)} exited with {done.returncode}:\n"
                f"{done.stdout}{done.stderr}{self._log_tail()}"
            )
        return done

    def _log_tail(self) -> str:
        try:
            lines = self.log.read_text(errors="replace").splitlines()[-20:]
        except OSError:
            return ""
        return "server log:\n" + "\n".join(lines) if lines else ""
