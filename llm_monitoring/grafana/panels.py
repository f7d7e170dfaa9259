"""Building blocks of the dashboards: Grafana's panel, variable and dashboard JSON, and the SQL
fragments every panel shares (run filters, time buckets, the daily_usage aggregate).

Plain dictionaries in Grafana's dashboard schema; build_dashboards.py assembles the dashboards.
"""

from __future__ import annotations

from typing import Any

DATASOURCE_UID = "llm-monitoring-pg"
DATASOURCE = {"type": "grafana-postgresql-datasource", "uid": DATASOURCE_UID}
TAG = "llm-monitoring"
ALL = "'__all'"  # the variables' custom "All" value, inserted into SQL as is
MAX_POINTS = 50  # 24 h -> 30 min buckets, 7 d -> 3 h: a readable number of bars on a wall screen


def run_filter(alias: str, variable: str, column: str) -> str:
    """A line restricting `alias.column` to the dashboard variable's choice ("All" keeps every row)."""
    return f"\n  AND ('__all' IN (${variable}) OR {alias}.{column} IN (${variable}))"


def run_filters(alias: str) -> str:
    return run_filter(alias, "provider", "provider") + run_filter(alias, "model", "model") + run_filter(alias, "agent", "agent_name")


RUN_FILTERS = run_filters("l")

RUNS = "FROM llm_logs l\nWHERE $__timeFilter(l.run_started_at)" + RUN_FILTERS
CHECKS = (
    "FROM eval_checks e\nJOIN llm_logs l ON l.id = e.log_id\n"
    "WHERE $__timeFilter(l.run_started_at)" + RUN_FILTERS + "\n  AND e.evaluator_version = '${evaluator}'"
)
# LLM judges' verdicts (their versions start with "judge:"), each with its call's tokens and cost.
JUDGE_ROWS = "e.evaluator_version LIKE 'judge:%'"
JUDGES = (
    "FROM eval_checks e\nJOIN llm_logs l ON l.id = e.log_id\n"
    "LEFT JOIN judge_calls j ON j.log_id = e.log_id AND j.evaluator_version = e.evaluator_version\n"
    "WHERE $__timeFilter(l.run_started_at)" + RUN_FILTERS + f"\n  AND {JUDGE_ROWS}"
)
FEEDBACK = "FROM feedback f\nJOIN llm_logs l ON l.id = f.log_id\nWHERE $__timeFilter(l.run_started_at)" + RUN_FILTERS
TIME_BUCKET = "$__timeGroupAlias(l.run_started_at, $__interval)"
# The daily_usage aggregate (one row per day x provider x model x agent) answers long ranges
# (months) without scanning every run; Dagster keeps it current after each ingest.
DAILY = "FROM daily_usage d\nWHERE $__timeFilter(d.day::timestamptz)" + run_filters("d")


# ---------------------------------------------------------------------------- building blocks


def _target(sql: str, fmt: str) -> dict[str, Any]:
    return {"refId": "A", "datasource": DATASOURCE, "editorMode": "code", "format": fmt, "rawQuery": True, "rawSql": sql.strip()}


def _panel(kind: str, title: str, description: str, sql: str, grid: tuple[int, int, int, int], fmt: str) -> dict[str, Any]:
    x, y, w, h = grid
    return {
        "type": kind,
        "title": title,
        "description": description,
        "datasource": DATASOURCE,
        "gridPos": {"x": x, "y": y, "w": w, "h": h},
        "targets": [_target(sql, fmt)],
        "fieldConfig": {"defaults": {}, "overrides": []},
        "options": {},
    }


def stat(
    title: str,
    description: str,
    sql: str,
    grid: tuple[int, int, int, int],
    *,
    unit: str = "short",
    decimals: int | None = None,
    thresholds: list[tuple[float | None, str]] | None = None,
) -> dict[str, Any]:
    panel = _panel("stat", title, description, sql, grid, "table")
    defaults: dict[str, Any] = {
        "unit": unit,
        "color": {"mode": "thresholds"},
        "thresholds": {"mode": "absolute", "steps": [{"value": v, "color": c} for v, c in (thresholds or [(None, "blue")])]},
    }
    if decimals is not None:
        defaults["decimals"] = decimals
    panel["fieldConfig"]["defaults"] = defaults
    panel["options"] = {
        "reduceOptions": {"calcs": ["lastNotNull"], "fields": "", "values": False},
        "colorMode": "value",
        "graphMode": "none",
        "justifyMode": "auto",
        "textMode": "value_and_name",
        "orientation": "auto",
    }
    return panel


def timeseries(
    title: str,
    description: str,
    sql: str,
    grid: tuple[int, int, int, int],
    *,
    unit: str = "short",
    bars: bool = False,
    stacked: bool = False,
    max_value: float | None = None,
) -> dict[str, Any]:
    panel = _panel("timeseries", title, description, sql, grid, "time_series")
    panel["maxDataPoints"] = MAX_POINTS
    custom = {
        "drawStyle": "bars" if bars else "line",
        "lineWidth": 1 if bars else 2,
        "fillOpacity": 80 if bars else 10,
        "pointSize": 4,
        "showPoints": "never" if bars else "auto",
        "spanNulls": False,
        "stacking": {"mode": "normal" if stacked else "none", "group": "A"},
    }
    panel["fieldConfig"]["defaults"] = {"unit": unit, "min": 0, "custom": custom, "color": {"mode": "palette-classic"}}
    if max_value is not None:
        panel["fieldConfig"]["defaults"]["max"] = max_value
    panel["options"] = {
        "legend": {"displayMode": "list", "placement": "bottom", "showLegend": True},
        "tooltip": {"mode": "multi", "sort": "desc"},
    }
    return panel


def table(
    title: str,
    description: str,
    sql: str,
    grid: tuple[int, int, int, int],
    *,
    units: dict[str, str] | None = None,
    widths: dict[str, int] | None = None,
    gauges: tuple[str, ...] = (),
) -> dict[str, Any]:
    panel = _panel("table", title, description, sql, grid, "table")
    overrides = []
    for name, unit in (units or {}).items():
        properties: list[dict[str, Any]] = [{"id": "unit", "value": unit}]
        if unit == "currencyUSD":
            properties.append({"id": "decimals", "value": 6})
        overrides.append({"matcher": {"id": "byName", "options": name}, "properties": properties})
    for name, width in (widths or {}).items():
        overrides.append({"matcher": {"id": "byName", "options": name}, "properties": [{"id": "custom.width", "value": width}]})
    for name in gauges:
        overrides.append(
            {
                "matcher": {"id": "byName", "options": name},
                "properties": [
                    {"id": "custom.cellOptions", "value": {"type": "gauge", "mode": "basic"}},
                    {"id": "min", "value": 0},
                    {"id": "max", "value": 100},
                    {
                        "id": "thresholds",
                        "value": {
                            "mode": "absolute",
                            "steps": [{"value": None, "color": "red"}, {"value": 60, "color": "orange"}, {"value": 80, "color": "green"}],
                        },
                    },
                ],
            }
        )
    panel["fieldConfig"] = {"defaults": {"custom": {"align": "auto", "cellOptions": {"type": "auto"}}}, "overrides": overrides}
    panel["options"] = {"showHeader": True, "cellHeight": "sm", "footer": {"show": False, "reducer": ["sum"], "fields": ""}}
    return panel


def barchart(
    title: str, description: str, sql: str, grid: tuple[int, int, int, int], *, x_field: str, unit: str = "short"
) -> dict[str, Any]:
    panel = _panel("barchart", title, description, sql, grid, "table")
    panel["fieldConfig"]["defaults"] = {
        "unit": unit,
        "min": 0,
        "color": {"mode": "palette-classic"},
        "custom": {"fillOpacity": 80, "lineWidth": 1},
    }
    panel["options"] = {
        "xField": x_field,
        "orientation": "horizontal",
        "showValue": "always",
        "barWidth": 0.8,
        "groupWidth": 0.7,
        "legend": {"displayMode": "list", "placement": "bottom", "showLegend": False},
        "tooltip": {"mode": "single", "sort": "none"},
    }
    return panel


def run_variable(name: str, label: str, column: str, extra_filter: str = "") -> dict[str, Any]:
    query = (
        f"SELECT DISTINCT l.{column} FROM llm_logs l\n"
        f"WHERE l.{column} IS NOT NULL AND $__timeFilter(l.run_started_at){extra_filter}\nORDER BY 1"
    )
    return {
        "type": "query",
        "name": name,
        "label": label,
        "datasource": DATASOURCE,
        "query": query,
        "definition": query,
        # Refreshed with the time range: the list shows what ran in the range on screen.
        "refresh": 2,
        "multi": True,
        "includeAll": True,
        "allValue": ALL,
        "current": {"selected": True, "text": ["All"], "value": ["$__all"]},
        "options": [],
        "sort": 0,
        "hide": 0,
        "skipUrlSync": False,
    }


def evaluator_variable() -> dict[str, Any]:
    # Re-evaluations may keep older evaluator versions' rows next to the current ones; counting both
    # would count a run twice. The newest rule version in the range comes first and is the default;
    # the LLM judges' versions have panels of their own.
    query = (
        "SELECT v FROM (SELECT DISTINCT e.evaluator_version AS v FROM eval_checks e\n"
        f"JOIN llm_logs l ON l.id = e.log_id WHERE $__timeFilter(l.run_started_at) AND NOT {JUDGE_ROWS}) versions\n"
        "ORDER BY length(v) DESC, v DESC"
    )
    return {
        "type": "query",
        "name": "evaluator",
        "label": "Evaluator version",
        "datasource": DATASOURCE,
        "query": query,
        "definition": query,
        "refresh": 2,
        "multi": False,
        "includeAll": False,
        "current": {},
        "options": [],
        "sort": 0,
        "hide": 0,
        "skipUrlSync": False,
    }


def dashboard(uid: str, title: str, description: str, panels: list[dict[str, Any]], variables: list[dict[str, Any]]) -> dict[str, Any]:
    for number, panel in enumerate(panels, start=1):
        panel["id"] = number
    return {
        "uid": uid,
        "title": title,
        "description": description,
        "tags": [TAG],
        "editable": True,
        "graphTooltip": 1,
        "schemaVersion": 39,
        "version": 1,
        "timezone": "browser",
        "time": {"from": "now-24h", "to": "now"},
        "refresh": "1m",
        "fiscalYearStartMonth": 0,
        "liveNow": False,
        "annotations": {"list": []},
        "links": [
            {
                "type": "dashboards",
                "tags": [TAG],
                "title": "LLM Monitoring",
                "asDropdown": False,
                "includeVars": True,
                "keepTime": True,
                "icon": "external link",
                "targetBlank": False,
            }
        ],
        "templating": {"list": variables},
        "panels": panels,
    }


def run_variables() -> list[dict[str, Any]]:
    return [
        run_variable("provider", "Provider", "provider"),
        # Chained: the model list follows the chosen providers.
        run_variable("model", "Model", "model", run_filter("l", "provider", "provider")),
        run_variable("agent", "Agent", "agent_name"),
    ]
