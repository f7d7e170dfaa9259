"""Writes the three Grafana dashboards (dashboards/*.json) from the panel definitions below and in
eval_dashboard.py (building blocks in panels.py and whole_days.py).

    uv run python -m llm_monitoring.grafana.build_dashboards

The JSON files are committed; a test fails when they differ from what this script writes, so edit
here and rerun. Plain dictionaries in Grafana's dashboard schema (schemaVersion 39, Grafana 10.4
to 12), no extra dependency.

Conventions every panel follows:
- time is the run's start (`llm_logs.run_started_at`), filtered with `$__timeFilter` in every query;
  the whole UTC days of the range are read from the daily tables where they hold the panel's figures,
  adding up to exactly what the runs give (whole_days.py; a test compares the two);
- the provider, model and agent variables filter every query; "All" is the custom value
  '__all' (Grafana inserts a custom all value unformatted), so "All" also keeps runs whose provider,
  model or agent is unknown (NULL) and never expands into a long or empty IN list;
- pass rates count only applicable checks (`passed IS NOT NULL`), for one evaluator version (rule
  checks) or per judge version (LLM judges, whose versions start with "judge:");
- costs are in USD (`currencyUSD`), and unpriced runs are counted, never added as $0.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from llm_monitoring.grafana.eval_dashboard import evaluation
from llm_monitoring.grafana.panels import (
    DAILY,
    DAY_TIME,
    FEEDBACK,
    FEEDBACK_SUMMARY,
    LIVE_SQL,
    RUN_TIME,
    RUNS,
    USAGE,
    barchart,
    combined,
    dashboard,
    figure,
    run_variables,
    series,
    stat,
    table,
    timeseries,
    without_live_sql,
)
from llm_monitoring.grafana.whole_days import BUCKET_SECONDS, RUN_BUCKET, PanelQuery

DASHBOARDS_DIR = Path(__file__).parent / "dashboards"
BUCKET = f"{BUCKET_SECONDS}::numeric"  # generate_series has no float8 form
MODEL_METRIC = "coalesce({a}.provider, '?') || ' / ' || coalesce({a}.model, '?') AS metric"


# ---------------------------------------------------------------------------- the dashboards


def overview() -> dict[str, Any]:
    panels = [
        stat(
            "Total Requests",
            "Agent runs that started in the time range.",
            figure(USAGE, "sum(d.runs) AS runs", "count(*)", 'sum(runs)::bigint AS "Requests"', 'count(*) AS "Requests"'),
            (0, 0, 4, 4),
        ),
        stat(
            "Total Cost",
            "Sum of the priced runs' cost in USD (genai-prices, at the price in force when each run happened).",
            figure(
                USAGE,
                "sum(d.total_cost) AS cost",
                "sum(l.total_cost)",
                'coalesce(sum(cost), 0) AS "Cost"',
                'coalesce(sum(l.total_cost), 0) AS "Cost"',
            ),
            (4, 0, 4, 4),
            unit="currencyUSD",
            decimals=2,
        ),
        stat(
            "Tokens In",
            "Input tokens of the runs, cache reads included.",
            figure(
                USAGE,
                "sum(d.input_tokens) AS tokens",
                "sum(l.total_input_tokens)",
                'coalesce(sum(tokens), 0) AS "Input tokens"',
                'coalesce(sum(l.total_input_tokens), 0) AS "Input tokens"',
            ),
            (8, 0, 4, 4),
        ),
        stat(
            "Tokens Out",
            "Output tokens of the runs.",
            figure(
                USAGE,
                "sum(d.output_tokens) AS tokens",
                "sum(l.total_output_tokens)",
                'coalesce(sum(tokens), 0) AS "Output tokens"',
                'coalesce(sum(l.total_output_tokens), 0) AS "Output tokens"',
            ),
            (12, 0, 4, 4),
        ),
        stat(
            "Avg Cost per Request",
            "Mean cost of the priced runs in USD.",
            # avg() is this division: the same digits.
            figure(
                USAGE,
                "sum(d.total_cost) AS cost, sum(d.priced_runs) AS priced",
                "sum(l.total_cost), count(l.total_cost)",
                'sum(cost) / nullif(sum(priced), 0) AS "Avg cost"',
                'avg(l.total_cost) AS "Avg cost"',
            ),
            (16, 0, 4, 4),
            unit="currencyUSD",
            decimals=4,
        ),
        stat(
            "Unpriced Runs",
            "Runs without a cost: unknown model or no token usage in the log. Their cost is not in Total Cost.",
            figure(
                USAGE,
                "sum(d.unpriced_runs) AS unpriced",
                "count(*) FILTER (WHERE l.total_cost IS NULL)",
                'sum(unpriced)::bigint AS "Unpriced"',
                'count(*) FILTER (WHERE l.total_cost IS NULL) AS "Unpriced"',
            ),
            (20, 0, 4, 4),
            thresholds=[(None, "green"), (1, "orange")],
        ),
        timeseries(
            "Requests Over Time",
            "Runs per interval, by the time each run started.",
            series(USAGE, "sum(d.runs) AS runs", "count(*)", 'sum(runs)::bigint AS "Requests"', 'count(*) AS "Requests"'),
            (0, 4, 12, 8),
            bars=True,
        ),
        timeseries(
            "Cost by Model Over Time",
            "Cost in USD per interval, stacked by provider / model (priced runs).",
            combined(
                USAGE,
                f"{DAY_TIME}, {MODEL_METRIC.format(a='d')},\n  sum(d.total_cost) AS cost",
                f"{RUN_BUCKET}, {MODEL_METRIC.format(a='l')},\n  sum(l.total_cost)",
                'SELECT time AS "time", metric, sum(cost) AS "Cost"\nFROM parts\nGROUP BY 1, 2\nORDER BY 1',
                f"SELECT {RUN_TIME},\n  {MODEL_METRIC.format(a='l')},\n"
                f'  sum(l.total_cost) AS "Cost"\n{RUNS}\n  AND l.total_cost IS NOT NULL\nGROUP BY 1, 2\nORDER BY 1',
                group_by="1, 2",
                daily_where="\n  AND d.priced_runs > 0",
                live_where="\n  AND l.total_cost IS NOT NULL",
                series=True,
            ),
            (12, 4, 12, 8),
            unit="currencyUSD",
            bars=True,
            stacked=True,
        ),
        timeseries(
            "Tokens Over Time",
            "Input and output tokens per interval (0 where no run reported usage).",
            series(
                USAGE,
                "sum(d.input_tokens) AS input, sum(d.output_tokens) AS output",
                "sum(l.total_input_tokens), sum(l.total_output_tokens)",
                'coalesce(sum(input), 0) AS "Input", coalesce(sum(output), 0) AS "Output"',
                'coalesce(sum(l.total_input_tokens), 0) AS "Input",\n  coalesce(sum(l.total_output_tokens), 0) AS "Output"',
            ),
            (0, 12, 12, 8),
        ),
        timeseries(
            "Tokens by Type",
            "Tokens per interval by how they are billed: input not read from cache (input less cache reads), cache reads, output.",
            series(
                USAGE,
                "sum(d.input_tokens) AS input, sum(d.cache_read_tokens) AS cache_read, sum(d.output_tokens) AS output",
                "sum(coalesce(l.total_input_tokens, 0)), sum(coalesce(l.cache_read_tokens, 0)), sum(coalesce(l.total_output_tokens, 0))",
                'greatest(sum(input) - sum(cache_read), 0)::bigint AS "Input (not cached)",\n'
                '  sum(cache_read)::bigint AS "Cache read",\n  sum(output)::bigint AS "Output"',
                'greatest(sum(coalesce(l.total_input_tokens, 0)) - sum(coalesce(l.cache_read_tokens, 0)), 0)::bigint AS "Input (not cached)",\n'
                '  sum(coalesce(l.cache_read_tokens, 0))::bigint AS "Cache read",\n  sum(coalesce(l.total_output_tokens, 0))::bigint AS "Output"',
            ),
            (12, 12, 12, 8),
            bars=True,
            stacked=True,
        ),
        # Read from the runs (percentiles of days do not add up to a range's), one bucket at a time: a
        # few small sorts instead of one of every run in the range.
        timeseries(
            "Duration p50 / p95",
            "Median and 95th percentile of run duration (first to last message of the run).",
            PanelQuery(
                'SELECT b.time AS "time", p.p50 AS "p50", p.p95 AS "p95"\n'
                f"FROM generate_series(floor($__unixEpochFrom() / {BUCKET}) * {BUCKET}, $__unixEpochTo(), {BUCKET}) AS b(time)\n"
                "CROSS JOIN LATERAL (\n"
                "  SELECT count(*) AS runs,\n"
                "    percentile_cont(0.5) WITHIN GROUP (ORDER BY l.duration_seconds) AS p50,\n"
                "    percentile_cont(0.95) WITHIN GROUP (ORDER BY l.duration_seconds) AS p95\n"
                "  " + RUNS.replace("\n", "\n  ") + "\n"
                f"    AND l.run_started_at >= to_timestamp(b.time) AND l.run_started_at < to_timestamp(b.time + {BUCKET})\n"
                "    AND l.duration_seconds IS NOT NULL\n"
                ") p\nWHERE p.runs > 0\nORDER BY 1",
                f"SELECT {RUN_TIME},\n"
                '  percentile_cont(0.5) WITHIN GROUP (ORDER BY l.duration_seconds) AS "p50",\n'
                '  percentile_cont(0.95) WITHIN GROUP (ORDER BY l.duration_seconds) AS "p95"\n'
                f"{RUNS}\n  AND l.duration_seconds IS NOT NULL\nGROUP BY 1\nORDER BY 1",
            ),
            (0, 20, 12, 8),
            unit="s",
        ),
        barchart(
            "Requests by Model",
            "Runs per model in the time range, most used first.",
            combined(
                USAGE,
                "coalesce(d.model, '(unknown)') AS model, sum(d.runs) AS runs",
                "coalesce(l.model, '(unknown)'), count(*)",
                'SELECT model AS "Model", sum(runs)::bigint AS "Requests"\nFROM parts\nGROUP BY 1\nORDER BY 2 DESC, 1\nLIMIT 15',
                f'SELECT coalesce(l.model, \'(unknown)\') AS "Model", count(*) AS "Requests"\n{RUNS}\nGROUP BY 1\nORDER BY 2 DESC, 1\nLIMIT 15',
                group_by="1",
            ),
            (12, 20, 12, 8),
            x_field="Model",
        ),
        table(
            "Last 5 Requests",
            "The five most recent runs.",
            'SELECT l.id AS "ID", l.run_started_at AS "Time", l.provider AS "Provider", l.model AS "Model",\n'
            '  l.agent_name AS "Agent", l.total_input_tokens AS "Tokens in", l.total_output_tokens AS "Tokens out",\n'
            f'  l.total_cost AS "Cost", l.duration_seconds AS "Duration"\n{RUNS}\n'
            # NULLS LAST as in ix_llm_logs_run_order (the range has no undated runs): read from the index.
            "ORDER BY l.run_started_at DESC NULLS LAST, l.id DESC\nLIMIT 5",
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


GOOD_RATE = "100.0 * count(*) FILTER (WHERE f.is_good) / nullif(count(*), 0)"
PARTS_GOOD_RATE = "100.0 * sum(good)::bigint / nullif(sum(feedback)::bigint, 0)"


def feedback() -> dict[str, Any]:
    panels = [
        stat(
            "Good Feedback %",
            "Share of good ratings among the feedback on runs that started in the time range.",
            figure(
                FEEDBACK_SUMMARY,
                "sum(d.good) AS good, sum(d.feedback) AS feedback",
                "count(*) FILTER (WHERE f.is_good), count(*)",
                f'{PARTS_GOOD_RATE} AS "Good"',
                f'{GOOD_RATE} AS "Good"',
            ),
            (0, 0, 6, 4),
            unit="percent",
            decimals=1,
            thresholds=[(None, "red"), (50, "orange"), (75, "green")],
        ),
        stat(
            "Feedback Count",
            "Feedback rows on runs that started in the time range.",
            figure(
                FEEDBACK_SUMMARY, "sum(d.feedback) AS feedback", "count(*)", 'sum(feedback)::bigint AS "Feedback"', 'count(*) AS "Feedback"'
            ),
            (6, 0, 6, 4),
        ),
        stat(
            "Good / Bad",
            "Good and bad ratings.",
            figure(
                FEEDBACK_SUMMARY,
                "sum(d.good) AS good, sum(d.bad) AS bad",
                "count(*) FILTER (WHERE f.is_good), count(*) FILTER (WHERE NOT f.is_good)",
                'sum(good)::bigint AS "Good",\n  sum(bad)::bigint AS "Bad"',
                'count(*) FILTER (WHERE f.is_good) AS "Good",\n  count(*) FILTER (WHERE NOT f.is_good) AS "Bad"',
            ),
            (12, 0, 6, 4),
        ),
        stat(
            "Runs with Feedback",
            "Share of the runs in the time range that have at least one rating.",
            # The rated runs from the ratings (a few per cent of the runs), the runs as Total Requests counts them.
            figure(
                USAGE,
                "sum(d.runs) AS runs",
                "count(*)",
                f"100.0 * (SELECT count(DISTINCT f.log_id)\n  {FEEDBACK.replace(chr(10), chr(10) + '  ')})\n"
                '  / nullif(sum(runs)::bigint, 0) AS "Rated"',
                "100.0 * count(*) FILTER (WHERE EXISTS (SELECT 1 FROM feedback f WHERE f.log_id = l.id))\n"
                '  / nullif(count(*), 0) AS "Rated"',
            ),
            (18, 0, 6, 4),
            unit="percent",
            decimals=1,
        ),
        timeseries(
            "Feedback Over Time",
            "Good and bad ratings per interval, by the time the rated run started.",
            series(
                FEEDBACK_SUMMARY,
                "sum(d.good) AS good, sum(d.bad) AS bad",
                "count(*) FILTER (WHERE f.is_good), count(*) FILTER (WHERE NOT f.is_good)",
                'sum(good)::bigint AS "Good", sum(bad)::bigint AS "Bad"',
                'count(*) FILTER (WHERE f.is_good) AS "Good",\n  count(*) FILTER (WHERE NOT f.is_good) AS "Bad"',
            ),
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
    return json.dumps(without_live_sql(DASHBOARDS[name]()), indent=2, ensure_ascii=False) + "\n"


def live_queries(name: str) -> dict[str, str]:
    """The daily-backed panels' and variables' queries over the runs alone, by title (variables: "$name")."""
    built = DASHBOARDS[name]()
    queries = {panel["title"]: panel[LIVE_SQL] for panel in built["panels"] if LIVE_SQL in panel}
    queries.update({f"${variable['name']}": variable[LIVE_SQL] for variable in built["templating"]["list"] if LIVE_SQL in variable})
    return queries


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
