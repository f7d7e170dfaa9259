"""Writes the three Grafana dashboards (dashboards/*.json) from the panel definitions below.

    uv run python -m llm_monitoring.grafana.build_dashboards

The JSON files are committed; a test fails when they differ from what this script writes, so edit
here and rerun. Plain dictionaries in Grafana's dashboard schema (schemaVersion 39, Grafana 10.4
to 12), no extra dependency.

Conventions every panel follows:
- time is the run's start (`llm_logs.run_started_at`), filtered with `$__timeFilter` in every query;
- the provider, model and agent variables filter every query; "All" is the custom value
  '__all' (Grafana inserts a custom all value unformatted), so "All" also keeps runs whose provider,
  model or agent is unknown (NULL) and never expands into a long or empty IN list;
- pass rates count only applicable checks (`passed IS NOT NULL`), for one evaluator version;
- costs are in USD (`currencyUSD`), and unpriced runs are counted, never added as $0.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

DASHBOARDS_DIR = Path(__file__).parent / "dashboards"
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
    # would count a run twice. The newest version in the range comes first and is the default.
    query = (
        "SELECT v FROM (SELECT DISTINCT e.evaluator_version AS v FROM eval_checks e\n"
        "JOIN llm_logs l ON l.id = e.log_id WHERE $__timeFilter(l.run_started_at)) versions\n"
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


# ---------------------------------------------------------------------------- the dashboards


def overview() -> dict[str, Any]:
    panels = [
        stat("Total Requests", "Agent runs that started in the time range.", f'SELECT count(*) AS "Requests"\n{RUNS}', (0, 0, 4, 4)),
        stat(
            "Total Cost",
            "Sum of the priced runs' cost in USD (genai-prices, at the price in force when each run happened).",
            f'SELECT coalesce(sum(l.total_cost), 0) AS "Cost"\n{RUNS}',
            (4, 0, 4, 4),
            unit="currencyUSD",
            decimals=2,
        ),
        stat(
            "Tokens In",
            "Input tokens of the runs, cache reads included.",
            f'SELECT coalesce(sum(l.total_input_tokens), 0) AS "Input tokens"\n{RUNS}',
            (8, 0, 4, 4),
        ),
        stat(
            "Tokens Out",
            "Output tokens of the runs.",
            f'SELECT coalesce(sum(l.total_output_tokens), 0) AS "Output tokens"\n{RUNS}',
            (12, 0, 4, 4),
        ),
        stat(
            "Avg Cost per Request",
            "Mean cost of the priced runs in USD.",
            f'SELECT avg(l.total_cost) AS "Avg cost"\n{RUNS}',
            (16, 0, 4, 4),
            unit="currencyUSD",
            decimals=4,
        ),
        stat(
            "Unpriced Runs",
            "Runs without a cost: unknown model or no token usage in the log. Their cost is not in Total Cost.",
            f'SELECT count(*) FILTER (WHERE l.total_cost IS NULL) AS "Unpriced"\n{RUNS}',
            (20, 0, 4, 4),
            thresholds=[(None, "green"), (1, "orange")],
        ),
        timeseries(
            "Requests Over Time",
            "Runs per interval, by the time each run started.",
            f'SELECT {TIME_BUCKET}, count(*) AS "Requests"\n{RUNS}\nGROUP BY 1\nORDER BY 1',
            (0, 4, 12, 8),
            bars=True,
        ),
        timeseries(
            "Cost by Model Over Time",
            "Cost in USD per interval, stacked by provider / model (priced runs).",
            f"SELECT {TIME_BUCKET},\n  coalesce(l.provider, '?') || ' / ' || coalesce(l.model, '?') AS metric,\n"
            f'  sum(l.total_cost) AS "Cost"\n{RUNS}\n  AND l.total_cost IS NOT NULL\nGROUP BY 1, 2\nORDER BY 1',
            (12, 4, 12, 8),
            unit="currencyUSD",
            bars=True,
            stacked=True,
        ),
        timeseries(
            "Tokens Over Time",
            "Input and output tokens per interval.",
            f'SELECT {TIME_BUCKET},\n  sum(l.total_input_tokens) AS "Input",\n  sum(l.total_output_tokens) AS "Output"\n'
            f"{RUNS}\nGROUP BY 1\nORDER BY 1",
            (0, 12, 12, 8),
        ),
        timeseries(
            "Tokens by Type",
            "Tokens per interval by how they are billed: input not read from cache, cache reads, output.",
            f"SELECT {TIME_BUCKET},\n"
            '  sum(greatest(coalesce(l.total_input_tokens, 0) - coalesce(l.cache_read_tokens, 0), 0)) AS "Input (not cached)",\n'
            '  sum(coalesce(l.cache_read_tokens, 0)) AS "Cache read",\n'
            f'  sum(coalesce(l.total_output_tokens, 0)) AS "Output"\n{RUNS}\nGROUP BY 1\nORDER BY 1',
            (12, 12, 12, 8),
            bars=True,
            stacked=True,
        ),
        timeseries(
            "Duration p50 / p95",
            "Median and 95th percentile of run duration (first to last message of the run).",
            f"SELECT {TIME_BUCKET},\n"
            '  percentile_cont(0.5) WITHIN GROUP (ORDER BY l.duration_seconds) AS "p50",\n'
            '  percentile_cont(0.95) WITHIN GROUP (ORDER BY l.duration_seconds) AS "p95"\n'
            f"{RUNS}\n  AND l.duration_seconds IS NOT NULL\nGROUP BY 1\nORDER BY 1",
            (0, 20, 12, 8),
            unit="s",
        ),
        barchart(
            "Requests by Model",
            "Runs per model in the time range, most used first.",
            f'SELECT coalesce(l.model, \'(unknown)\') AS "Model", count(*) AS "Requests"\n{RUNS}\nGROUP BY 1\nORDER BY 2 DESC\nLIMIT 15',
            (12, 20, 12, 8),
            x_field="Model",
        ),
        table(
            "Last 5 Requests",
            "The five most recent runs.",
            'SELECT l.id AS "ID", l.run_started_at AS "Time", l.provider AS "Provider", l.model AS "Model",\n'
            '  l.agent_name AS "Agent", l.total_input_tokens AS "Tokens in", l.total_output_tokens AS "Tokens out",\n'
            f'  l.total_cost AS "Cost", l.duration_seconds AS "Duration"\n{RUNS}\n'
            "ORDER BY l.run_started_at DESC, l.id DESC\nLIMIT 5",
            (0, 28, 16, 7),
            units={"Cost": "currencyUSD", "Duration": "s"},
            widths={"ID": 70},
        ),
        table(
            "Unpriced Runs by Model",
            "Runs without a cost, by provider and model, with the reason stored by the pricing step.",
            "SELECT coalesce(l.provider, '?') AS \"Provider\", coalesce(l.model, '?') AS \"Model\",\n"
            '  coalesce(l.pricing_status, \'?\') AS "Why", count(*) AS "Runs", max(l.run_started_at) AS "Last run"\n'
            f"{RUNS}\n  AND l.total_cost IS NULL\nGROUP BY 1, 2, 3\nORDER BY 4 DESC\nLIMIT 20",
            (16, 28, 8, 7),
        ),
        timeseries(
            "Daily Cost by Model (long ranges)",
            "Cost in USD per UTC day by provider / model, from the daily_usage aggregate: fast over months.",
            "SELECT d.day::timestamptz AS \"time\",\n  coalesce(d.provider, '?') || ' / ' || coalesce(d.model, '?') AS metric,\n"
            f'  sum(d.total_cost) AS "Cost"\n{DAILY}\nGROUP BY 1, 2\nORDER BY 1',
            (0, 35, 12, 8),
            unit="currencyUSD",
            bars=True,
            stacked=True,
        ),
        timeseries(
            "Daily Runs and Unpriced Runs (long ranges)",
            "Runs per UTC day and those without a price, from the daily_usage aggregate.",
            'SELECT d.day::timestamptz AS "time",\n  sum(d.runs) AS "Runs",\n  sum(d.unpriced_runs) AS "Unpriced"\n'
            f"{DAILY}\nGROUP BY 1\nORDER BY 1",
            (12, 35, 12, 8),
            bars=True,
        ),
    ]
    return dashboard(
        "llm-monitoring-overview",
        "LLM Monitoring - Overview",
        "Requests, tokens, cost and latency of agent runs, by the time each run started.",
        panels,
        run_variables(),
    )


PASS_RATE = "100.0 * count(*) FILTER (WHERE e.passed) / nullif(count(e.passed), 0)"
GOOD_RATE = "100.0 * count(*) FILTER (WHERE f.is_good) / nullif(count(*), 0)"


def evaluation() -> dict[str, Any]:
    panels = [
        stat(
            "Eval Checks Logged",
            "Check results of the runs in the time range (applicable or not), for the selected evaluator version.",
            f'SELECT count(*) AS "Checks"\n{CHECKS}',
            (0, 0, 5, 4),
        ),
        stat(
            "Pass Rate",
            "Passed / applicable checks; not-applicable checks are left out.",
            f'SELECT {PASS_RATE} AS "Pass rate"\n{CHECKS}',
            (5, 0, 5, 4),
            unit="percent",
            decimals=1,
            thresholds=[(None, "red"), (60, "orange"), (80, "green")],
        ),
        stat(
            "Failed Checks",
            "Applicable checks that failed.",
            f'SELECT count(*) FILTER (WHERE NOT e.passed) AS "Failed"\n{CHECKS}',
            (10, 0, 5, 4),
            thresholds=[(None, "green"), (1, "orange")],
        ),
        stat(
            "Not Applicable",
            "Checks that did not apply to their run (for example no references were asked for).",
            f'SELECT count(*) FILTER (WHERE e.passed IS NULL) AS "Not applicable"\n{CHECKS}',
            (15, 0, 4, 4),
        ),
        stat(
            "Runs Evaluated",
            "Runs in the time range with results of the selected evaluator version.",
            f'SELECT count(DISTINCT e.log_id) AS "Runs"\n{CHECKS}',
            (19, 0, 5, 4),
        ),
        table(
            "Pass Rate by Check",
            "Per check: passed / applicable, with the counts behind it.",
            f'SELECT e.check_name AS "Check",\n  {PASS_RATE} AS "Pass %",\n'
            '  count(*) FILTER (WHERE e.passed) AS "Passed",\n  count(*) FILTER (WHERE NOT e.passed) AS "Failed",\n'
            '  count(*) FILTER (WHERE e.passed IS NULL) AS "Not applicable",\n  count(e.passed) AS "Total"\n'
            f"{CHECKS}\nGROUP BY 1\nORDER BY 2 ASC NULLS LAST, 1",
            (0, 4, 12, 9),
            units={"Pass %": "percent"},
            gauges=("Pass %",),
        ),
        timeseries(
            "Pass Rate Over Time by Check",
            "Pass rate of each check per interval (applicable checks only).",
            f'SELECT {TIME_BUCKET},\n  e.check_name AS metric,\n  {PASS_RATE} AS "Pass rate"\n{CHECKS}\n'
            "  AND e.passed IS NOT NULL\nGROUP BY 1, 2\nORDER BY 1",
            (12, 4, 12, 9),
            unit="percent",
            max_value=100,
        ),
        timeseries(
            "Checks Over Time",
            "Check results per interval: passed, failed and not applicable.",
            f'SELECT {TIME_BUCKET},\n  count(*) FILTER (WHERE e.passed) AS "Passed",\n'
            '  count(*) FILTER (WHERE NOT e.passed) AS "Failed",\n'
            f'  count(*) FILTER (WHERE e.passed IS NULL) AS "Not applicable"\n{CHECKS}\nGROUP BY 1\nORDER BY 1',
            (0, 13, 24, 8),
            bars=True,
            stacked=True,
        ),
        table(
            "Recent Checks",
            "The 20 most recent check results (by run start).",
            'SELECT l.run_started_at AS "Run time", l.id AS "Run", l.model AS "Model", e.check_name AS "Check",\n'
            "  CASE WHEN e.passed THEN 'pass' WHEN NOT e.passed THEN 'fail' ELSE 'n/a' END AS \"Result\",\n"
            f'  e.score AS "Score", e.details AS "Details"\n{CHECKS}\nORDER BY l.run_started_at DESC, e.id DESC\nLIMIT 20',
            (0, 21, 24, 10),
            widths={"Run": 70, "Result": 70, "Score": 70},
        ),
    ]
    return dashboard(
        "llm-monitoring-eval",
        "LLM Monitoring - Eval",
        "Rule-based check results of agent runs, by the time each run started; not-applicable checks are left out of pass rates.",
        panels,
        [*run_variables(), evaluator_variable()],
    )


def feedback() -> dict[str, Any]:
    panels = [
        stat(
            "Good Feedback %",
            "Share of good ratings among the feedback on runs that started in the time range.",
            f'SELECT {GOOD_RATE} AS "Good"\n{FEEDBACK}',
            (0, 0, 6, 4),
            unit="percent",
            decimals=1,
            thresholds=[(None, "red"), (50, "orange"), (75, "green")],
        ),
        stat(
            "Feedback Count",
            "Feedback rows on runs that started in the time range.",
            f'SELECT count(*) AS "Feedback"\n{FEEDBACK}',
            (6, 0, 6, 4),
        ),
        stat(
            "Good / Bad",
            "Good and bad ratings.",
            f'SELECT count(*) FILTER (WHERE f.is_good) AS "Good",\n  count(*) FILTER (WHERE NOT f.is_good) AS "Bad"\n{FEEDBACK}',
            (12, 0, 6, 4),
        ),
        stat(
            "Runs with Feedback",
            "Share of the runs in the time range that have at least one rating.",
            "SELECT 100.0 * count(*) FILTER (WHERE EXISTS (SELECT 1 FROM feedback f WHERE f.log_id = l.id))\n"
            f'  / nullif(count(*), 0) AS "Rated"\n{RUNS}',
            (18, 0, 6, 4),
            unit="percent",
            decimals=1,
        ),
        timeseries(
            "Feedback Over Time",
            "Good and bad ratings per interval, by the time the rated run started.",
            f'SELECT {TIME_BUCKET},\n  count(*) FILTER (WHERE f.is_good) AS "Good",\n'
            f'  count(*) FILTER (WHERE NOT f.is_good) AS "Bad"\n{FEEDBACK}\nGROUP BY 1\nORDER BY 1',
            (0, 4, 12, 8),
            bars=True,
            stacked=True,
        ),
        table(
            "Feedback by Model",
            "Good and bad ratings per provider / model.",
            "SELECT coalesce(l.provider, '?') AS \"Provider\", coalesce(l.model, '?') AS \"Model\",\n"
            f'  {GOOD_RATE} AS "Good %",\n'
            '  count(*) FILTER (WHERE f.is_good) AS "Good", count(*) FILTER (WHERE NOT f.is_good) AS "Bad"\n'
            f"{FEEDBACK}\nGROUP BY 1, 2\nORDER BY 3 ASC NULLS LAST",
            (12, 4, 12, 8),
            units={"Good %": "percent"},
            gauges=("Good %",),
        ),
        table(
            "Recent Feedback",
            "The 10 most recent ratings with the run they rate.",
            "SELECT f.created_at AS \"Given at\", CASE WHEN f.is_good THEN '👍' ELSE '👎' END AS \"Rating\",\n"
            '  f.comments AS "Comments", f.reference_answer AS "Reference answer", f.reviewer AS "Reviewer",\n'
            '  l.id AS "Run", l.model AS "Model", l.provider AS "Provider", left(l.user_prompt, 200) AS "Prompt"\n'
            f"{FEEDBACK}\nORDER BY f.created_at DESC, f.id DESC\nLIMIT 10",
            (0, 12, 24, 10),
            widths={"Rating": 70, "Run": 70},
        ),
    ]
    return dashboard(
        "llm-monitoring-feedback",
        "LLM Monitoring - Feedback",
        "Reviewers' ratings of agent runs, by the time the rated run started.",
        panels,
        run_variables(),
    )


DASHBOARDS = {"overview.json": overview, "eval.json": evaluation, "feedback.json": feedback}


def render(name: str) -> str:
    return json.dumps(DASHBOARDS[name](), indent=2, ensure_ascii=False) + "\n"


def main() -> int:
    """`python -m llm_monitoring.grafana.build_dashboards`: the same as `llm-monitoring dashboards`."""
    from llm_monitoring import cli

    return cli.main(["dashboards"])


def write_dashboards() -> int:
    """Write every dashboard's JSON into the provisioned folder."""
    try:
        DASHBOARDS_DIR.mkdir(parents=True, exist_ok=True)
        for name in DASHBOARDS:
            (DASHBOARDS_DIR / name).write_text(render(name), encoding="utf-8")
            print(f"wrote {DASHBOARDS_DIR.name}/{name}")
    except OSError as error:
        print(f"error: cannot write the dashboards: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
