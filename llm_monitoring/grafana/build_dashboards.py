"""Writes the three Grafana dashboards (dashboards/*.json) from the panel definitions below
(building blocks in panels.py).

    uv run python -m llm_monitoring.grafana.build_dashboards

The JSON files are committed; a test fails when they differ from what this script writes, so edit
here and rerun. Plain dictionaries in Grafana's dashboard schema (schemaVersion 39, Grafana 10.4
to 12), no extra dependency.

Conventions every panel follows:
- time is the run's start (`llm_logs.run_started_at`), filtered with `$__timeFilter` in every query;
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

from llm_monitoring.grafana.panels import (
    CHECKS,
    DAILY,
    FEEDBACK,
    JUDGE_ROWS,
    JUDGES,
    RUNS,
    TIME_BUCKET,
    barchart,
    dashboard,
    evaluator_variable,
    run_filters,
    run_variables,
    stat,
    table,
    timeseries,
)

DASHBOARDS_DIR = Path(__file__).parent / "dashboards"


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
        *judge_panels(31),
    ]
    return dashboard(
        "llm-monitoring-eval",
        "LLM Monitoring - Eval",
        "Rule-based check results and LLM judges' verdicts of agent runs, by the time each run started; not-applicable "
        "checks are left out of pass rates.",
        panels,
        [*run_variables(), evaluator_variable()],
    )


# Cohen's kappa of each judge version against the reviewers, one pair per rating of a judged run:
# the formula of llm_monitoring/core/agreement.py (a test compares the two on the same rows).
KAPPA_SQL = f"""WITH pairs AS (
  SELECT e.check_name, e.evaluator_version, e.passed AS judge, f.is_good AS reviewer
  FROM eval_checks e
  JOIN llm_logs l ON l.id = e.log_id
  JOIN feedback f ON f.log_id = e.log_id
  WHERE $__timeFilter(l.run_started_at){run_filters("l")}
    AND {JUDGE_ROWS} AND e.passed IS NOT NULL
), counts AS (
  SELECT check_name, evaluator_version, count(*)::float AS n, count(*) FILTER (WHERE judge = reviewer) AS agree,
    count(*) FILTER (WHERE judge) AS judge_passed, count(*) FILTER (WHERE reviewer) AS reviewer_good
  FROM pairs GROUP BY 1, 2
), rates AS (
  SELECT *, agree / n AS po, (judge_passed / n) * (reviewer_good / n) + (1 - judge_passed / n) * (1 - reviewer_good / n) AS pe
  FROM counts
)
SELECT check_name AS "Judge", evaluator_version AS "Version", n::int AS "Rated runs", 100 * po AS "Agreement %",
  CASE WHEN pe < 1 THEN (po - pe) / (1 - pe) END AS "Kappa"
FROM rates
ORDER BY 1, 2"""


def judge_panels(top: int) -> list[dict[str, Any]]:
    """The LLM judges: their verdicts by version, what they cost, and how well they agree with the reviewers."""
    return [
        stat(
            "Judge Verdicts",
            "LLM judges' verdicts on the runs of the time range, every judge version.",
            f'SELECT count(*) AS "Verdicts"\n{JUDGES}',
            (0, top, 6, 4),
        ),
        stat(
            "Judge Pass Rate",
            "Passed / verdicts of every LLM judge version (each judge's versions: the table below).",
            f'SELECT {PASS_RATE} AS "Pass rate"\n{JUDGES}',
            (6, top, 6, 4),
            unit="percent",
            decimals=1,
            thresholds=[(None, "red"), (60, "orange"), (80, "green")],
        ),
        stat(
            "Judge Cost",
            "What the judges' calls cost in USD (genai-prices when each call was made); unpriced calls are not included.",
            f'SELECT coalesce(sum(j.cost), 0) AS "Cost"\n{JUDGES}',
            (12, top, 6, 4),
            unit="currencyUSD",
            decimals=4,
        ),
        stat(
            "Judge Tokens",
            "Input and output tokens of the judges' calls.",
            f'SELECT coalesce(sum(j.input_tokens), 0) AS "In", coalesce(sum(j.output_tokens), 0) AS "Out"\n{JUDGES}',
            (18, top, 6, 4),
        ),
        table(
            "Judge Pass Rate by Version",
            "Per judge and version (judge:<name>:<hash of model and rubric>): verdicts, pass rate, cost and tokens.",
            f'SELECT e.check_name AS "Judge", e.evaluator_version AS "Version", max(j.model) AS "Model", count(*) AS "Verdicts",\n'
            f'  {PASS_RATE} AS "Pass %",\n  sum(j.cost) AS "Cost", sum(j.input_tokens) AS "Tokens in", sum(j.output_tokens) AS "Tokens out"\n'
            f"{JUDGES}\nGROUP BY 1, 2\nORDER BY 1, 2",
            (0, top + 4, 12, 8),
            units={"Pass %": "percent", "Cost": "currencyUSD"},
            gauges=("Pass %",),
        ),
        timeseries(
            "Judge Pass Rate Over Time",
            "Pass rate of each judge version per interval.",
            f"SELECT {TIME_BUCKET},\n  e.check_name || ' ' || right(e.evaluator_version, 12) AS metric,\n  {PASS_RATE} AS \"Pass rate\"\n"
            f"{JUDGES}\n  AND e.passed IS NOT NULL\nGROUP BY 1, 2\nORDER BY 1",
            (12, top + 4, 12, 8),
            unit="percent",
            max_value=100,
        ),
        table(
            "Judge Agreement with Reviewers (Cohen's kappa)",
            "Each judge version against the reviewers' ratings of the same runs (one pair per rating): raw agreement and "
            "Cohen's kappa (1 perfect, 0 chance; empty when judge and reviewers each gave one answer only).",
            KAPPA_SQL,
            (0, top + 12, 12, 8),
            units={"Agreement %": "percent"},
        ),
        timeseries(
            "Judge Cost Over Time",
            "What the judges' calls cost per interval, by judge (priced calls).",
            f'SELECT {TIME_BUCKET},\n  e.check_name AS metric,\n  sum(j.cost) AS "Cost"\n{JUDGES}\n  AND j.cost IS NOT NULL\nGROUP BY 1, 2\nORDER BY 1',
            (12, top + 12, 12, 8),
            unit="currencyUSD",
            bars=True,
            stacked=True,
        ),
    ]


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
