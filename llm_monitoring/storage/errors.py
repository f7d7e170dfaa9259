"""Errors of the storage layer, and how to tell an outage from a bad value."""

from __future__ import annotations

import sqlalchemy as sa

from llm_monitoring.database_url import mask_url

# What a failed statement raises, for callers outside storage/ that report it without knowing SQLAlchemy:
# StorageError is any error of the storage layer's driver or SQL, DriverError one the database returned.
StorageError = sa.exc.SQLAlchemyError
DriverError = sa.exc.DBAPIError


class DatabaseUnavailable(RuntimeError):
    """The database cannot be reached; the message names it with its password masked."""


class InvalidDatabaseUrl(DatabaseUnavailable):
    """The database URL cannot be used at all (malformed, unknown driver); the message says why.

    `reason` is the why alone, without the URL, for pages whose viewers must not see it."""

    def __init__(self, message: str, reason: str = "") -> None:
        super().__init__(message)
        self.reason = reason or message


# SQLSTATE classes of errors caused by the values written: data exception, integrity constraint
# violation, program limit exceeded (an index row or a tsvector too large).
_ROW_ERROR_CLASSES = ("22", "23", "54")


def is_data_error(error: BaseException) -> bool:
    """True when a write failed because of the values of the rows written, not because of the database:
    retrying the rows one at a time then finds the one at fault. An outage, a full disk, a lock or a
    missing table is not a data error."""
    import sqlite3

    if isinstance(error, sa.exc.StatementError):  # SQLAlchemy's wrapper of what the driver raised
        return error.orig is not None and is_data_error(error.orig)
    sqlstate = getattr(error, "sqlstate", None)  # psycopg's errors from the server
    if sqlstate:
        return sqlstate[:2] in _ROW_ERROR_CLASSES
    if isinstance(error, sqlite3.Error):
        return isinstance(error, (sqlite3.DataError, sqlite3.IntegrityError))
    if type(error).__module__.startswith("psycopg"):
        return type(error).__name__ == "DataError"
    if isinstance(error, (sa.exc.SQLAlchemyError, DatabaseUnavailable, MemoryError, OSError)):
        return False
    # What a driver raises while converting a value (an int over 64 bits, a lone surrogate).
    return isinstance(error, (ValueError, TypeError, ArithmeticError, UnicodeError, RecursionError))


def url_error_reason(error: Exception) -> str:
    detail = mask_url(str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__)
    if isinstance(error, sa.exc.NoSuchModuleError):
        return f"no such database driver ({detail})"
    if isinstance(error, sa.exc.ArgumentError):
        return "it is not a database URL such as postgresql://HOST:PORT/DATABASE or sqlite:///PATH"
    if isinstance(error, ImportError):
        return f"its driver is not installed ({detail}); postgresql:// and sqlite:/// are supported"
    return f"cannot parse it ({detail})"


# Postgres SQLSTATEs that mean the connection, not the statement, failed: class 08 (connection
# exception), the server shutting down or starting (57P01-57P03), too many connections (53300).
_CONNECTION_SQLSTATES = ("08", "57P01", "57P02", "57P03", "53300")
_SQLITE_CANT_OPEN = "SQLITE_CANTOPEN"


def is_connection_error(error: sa.exc.DBAPIError) -> bool:
    """Whether the database could not be reached or the connection was lost, as opposed to a statement
    it refused (a query too complex, a value out of range): only the first is worth a retry later."""
    if error.connection_invalidated:
        return True
    cause = error.orig
    sqlstate = getattr(cause, "sqlstate", None) or getattr(cause, "pgcode", None)
    if sqlstate:
        return sqlstate.startswith(_CONNECTION_SQLSTATES)
    if type(cause).__module__.split(".")[0] == "psycopg":
        import psycopg

        # psycopg sets no SQLSTATE when the client itself failed: no connection, or it was lost.
        return isinstance(cause, (psycopg.OperationalError, psycopg.InterfaceError))
    return str(getattr(cause, "sqlite_errorname", "")).startswith(_SQLITE_CANT_OPEN)
