"""`tamma-sync` command line: serve, migrate, and the tools around them."""

from __future__ import annotations

import asyncio
import functools
import logging
import threading
from typing import Annotated

import typer
from pydantic import SecretStr
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from tamma_sync.api import create_app
from tamma_sync.api.server import Server
from tamma_sync.elsa import ElsaClient
from tamma_sync.settings import DetailsPolicy, Settings, settings_table
from tamma_sync.simulator import (
    ADMIN_API_KEY,
    ElsaSimulator,
    SimulatedTammaEngine,
    SimulatorConfig,
    serve_simulator,
)
from tamma_sync.store import Store
from tamma_sync.sync import CycleReport, HttpSink, Sink, StoreSink, SyncOptions, SyncService

app = typer.Typer(
    name="tamma-sync",
    help="Mirror ELSA 3 workflows into a durable store and serve them to dashboards.",
    no_args_is_help=True,
    add_completion=False,
)

HostOption = Annotated[str, typer.Option(help="Interface to listen on.")]
PortOption = Annotated[int, typer.Option(help="TCP port to listen on.", min=0, max=65535)]
DatabaseOption = Annotated[
    str | None,
    typer.Option(
        "--database-url",
        help="Overrides TAMMA_SYNC_DATABASE_URL (sqlite:///path.db or postgresql://…).",
    ),
]


def _settings(database_url: str | None = None) -> Settings:
    try:
        if database_url is None:
            return Settings()
        return Settings(database_url=database_url)
    except ValueError as exc:
        raise typer.BadParameter(str(exc)) from exc


def _configure_logging() -> None:
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    logging.getLogger("httpx").setLevel(logging.WARNING)  # one line per ELSA request is noise


@app.command()
def serve(
    host: HostOption = "127.0.0.1",
    port: PortOption = 8080,
    database_url: DatabaseOption = None,
) -> None:
    """Run the API server (migrates the database first)."""
    _configure_logging()
    settings = _settings(database_url)
    Server(create_app(settings), host=host, port=port).run()


@app.command()
def migrate(database_url: DatabaseOption = None) -> None:
    """Create or upgrade the database schema to the newest migration."""
    _configure_logging()
    settings = _settings(database_url)

    async def run() -> str | None:
        store = Store.from_url(settings.resolved_database_url)
        try:
            await store.migrate()
            return await store.schema_revision()
        finally:
            await store.close()

    revision = asyncio.run(run())
    typer.echo(f"database schema at revision {revision}")


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
    _configure_logging()
    settings = _settings(database_url)
    sources = settings.elsa_sources()
    if not sources:
        raise typer.BadParameter("no ELSA source: set TAMMA_SYNC_ELSA_URL or TAMMA_SYNC_SOURCES")
    failed = asyncio.run(_sync(settings, once, push_url, push_key))
    raise typer.Exit(code=1 if failed else 0)


async def _sync(settings: Settings, once: bool, push_url: str | None, push_key: str | None) -> bool:
    """Run the sync; with `once`, one cycle per source with progress. True if one failed."""
    options = SyncOptions.from_settings(settings)
    store: Store | None = None
    http_sink: HttpSink | None = None
    if push_url is not None:
        http_sink = HttpSink(push_url, SecretStr(push_key) if push_key else None)
    else:
        store = Store.from_url(settings.resolved_database_url)
        await store.migrate()
    failed = False
    try:
        for source in settings.elsa_sources():
            async with ElsaClient.from_settings(source, page_size=options.page_size) as client:
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
                    total = await client.count_instances()
                    task = progress.add_task(f"syncing {source.id}", total=total)
                    service.on_progress = functools.partial(progress.advance, task)
                    report = await service.run_cycle()
                failed = failed or report.error is not None
                _print_summary(source.id, report)
    finally:
        if http_sink is not None:
            await http_sink.aclose()
        if store is not None:
            await store.close()
    return failed


async def _demo_world(simulator: ElsaSimulator, elsa_port: int, port: int) -> None:
    """What the demo's tamma-sync watches: a moving ELSA, and a Tamma engine reporting."""
    engine = SimulatedTammaEngine(f"http://127.0.0.1:{port}", step_seconds=3.0)
    await asyncio.gather(
        serve_simulator(simulator, "127.0.0.1", elsa_port, 1.0, 3),
        engine.run(),
    )


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
        float | None, typer.Option(help="Seconds between random changes (none if unset).")
    ] = None,
    steps_per_tick: Annotated[int, typer.Option(min=1)] = 5,
    require_auth: Annotated[
        bool, typer.Option(help="Require an API key or a login, like a secured ELSA.")
    ] = False,
    wall_clock: Annotated[bool, typer.Option(help="Timestamps from the real clock.")] = True,
) -> None:
    """Serve the ELSA 3 API simulator (see src/tamma_sync/simulator/README.md)."""
    _configure_logging()
    simulator = ElsaSimulator(
        SimulatorConfig(
            seed=seed,
            definitions=definitions,
            instances=instances,
            require_auth=require_auth,
            wall_clock=wall_clock,
        )
    )
    typer.echo(f"ELSA simulator on http://{host}:{port}/elsa/api (API key {ADMIN_API_KEY})")
    asyncio.run(serve_simulator(simulator, host, port, mutate_interval, steps_per_tick))


@app.command()
def demo(
    port: PortOption = 8080,
    elsa_port: PortOption = 5080,
    instances: Annotated[
        int, typer.Option(min=0, help="Instances the simulated ELSA starts with.")
    ] = 2_000,
) -> None:
    """Simulated ELSA → sync → SQLite → API and dashboard, moving live. Ctrl-C stops it."""
    _configure_logging()
    settings = Settings()
    database = settings.data_dir / "demo.db"
    for stale in settings.data_dir.glob("demo.db*"):
        stale.unlink()
    simulator = ElsaSimulator(
        SimulatorConfig(seed=1, definitions=12, instances=instances, wall_clock=True)
    )
    threading.Thread(
        target=asyncio.run,
        args=(_demo_world(simulator, elsa_port, port),),
        name="demo-world",
        daemon=True,
    ).start()
    demo_settings = settings.model_copy(
        update={
            "database_url": f"sqlite:///{database.as_posix()}",
            "elsa_url": f"http://127.0.0.1:{elsa_port}",
            "elsa_api_key": SecretStr(ADMIN_API_KEY),
            "poll_interval": 1.0,
            "reconcile_interval": 15.0,
            "sync_details": DetailsPolicy.ALL,
        }
    )
    typer.echo(
        f"\n  tamma-sync demo\n"
        f"  dashboard  http://127.0.0.1:{port}/\n"
        f"  API docs   http://127.0.0.1:{port}/docs\n"
        f"  instances  http://127.0.0.1:{port}/api/workflows/instances?orderBy=updatedAt\n"
        f"  ELSA (sim) http://127.0.0.1:{elsa_port}/elsa/api  (changes every second)\n"
        f"  database   {database}\n"
    )
    Server(create_app(demo_settings), host="127.0.0.1", port=port, log_level="warning").run()
