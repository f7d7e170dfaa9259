"""Schema upgrades: create what is missing, add columns and indexes of later versions, tune Postgres."""

from __future__ import annotations

from typing import TYPE_CHECKING

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from llm_monitoring.storage.daily import backfill_eval_breakdown
from llm_monitoring.storage.rollups import backfill_summaries
from llm_monitoring.storage.schema import DROPPED_INDEXES, daily_eval_breakdown, metadata, schema_state, schema_version

if TYPE_CHECKING:
    from llm_monitoring.storage.engine import Database


def ensure_schema(database: Database) -> None:
    """Create missing tables, columns and indexes; safe to call on every start.

    Every step and sensor tick calls it: one read finds the schema of this code already in place,
    and only an upgrade inspects every table under the write lock.
    """
    with database.connect() as connection:
        if stored_schema_version(connection) == schema_version():
            return
    with database.transaction() as connection:
        existing = set(sa.inspect(connection).get_table_names())
        metadata.create_all(connection, checkfirst=True)
        add_missing_columns(connection)
        # Summaries added by an upgrade start with what the database already holds.
        created = set(metadata.tables) - existing
        backfill_summaries(connection, created)
        if daily_eval_breakdown.name in created:
            backfill_eval_breakdown(connection)
        for name in DROPPED_INDEXES:
            connection.exec_driver_sql(f"DROP INDEX IF EXISTS {connection.dialect.identifier_preparer.quote(name)}")
        if connection.dialect.name == "postgresql":
            widen_string_columns(connection)
            tune_postgres(connection)
        connection.execute(sa.delete(schema_state))
        connection.execute(sa.insert(schema_state).values(version=schema_version()))


def stored_schema_version(connection: Connection) -> str | None:
    if not sa.inspect(connection).has_table(schema_state.name):
        return None
    return connection.scalar(sa.select(schema_state.c.version))


def add_missing_columns(connection: Connection) -> None:
    """Additive upgrades: a column added in a later version is added to an existing table."""
    inspector = sa.inspect(connection)
    preparer = connection.dialect.identifier_preparer
    for table in metadata.sorted_tables:
        existing = {column["name"] for column in inspector.get_columns(table.name)}
        for column in table.columns:
            if column.name in existing:
                continue
            column_type = column.type.compile(dialect=connection.dialect)
            default = ""
            if column.server_default is not None and isinstance(column.server_default.arg, str):
                default = f" DEFAULT '{column.server_default.arg}'"
            connection.exec_driver_sql(
                f"ALTER TABLE {preparer.quote(table.name)} ADD COLUMN {preparer.quote(column.name)} {column_type}{default}"
            )
        existing_indexes = {index["name"] for index in inspector.get_indexes(table.name)}
        for index in table.indexes:
            if index.name not in existing_indexes:
                index.create(connection, checkfirst=True)


def widen_string_columns(connection: Connection) -> None:
    """A VARCHAR made longer in a later version (eval_checks.evaluator_version: 16 -> 100) is widened in place.

    Postgres only: SQLite does not enforce VARCHAR lengths. Widening a VARCHAR rewrites no rows on
    Postgres (the types are binary compatible), only the catalog and the indexes that cover it.
    """
    inspector = sa.inspect(connection)
    preparer = connection.dialect.identifier_preparer
    for table in metadata.sorted_tables:
        found = {column["name"]: column["type"] for column in inspector.get_columns(table.name)}
        for column in table.columns:
            wanted = column.type.length if type(column.type) is sa.String else None
            stored = getattr(found.get(column.name), "length", None)
            if wanted is not None and stored is not None and stored < wanted:
                connection.exec_driver_sql(
                    f"ALTER TABLE {preparer.quote(table.name)} ALTER COLUMN {preparer.quote(column.name)} TYPE VARCHAR({wanted})"
                )


# Autovacuum at 2% of a table rather than Postgres's 20%: re-evaluation rewrites a window of checks
# and verdicts, retention deletes a day of every run table, and the app's index-only scans of the
# newest runs need their pages marked all-visible (measurements: docs/postgres-at-scale.md).
CHURN = "autovacuum_vacuum_scale_factor = 0.02, autovacuum_vacuum_insert_scale_factor = 0.02"
AUTOVACUUM = {
    "eval_checks": f"{CHURN}, autovacuum_analyze_scale_factor = 0.02",
    "check_verdicts": f"{CHURN}, autovacuum_analyze_scale_factor = 0.02",
    "llm_logs": f"{CHURN}, autovacuum_analyze_scale_factor = 0.02, toast.autovacuum_vacuum_scale_factor = 0.02",
    "run_search": CHURN,
}


def tune_postgres(connection: Connection) -> None:
    version = connection.dialect.server_version_info or (0,)
    for table, settings in AUTOVACUUM.items():
        if version[0] < 13:  # no insert-triggered autovacuum before Postgres 13
            settings = ", ".join(item for item in settings.split(", ") if "insert" not in item)
        connection.exec_driver_sql(f"ALTER TABLE {table} SET ({settings})")
    # Raw logs are large, compressible JSON text: lz4 (Postgres 14+) compresses them several
    # times faster than the default pglz at a similar ratio (figures in the README).
    if version[0] >= 14:
        current = connection.exec_driver_sql(
            "SELECT attcompression FROM pg_attribute WHERE attrelid = 'llm_logs'::regclass AND attname = 'raw_json'"
        ).scalar()
        if current != "l":
            try:
                with connection.begin_nested():
                    connection.exec_driver_sql("ALTER TABLE llm_logs ALTER COLUMN raw_json SET COMPRESSION lz4")
            except sa.exc.DBAPIError:
                pass  # a server built without lz4 keeps pglz; nothing else depends on it
