"""Dagster's own storage (runs, events, schedules), chosen from the environment.

The top-level dagster.yaml serves the deployed stack and a laptop alike: with DAGSTER_PG_HOST set
(docker compose sets it) Dagster keeps its runs and events in Postgres through dagster-postgres;
without it, in SQLite under DAGSTER_HOME, so `uv run dagster dev` needs no Postgres. Dagster's
`env:` config has no defaults, which is why this small class exists.
"""

import os
from collections.abc import Mapping
from typing import Any

from dagster._core.storage.base_storage import DagsterStorage
from dagster._core.storage.sqlite_storage import DagsterSqliteStorage
from dagster._serdes import ConfigurableClassData
from dagster_postgres import DagsterPostgresStorage
from dagster_postgres.utils import get_conn_string


LOCAL_HOME = ".dagster_home"


def postgres_url_from_env(environ: Mapping[str, str] = os.environ) -> str | None:
    host = environ.get("DAGSTER_PG_HOST")
    if not host:
        return None
    return get_conn_string(
        username=environ.get("DAGSTER_PG_USER", "postgres"),
        password=environ.get("DAGSTER_PG_PASSWORD", ""),
        hostname=host,
        db_name=environ.get("DAGSTER_PG_DB", "postgres"),
        port=environ.get("DAGSTER_PG_PORT", "5432"),
        # dagster-postgres is written for psycopg2, while SQLAlchemy 2.1 reads a bare postgresql://
        # as psycopg 3 (which this project installs): without the scheme, NOTIFY fails on the first event.
        scheme="postgresql+psycopg2",
    )


class EnvironmentStorage(DagsterSqliteStorage):
    """Builds DagsterPostgresStorage when DAGSTER_PG_HOST is set, else DagsterSqliteStorage.

    It subclasses a storage class only because Dagster checks the configured class is one;
    `from_config_value` returns one of the two real storages, never an instance of this class.
    """

    @classmethod
    def config_type(cls) -> dict[str, Any]:
        return {}

    @classmethod
    def from_config_value(cls, inst_data: ConfigurableClassData | None, config_value: Mapping[str, Any]) -> DagsterStorage:
        url = postgres_url_from_env()
        if url:
            return DagsterPostgresStorage(postgres_url=url, inst_data=inst_data)
        # Without DAGSTER_HOME, `dagster dev` works in a temporary home that its code server does not
        # see; a folder beside the project (same working directory for all of dagster dev's
        # processes, git-ignored) gives them one storage, kept across restarts.
        home = os.environ.get("DAGSTER_HOME") or os.path.abspath(LOCAL_HOME)
        return DagsterSqliteStorage.from_local(os.path.join(home, "storage"), inst_data=inst_data)
