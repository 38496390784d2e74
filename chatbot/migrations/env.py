"""Alembic's environment for the bot's database.

The bot runs it through `chatbot.store.prepare`, which hands over an open connection.
A developer runs it through the `alembic` command (see alembic.ini at the top of the
repository) with the database given as `-x url=...`:

    .venv/bin/alembic -x url=sqlite:///dev.sqlite upgrade head
    .venv/bin/alembic -x url=sqlite:///dev.sqlite revision --autogenerate -m "what changes"
"""

from __future__ import annotations

from alembic import context
from sqlalchemy.engine import Connection

from chatbot.store import include_object, make_engine, metadata


def configure(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=metadata,
        include_object=include_object,
        render_as_batch=connection.dialect.name == "sqlite",  # SQLite alters tables by copying them
        compare_type=True,
    )


def run() -> None:
    connection = context.config.attributes.get("connection")
    if connection is not None:
        configure(connection)
        with context.begin_transaction():
            context.run_migrations()
        return
    url = context.get_x_argument(as_dictionary=True).get("url") or context.config.get_main_option("sqlalchemy.url")
    if not url:
        raise SystemExit("alembic: give the database as -x url=sqlite:///path/to/bot.sqlite")
    engine = make_engine(url)
    with engine.connect() as conn:
        configure(conn)
        with context.begin_transaction():
            context.run_migrations()
        conn.commit()


if context.is_offline_mode():
    raise SystemExit("alembic: offline (--sql) mode is not supported; give a database with -x url=...")
run()
