"""Resources: the log source and the monitoring database, configured from env vars when used; declared
once here for every asset, check and sensor of the defs folder."""

import hashlib
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager

import dagster as dg
from pydantic import Field

from llm_monitoring.config import get_settings
from llm_monitoring.sources import LogSource, open_source
from llm_monitoring.storage.engine import Database, database_identity, open_database
from llm_monitoring.storage.errors import DatabaseUnavailable, InvalidDatabaseUrl


class LogSourceResource(dg.ConfigurableResource):
    """Log files in a local folder or an S3-compatible bucket (s3://bucket/prefix). Unset fields fall back
    to LOGS_DIR, LOG_FILE_GLOB, PROCESSED_PREFIX, PROCESSED_DIR; a bucket's settings are the S3_* variables."""

    logs_dir: str | None = Field(default=None, description="Folder or s3://bucket/prefix to watch (default: LOGS_DIR, else ./logs).")
    glob: str | None = Field(default=None, description="File pattern, matched case-insensitively (default: LOG_FILE_GLOB).")
    processed_prefix: str | None = Field(default=None, description="Prefix for processed files (default: PROCESSED_PREFIX).")
    processed_dir: str | None = Field(default=None, description="Subfolder for processed files (default: PROCESSED_DIR).")

    def get_source(self) -> LogSource:
        """The source; LogsDirUnusable when LOGS_DIR names neither an existing folder nor a bucket."""
        return open_source(self.logs_dir or None, glob=self.glob, processed_prefix=self.processed_prefix, processed_dir=self.processed_dir)


class DatabaseResource(dg.ConfigurableResource):
    """The monitoring database (default: DATABASE_URL, else SQLite monitoring.db)."""

    url: str | None = Field(default=None, description="SQLAlchemy URL; postgres:// and postgresql:// use psycopg 3.")

    def open(self, *, ensure_schema: bool = True) -> AbstractContextManager[Database]:
        return open_database(self.url, ensure_schema=ensure_schema)

    @contextmanager
    def open_for_step(self, *, ensure_schema: bool = True) -> Iterator[Database]:
        """For asset and check bodies: a database outage fails the step with one line naming the
        database (password masked), marked retryable so the step's RetryPolicy applies."""
        try:
            with self.open(ensure_schema=ensure_schema) as database:
                yield database
        except DatabaseUnavailable as error:
            # An outage may end before the retry; a malformed URL will not.
            raise dg.Failure(description=str(error), allow_retries=not isinstance(error, InvalidDatabaseUrl)) from None

    def key(self) -> str:
        return database_key(self.url)


def database_key(url: str | None = None) -> str:
    """A short, stable name of the monitoring database, recorded on its materializations.

    Several deployments can share one Dagster instance (DAGSTER_HOME) while each writes to its own
    database: the sensors act only on events keyed with their own database. The same for every
    process writing to one database: the password is left out and a SQLite path made absolute.
    """
    identity = database_identity(url or get_settings().database_url)
    return hashlib.sha256(identity.encode()).hexdigest()[:12]


def database_kind() -> str:
    """ "postgres" or "sqlite", for asset kinds shown in the UI.

    Read when the definitions load (Dagster takes an asset's kinds at definition time), so a change
    of DATABASE_URL shows in the UI after the code location reloads; everything else reads it when used.
    """
    url = get_settings().database_url
    return "postgres" if url.startswith("postgres") else "sqlite"


@dg.definitions
def resources() -> dg.Definitions:
    return dg.Definitions(resources={"log_source": LogSourceResource(), "database": DatabaseResource()})
