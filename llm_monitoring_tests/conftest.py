"""Shared fixtures: real SQLite files and real Postgres databases, created and dropped per test."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import dagster as dg
import pytest
import sqlalchemy as sa

from llm_monitoring.database_url import normalize_url
from llm_monitoring.storage.engine import Database

FIXTURES = Path(__file__).parent / "fixtures"
REAL_LOGS = Path(__file__).resolve().parents[2] / "shared" / "reallogs"
DEFAULT_TEST_DATABASE_URL = "postgresql://postgres@127.0.0.1:5432/postgres"


def server_url() -> str:
    return normalize_url(os.environ.get("TEST_DATABASE_URL") or DEFAULT_TEST_DATABASE_URL)


def _postgres_reachable(url: str) -> str | None:
    engine = sa.create_engine(url, connect_args={"connect_timeout": 3})
    try:
        with engine.connect():
            return None
    except sa.exc.OperationalError as error:
        return str(error.orig).strip().splitlines()[0]
    finally:
        engine.dispose()


@pytest.fixture(scope="session")
def postgres_server() -> str:
    url = server_url()
    problem = _postgres_reachable(url)
    if problem:
        if os.environ.get("REQUIRE_POSTGRES"):
            pytest.fail(f"REQUIRE_POSTGRES is set but Postgres is unreachable: {problem}")
        pytest.skip(f"Postgres unreachable ({problem}); set TEST_DATABASE_URL")
    return url


def create_postgres_database(server_url: str) -> tuple[str, str]:
    name = f"llmmon_test_{uuid.uuid4().hex[:12]}"
    engine = sa.create_engine(server_url, isolation_level="AUTOCOMMIT")
    with engine.connect() as connection:
        connection.exec_driver_sql(f'CREATE DATABASE "{name}"')
    engine.dispose()
    return name, sa.make_url(server_url).set(database=name).render_as_string(hide_password=False)


def drop_postgres_database(server_url: str, name: str) -> None:
    engine = sa.create_engine(server_url, isolation_level="AUTOCOMMIT")
    with engine.connect() as connection:
        connection.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    engine.dispose()


@pytest.fixture
def postgres_url(postgres_server: str) -> Iterator[str]:
    """A fresh, empty Postgres database for one test, dropped afterwards."""
    name, url = create_postgres_database(postgres_server)
    try:
        yield url
    finally:
        drop_postgres_database(postgres_server, name)


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'monitoring.db'}"


@pytest.fixture(params=["sqlite", "postgres"])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'monitoring.db'}"
    return request.getfixturevalue("postgres_url")


@pytest.fixture
def database(database_url: str) -> Iterator[Database]:
    db = Database(database_url)
    db.ensure_schema()
    try:
        yield db
    finally:
        db.dispose()


@pytest.fixture
def logs_dir(tmp_path: Path) -> Path:
    folder = tmp_path / "logs"
    folder.mkdir()
    return folder


@pytest.fixture
def env(monkeypatch: pytest.MonkeyPatch, logs_dir: Path, database_url: str) -> dict[str, str]:
    """Point the settings at a temporary log folder and test database; settled files right away."""
    values = {"LOGS_DIR": str(logs_dir), "DATABASE_URL": database_url, "SETTLE_SECONDS": "0"}
    for key, value in values.items():
        monkeypatch.setenv(key, value)
    monkeypatch.delenv("DAGSTER_HOME", raising=False)
    return values


def fixture_bytes(name: str) -> bytes:
    return (FIXTURES / name).read_bytes()


@pytest.fixture
def postgres_env_database(monkeypatch: pytest.MonkeyPatch, postgres_url: str, logs_dir: Path) -> Iterator[Database]:
    """A fresh Postgres database that the project's settings (and so its definitions) point at."""
    for key, value in {"DATABASE_URL": postgres_url, "LOGS_DIR": str(logs_dir), "SETTLE_SECONDS": "0"}.items():
        monkeypatch.setenv(key, value)
    monkeypatch.delenv("DAGSTER_HOME", raising=False)
    db = Database(postgres_url)
    db.ensure_schema()
    yield db
    db.dispose()


@pytest.fixture(scope="module")
def instance() -> Iterator[dg.DagsterInstance]:
    """A real, temporary Dagster instance shared by a module's tests."""
    with dg.instance_for_test() as test_instance:
        yield test_instance


# Modules whose tests start real processes (the runner killed mid-pass, two runners at once, commands
# as a user types them, dagster dev, the compose services' commands, a browser, an S3 server) or run the watcher.
E2E_MODULES = {
    "test_app_browser",
    "test_command_errors",
    "test_compose",
    "test_dagster_dev",
    "test_faults",
    "test_ingest_acceptance",
    "test_ingest_races",
    "test_s3_source",
}
BROWSER_MODULES = {"test_app_browser"}


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Markers from what a test uses, so `-m "not postgres"` or `-m "not e2e"` selects by need, not by file lists."""
    for item in items:
        module = item.module.__name__.rsplit(".", 1)[-1] if item.module else ""
        callspec = getattr(item, "callspec", None)
        on_postgres = "postgres_server" in getattr(item, "fixturenames", ()) or (
            callspec is not None and "postgres" in callspec.params.values()
        )
        if on_postgres:
            item.add_marker(pytest.mark.postgres)
        if module in E2E_MODULES:
            item.add_marker(pytest.mark.e2e)
        if module in BROWSER_MODULES:
            item.add_marker(pytest.mark.browser)
