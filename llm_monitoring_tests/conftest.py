"""Shared fixtures: real SQLite files and real Postgres databases, created and dropped per test.

The suite runs in parallel (pytest-xdist, see pyproject.toml): every database, folder, port and
Dagster home is the test's own. A database that starts with the schema is a copy of a template
made once per run (Postgres: `CREATE DATABASE ... TEMPLATE`, SQLite: a file copy), which is what
`ensure_schema()` on an empty database gives, in a tenth of the time.
"""

from __future__ import annotations

import os
import shutil
import uuid
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any

import dagster as dg
import pytest
import sqlalchemy as sa

from llm_monitoring.database_url import normalize_url
from llm_monitoring.storage.engine import Database
from llm_monitoring.storage.schema import schema_version

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


def database_url_of(server_url: str, name: str) -> str:
    return sa.make_url(server_url).set(database=name).render_as_string(hide_password=False)


def create_postgres_database(server_url: str, template: str | None = None) -> tuple[str, str]:
    name = f"llmmon_test_{uuid.uuid4().hex[:12]}"
    engine = sa.create_engine(server_url, isolation_level="AUTOCOMMIT")
    with engine.connect() as connection:
        connection.exec_driver_sql(f'CREATE DATABASE "{name}"' + (f' TEMPLATE "{template}"' if template else ""))
    engine.dispose()
    return name, database_url_of(server_url, name)


def drop_postgres_database(server_url: str, name: str) -> None:
    engine = sa.create_engine(server_url, isolation_level="AUTOCOMMIT")
    with engine.connect() as connection:
        connection.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    engine.dispose()


# ---------------------------------------------------------------- one template database per run

RUN_ID = pytest.StashKey[str]()
USED_TEMPLATES = pytest.StashKey[set[tuple[str, str]]]()  # (server URL, template name)


def pytest_configure(config: pytest.Config) -> None:
    workerinput: dict[str, Any] | None = getattr(config, "workerinput", None)
    # Every process of one run (the xdist workers and their controller) names the same template.
    config.stash[RUN_ID] = workerinput["llmmon_run_id"] if workerinput else uuid.uuid4().hex[:10]
    config.stash[USED_TEMPLATES] = set()


@pytest.hookimpl(optionalhook=True)
def pytest_configure_node(node: Any) -> None:
    """xdist: hand the run's id to each worker."""
    node.workerinput["llmmon_run_id"] = node.config.stash[RUN_ID]


@pytest.hookimpl(optionalhook=True)
def pytest_testnodedown(node: Any, error: object) -> None:
    """xdist: the controller drops, at the end, the templates its workers made."""
    templates = getattr(node, "workeroutput", {}).get("llmmon_templates", [])
    node.config.stash[USED_TEMPLATES].update((server, name) for server, name in templates)


def pytest_sessionfinish(session: pytest.Session) -> None:
    used = session.config.stash.get(USED_TEMPLATES, set())
    workeroutput: dict[str, Any] | None = getattr(session.config, "workeroutput", None)
    if workeroutput is not None:  # an xdist worker: its controller drops them once every worker is done
        workeroutput["llmmon_templates"] = [list(template) for template in sorted(used)]
        return
    for server, name in sorted(used):
        drop_postgres_database(server, name)


def ensure_template(server_url: str, name: str) -> None:
    """Create template database `name` holding the current schema, unless a worker of this run already did.

    A session-level advisory lock makes the parallel workers wait for the first one to finish it."""
    engine = sa.create_engine(server_url, isolation_level="AUTOCOMMIT")
    try:
        with engine.connect() as connection:
            connection.exec_driver_sql("SELECT pg_advisory_lock(hashtext(%(name)s))", {"name": name})
            try:
                found = connection.exec_driver_sql("SELECT 1 FROM pg_database WHERE datname = %(name)s", {"name": name}).scalar()
                if not found:
                    connection.exec_driver_sql(f'CREATE DATABASE "{name}"')
                    try:
                        template = Database(database_url_of(server_url, name))
                        template.ensure_schema()
                        template.dispose()
                        # CREATE DATABASE ... TEMPLATE refuses a template someone is connected to: nobody may.
                        connection.exec_driver_sql(f'ALTER DATABASE "{name}" WITH ALLOW_CONNECTIONS false')
                    except BaseException:
                        connection.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
                        raise
            finally:
                connection.exec_driver_sql("SELECT pg_advisory_unlock(hashtext(%(name)s))", {"name": name})
    finally:
        engine.dispose()


@pytest.fixture(scope="session")
def postgres_template(postgres_server: str, pytestconfig: pytest.Config) -> str:
    """The name of this run's template database: the current schema, no rows."""
    name = f"llmmon_tpl_{schema_version()[:8]}_{pytestconfig.stash[RUN_ID]}"
    pytestconfig.stash[USED_TEMPLATES].add((postgres_server, name))
    ensure_template(postgres_server, name)
    return name


class DatabaseDropper:
    """Drops the databases of finished tests in a background thread: a DROP DATABASE can take a second
    on a busy server, and the next test need not wait for it."""

    def __init__(self, server_url: str) -> None:
        self.server_url = server_url
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="drop-database")
        self._drops: list[Future[None]] = []

    def drop(self, name: str) -> None:
        self._drops.append(self._executor.submit(drop_postgres_database, self.server_url, name))

    def close(self) -> None:
        self._executor.shutdown(wait=True)
        for drop in self._drops:
            drop.result()  # a database left behind fails the run here


@pytest.fixture(scope="session")
def postgres_dropper(postgres_server: str) -> Iterator[DatabaseDropper]:
    """Every database a test made is dropped before the session ends."""
    dropper = DatabaseDropper(postgres_server)
    try:
        yield dropper
    finally:
        dropper.close()


def _new_postgres_database(request: pytest.FixtureRequest, server: str, template: str | None) -> Iterator[str]:
    dropper: DatabaseDropper = request.getfixturevalue("postgres_dropper")
    name, url = create_postgres_database(server, template)
    try:
        yield url
    finally:
        dropper.drop(name)


@pytest.fixture
def postgres_url(postgres_server: str, request: pytest.FixtureRequest) -> Iterator[str]:
    """A fresh, empty Postgres database for one test, dropped afterwards."""
    yield from _new_postgres_database(request, postgres_server, None)


@pytest.fixture
def postgres_schema_url(postgres_server: str, postgres_template: str, request: pytest.FixtureRequest) -> Iterator[str]:
    """A fresh Postgres database with the current schema (a copy of the run's template), dropped afterwards."""
    yield from _new_postgres_database(request, postgres_server, postgres_template)


@pytest.fixture(scope="session")
def sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A SQLite file with the current schema, made once per process."""
    path = tmp_path_factory.mktemp("sqlite-template") / "monitoring.db"
    template = Database(f"sqlite:///{path}")
    template.ensure_schema()
    template.dispose()
    assert not path.with_name(path.name + "-wal").exists()  # the last connection's close checkpointed it
    return path


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'monitoring.db'}"


@pytest.fixture(params=["sqlite", "postgres"])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'monitoring.db'}"
    if "database" in request.fixturenames:  # the `database` fixture gives it the schema: start from the template
        return request.getfixturevalue("postgres_schema_url")
    return request.getfixturevalue("postgres_url")


@pytest.fixture
def database(database_url: str, request: pytest.FixtureRequest) -> Iterator[Database]:
    path = sa.make_url(database_url).database if database_url.startswith("sqlite") else None
    if path and not Path(path).exists():
        shutil.copyfile(request.getfixturevalue("sqlite_template"), path)
    db = Database(database_url)
    db.ensure_schema()  # finds the template's schema in place: one read
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
def postgres_env_database(monkeypatch: pytest.MonkeyPatch, postgres_schema_url: str, logs_dir: Path) -> Iterator[Database]:
    """A fresh Postgres database with the schema that the project's settings (and so its definitions) point at."""
    for key, value in {"DATABASE_URL": postgres_schema_url, "LOGS_DIR": str(logs_dir), "SETTLE_SECONDS": "0"}.items():
        monkeypatch.setenv(key, value)
    monkeypatch.delenv("DAGSTER_HOME", raising=False)
    db = Database(postgres_schema_url)
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


# The longest tests first (measured with --durations=80, longest first), so that the parallel workers
# share them out at the start and none is left running one alone at the end. Prefixes of node ids in
# this folder; the order only affects how long the whole run takes, and the other tests keep theirs.
LONGEST_FIRST = (
    "test_dagster_dev.py::test_dagster_dev_alerts_each_failing_gate",
    "test_history_definitions.py::test_cli_validates_and_backfills",
    "test_dagster_dev.py::test_dagster_dev_sensor_ingests",
    "test_compose.py::test_each_service_command_starts",
    "test_judge_runs.py::test_dagster_asset_materialize",
    "test_faults.py::test_runner_killed_mid_batch",
    "test_ingest_races.py::test_sigkill_of_the_runner",
    "test_faults.py::test_ctrl_c_during_a_watch_pass",
    "test_definitions.py::test_dg_lists_and_checks",
    "test_faults.py::test_runner_killed_on_sqlite",
    "test_ingest_acceptance.py::",
    "test_checks.py::test_gates_pass_on_steady_days",
    "test_command_errors.py::test_ingest_on_a_database_outage",
    "test_faults.py::test_two_runners",
    "test_s3_source.py::test_sensor_cursor_walks",
    "test_ingest_races.py::test_files_replaced_during_a_pass",
    "test_aggregates.py::test_ingest_rebuilds_its_days",
    "test_command_errors.py::test_an_unusable_logs_dir",
    "test_judge_runs.py::test_judges_with_on_ingest",
    "test_faults.py::",
    "test_app_browser.py::",
    "test_aggregates.py::test_sensor_acts_only",
    "test_judge_runs.py::test_a_backfill_of_a_range",
    "test_s3_source.py::test_prefix_ingest",
    "test_ingest_names.py::test_sensor_and_job_take_names",
    "test_ingest_isolation.py::test_poison_in_every_stage",
    "test_command_errors.py::test_fake_data_on_a_malformed",
    "test_command_errors.py::test_a_setting_that_is_not_a_number",
    "test_s3_source.py::test_access_denied",
    "test_ingest_job.py::test_sensor_run_request_executes_the_job",
    "test_judge_runs.py::test_command_line_estimates",
    "test_ingest_races.py::test_watch_takes_a_file",
    "test_alerts.py::test_failed_gates_of_an_ingest",
)


def start_rank(item: pytest.Item) -> int:
    name = item.nodeid.rsplit("/", 1)[-1]
    return next((rank for rank, prefix in enumerate(LONGEST_FIRST) if name.startswith(prefix)), len(LONGEST_FIRST))


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Markers from what a test uses, so `-m "not postgres"` or `-m "not e2e"` selects by need, not by
    file lists; and the longest tests first."""
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
    items.sort(key=start_rank)  # stable: every worker collects the same order
