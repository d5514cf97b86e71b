"""Alembic's environment for the results store.  pyharness runs the
migrations itself (pyharness.history.store.open_store): the connection
comes in through config.attributes, never from an ini file."""
from alembic import context

from pyharness.history.models import metadata

connection = context.config.attributes["connection"]
context.configure(connection=connection, target_metadata=metadata,
                  render_as_batch=connection.dialect.name == "sqlite")
with context.begin_transaction():
    context.run_migrations()
