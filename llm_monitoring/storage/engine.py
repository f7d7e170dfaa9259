"""The database handle: engine creation, SQLite pragmas, connections and write transactions."""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from llm_monitoring.config import get_settings
from llm_monitoring.database_url import hide_secrets, mask_url, mask_whole_url, normalize_url, url_problem
from llm_monitoring.storage.errors import DatabaseUnavailable, InvalidDatabaseUrl, is_connection_error, url_error_reason


class Database:
    """The monitoring database. `Database()` reads DATABASE_URL (default: SQLite monitoring.db)."""

    def __init__(self, url: str | None = None, *, echo: bool = False) -> None:
        given = url or get_settings().database_url
        problem = url_problem(given)
        if problem is None:
            self.url = normalize_url(given)
            try:
                self.engine: Engine = _create_engine(self.url, echo=echo)
            except (sa.exc.ArgumentError, ImportError, ValueError, TypeError) as error:
                problem = url_error_reason(error)
        if problem is not None:
            raise InvalidDatabaseUrl(f"database URL {mask_whole_url(given)} is not usable: {problem}", problem)

    def __repr__(self) -> str:
        return f"Database({self.display_url!r})"

    @property
    def display_url(self) -> str:
        return mask_url(self.engine.url.render_as_string(hide_password=True))

    @property
    def dialect(self) -> str:
        return self.engine.dialect.name

    @property
    def in_memory(self) -> bool:
        """An in-memory SQLite database, which another connection (or process) cannot see."""
        return self.dialect == "sqlite" and self.engine.url.database in (None, "", ":memory:")

    def dispose(self) -> None:
        self.engine.dispose()

    def _open(self) -> Connection:
        # Whatever stops a connection from opening (server down, refused login, a connection option
        # the driver rejects) means the database cannot be used: one DatabaseUnavailable line.
        try:
            return self.engine.connect()
        except sa.exc.DBAPIError as error:
            raise self.unavailable(error) from None

    @contextmanager
    def connect(self) -> Iterator[Connection]:
        """A connection; a failure to reach the database becomes DatabaseUnavailable (password masked)."""
        with self._open() as connection:
            yield connection

    @contextmanager
    def transaction(self) -> Iterator[Connection]:
        try:
            with self._open().execution_options(**{WRITES: True}) as connection, connection.begin():
                yield connection
        except sa.exc.DBAPIError as error:
            if is_connection_error(error):
                raise self.unavailable(error) from None
            raise

    def unavailable(self, error: BaseException) -> DatabaseUnavailable:
        first_line = self.hide_secrets(str(getattr(error, "orig", error) or error)).strip().splitlines()
        reason = first_line[0] if first_line else type(error).__name__
        return DatabaseUnavailable(f"database {self.display_url} is unavailable: {reason}")

    def hide_secrets(self, text: str) -> str:
        """`text` with this database's password masked, in URLs and wherever else it appears."""
        url = self.engine.url
        return hide_secrets(text, (url.password, *(url.query.get(key) for key in ("password", "sslpassword"))))

    def ensure_schema(self) -> None:
        """Create missing tables, columns and indexes; safe to call on every start (see migrate.ensure_schema)."""
        from llm_monitoring.storage.migrate import ensure_schema  # migrate needs this module's Database

        ensure_schema(self)


def select_in(
    connection: Connection, statement: sa.Select[Any], column: sa.ColumnElement[Any], values: Iterable[Any], chunk_size: int = 900
) -> Iterator[sa.Row[Any]]:
    """Rows of `statement` whose `column` is one of `values`, one query per chunk: SQLite builds before
    3.32 accept at most 999 bound parameters."""
    wanted = sorted(set(values))
    for start in range(0, len(wanted), chunk_size):
        yield from connection.execute(statement.where(column.in_(wanted[start : start + chunk_size])))


@contextmanager
def open_database(url: str | None = None, *, ensure_schema: bool = True) -> Iterator[Database]:
    """A Database for one command or step: schema ensured (unless told not to), disposed of at the end."""
    database = Database(url)
    try:
        if ensure_schema:
            database.ensure_schema()
        yield database
    finally:
        database.dispose()


def _create_engine(url: str, *, echo: bool) -> Engine:
    if url.startswith("sqlite"):
        engine = sa.create_engine(url, echo=echo, connect_args={"timeout": 60})
        sa.event.listen(engine, "connect", _sqlite_on_connect)
        # pysqlite's own transaction handling defers BEGIN; emit it ourselves so that a writer takes the
        # lock at the start of its transaction and two processes never deadlock on an upgrade. Reads
        # begin deferred: in WAL mode they neither wait for a writer nor hold one up.
        sa.event.listen(engine, "begin", _sqlite_begin)
        return engine
    return sa.create_engine(url, echo=echo, pool_pre_ping=True, pool_size=2, max_overflow=4)


SQLITE_PAGE_SIZE = 16384
WRITES = "llm_monitoring_writes"  # execution option of the connections Database.transaction() opens


def _sqlite_begin(connection: Connection) -> None:
    connection.exec_driver_sql("BEGIN IMMEDIATE" if connection.get_execution_options().get(WRITES) else "BEGIN")


def _sqlite_on_connect(dbapi_connection: Any, _record: Any) -> None:
    dbapi_connection.isolation_level = None
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA foreign_keys=ON")
    # Raw logs average tens of KB: with 16 KB pages each needs a third of the overflow pages it
    # needs with the default 4 KB, and bulk ingest writes about 30% faster (README, "Performance").
    # Takes effect only on a new, empty database file, so it must come before WAL mode is set.
    cursor.execute(f"PRAGMA page_size={SQLITE_PAGE_SIZE}")
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA busy_timeout=60000")
    cursor.close()


def database_identity(url: str) -> str:
    """The database a URL names, the same from every process: no password, a SQLite path made absolute."""
    parsed = sa.make_url(normalize_url(url))
    database = parsed.database
    if parsed.get_backend_name() == "sqlite" and database not in (None, "", ":memory:"):
        database = os.path.abspath(database)
    return sa.URL.create(
        parsed.get_backend_name(), username=parsed.username, host=parsed.host, port=parsed.port, database=database
    ).render_as_string(hide_password=False)
