"""Alembic environment: migrate the connection handed over in `config.attributes`."""

from alembic import context

from tamma_sync.store.tables import metadata

connection = context.config.attributes.get("connection")
if connection is None:
    raise RuntimeError("tamma-sync migrations run through Store.migrate() (`tamma-sync migrate`)")

context.configure(
    connection=connection,
    target_metadata=metadata,
    render_as_batch=connection.dialect.name == "sqlite",
)
with context.begin_transaction():
    context.run_migrations()
