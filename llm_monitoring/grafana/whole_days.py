"""Panels that read the daily tables for the whole UTC days of the range and the runs for the rest.

A month of runs is too many to scan on every refresh (a million runs in 90 days is 330,000 runs and
2.3 million check rows in 30 days), while the daily tables (daily_usage, daily_eval_breakdown,
daily_feedback) hold a few rows per day. So a panel's query adds up three parts:

- the whole UTC days inside the range, from a daily table;
- the runs of the range before those days, and those after them (the partial days at its two ends),
  as before; two parts rather than one with an OR, so that each is an index range the planner can
  estimate (with the OR it read the whole range).

All parts give the same partial sums (counts, sums of tokens and costs, passed and applicable
checks), and the outer query turns them into the panel's figures, so the figures are exactly those
of the runs (a test compares the two on Postgres). A daily table answers only where it holds what the
panel filters on: daily_usage and daily_eval_breakdown have the runs' provider, model and agent;
daily_feedback has not, so the feedback panels read it only while those variables are on "All". Time series over ranges longer than LONG_RANGE use day
buckets (or Grafana's interval, if longer), which whole days add up to; over shorter ranges they keep
Grafana's interval and read the runs alone.

The days are computed in SQL from `$__unixEpochFrom()` and `$__unixEpochTo()` (Grafana has no other
way to pass a value), in UTC whatever the session's time zone, and inlined as constant expressions
rather than put in a CTE, so that the planner sees the bounds of the edge parts and scans only them.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

# The range's ends in whole seconds since the epoch (UTC), and the whole UTC days inside it as day
# numbers since the epoch: [FIRST_DAY, END_DAY), none when END_DAY = FIRST_DAY. The start is
# truncated to the second, so the day it falls on never counts as whole, even at midnight sharp.
FROM_SECONDS = "$__unixEpochFrom()"
TO_SECONDS = "$__unixEpochTo()"
FIRST_DAY = f"({FROM_SECONDS} / 86400 + 1)"
END_DAY = f"greatest({TO_SECONDS} / 86400, {FIRST_DAY})"
LONG_RANGE_DAYS = 3
LONG_RANGE = f"{TO_SECONDS} - {FROM_SECONDS} > {LONG_RANGE_DAYS * 86400}"
# Every run filter on "All": what a daily table without provider, model and agent can answer for.
ALL_RUNS = "'__all' IN ($provider) AND '__all' IN ($model) AND '__all' IN ($agent)"
# Seconds per time-series bucket: Grafana's interval, or whole days over long ranges. Day buckets are
# multiples of 86,400 s since the epoch, so each holds whole UTC days, as the daily tables do.
BUCKET_SECONDS = f"(CASE WHEN {LONG_RANGE} THEN ceil($__interval_ms / 86400000.0) * 86400 ELSE $__interval_ms / 1000.0 END)::float8"


def bucket(epoch_of: str) -> str:
    """The start of the bucket holding `epoch_of` (a timestamptz, or a date's UTC midnight), in epoch
    seconds: what `$__timeGroup` gives, in float8 rather than numeric arithmetic (a third of the time
    over 300,000 runs; exact, as run times have microseconds)."""
    return f"floor(date_part('epoch', {epoch_of}) / {BUCKET_SECONDS}) * {BUCKET_SECONDS}"


RUN_BUCKET = bucket("l.run_started_at")
# The epoch of a timestamp without time zone reads it as UTC: a day's UTC midnight.
DAY_BUCKET = bucket("d.day::timestamp")


@dataclass(frozen=True)
class WholeDays:
    """The whole days a daily table answers for: those of the range, while `condition` holds (SQL)."""

    condition: str | None = None

    @property
    def end(self) -> str:
        return END_DAY if self.condition is None else f"(CASE WHEN {self.condition} THEN {END_DAY} ELSE {FIRST_DAY} END)"

    def days(self, column: str = "d.day") -> str:
        """The daily table's rows of those days."""
        return f"{column} >= date '1970-01-01' + {FIRST_DAY} AND {column} < date '1970-01-01' + {self.end}"

    def edges(self, column: str = "l.run_started_at") -> tuple[str, str]:
        """The runs of the range before those days and after them: two conditions to add to
        `$__timeFilter` in two parts, each an index range whose rows the planner can estimate."""
        return f"{column} < to_timestamp({FIRST_DAY} * 86400)", f"{column} >= to_timestamp({self.end} * 86400)"


ALWAYS = WholeDays()
WITHOUT_RUN_FILTERS = WholeDays(ALL_RUNS)
SERIES = WholeDays(LONG_RANGE)
SERIES_WITHOUT_RUN_FILTERS = WholeDays(f"{LONG_RANGE} AND {ALL_RUNS}")


@dataclass(frozen=True)
class PanelQuery:
    """What a panel runs, and the same figures from the runs alone (the reference the tests compare with)."""

    sql: str
    live: str


def from_parts(daily: str, live: Callable[[str], str], days: WholeDays, outer: str) -> str:
    """A query adding up a daily table's part over `days` and the runs' parts before and after them
    (`live(edge)` with each edge condition); all with the same columns, in the same order."""
    before, after = days.edges()
    return (
        "-- whole UTC days from the daily table, the rest of the range from the runs (see whole_days.py)\n"
        f"WITH parts AS (\n{daily}\nUNION ALL\n{live(before)}\nUNION ALL\n{live(after)}\n)\n{outer}"
    )
