"""What Grafana does to a dashboard query before it reaches Postgres, for the dashboard tests and the
dashboard benchmark (no Grafana server runs there).

The frontend picks the interval of a panel (`rangeutil.calculateInterval` with the panel's
maxDataPoints, or its width, and the minimum interval), interpolates the template variables
(`$provider`, `${evaluator}`, `$__interval`, `$__interval_ms`); the Postgres datasource replaces
`$__unixEpochFrom()` and `$__unixEpochTo()` (`sqleng.Interpolate`) and expands its macros
(`$__timeFilter`, `$__timeGroupAlias`, ...) exactly as `pkg/tsdb/grafana-postgresql-datasource/macros.go` does.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

# ---------------------------------------------------------------------------- the panel's interval

# Grafana's rangeutil.roundInterval: (upper bound in ms, interval in ms), first match wins.
_ROUNDING = (
    (10, 1),
    (15, 10),
    (35, 20),
    (75, 50),
    (150, 100),
    (350, 200),
    (750, 500),
    (1_500, 1_000),
    (3_500, 2_000),
    (7_500, 5_000),
    (12_500, 10_000),
    (17_500, 15_000),
    (25_000, 20_000),
    (45_000, 30_000),
    (90_000, 60_000),
    (210_000, 120_000),
    (450_000, 300_000),
    (750_000, 600_000),
    (1_050_000, 900_000),
    (1_500_000, 1_200_000),
    (2_700_000, 1_800_000),
    (5_400_000, 3_600_000),
    (9_000_000, 7_200_000),
    (16_200_000, 10_800_000),
    (32_400_000, 21_600_000),
    (86_400_000, 43_200_000),
    (604_800_000, 86_400_000),
    (1_814_400_000, 604_800_000),
    (3_628_800_000, 2_592_000_000),
)
YEAR_MS = 31_536_000_000


def round_interval(interval_ms: float) -> int:
    for bound, rounded in _ROUNDING:
        if interval_ms < bound:
            return rounded
    return YEAR_MS


def seconds_to_hms(seconds: float) -> str:
    """Grafana's rangeutil.secondsToHms: the largest whole unit only ("30m", "3h", "1d")."""
    years, rest = divmod(seconds, 31_536_000)
    parts = (("y", years), ("d", rest // 86_400), ("h", rest % 86_400 // 3_600), ("m", rest % 3_600 // 60), ("s", rest % 60 // 1))
    for unit, count in parts:
        if count:
            return f"{int(count)}{unit}"
    return f"{int(seconds * 1000)}ms"


def panel_interval(panel: dict[str, Any], span: timedelta, minimum: str = "1m", width_px: int = 1920) -> str:
    """`$__interval` of a panel: the range over maxDataPoints (or the panel's width in pixels),
    rounded, and no finer than the panel's `interval` or else the datasource's minimum."""
    resolution = panel.get("maxDataPoints") or max(1, panel["gridPos"]["w"] * width_px // 24)
    interval_ms = round_interval(span.total_seconds() * 1000 / resolution)
    low_limit_ms = interval_seconds(panel.get("interval") or minimum) * 1000
    return seconds_to_hms(max(interval_ms, low_limit_ms) / 1000)


# ---------------------------------------------------------------------------- the datasource's macros


def go_float(value: float) -> str:
    """Go's %v of a float64, which macros.go uses for interval seconds: 300, 0.5, 1.2096e+06."""
    if value == 0:
        return "0"
    number = Decimal(repr(float(value))).normalize()  # repr, like Go, gives the shortest round-trip digits
    sign, digits, exp = number.as_tuple()
    exponent = len(digits) + int(exp) - 1
    if -4 <= exponent < 6:  # Go switches to %e at exponent 6 for the shortest precision
        return format(number, "f")
    numerals = "".join(map(str, digits))
    mantissa = numerals[0] + ("." + numerals[1:] if len(numerals) > 1 else "")
    return f"{'-' if sign else ''}{mantissa}e{'+' if exponent >= 0 else '-'}{abs(exponent):02d}"


_UNITS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800, "y": 31536000}


def interval_seconds(text: str) -> float:
    match = re.fullmatch(r"(\d+(?:\.\d+)?)(ms|s|m|h|d|w|y)", text.strip().strip("'"))
    if not match:
        raise ValueError(f"error parsing interval {text}")
    return float(match.group(1)) * _UNITS[match.group(2)]


def rfc3339nano(moment: datetime) -> str:
    """Go's time.RFC3339Nano in UTC: trailing zeros of the fraction dropped, "Z" for the zone."""
    moment = moment.astimezone(UTC)
    text = moment.strftime("%Y-%m-%dT%H:%M:%S")
    if moment.microsecond:
        text += "." + f"{moment.microsecond:06d}".rstrip("0")
    return text + "Z"


# macros.go's pattern: a macro's arguments end at the first ")", so they can hold no parentheses.
_MACRO = re.compile(r"\$([_a-zA-Z0-9]+)\(([^\)]*)\)")


def expand_macros(sql: str, time_from: datetime, time_to: datetime) -> str:
    """The Postgres datasource's macro engine (non-TimescaleDB)."""

    def evaluate(name: str, args: list[str]) -> str:
        if name == "__time":
            return f'{args[0]} AS "time"'
        if name == "__timeEpoch":
            return f'extract(epoch from {args[0]}) as "time"'
        if name == "__timeFilter":
            return f"{args[0]} BETWEEN '{rfc3339nano(time_from)}' AND '{rfc3339nano(time_to)}'"
        if name == "__timeFrom":
            return f"'{rfc3339nano(time_from)}'"
        if name == "__timeTo":
            return f"'{rfc3339nano(time_to)}'"
        if name == "__timeGroup":
            seconds = go_float(interval_seconds(args[1]))
            return f"floor(extract(epoch from {args[0]})/{seconds})*{seconds}"
        if name == "__timeGroupAlias":
            return evaluate("__timeGroup", args) + ' AS "time"'
        if name == "__unixEpochFilter":
            return f"{args[0]} >= {int(time_from.timestamp())} AND {args[0]} <= {int(time_to.timestamp())}"
        raise ValueError(f"unknown macro {name!r}")

    def replace(match: re.Match[str]) -> str:
        name = match.group(1)
        # macros.go: "$__timeGroup(...)," followed by a comma is the pre-5.3 form that adds the alias.
        if name == "__timeGroup" and sql[match.end() : match.end() + 1] == ",":
            name = "__timeGroupAlias"
        return evaluate(name, [arg.strip() for arg in match.group(2).split(",")])

    return _MACRO.sub(replace, sql)


# ---------------------------------------------------------------------------- the template variables


@dataclass(frozen=True)
class Selection:
    """What a dashboard variable is set to: "All", or some values."""

    values: tuple[str, ...] = ()

    @property
    def is_all(self) -> bool:
        return not self.values


def _quote(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


def format_variable(variable: dict[str, Any], selection: Selection) -> str:
    """The SQL datasources' interpolateVariable, with the template service's custom-all-value rule."""
    if selection.is_all:
        if variable.get("allValue"):
            return variable["allValue"]  # custom all values are inserted unformatted
        raise ValueError(f"variable {variable['name']} has no custom all value")
    if variable.get("multi") or variable.get("includeAll"):
        return ",".join(_quote(value) for value in selection.values)
    return selection.values[0].replace("'", "''")


_VARIABLE = re.compile(r"\$(\w+)|\[\[(\w+?)(?::(\w+))?\]\]|\$\{(\w+)(?::([^\}]+))?\}")


def interpolate(sql: str, variables: dict[str, dict[str, Any]], selections: dict[str, Selection], interval: str) -> str:
    """The frontend's template service, then the backend's $__interval replacement."""
    builtins = {"__interval": interval, "__interval_ms": str(int(interval_seconds(interval) * 1000))}

    def replace(match: re.Match[str]) -> str:
        name = match.group(1) or match.group(2) or match.group(4)
        if name in builtins:
            return builtins[name]
        if name in variables:
            return format_variable(variables[name], selections.get(name, Selection()))
        return match.group(0)  # macros and unknown names are left for the datasource

    return _VARIABLE.sub(replace, sql)


def to_postgres(
    sql: str, dashboard: dict[str, Any], selections: dict[str, Selection], time_from: datetime, time_to: datetime, interval: str = "30m"
) -> str:
    """A panel's or variable's SQL as Postgres receives it from Grafana."""
    variables = {variable["name"]: variable for variable in dashboard["templating"]["list"]}
    sql = interpolate(sql, variables, selections, interval)
    # sqleng.Interpolate, before the macros: whole seconds since the epoch (Go's Unix() floors).
    sql = sql.replace("$__unixEpochFrom()", str(math.floor(time_from.timestamp())))
    sql = sql.replace("$__unixEpochTo()", str(math.floor(time_to.timestamp())))
    return expand_macros(sql, time_from, time_to)
