"""`tamma-sync` command line: serve, migrate, and the tools around them.

Each command imports what only it needs (the API, the sync, the simulator) when it runs,
so that `keys`, `migrate` and `--help` start in a fraction of `serve`'s time."""

from __future__ import annotations

import asyncio
import functools
import tempfile
import threading
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Literal, NoReturn, TypeVar

import typer
from pydantic import SecretStr, ValidationError
from pydantic_settings import SettingsError
from sqlalchemy.engine import make_url

from tamma_sync.exit_codes import STARTUP_FAILED, USAGE
from tamma_sync.logs import configure_logging
from tamma_sync.models import DEFAULT_TENANT_ID, ApiKey, Scope
from tamma_sync.runtime import tune_runtime
from tamma_sync.settings import (
    DetailsPolicy,
    Settings,
    describe_settings_error,
    has_credentials,
    settings_table,
)
from tamma_sync.store import MigrationRefused, Store, describe_unreachable_database

if TYPE_CHECKING:
    from tamma_sync.elsa import ElsaClient
    from tamma_sync.simulator import ElsaSimulator
    from tamma_sync.sync import CycleReport

_T = TypeVar("_T")

app = typer.Typer(
    name="tamma-sync",
    help="Mirror ELSA 3 workflows into a durable store and serve them to dashboards.",
    no_args_is_help=True,
    add_completion=False,
    # Click's own help: Typer's panels show every flag, --help too, as taking a `<bool>`.
    rich_markup_mode=None,
)


def _host_option(envvar: str | None = None) -> Any:
    return typer.Option(help="Interface to listen on.", envvar=envvar)


def _port_option(envvar: str | None = None) -> Any:
    return typer.Option(help="TCP port to listen on.", min=0, max=65535, envvar=envvar)


# The simulator's commands take no environment variables: TAMMA_SYNC_HOST/PORT are the server's.
HostOption = Annotated[str, _host_option()]
PortOption = Annotated[int, _port_option()]
#: The simulator's realism profiles: `RealismProfile`'s values, named here so that the
#: simulator is imported by its commands only.
RealismName = Literal["quiet", "live"]
DatabaseOption = Annotated[
    str | None,
    typer.Option(
        "--database-url",
        help="Overrides TAMMA_SYNC_DATABASE_URL (sqlite:///path.db or postgresql://…).",
    ),
]


def _settings(database_url: str | None = None) -> Settings:
    try:
        settings = Settings() if database_url is None else Settings(database_url=database_url)
    except ValidationError as exc:
        _refuse(describe_settings_error(exc))
    except SettingsError as exc:  # JSON that does not parse; its text quotes no value
        _refuse(str(exc))
    _check_sqlite_directory(settings)
    return settings


def _check_sqlite_directory(settings: Settings) -> None:
    """SQLite writes its file and, beside it, its journal: refuse a directory where no file
    can be made (read-only, not a directory, not creatable) before anything starts."""
    url = make_url(settings.resolved_database_url)
    if url.get_backend_name() != "sqlite" or url.database in (None, "", ":memory:"):
        return
    directory = Path(url.database).parent
    try:
        directory.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=directory):
            pass
    except OSError as exc:
        setting = "TAMMA_SYNC_DATABASE_URL" if settings.database_url else "TAMMA_SYNC_DATA_DIR"
        _refuse(
            f"cannot write the SQLite database's directory {directory}: {exc.strerror}; "
            f"set {setting} to a writable place"
        )


def _refuse(reason: str, code: int = USAGE) -> NoReturn:
    """Stop before starting anything: one line on stderr, exit code 2 (a usage error) or
    `code`."""
    typer.echo(f"Error: {reason}", err=True)
    raise typer.Exit(code=code)


async def _migrate(store: Store, url: str) -> None:
    """Migrate, the store's first connection: a database that cannot be reached ends the
    command in one line saying what to do, not in a traceback."""
    try:
        await store.migrate()
    except MigrationRefused as exc:
        _refuse(str(exc), code=STARTUP_FAILED)
    except Exception as exc:
        reason = describe_unreachable_database(exc, url)
        if reason is None:
            raise
        _refuse(reason, code=STARTUP_FAILED)


@app.command()
def serve(
    host: Annotated[str, _host_option("TAMMA_SYNC_HOST")] = "127.0.0.1",
    port: Annotated[int, _port_option("TAMMA_SYNC_PORT")] = 8080,
    database_url: DatabaseOption = None,
    insecure: Annotated[
        bool,
        typer.Option(help="Serve on a network interface even without any API key."),
    ] = False,
    workers: Annotated[
        int,
        typer.Option(
            help="Server processes sharing the port, each a replica of its own "
            "(see docs/operations.md).",
            min=1,
            envvar="TAMMA_SYNC_WORKERS",
        ),
    ] = 1,
) -> None:
    """Run the API server and dashboard, syncing every configured ELSA source.

    Migrates the database first. Without API keys it serves on loopback only, unless
    --insecure."""
    settings = _settings(database_url)  # a refused setting is told before the API loads
    from tamma_sync.api.app import refusal
    from tamma_sync.api.auth import is_loopback
    from tamma_sync.api.workers import ServeOptions, run_server, run_workers

    configure_logging(settings.log_format)
    if not is_loopback(host) and not insecure and not _with_store(database_url, _has_keys):
        _refuse(refusal(host))
    options = ServeOptions(settings=settings, host=host, port=port, insecure=insecure)
    if workers > 1:
        raise typer.Exit(code=run_workers(options, workers))
    if not run_server(options):
        raise typer.Exit(code=STARTUP_FAILED)


@app.command()
def migrate(database_url: DatabaseOption = None) -> None:
    """Create or upgrade the database schema to the newest migration."""
    configure_logging(_settings(database_url).log_format)

    async def revision(store: Store) -> str | None:
        return await store.schema_revision()

    typer.echo(f"database schema at revision {_with_store(database_url, revision)}")


keys_app = typer.Typer(help="Manage API keys (stored hashed; each bound to a tenant).")
app.add_typer(keys_app, name="keys")


@keys_app.command("create")
def create_key(
    scopes: Annotated[
        str,
        typer.Option(help=f"Comma-separated, from: {', '.join(s.value for s in Scope)}."),
    ],
    tenant: Annotated[
        str,
        typer.Option(
            help="The tenant the key reads and writes: the one sources without a "
            '"tenantId" (in TAMMA_SYNC_SOURCES) sync into, or a source\'s "tenantId".'
        ),
    ] = DEFAULT_TENANT_ID,
    name: Annotated[str | None, typer.Option(help="A label to recognise the key by.")] = None,
    database_url: DatabaseOption = None,
) -> None:
    """Create a key; the key itself is printed once, alone on the last line.

    Warns when the tenant holds no data and no configured source syncs into it: such a key
    reads empty lists, most likely for a mistyped or unconfigured tenant."""
    try:
        chosen = [Scope(part.strip()) for part in scopes.split(",") if part.strip()]
    except ValueError as exc:
        raise typer.BadParameter(
            f"{exc}; scopes are {', '.join(s.value for s in Scope)}", param_hint="--scopes"
        ) from exc
    if not chosen:
        raise typer.BadParameter("give at least one scope", param_hint="--scopes")

    synced = {source.tenant_id for source in _settings(database_url).elsa_sources()}

    async def create(store: Store) -> tuple[ApiKey, str, bool]:
        key, token = await store.create_api_key(tenant, chosen, name)
        return key, token, await store.tenant_has_data(tenant)

    key, token, has_data = _with_store(database_url, create)
    typer.echo(f"created key {key.id} for tenant {key.tenant_id}: {', '.join(key.scopes)}")
    if tenant != DEFAULT_TENANT_ID and tenant not in synced and not has_data:
        typer.echo(
            f"warning: tenant {tenant!r} has no data and no ELSA source; the sync writes "
            f'into {DEFAULT_TENANT_ID!r} unless a source sets "tenantId" in '
            "TAMMA_SYNC_SOURCES",
            err=True,
        )
    typer.echo("store it now; it cannot be shown again:", err=True)
    typer.echo(token)


@keys_app.command("list")
def list_keys(database_url: DatabaseOption = None) -> None:
    """Every key: id, tenant, scopes, created, revoked (never the secret)."""

    async def listed(store: Store) -> list[ApiKey]:
        return await store.list_api_keys()

    for key in _with_store(database_url, listed):
        state = "revoked" if key.revoked_at else "active"
        created = datetime.fromtimestamp(key.created_at / 1000, UTC).isoformat(timespec="seconds")
        typer.echo(
            f"{key.id}  {state:<7}  tenant={key.tenant_id}  scopes={','.join(key.scopes)}  "
            f"created={created}" + (f"  name={key.name}" if key.name else "")
        )


@keys_app.command("revoke")
def revoke_key(key_id: str, database_url: DatabaseOption = None) -> None:
    """Revoke a key; servers stop accepting it within seconds."""

    async def revoke(store: Store) -> bool:
        return await store.revoke_api_key(key_id)

    if not _with_store(database_url, revoke):
        typer.echo(f"no active key {key_id}", err=True)
        raise typer.Exit(code=1)
    typer.echo(f"revoked {key_id}")


async def _has_keys(store: Store) -> bool:
    return await store.has_active_api_keys()


def _with_store(database_url: str | None, action: Callable[[Store], Awaitable[_T]]) -> _T:
    """Run `action` on the migrated store of the configured database."""
    settings = _settings(database_url)

    async def run() -> _T:
        store = Store.from_url(settings.resolved_database_url)
        try:
            await _migrate(store, settings.resolved_database_url)
            return await action(store)
        finally:
            await store.close()

    return asyncio.run(run())


@app.command("settings")
def show_settings() -> None:
    """Print every setting (environment variable, default, meaning) as a Markdown table."""
    typer.echo(settings_table(), nl=False)


def main() -> None:
    app()


@app.command()
def sync(
    once: Annotated[
        bool, typer.Option("--once", help="One cycle per source (an initial sync), then exit.")
    ] = False,
    database_url: DatabaseOption = None,
    push_url: Annotated[
        str | None,
        typer.Option(help="Push to a remote tamma-sync (POST /api/sync/batch) instead."),
    ] = None,
    push_key: Annotated[
        str | None,
        typer.Option(envvar="TAMMA_SYNC_PUSH_KEY", help="API key with the sync:write scope."),
    ] = None,
) -> None:
    """Sync the configured ELSA sources into the database, or push them to a server."""
    settings = _settings(database_url)
    configure_logging(settings.log_format)
    sources = settings.elsa_sources()
    if not sources:
        raise typer.BadParameter("no ELSA source: set TAMMA_SYNC_ELSA_URL or TAMMA_SYNC_SOURCES")
    if push_url is not None:
        _check_push_url(push_url, push_key)
    tune_runtime()
    failed = asyncio.run(_sync(settings, once, push_url, push_key))
    raise typer.Exit(code=1 if failed else 0)


def _check_push_url(push_url: str, push_key: str | None) -> None:
    """Refuse a push URL httpx cannot read, or whose credentials would replace the key's
    Authorization header (every push 401)."""
    try:
        with_credentials = has_credentials(push_url)
    except ValueError as exc:
        _refuse(f"--push-url is not a valid URL: {exc}")
    if with_credentials and push_key:
        _refuse(
            "--push-url carries credentials (user:password@) and a push key is set "
            "(--push-key or TAMMA_SYNC_PUSH_KEY): give one of them"
        )


async def _sync(settings: Settings, once: bool, push_url: str | None, push_key: str | None) -> bool:
    """Run the sync; with `once`, one cycle per source with progress. True if one failed."""
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
    )

    from tamma_sync.sync import HttpSink, Sink, StoreSink, SyncOptions, SyncService

    options = SyncOptions.from_settings(settings)
    store: Store | None = None
    http_sink: HttpSink | None = None
    if push_url is not None:
        http_sink = HttpSink(push_url, SecretStr(push_key) if push_key else None)
    else:
        store = Store.from_url(
            settings.resolved_database_url, pool_size=settings.database_pool_size
        )
        await _migrate(store, settings.resolved_database_url)
    failed = False
    try:
        for source in settings.elsa_sources():
            async with options.client_for(source) as client:
                sink: Sink = http_sink or StoreSink(_require(store), source.tenant_id)
                service = SyncService(source, client, sink, options)
                if not once:
                    await service.run()
                    continue
                with Progress(
                    TextColumn("{task.description}"),
                    BarColumn(),
                    MofNCompleteColumn(),
                    TimeElapsedColumn(),
                ) as progress:
                    total = await _instance_count(client)
                    task = progress.add_task(f"syncing {source.id}", total=total)
                    service.on_progress = functools.partial(progress.advance, task)
                    report = await service.run_cycle()
                    if report.error is None and total is not None:
                        # The bar counts rows read, a resumed sync only those changed since
                        # its cursor: once the cycle is done, the mirror holds them all.
                        progress.update(task, completed=total)
                failed = failed or report.error is not None
                _print_summary(source.id, report)
    finally:
        if http_sink is not None:
            await http_sink.aclose()
        if store is not None:
            await store.close()
    return failed


async def _demo_world(
    simulator: ElsaSimulator, elsa_port: int, port: int, database_url: str
) -> None:
    """What the demo's tamma-sync watches: a moving ELSA, and a Tamma engine reporting."""
    from tamma_sync.simulator import SimulatedTammaEngine, serve_simulator

    async def engine_key() -> str:
        """A key for the demo's engine, made once keys are in use (someone created one in
        the demo's database): the server then refuses reports without one."""
        store = Store.from_url(database_url)
        try:
            _, token = await store.create_api_key(
                DEFAULT_TENANT_ID, [Scope.ENGINES_REPORT], "demo engine"
            )
        finally:
            await store.close()
        return token

    engine = SimulatedTammaEngine(f"http://127.0.0.1:{port}", new_key=engine_key, step_seconds=3.0)
    await asyncio.gather(
        serve_simulator(simulator, "127.0.0.1", elsa_port, 1.0, 3),
        engine.run(),
    )


async def _instance_count(client: ElsaClient) -> int | None:
    """ELSA's instance count for the progress bar; unknown if ELSA will not say (the cycle
    then reports why)."""
    from tamma_sync.elsa import ElsaError

    try:
        return await client.count_instances()
    except ElsaError:
        return None


def _print_summary(source_id: str, report: CycleReport) -> None:
    written = report.written
    line = (
        f"{source_id}: {written.created} created, {written.updated} updated, "
        f"{written.unchanged} unchanged, {written.deleted} deleted, "
        f"{report.details_fetched} details fetched"
    )
    typer.echo(line if report.error is None else f"{line}; FAILED: {report.error}")


def _require(store: Store | None) -> Store:
    assert store is not None
    return store


@app.command("simulate-elsa")
def simulate_elsa(
    host: HostOption = "127.0.0.1",
    port: PortOption = 5080,
    seed: Annotated[int, typer.Option(help="Same seed, same data.")] = 1,
    definitions: Annotated[int, typer.Option(min=1)] = 12,
    instances: Annotated[int, typer.Option(min=0)] = 200,
    mutate_interval: Annotated[
        float | None,
        typer.Option(
            help="Seconds between random changes (none if unset; 5 steps a second with "
            "--realism live)."
        ),
    ] = None,
    steps_per_tick: Annotated[int, typer.Option(min=1)] = 5,
    require_auth: Annotated[
        bool, typer.Option(help="Require an API key or a login, like a secured ELSA.")
    ] = False,
    wall_clock: Annotated[bool, typer.Option(help="Timestamps from the real clock.")] = True,
    realism: Annotated[
        RealismName,
        typer.Option(help="quiet: every change visible at once; live: a busy production ELSA."),
    ] = "quiet",
    commit_lag: Annotated[
        float | None,
        typer.Option(min=0.0, help="Seconds a commit may take to become visible."),
    ] = None,
    silent_share: Annotated[
        float | None,
        typer.Option(min=0.0, max=1.0, help="Share of steps that change no updatedAt."),
    ] = None,
    delete_share: Annotated[
        float | None, typer.Option(min=0.0, max=1.0, help="Share of steps that delete.")
    ] = None,
    ties: Annotated[
        bool | None, typer.Option("--ties/--no-ties", help="Shuffle rows with equal keys.")
    ] = None,
    system_workflows: Annotated[
        bool | None,
        typer.Option(
            "--system-workflows/--no-system-workflows", help="Run ELSA's system workflow."
        ),
    ] = None,
    poisoned_details: Annotated[
        int | None, typer.Option(min=0, help="Instances whose details answer 500.")
    ] = None,
    package_version: Annotated[
        str, typer.Option(help="The ELSA release to behave like (3.0.0 ... 3.7.1).")
    ] = "3.7.1",
) -> None:
    """Serve the ELSA 3 API simulator (see src/tamma_sync/simulator/README.md)."""
    from tamma_sync.simulator import (
        ADMIN_API_KEY,
        ElsaSimulator,
        RealismProfile,
        SimulatorConfig,
        serve_simulator,
    )

    profile = RealismProfile(realism)
    if mutate_interval is None and profile is RealismProfile.live:
        mutate_interval = steps_per_tick / 5.0
    try:
        config = SimulatorConfig(
            seed=seed,
            definitions=definitions,
            instances=instances,
            require_auth=require_auth,
            wall_clock=wall_clock,
            package_version=package_version,
            realism=profile.realism.tuned(
                commit_lag=None if commit_lag is None else timedelta(seconds=commit_lag),
                silent_share=silent_share,
                delete_share=delete_share,
                ties=ties,
                system_workflows=system_workflows,
                poisoned_details=poisoned_details,
            ),
        )
    except ValueError as error:
        raise typer.BadParameter(str(error)) from error
    configure_logging()  # only now: a refused command leaves logging as it was
    simulator = ElsaSimulator(config)
    typer.echo(
        f"ELSA {package_version} simulator ({profile.value}) on http://{host}:{port}/elsa/api "
        f"(API key {ADMIN_API_KEY})"
    )
    asyncio.run(serve_simulator(simulator, host, port, mutate_interval, steps_per_tick))


@app.command()
def demo(
    port: PortOption = 8080,
    elsa_port: Annotated[
        int, typer.Option(help="TCP port of the simulated ELSA.", min=0, max=65535)
    ] = 5080,
    instances: Annotated[
        int, typer.Option(min=0, help="Instances the simulated ELSA starts with.")
    ] = 2_000,
) -> None:
    """Simulated ELSA → sync → SQLite → API and dashboard, moving live. Ctrl-C stops it."""
    from tamma_sync.api import create_app
    from tamma_sync.api.server import Server
    from tamma_sync.simulator import ADMIN_API_KEY, ElsaSimulator, SimulatorConfig

    configure_logging()
    settings = _settings()
    database = settings.data_dir / "demo.db"
    for stale in settings.data_dir.glob("demo.db*"):
        stale.unlink()
    simulator = ElsaSimulator(
        SimulatorConfig(seed=1, definitions=12, instances=instances, wall_clock=True)
    )
    database_url = f"sqlite:///{database.as_posix()}"
    demo_settings = settings.model_copy(
        update={
            "database_url": database_url,
            "elsa_url": f"http://127.0.0.1:{elsa_port}",
            "elsa_api_key": SecretStr(ADMIN_API_KEY),
            "poll_interval": 1.0,
            "sync_details": DetailsPolicy.ALL,
        }
    )
    threading.Thread(
        target=asyncio.run,
        args=(_demo_world(simulator, elsa_port, port, demo_settings.resolved_database_url),),
        name="demo-world",
        daemon=True,
    ).start()
    typer.echo(
        f"\n  tamma-sync demo\n"
        f"  dashboard  http://127.0.0.1:{port}/\n"
        f"  API docs   http://127.0.0.1:{port}/docs\n"
        f"  instances  http://127.0.0.1:{port}/api/workflows/instances?orderBy=updatedAt\n"
        f"  ELSA (sim) http://127.0.0.1:{elsa_port}/elsa/api  (changes every second)\n"
        f"  database   {database}\n"
        f"  API key    tamma-sync keys create --scopes dashboard:view,workflows:view "
        f"--database-url {database_url}\n"
    )
    tune_runtime()
    Server(create_app(demo_settings), host="127.0.0.1", port=port, log_level="warning").run()
