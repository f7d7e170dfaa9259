"""The Eval dashboard: rule checks of one evaluator version, and the LLM judges (conventions and
building blocks: build_dashboards.py and panels.py)."""

from __future__ import annotations

from typing import Any

from llm_monitoring.grafana.panels import (
    CHECK_SUMMARY,
    CHECKS,
    DAY_TIME,
    JUDGE_ROWS,
    JUDGE_SUMMARY,
    JUDGES,
    RUN_TIME,
    combined,
    dashboard,
    evaluator_variable,
    figure,
    run_filters,
    run_variables,
    series,
    stat,
    table,
    timeseries,
)
from llm_monitoring.grafana.whole_days import RUN_BUCKET

JUDGE_METRIC = "{a}.check_name || ' ' || right({a}.evaluator_version, 12) AS metric"
PASS_RATE = "100.0 * count(*) FILTER (WHERE e.passed) / nullif(count(e.passed), 0)"
# Passed and applicable checks as partial sums: daily_eval_summary's columns, and the same from the checks.
VERDICTS_DAILY = "sum(d.passed) AS passed, sum(d.applicable) AS applicable"
VERDICTS_LIVE = "count(*) FILTER (WHERE e.passed), count(e.passed)"
# PASS_RATE over the partial sums (the same numeric division).
PARTS_PASS_RATE = "100.0 * sum(passed)::bigint / nullif(sum(applicable)::bigint, 0)"
# Passed, failed and not applicable as partial sums.
OUTCOMES_DAILY = "sum(d.passed) AS passed, sum(d.applicable - d.passed) AS failed, sum(d.runs - d.applicable) AS not_applicable"
OUTCOMES_LIVE = "count(*) FILTER (WHERE e.passed), count(*) FILTER (WHERE NOT e.passed), count(*) FILTER (WHERE e.passed IS NULL)"


def evaluation() -> dict[str, Any]:
    panels = [
        stat(
            "Eval Checks Logged",
            "Check results of the runs in the time range (applicable or not), for the selected evaluator version.",
            figure(CHECK_SUMMARY, "sum(d.runs) AS checks", "count(*)", 'sum(checks)::bigint AS "Checks"', 'count(*) AS "Checks"'),
            (0, 0, 5, 4),
        ),
        stat(
            "Pass Rate",
            "Passed / applicable checks; not-applicable checks are left out.",
            figure(CHECK_SUMMARY, VERDICTS_DAILY, VERDICTS_LIVE, f'{PARTS_PASS_RATE} AS "Pass rate"', f'{PASS_RATE} AS "Pass rate"'),
            (5, 0, 5, 4),
            unit="percent",
            decimals=1,
            thresholds=[(None, "red"), (60, "orange"), (80, "green")],
        ),
        stat(
            "Failed Checks",
            "Applicable checks that failed.",
            figure(
                CHECK_SUMMARY,
                "sum(d.applicable - d.passed) AS failed",
                "count(*) FILTER (WHERE NOT e.passed)",
                'sum(failed)::bigint AS "Failed"',
                'count(*) FILTER (WHERE NOT e.passed) AS "Failed"',
            ),
            (10, 0, 5, 4),
            thresholds=[(None, "green"), (1, "orange")],
        ),
        stat(
            "Not Applicable",
            "Checks that did not apply to their run (for example no references were asked for).",
            figure(
                CHECK_SUMMARY,
                "sum(d.runs - d.applicable) AS not_applicable",
                "count(*) FILTER (WHERE e.passed IS NULL)",
                'sum(not_applicable)::bigint AS "Not applicable"',
                'count(*) FILTER (WHERE e.passed IS NULL) AS "Not applicable"',
            ),
            (15, 0, 4, 4),
        ),
        stat(
            "Runs Evaluated",
            "Runs in the time range with results of the selected evaluator version.",
            # An evaluator version writes a row for each of its checks on every run it evaluates, so the
            # runs of a day and run group are its most frequent check's rows.
            combined(
                CHECK_SUMMARY,
                "max(d.runs) AS runs",
                "count(DISTINCT e.log_id)",
                'SELECT sum(runs)::bigint AS "Runs"\nFROM parts',
                f'SELECT count(DISTINCT e.log_id) AS "Runs"\n{CHECKS}',
                daily_group_by="d.day, d.provider, d.model, d.agent_name",
            ),
            (19, 0, 5, 4),
        ),
        table(
            "Pass Rate by Check",
            "Per check: passed / applicable, with the counts behind it.",
            combined(
                CHECK_SUMMARY,
                f"d.check_name AS check_name, {OUTCOMES_DAILY}, sum(d.applicable) AS applicable",
                f"e.check_name, {OUTCOMES_LIVE}, count(e.passed)",
                f'SELECT check_name AS "Check",\n  {PARTS_PASS_RATE} AS "Pass %",\n'
                '  sum(passed)::bigint AS "Passed",\n  sum(failed)::bigint AS "Failed",\n'
                '  sum(not_applicable)::bigint AS "Not applicable",\n  sum(applicable)::bigint AS "Total"\n'
                "FROM parts\nGROUP BY 1\nORDER BY 2 ASC NULLS LAST, 1",
                f'SELECT e.check_name AS "Check",\n  {PASS_RATE} AS "Pass %",\n'
                '  count(*) FILTER (WHERE e.passed) AS "Passed",\n  count(*) FILTER (WHERE NOT e.passed) AS "Failed",\n'
                '  count(*) FILTER (WHERE e.passed IS NULL) AS "Not applicable",\n  count(e.passed) AS "Total"\n'
                f"{CHECKS}\nGROUP BY 1\nORDER BY 2 ASC NULLS LAST, 1",
                group_by="1",
            ),
            (0, 4, 12, 9),
            units={"Pass %": "percent"},
            gauges=("Pass %",),
        ),
        timeseries(
            "Pass Rate Over Time by Check",
            "Pass rate of each check per interval (applicable checks only).",
            combined(
                CHECK_SUMMARY,
                f"{DAY_TIME}, d.check_name AS metric, {VERDICTS_DAILY}",
                f"{RUN_BUCKET}, e.check_name, {VERDICTS_LIVE}",
                f'SELECT time AS "time", metric, {PARTS_PASS_RATE} AS "Pass rate"\nFROM parts\nGROUP BY 1, 2\nORDER BY 1',
                f'SELECT {RUN_TIME},\n  e.check_name AS metric,\n  {PASS_RATE} AS "Pass rate"\n{CHECKS}\n'
                "  AND e.passed IS NOT NULL\nGROUP BY 1, 2\nORDER BY 1",
                group_by="1, 2",
                daily_where="\n  AND d.applicable > 0",
                live_where="\n  AND e.passed IS NOT NULL",
                series=True,
            ),
            (12, 4, 12, 9),
            unit="percent",
            max_value=100,
        ),
        timeseries(
            "Checks Over Time",
            "Check results per interval: passed, failed and not applicable.",
            series(
                CHECK_SUMMARY,
                OUTCOMES_DAILY,
                OUTCOMES_LIVE,
                'sum(passed)::bigint AS "Passed", sum(failed)::bigint AS "Failed", sum(not_applicable)::bigint AS "Not applicable"',
                'count(*) FILTER (WHERE e.passed) AS "Passed",\n  count(*) FILTER (WHERE NOT e.passed) AS "Failed",\n'
                '  count(*) FILTER (WHERE e.passed IS NULL) AS "Not applicable"',
            ),
            (0, 13, 24, 8),
            bars=True,
            stacked=True,
        ),
        table(
            "Recent Checks",
            "The 20 most recent check results (by run start).",
            'SELECT l.run_started_at AS "Run time", l.id AS "Run", l.model AS "Model", e.check_name AS "Check",\n'
            "  CASE WHEN e.passed THEN 'pass' WHEN NOT e.passed THEN 'fail' ELSE 'n/a' END AS \"Result\",\n"
            f'  e.score AS "Score", e.details AS "Details"\n{CHECKS}\nORDER BY l.run_started_at DESC NULLS LAST, e.id DESC\nLIMIT 20',
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


# A judge's verdict and its call are stored together (storage/judgements.py), so on a day of
# daily_eval_summary the priced calls are its verdicts less its unpriced calls.
PRICED_CALLS_DAILY = "d.runs - d.judge_unpriced_calls"


def judge_panels(top: int) -> list[dict[str, Any]]:
    """The LLM judges: their verdicts by version, what they cost, and how well they agree with the reviewers."""
    return [
        stat(
            "Judge Verdicts",
            "LLM judges' verdicts on the runs of the time range, every judge version.",
            figure(JUDGE_SUMMARY, "sum(d.runs) AS verdicts", "count(*)", 'sum(verdicts)::bigint AS "Verdicts"', 'count(*) AS "Verdicts"'),
            (0, top, 6, 4),
        ),
        stat(
            "Judge Pass Rate",
            "Passed / verdicts of every LLM judge version (each judge's versions: the table below).",
            figure(JUDGE_SUMMARY, VERDICTS_DAILY, VERDICTS_LIVE, f'{PARTS_PASS_RATE} AS "Pass rate"', f'{PASS_RATE} AS "Pass rate"'),
            (6, top, 6, 4),
            unit="percent",
            decimals=1,
            thresholds=[(None, "red"), (60, "orange"), (80, "green")],
        ),
        stat(
            "Judge Cost",
            "What the judges' calls cost in USD (genai-prices when each call was made); unpriced calls are not included.",
            figure(
                JUDGE_SUMMARY,
                "sum(d.judge_cost) AS cost",
                "sum(j.cost)",
                'coalesce(sum(cost), 0) AS "Cost"',
                'coalesce(sum(j.cost), 0) AS "Cost"',
            ),
            (12, top, 6, 4),
            unit="currencyUSD",
            decimals=4,
        ),
        stat(
            "Judge Tokens",
            "Input and output tokens of the judges' calls.",
            figure(
                JUDGE_SUMMARY,
                "sum(d.judge_input_tokens) AS input, sum(d.judge_output_tokens) AS output",
                "sum(j.input_tokens), sum(j.output_tokens)",
                'coalesce(sum(input), 0) AS "In", coalesce(sum(output), 0) AS "Out"',
                'coalesce(sum(j.input_tokens), 0) AS "In", coalesce(sum(j.output_tokens), 0) AS "Out"',
            ),
            (18, top, 6, 4),
        ),
        table(
            "Judge Pass Rate by Version",
            "Per judge and version (judge:<name>:<hash of model and rubric>): verdicts, pass rate, cost and tokens.",
            combined(
                JUDGE_SUMMARY,
                "d.check_name AS check_name, d.evaluator_version AS version, sum(d.runs) AS verdicts,\n"
                f"  {VERDICTS_DAILY},\n  sum(d.judge_cost) AS cost, sum({PRICED_CALLS_DAILY}) AS priced_calls,\n"
                "  sum(d.judge_input_tokens) AS input, sum(d.judge_output_tokens) AS output",
                f"e.check_name, e.evaluator_version, count(*),\n  {VERDICTS_LIVE},\n  sum(j.cost), count(j.cost),\n"
                "  sum(j.input_tokens), sum(j.output_tokens)",
                # The version's hash covers its model: any of its calls names it.
                'SELECT check_name AS "Judge", version AS "Version",\n'
                '  (SELECT j.model FROM judge_calls j WHERE j.evaluator_version = parts.version LIMIT 1) AS "Model",\n'
                f'  sum(verdicts)::bigint AS "Verdicts",\n  {PARTS_PASS_RATE} AS "Pass %",\n'
                '  CASE WHEN sum(priced_calls) > 0 THEN sum(cost) END AS "Cost",\n'
                '  coalesce(sum(input), 0) AS "Tokens in", coalesce(sum(output), 0) AS "Tokens out"\n'
                "FROM parts\nGROUP BY 1, 2\nORDER BY 1, 2",
                f'SELECT e.check_name AS "Judge", e.evaluator_version AS "Version", max(j.model) AS "Model", count(*) AS "Verdicts",\n'
                f'  {PASS_RATE} AS "Pass %",\n  sum(j.cost) AS "Cost",\n'
                '  coalesce(sum(j.input_tokens), 0) AS "Tokens in", coalesce(sum(j.output_tokens), 0) AS "Tokens out"\n'
                f"{JUDGES}\nGROUP BY 1, 2\nORDER BY 1, 2",
                group_by="1, 2",
            ),
            (0, top + 4, 12, 8),
            units={"Pass %": "percent", "Cost": "currencyUSD"},
            gauges=("Pass %",),
        ),
        timeseries(
            "Judge Pass Rate Over Time",
            "Pass rate of each judge version per interval.",
            combined(
                JUDGE_SUMMARY,
                f"{DAY_TIME}, {JUDGE_METRIC.format(a='d')}, {VERDICTS_DAILY}",
                f"{RUN_BUCKET}, {JUDGE_METRIC.format(a='e')}, {VERDICTS_LIVE}",
                f'SELECT time AS "time", metric, {PARTS_PASS_RATE} AS "Pass rate"\nFROM parts\nGROUP BY 1, 2\nORDER BY 1',
                f'SELECT {RUN_TIME},\n  {JUDGE_METRIC.format(a="e")},\n  {PASS_RATE} AS "Pass rate"\n'
                f"{JUDGES}\n  AND e.passed IS NOT NULL\nGROUP BY 1, 2\nORDER BY 1",
                group_by="1, 2",
                daily_where="\n  AND d.applicable > 0",
                live_where="\n  AND e.passed IS NOT NULL",
                series=True,
            ),
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
            combined(
                JUDGE_SUMMARY,
                f"{DAY_TIME}, d.check_name AS metric, sum(d.judge_cost) AS cost",
                f"{RUN_BUCKET}, e.check_name, sum(j.cost)",
                'SELECT time AS "time", metric, sum(cost) AS "Cost"\nFROM parts\nGROUP BY 1, 2\nORDER BY 1',
                f'SELECT {RUN_TIME},\n  e.check_name AS metric,\n  sum(j.cost) AS "Cost"\n{JUDGES}\n  AND j.cost IS NOT NULL\n'
                "GROUP BY 1, 2\nORDER BY 1",
                group_by="1, 2",
                daily_where=f"\n  AND {PRICED_CALLS_DAILY} > 0",
                live_where="\n  AND j.cost IS NOT NULL",
                series=True,
            ),
            (12, top + 12, 12, 8),
            unit="currencyUSD",
            bars=True,
            stacked=True,
        ),
    ]
