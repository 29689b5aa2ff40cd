"""`tamma-sync` command line: serve, migrate, and the tools around them."""

from __future__ import annotations

import asyncio
import logging
from typing import Annotated

import typer
import uvicorn

from tamma_sync.api import create_app
from tamma_sync.settings import Settings
from tamma_sync.store import Store

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


@app.command()
def serve(
    host: HostOption = "127.0.0.1",
    port: PortOption = 8080,
    database_url: DatabaseOption = None,
) -> None:
    """Run the API server (migrates the database first)."""
    _configure_logging()
    settings = _settings(database_url)
    uvicorn.run(create_app(settings), host=host, port=port, log_level="info")


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


def main() -> None:
    app()
