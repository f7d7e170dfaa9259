"""The docker compose stack, checked without Docker.

The compose file and the Dockerfile are read and compared with the package (every command it runs
exists, every mounted path exists, the credentials and ports line up). Then each service's command,
as written in docker-compose.yml, is started on this machine against its Postgres: the Dagster code
server, the webserver and the daemon (wired as in the containers: DAGSTER_HOME holding the repository's
dagster.yaml, a gRPC workspace) and the Streamlit app; each must start and answer, and a log file
dropped into LOGS_DIR must reach the database through the daemon's sensor and a run on the code server.
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
import yaml

from llm_monitoring.samples import write_sample_logs
from llm_monitoring.storage.engine import Database
from llm_monitoring.storage.schema import llm_logs
from llm_monitoring_tests.processes import free_port, graphql, signal_group

ROOT = Path(__file__).resolve().parents[1]
VENV_BIN = Path(sys.executable).parent
PYTHON_SERVICES = {"dagster-code", "dagster-webserver", "dagster-webserver-readonly", "dagster-daemon", "app", "faker"}
PROFILED = {"faker": "tools", "dagster-webserver-readonly": "readonly"}  # services `docker compose up -d` leaves out
STARTUP_SECONDS = 75


# ---------------------------------------------------------------------------- reading the files


_REFERENCE = re.compile(r"\$\$|\$\{(\w+)(?::?([-?])([^}]*))?\}|\$(\w+)")


def interpolate(text: str, env: dict[str, str]) -> str:
    """Compose's variable substitution: ${VAR}, ${VAR:-default}, ${VAR:?error}, and $$ for a literal $."""

    def replace(match: re.Match[str]) -> str:
        if match.group(0) == "$$":
            return "$"
        name = match.group(1) or match.group(4)
        value = env.get(name)
        if match.group(2) == "-" and not value:
            return match.group(3)
        if match.group(2) == "?" and not value:
            raise KeyError(f"{name} is required: {match.group(3)}")
        return value or ""

    return _REFERENCE.sub(replace, text)


def resolve(node: Any, env: dict[str, str]) -> Any:
    if isinstance(node, str):
        return interpolate(node, env)
    if isinstance(node, list):
        return [resolve(item, env) for item in node]
    if isinstance(node, dict):
        return {key: resolve(value, env) for key, value in node.items()}
    return node


def example_env() -> dict[str, str]:
    env = {}
    for line in (ROOT / ".env.example").read_text().splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            key, _, value = line.partition("=")
            env[key.strip()] = value.strip()
    return env


def load_compose(env: dict[str, str] | None = None) -> dict[str, Any]:
    raw = yaml.safe_load((ROOT / "docker-compose.yml").read_text())  # merges the x- anchors (<<)
    return resolve(raw, example_env() if env is None else env)


def services() -> dict[str, dict[str, Any]]:
    return load_compose()["services"]


def option(command: list[str], *names: str) -> str | None:
    for index, part in enumerate(command):
        if part in names and index + 1 < len(command):
            return command[index + 1]
    return None


def replace_option(command: list[str], names: tuple[str, ...], value: str) -> list[str]:
    command = list(command)
    for index, part in enumerate(command):
        if part in names:
            command[index + 1] = value
            return command
    return [*command, names[0], value]


def dockerfile() -> str:
    return (ROOT / "Dockerfile").read_text()


def dockerfile_env() -> dict[str, str]:
    env = {}
    for block in re.findall(r"^ENV (.+?)(?<!\\)$", dockerfile(), re.MULTILINE | re.DOTALL):
        for key, value in re.findall(r"(\w+)=(\S+)", block):
            env[key] = value
    return env


# ---------------------------------------------------------------------------- static checks


def test_compose_has_every_service_of_the_stack():
    assert set(services()) == {
        "postgres",
        "dagster-code",
        "dagster-webserver",
        "dagster-webserver-readonly",
        "dagster-daemon",
        "app",
        "grafana",
        "faker",
    }


BIND_VARIABLES = {
    "postgres": "POSTGRES_BIND_ADDRESS",
    "dagster-webserver": "DAGSTER_BIND_ADDRESS",
    "dagster-webserver-readonly": "DAGSTER_READONLY_BIND_ADDRESS",
    "app": "APP_BIND_ADDRESS",
    "grafana": "GRAFANA_BIND_ADDRESS",
}


def published_ports(compose: dict[str, Any]) -> dict[str, list[tuple[str, str, str]]]:
    """Each service's published ports as (host address, host port, container port); an empty host
    address means every interface, as Docker publishes "8501:8501" or a long-syntax port without host_ip."""
    published: dict[str, list[tuple[str, str, str]]] = {}
    for name, service in compose["services"].items():
        for port in service.get("ports", []):
            if isinstance(port, dict):
                address, host_port, target = str(port.get("host_ip", "")), str(port.get("published", "")), str(port["target"])
            else:
                *head, target = str(port).split(":")
                host_port = head.pop() if head else ""  # "8501": a random host port
                address = ":".join(head)  # "[::1]" keeps its colons
            published.setdefault(name, []).append((address, host_port, target))
    return published


def test_published_ports_are_dagster_3000_app_8501_grafana_3001_postgres_5432_readonly_ui_3002():
    ports = {name: [(port, target) for _, port, target in entries] for name, entries in published_ports(load_compose()).items()}
    assert ports == {
        "postgres": [("5432", "5432")],
        "dagster-webserver": [("3000", "3000")],
        "dagster-webserver-readonly": [("3002", "3000")],
        "app": [("8501", "8501")],
        "grafana": [("3001", "3000")],
    }


@pytest.mark.parametrize("env", ["the .env.example", "no variables but the passwords"])
def test_no_port_is_published_on_all_interfaces_by_default(env: str):
    values = (
        example_env() if env == "the .env.example" else {key: example_env()[key] for key in ("POSTGRES_PASSWORD", "GRAFANA_ADMIN_PASSWORD")}
    )
    published = published_ports(load_compose(values))
    assert published, "the stack publishes no port at all"
    for name, entries in published.items():
        for address, port, target in entries:
            assert address == "127.0.0.1", f"{name} publishes {port}:{target} on {address or 'every interface'}"


def test_a_variable_publishes_one_service_on_another_address():
    published = published_ports(load_compose({**example_env(), "APP_BIND_ADDRESS": "0.0.0.0"}))
    assert published["app"] == [("0.0.0.0", "8501", "8501")]
    assert {address for name, entries in published.items() if name != "app" for address, _, _ in entries} == {"127.0.0.1"}
    assert set(BIND_VARIABLES.values()) <= set(example_env())
    text = (ROOT / "docker-compose.yml").read_text()
    for name, variable in BIND_VARIABLES.items():
        assert f"${{{variable}:-127.0.0.1}}:" in text, f"{name} must bind to {variable}, default 127.0.0.1"


def test_the_read_only_dagster_ui_runs_the_webserver_read_only_on_the_same_workspace():
    all_services = services()
    readonly, webserver = all_services["dagster-webserver-readonly"], all_services["dagster-webserver"]
    assert "--read-only" in readonly["command"] and "--read-only" not in webserver["command"]
    assert [part for part in readonly["command"] if part != "--read-only"] == webserver["command"]
    assert readonly["profiles"] == ["readonly"]


def test_passwords_come_from_env_and_are_required():
    env = example_env()
    with pytest.raises(KeyError, match="POSTGRES_PASSWORD"):
        load_compose({key: value for key, value in env.items() if key != "POSTGRES_PASSWORD"})
    with pytest.raises(KeyError, match="GRAFANA_ADMIN_PASSWORD"):
        load_compose({key: value for key, value in env.items() if key != "GRAFANA_ADMIN_PASSWORD"})
    text = (ROOT / "docker-compose.yml").read_text()
    assert env["POSTGRES_PASSWORD"] not in text and env["GRAFANA_ADMIN_PASSWORD"] not in text
    assert ".env" in (ROOT / ".gitignore").read_text().split()


def test_every_variable_the_compose_file_uses_is_documented_in_the_env_example():
    used = {match.group(1) for match in _REFERENCE.finditer((ROOT / "docker-compose.yml").read_text()) if match.group(1)}
    assert used <= set(example_env()), used - set(example_env())


def test_postgres_is_16_with_a_volume_and_a_pg_isready_health_check():
    compose = load_compose()
    postgres = compose["services"]["postgres"]
    assert postgres["image"].startswith("postgres:16")
    assert "pgdata:/var/lib/postgresql/data" in postgres["volumes"]
    assert "pg_isready" in " ".join(postgres["healthcheck"]["test"])
    assert "pgdata" in compose["volumes"]


def test_python_services_share_one_image_and_install_nothing_at_start():
    all_services = services()
    builds = {(all_services[name].get("build"), all_services[name].get("image")) for name in PYTHON_SERVICES}
    assert builds == {(".", "llm-monitoring:local")}
    for name in PYTHON_SERVICES:
        command = " ".join(all_services[name]["command"])
        assert not re.search(r"\b(pip|uv)\b", command), f"{name} installs at start: {command}"
    assert "profiles" in all_services["faker"], "`docker compose up -d` must not run the one-off faker"
    assert {name: service["profiles"] for name, service in all_services.items() if service.get("profiles")} == {
        name: [profile] for name, profile in PROFILED.items()
    }


def test_python_services_point_at_the_compose_postgres_and_dagster_home():
    all_services = services()
    postgres_env = all_services["postgres"]["environment"]
    dagster_yaml = yaml.safe_load((ROOT / "deploy" / "dagster.yaml").read_text())
    postgres_db = dagster_yaml["storage"]["postgres"]["postgres_db"]
    dagster_vars = {value["env"] for value in postgres_db.values() if isinstance(value, dict)}
    assert dagster_vars == {"DAGSTER_PG_HOST", "DAGSTER_PG_USER", "DAGSTER_PG_PASSWORD", "DAGSTER_PG_DB", "DAGSTER_PG_PORT"}
    for name in PYTHON_SERVICES:
        env = all_services[name]["environment"]
        url = sa.make_url(env["DATABASE_URL"])
        assert (url.host, url.port, url.username, url.password, url.database) == (
            "postgres",
            5432,
            postgres_env["POSTGRES_USER"],
            postgres_env["POSTGRES_PASSWORD"],
            postgres_env["POSTGRES_DB"],
        )
        assert env["DAGSTER_PG_HOST"] == "postgres"
        assert env["DAGSTER_PG_USER"] == postgres_env["POSTGRES_USER"]
        assert env["DAGSTER_PG_PASSWORD"] == postgres_env["POSTGRES_PASSWORD"]
        assert env["DAGSTER_PG_DB"] == postgres_env["POSTGRES_DB"]
        assert env["DAGSTER_PG_PORT"] == "5432"
        assert env["DAGSTER_HOME"] == dockerfile_env()["DAGSTER_HOME"]
        assert all_services[name]["depends_on"]["postgres"]["condition"] == "service_healthy"
    assert "COPY deploy/dagster.yaml ${DAGSTER_HOME}/dagster.yaml" in dockerfile()


def test_long_running_services_have_health_checks_that_run_installed_commands():
    for name, service in services().items():
        if name == "faker":
            continue
        test = service["healthcheck"]["test"]
        assert test[0] in {"CMD", "CMD-SHELL"}, name
        if name in PYTHON_SERVICES:
            assert (VENV_BIN / test[1]).exists(), f"{name}: health check runs missing {test[1]}"


def test_the_log_folder_is_mounted_where_the_code_server_reads_it():
    code = services()["dagster-code"]
    assert f"./logs:{code['environment']['LOGS_DIR']}" in code["volumes"]


def test_every_mounted_host_path_exists_and_every_named_volume_is_declared():
    compose = load_compose()
    for name, service in compose["services"].items():
        for volume in service.get("volumes", []):
            source = volume.split(":")[0]
            if source.startswith((".", "/")):
                assert (ROOT / source).exists(), f"{name} mounts missing {source}"
            else:
                assert source in compose["volumes"], f"{name} uses undeclared volume {source}"


def test_every_command_runs_something_the_package_has():
    all_services = services()
    for name in PYTHON_SERVICES:
        command = all_services[name]["command"]
        assert (VENV_BIN / command[0]).exists(), f"{name}: no {command[0]} entry point in the environment"
        module = option(command, "-m")
        if module:
            assert importlib.util.find_spec(module) is not None, f"{name}: no module {module}"
        workspace = option(command, "-w")
        if workspace:
            assert (ROOT / workspace).is_file(), f"{name}: no workspace {workspace}"
    streamlit = all_services["app"]["command"]
    assert streamlit[:2] == ["streamlit", "run"] and option(streamlit, "--server.port") == "8501"
    if not (ROOT / streamlit[2]).is_file():
        pytest.skip(f"{streamlit[2]} does not exist yet")


def test_webserver_and_daemon_load_the_code_server_by_its_service_name_and_port():
    all_services = services()
    code_command = all_services["dagster-code"]["command"]
    assert code_command[:3] == ["dagster", "api", "grpc"]
    assert option(code_command, "-m") == "llm_monitoring.definitions"
    for name in ("dagster-webserver", "dagster-webserver-readonly", "dagster-daemon"):
        workspace = yaml.safe_load((ROOT / option(all_services[name]["command"], "-w")).read_text())
        (entry,) = workspace["load_from"]
        assert entry["grpc_server"]["host"] == "dagster-code"
        assert str(entry["grpc_server"]["port"]) == option(code_command, "-p")
        assert all_services[name]["depends_on"]["dagster-code"]["condition"] == "service_healthy"
    top = yaml.safe_load((ROOT / "workspace.yaml").read_text())
    assert top["load_from"][0]["python_module"]["module_name"] == "llm_monitoring.definitions"


def test_grafana_gets_its_provisioning_dashboards_and_datasource_settings():
    grafana = services()["grafana"]
    mounts = dict(volume.split(":")[:2] for volume in grafana["volumes"])
    provisioning = ROOT / next(host for host, target in mounts.items() if target == "/etc/grafana/provisioning")
    assert (provisioning / "datasources" / "datasource.yaml").is_file()
    providers = yaml.safe_load((provisioning / "dashboards" / "dashboards.yaml").read_text())["providers"]
    dashboards_dir = providers[0]["options"]["path"]
    assert list((ROOT / next(host for host, target in mounts.items() if target == dashboards_dir)).glob("*.json"))
    datasource_text = json.dumps(yaml.safe_load((provisioning / "datasources" / "datasource.yaml").read_text()))
    for variable in set(re.findall(r"\$\{(\w+)\}", datasource_text)):
        assert grafana["environment"].get(variable), f"Grafana needs {variable} for its datasource"
    assert grafana["environment"]["POSTGRES_HOST"] == "postgres"


def test_dockerfile_installs_the_locked_dependencies_with_uv_at_build_time():
    text = dockerfile()
    assert "COPY pyproject.toml uv.lock" in text
    assert "uv sync --locked --no-dev" in text
    assert "pip install" not in text
    env = dockerfile_env()
    assert env["UV_PROJECT_ENVIRONMENT"] + "/bin" in env["PATH"]
    for copied in re.findall(r"^COPY (?!--from)(.+) \S+$", text, re.MULTILINE):
        for source in copied.split():
            assert (ROOT / source).exists(), f"Dockerfile copies missing {source}"
    ignored = (ROOT / ".dockerignore").read_text().split()
    for needed in ("llm_monitoring", "deploy", "dagster.yaml", "uv.lock", "pyproject.toml", "README.md"):
        assert needed not in ignored


# ---------------------------------------------------------------------------- the services, started here


class Services:
    """Processes started in their own process groups, always stopped (SIGKILL if need be)."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.processes: dict[str, subprocess.Popen[bytes]] = {}

    def start(self, name: str, command: list[str], env: dict[str, str]) -> None:
        log = open(self.folder / f"{name}.log", "wb")  # noqa: SIM115 - closed with the process
        self.processes[name] = subprocess.Popen(command, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        log.close()

    def log(self, name: str) -> str:
        return (self.folder / f"{name}.log").read_text(errors="replace")[-3000:]

    def check_alive(self) -> None:
        for name, process in self.processes.items():
            assert process.poll() is None, f"{name} exited with {process.returncode}:\n{self.log(name)}"

    def stop(self) -> None:
        for process in self.processes.values():
            signal_group(process, signal.SIGTERM)
        deadline = time.monotonic() + 10
        for process in self.processes.values():
            try:
                process.wait(timeout=max(deadline - time.monotonic(), 0.1))
            except subprocess.TimeoutExpired:
                signal_group(process, signal.SIGKILL)
                process.wait(timeout=10)


def wait_for(what: str, condition: Callable[[], bool], stack: Services, timeout: float = STARTUP_SECONDS) -> None:
    started = time.monotonic()
    deadline = started + timeout
    while time.monotonic() < deadline:
        if condition():
            print(f"{what}: {time.monotonic() - started:.1f}s")
            return
        stack.check_alive()
        time.sleep(0.5)
    logs = "\n".join(f"--- {name}\n{stack.log(name)}" for name in stack.processes)
    pytest.fail(f"timed out waiting for {what}\n{logs}")


def http_get(url: str) -> tuple[int, bytes] | None:
    try:
        with urllib.request.urlopen(url, timeout=3) as response:
            return response.status, response.read()
    except (urllib.error.URLError, ConnectionError, TimeoutError):
        return None


def container_env(compose_service: dict[str, Any], postgres_url: str, home: Path, logs: Path) -> dict[str, str]:
    """The service's environment with the compose network names swapped for this machine's."""
    url = sa.make_url(postgres_url)
    env = {**os.environ, **compose_service["environment"]}
    env.update(
        {
            "DATABASE_URL": postgres_url,
            "DAGSTER_HOME": str(home),
            "DAGSTER_PG_HOST": url.host or "127.0.0.1",
            "DAGSTER_PG_USER": url.username or "postgres",
            "DAGSTER_PG_PASSWORD": url.password or "",
            "DAGSTER_PG_DB": url.database or "",
            "DAGSTER_PG_PORT": str(url.port or 5432),  # the compose network uses 5432
            "LOGS_DIR": str(logs),
            "SETTLE_SECONDS": "0",
            "STREAMLIT_SERVER_HEADLESS": "true",
            "STREAMLIT_BROWSER_GATHER_USAGE_STATS": "false",
            "PATH": f"{VENV_BIN}{os.pathsep}{os.environ.get('PATH', '')}",
        }
    )
    return env


@pytest.fixture
def dagster_home(tmp_path: Path, postgres_url: str) -> Path:
    """DAGSTER_HOME as in the image: deploy/dagster.yaml (Postgres from DAGSTER_PG_* env vars)."""
    home = tmp_path / "dagster_home"
    home.mkdir()
    shutil.copy(ROOT / "deploy" / "dagster.yaml", home / "dagster.yaml")
    return home


@pytest.fixture
def stack(tmp_path: Path) -> Iterator[Services]:
    started = Services(tmp_path)
    try:
        yield started
    finally:
        started.stop()


def test_each_service_command_starts_and_answers_on_postgres(tmp_path, postgres_url, dagster_home, stack):
    all_services = services()
    logs = tmp_path / "logs"
    logs.mkdir()
    code_port, web_port, app_port = free_port(), free_port(), free_port()

    deployed = yaml.safe_load((ROOT / "deploy" / "workspace.yaml").read_text())
    deployed["load_from"][0]["grpc_server"].update(host="127.0.0.1", port=code_port)
    workspace = tmp_path / "workspace.yaml"
    workspace.write_text(yaml.safe_dump(deployed))

    code = replace_option(replace_option(all_services["dagster-code"]["command"], ("-p",), str(code_port)), ("-h",), "127.0.0.1")
    web = replace_option(all_services["dagster-webserver"]["command"], ("-p",), str(web_port))
    web = replace_option(replace_option(web, ("-h",), "127.0.0.1"), ("-w",), str(workspace))
    daemon = replace_option(all_services["dagster-daemon"]["command"], ("-w",), str(workspace))
    env_of = {name: container_env(all_services[name], postgres_url, dagster_home, logs) for name in PYTHON_SERVICES}

    schema = Database(postgres_url)
    schema.ensure_schema()
    schema.dispose()
    # Written before the daemon starts, so that its first sensor tick finds them.
    write_sample_logs(logs, 2, seed=3)
    stack.start("dagster-code", code, env_of["dagster-code"])
    stack.start("dagster-webserver", web, env_of["dagster-webserver"])
    stack.start("dagster-daemon", daemon, env_of["dagster-daemon"])
    app_command = all_services["app"]["command"]
    has_app = (ROOT / app_command[2]).is_file()
    if has_app:
        app_command = replace_option(app_command, ("--server.port",), str(app_port))
        stack.start("app", replace_option(app_command, ("--server.address",), "127.0.0.1"), env_of["app"])

    # The code server answers the health check the compose file uses.
    health = [*all_services["dagster-code"]["healthcheck"]["test"][1:]]
    health = replace_option(health, ("-p",), str(code_port))

    def code_server_healthy() -> bool:
        # A cheap port probe first: each health check command is a Python start of its own.
        try:
            socket.create_connection(("127.0.0.1", code_port), timeout=1).close()
        except OSError:
            return False
        result = subprocess.run(health, env=env_of["dagster-code"], capture_output=True, timeout=60)
        return result.returncode == 0

    wait_for("the code server's gRPC health check", code_server_healthy, stack)

    wait_for("the webserver's /server_info", lambda: (http_get(f"http://127.0.0.1:{web_port}/server_info") or (0,))[0] == 200, stack)
    locations = graphql(
        web_port, "{ workspaceOrError { ... on Workspace { locationEntries { name locationOrLoadError { __typename } } } } }"
    )
    entries = locations["data"]["workspaceOrError"]["locationEntries"]
    assert [(entry["name"], entry["locationOrLoadError"]["__typename"]) for entry in entries] == [("llm_monitoring", "RepositoryLocation")]

    if has_app:
        wait_for("the app's /_stcore/health", lambda: http_get(f"http://127.0.0.1:{app_port}/_stcore/health") == (200, b"ok"), stack)

    # The daemon's sensor ingests the log files through a run on the code server, and the daemon
    # writes heartbeats into the Postgres instance.
    database = Database(postgres_url)
    try:

        def stored_runs() -> int:
            with database.connect() as connection:
                return connection.scalar(sa.select(sa.func.count()).select_from(llm_logs)) or 0

        wait_for("the sensor's ingest run to store the dropped logs", lambda: stored_runs() == 2, stack, timeout=90)
    finally:
        database.dispose()
    liveness_check = all_services["dagster-daemon"]["healthcheck"]["test"][1:]
    assert liveness_check == ["dagster-daemon", "liveness-check"]
    liveness = subprocess.run(liveness_check, env=env_of["dagster-daemon"], capture_output=True, text=True, timeout=60)
    assert liveness.returncode == 0, liveness.stdout + liveness.stderr
    stack.check_alive()
