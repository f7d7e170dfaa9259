# One image for every Python service of the stack (Dagster code server, webserver and daemon, the
# Streamlit app, the fake-data generator). Dependencies are installed at build time from uv.lock,
# never when a container starts.
ARG UV_VERSION=0.13.9
ARG PYTHON_VERSION=3.11

FROM ghcr.io/astral-sh/uv:${UV_VERSION} AS uv

FROM python:${PYTHON_VERSION}-slim
COPY --from=uv /uv /uvx /bin/

ENV UV_COMPILE_BYTECODE=1 \
    UV_LINK_MODE=copy \
    UV_PYTHON_DOWNLOADS=never \
    UV_PROJECT_ENVIRONMENT=/opt/venv \
    PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    DAGSTER_HOME=/opt/dagster/home \
    STREAMLIT_BROWSER_GATHER_USAGE_STATS=false

WORKDIR /app

# Dependencies first, in their own layer: a code change does not reinstall them.
COPY pyproject.toml uv.lock README.md ./
RUN uv sync --locked --no-dev --no-install-project

COPY llm_monitoring ./llm_monitoring
COPY workspace.yaml ./
COPY deploy ./deploy
RUN uv sync --locked --no-dev

# The instance settings of the stack (Postgres storage from DAGSTER_PG_* env vars, run queue, daemons).
COPY deploy/dagster.yaml ${DAGSTER_HOME}/dagster.yaml
RUN mkdir -p /app/logs ${DAGSTER_HOME}/storage

CMD ["dagster", "api", "grpc", "-m", "llm_monitoring.definitions", "-h", "0.0.0.0", "-p", "4000"]
