"""Building blocks of the dashboards: Grafana's panel, variable and dashboard JSON, and the SQL
fragments every panel shares (run filters, the runs, checks and daily tables they read).

Plain dictionaries in Grafana's dashboard schema; build_dashboards.py assembles the dashboards.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from llm_monitoring.grafana.whole_days import (
    ALWAYS,
    DAY_BUCKET,
    RUN_BUCKET,
    SERIES,
    SERIES_WITHOUT_RUN_FILTERS,
    WITHOUT_RUN_FILTERS,
    PanelQuery,
    WholeDays,
    from_parts,
)

DATASOURCE_UID = "llm-monitoring-pg"
DATASOURCE = {"type": "grafana-postgresql-datasource", "uid": DATASOURCE_UID}
TAG = "llm-monitoring"
ALL = "'__all'"  # the variables' custom "All" value, inserted into SQL as is
# 24 h -> 30 min buckets, 3 d -> 1 h, a readable number of bars on a wall screen; longer ranges
# have a bucket per UTC day (whole_days.py).
MAX_POINTS = 50
Query = str | PanelQuery  # a panel's SQL, or its daily-backed SQL with its query over the runs alone


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
def judge_rows(alias: str) -> str:
    return f"{alias}.evaluator_version LIKE 'judge:%'"


JUDGE_ROWS = judge_rows("e")
JUDGES = (
    "FROM eval_checks e\nJOIN llm_logs l ON l.id = e.log_id\n"
    "LEFT JOIN judge_calls j ON j.log_id = e.log_id AND j.evaluator_version = e.evaluator_version\n"
    "WHERE $__timeFilter(l.run_started_at)" + RUN_FILTERS + f"\n  AND {JUDGE_ROWS}"
)
FEEDBACK = "FROM feedback f\nJOIN llm_logs l ON l.id = f.log_id\nWHERE $__timeFilter(l.run_started_at)" + RUN_FILTERS
# The daily_usage aggregate (one row per day x provider x model x agent) answers long ranges
# (months) without scanning every run; Dagster keeps it current after each ingest.
DAILY = "FROM daily_usage d\nWHERE $__timeFilter(d.day::timestamptz)" + run_filters("d")


# ---------------------------------------------------------------------------- daily tables and runs, added up


@dataclass(frozen=True)
class Source:
    """Where a panel's figures come from: a daily table over whole days, the runs over the rest."""

    daily_table: str
    daily_filters: str  # SQL lines after the days condition, on alias d
    runs: str  # FROM ... WHERE $__timeFilter(l.run_started_at) and the filters: the whole range from the runs
    run_filtered_daily: bool  # the daily table has provider, model and agent to filter on
    edge_runs: str | None = None  # the same rows as `runs`, read otherwise, with {edge} after $__timeFilter

    def whole_days(self, series: bool) -> WholeDays:
        if self.run_filtered_daily:
            return SERIES if series else ALWAYS
        return SERIES_WITHOUT_RUN_FILTERS if series else WITHOUT_RUN_FILTERS

    def daily(self, days: WholeDays) -> str:
        return f"FROM {self.daily_table} d\nWHERE {days.days()}{self.daily_filters}"

    def edge(self, condition: str) -> str:
        """The runs' FROM ... WHERE, limited by an edge condition of WholeDays.edges."""
        if self.edge_runs is not None:
            return self.edge_runs.replace("{edge}", condition)
        time_filter = "WHERE $__timeFilter(l.run_started_at)"
        return self.runs.replace(time_filter, f"{time_filter} AND {condition}", 1)


# CHECKS, run by run: a day's runs, then each run's checks from uq_eval_checks_log_check_version. Left
# to itself the planner may rather hash all of eval_checks (it guesses a run has three times the rows
# it has, from a sample of a few distinct runs); OFFSET 0 keeps the subquery a probe per run.
CHECKS_BY_RUN = (
    "FROM llm_logs l\nCROSS JOIN LATERAL (\n"
    "  SELECT e.log_id, e.check_name, e.passed FROM eval_checks e\n"
    "  WHERE e.log_id = l.id AND e.evaluator_version = '${evaluator}' OFFSET 0\n) e\n"
    "WHERE $__timeFilter(l.run_started_at) AND {edge}" + RUN_FILTERS
)
USAGE = Source("daily_usage", run_filters("d"), RUNS, run_filtered_daily=True)
# daily_eval_breakdown: daily_eval_summary by provider, model and agent, so the run filters apply.
CHECK_SUMMARY = Source(
    "daily_eval_breakdown",
    "\n  AND d.evaluator_version = '${evaluator}'" + run_filters("d"),
    CHECKS,
    run_filtered_daily=True,
    edge_runs=CHECKS_BY_RUN,
)
JUDGE_SUMMARY = Source("daily_eval_breakdown", f"\n  AND {judge_rows('d')}" + run_filters("d"), JUDGES, run_filtered_daily=True)
FEEDBACK_SUMMARY = Source("daily_feedback", "", FEEDBACK, run_filtered_daily=False)
RUN_TIME = f'{RUN_BUCKET} AS "time"'
DAY_TIME = f"{DAY_BUCKET} AS time"


def combined(
    source: Source,
    daily_columns: str,
    live_columns: str,
    outer: str,
    live: str,
    *,
    group_by: str = "",
    daily_group_by: str | None = None,
    daily_where: str = "",
    live_where: str = "",
    series: bool = False,
) -> PanelQuery:
    """A panel adding up `source`'s daily table over whole days and its runs over the rest of the range.

    Both parts' columns are partial sums in the same order, named by the daily part; `outer` selects
    the panel's figures FROM parts. `live` is the panel's query over the runs alone, for the tests.
    """
    days = source.whole_days(series)
    daily_group = group_by if daily_group_by is None else daily_group_by
    return PanelQuery(
        from_parts(
            f"SELECT {daily_columns}\n{source.daily(days)}{daily_where}" + (f"\nGROUP BY {daily_group}" if daily_group else ""),
            lambda edge: f"SELECT {live_columns}\n{source.edge(edge)}{live_where}" + (f"\nGROUP BY {group_by}" if group_by else ""),
            days,
            outer,
        ),
        live,
    )


def figure(source: Source, daily_columns: str, live_columns: str, outer_columns: str, live_figures: str) -> PanelQuery:
    """One row of figures (a stat): partial sums of both parts, then `outer_columns` over them;
    `live_figures` are the same figures over the runs alone."""
    return combined(source, daily_columns, live_columns, f"SELECT {outer_columns}\nFROM parts", f"SELECT {live_figures}\n{source.runs}")


def series(
    source: Source,
    daily_columns: str,
    live_columns: str,
    outer_columns: str,
    live_figures: str,
    *,
    daily_where: str = "",
    live_where: str = "",
) -> PanelQuery:
    """A time series of one row per bucket (no metric column), as `figure` per bucket."""
    return combined(
        source,
        f"{DAY_TIME}, {daily_columns}",
        f"{RUN_BUCKET}, {live_columns}",
        f'SELECT time AS "time", {outer_columns}\nFROM parts\nGROUP BY 1\nORDER BY 1',
        f"SELECT {RUN_TIME},\n  {live_figures}\n{source.runs}{live_where}\nGROUP BY 1\nORDER BY 1",
        group_by="1",
        daily_where=daily_where,
        live_where=live_where,
        series=True,
    )


# ---------------------------------------------------------------------------- building blocks


def _target(sql: str, fmt: str) -> dict[str, Any]:
    return {"refId": "A", "datasource": DATASOURCE, "editorMode": "code", "format": fmt, "rawQuery": True, "rawSql": sql.strip()}


# A daily-backed panel or variable keeps its query over the runs alone under this key until the
# dashboard is written out (without it): the tests compare the two.
LIVE_SQL = "liveSql"


def _panel(kind: str, title: str, description: str, sql: Query, grid: tuple[int, int, int, int], fmt: str) -> dict[str, Any]:
    x, y, w, h = grid
    panel = {
        "type": kind,
        "title": title,
        "description": description,
        "datasource": DATASOURCE,
        "gridPos": {"x": x, "y": y, "w": w, "h": h},
        "targets": [_target(sql.sql if isinstance(sql, PanelQuery) else sql, fmt)],
        "fieldConfig": {"defaults": {}, "overrides": []},
        "options": {},
    }
    if isinstance(sql, PanelQuery):
        panel[LIVE_SQL] = sql.live.strip()
    return panel


def without_live_sql(dashboard: dict[str, Any]) -> dict[str, Any]:
    """The dashboard as Grafana reads it: no live references."""

    def strip(item: dict[str, Any]) -> dict[str, Any]:
        return {key: value for key, value in item.items() if key != LIVE_SQL}

    return {
        **dashboard,
        "panels": [strip(panel) for panel in dashboard["panels"]],
        "templating": {"list": [strip(variable) for variable in dashboard["templating"]["list"]]},
    }


def stat(
    title: str,
    description: str,
    sql: Query,
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
    sql: Query,
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
    sql: Query,
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
    title: str, description: str, sql: Query, grid: tuple[int, int, int, int], *, x_field: str, unit: str = "short"
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


def _variable(name: str, label: str, query: PanelQuery) -> dict[str, Any]:
    return {
        "type": "query",
        "name": name,
        "label": label,
        "datasource": DATASOURCE,
        "query": query.sql,
        "definition": query.sql,
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
        LIVE_SQL: query.live,
    }


def run_variable(name: str, label: str, column: str, chained_to: str | None = None) -> dict[str, Any]:
    """What ran in the range: the distinct values of a run column (daily_usage has them per day),
    among the runs of the `chained_to` variable's choice if any."""

    def extra(alias: str) -> str:
        return run_filter(alias, chained_to, chained_to) if chained_to else ""

    extra_filter = extra("l")
    live = (
        f"SELECT DISTINCT l.{column} FROM llm_logs l\n"
        f"WHERE l.{column} IS NOT NULL AND $__timeFilter(l.run_started_at){extra_filter}\nORDER BY 1"
    )
    query = from_parts(
        f"SELECT DISTINCT d.{column} FROM daily_usage d\nWHERE {ALWAYS.days()}{extra('d')}",
        lambda edge: f"SELECT DISTINCT l.{column} FROM llm_logs l\nWHERE $__timeFilter(l.run_started_at) AND {edge}{extra_filter}",
        ALWAYS,
        f"SELECT DISTINCT {column} FROM parts WHERE {column} IS NOT NULL ORDER BY 1",
    )
    return _variable(name, label, PanelQuery(query, live))


def evaluator_variable() -> dict[str, Any]:
    # Re-evaluations may keep older evaluator versions' rows next to the current ones; counting both
    # would count a run twice. The newest rule version in the range comes first and is the default;
    # the LLM judges' versions have panels of their own.
    live = (
        "SELECT v FROM (SELECT DISTINCT e.evaluator_version AS v FROM eval_checks e\n"
        f"JOIN llm_logs l ON l.id = e.log_id WHERE $__timeFilter(l.run_started_at) AND NOT {JUDGE_ROWS}) versions\n"
        "ORDER BY length(v) DESC, v DESC"
    )
    query = from_parts(
        f"SELECT DISTINCT d.evaluator_version AS v FROM daily_eval_summary d\nWHERE {ALWAYS.days()} AND NOT {judge_rows('d')}",
        # Run by run, as CHECKS_BY_RUN.
        lambda edge: (
            "SELECT DISTINCT e.evaluator_version FROM llm_logs l\nCROSS JOIN LATERAL (\n"
            f"  SELECT e.evaluator_version FROM eval_checks e WHERE e.log_id = l.id AND NOT {JUDGE_ROWS} OFFSET 0\n) e\n"
            f"WHERE $__timeFilter(l.run_started_at) AND {edge}"
        ),
        ALWAYS,
        "SELECT v FROM (SELECT DISTINCT v FROM parts) versions\nORDER BY length(v) DESC, v DESC",
    )
    variable = _variable("evaluator", "Evaluator version", PanelQuery(query, live))
    variable.update({"multi": False, "includeAll": False, "current": {}})
    del variable["allValue"]
    return variable


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
        run_variable("model", "Model", "model", chained_to="provider"),
        run_variable("agent", "Agent", "agent_name"),
    ]
