"""What a stored run can hold, and the checks that keep logged values inside it.

A log may say anything: a token count of 10^30, a negative count, a cost of 1e308, NaN. The
parser checks every number here before it becomes part of a LogRecord; a value that fails is
dropped (stored as NULL) and the record carries a note saying which value and why. The limits are
those of the storage columns (BIGINT counts, INTEGER request counts, NUMERIC(24, 12) costs); a
test keeps them in step with the tables.
"""

from __future__ import annotations

import math
from decimal import Decimal
from typing import Any

MAX_COUNT = 2**63 - 1  # token counts: BIGINT
MAX_REQUESTS = 2**31 - 1  # request counts: INTEGER
COST_INTEGER_DIGITS = 12  # costs: NUMERIC(24, 12), so below 10^12 USD
MAX_COST = Decimal(10) ** COST_INTEGER_DIGITS

# Token counts of a run's usage; a note about one of them makes the usage invalid for pricing.
USAGE_FIELDS = ("input_tokens", "output_tokens", "cache_read_tokens", "cache_write_tokens")

MAX_NOTES = 10
_SHOWN_CHARS = 60


def shown(value: Any) -> str:
    """A logged value as it appears in a note: its repr, shortened (a value can be megabytes long)."""
    text = repr(value)
    return text if len(text) <= _SHOWN_CHARS else text[: _SHOWN_CHARS - 3] + "..."


def count_value(value: Any, limit: int = MAX_COUNT) -> tuple[int | None, str | None]:
    """A logged count as (count, None); (None, None) when it is no number at all (absent, null, text);
    (None, why) when it is a number that cannot be a count or cannot be stored."""
    if value is None or isinstance(value, bool) or not isinstance(value, (int, float)):
        return None, None
    if isinstance(value, float):
        if not math.isfinite(value):
            return None, f"{shown(value)} is not a finite number"
        if not value.is_integer():
            return None, f"{shown(value)} is not a whole number"
        number = int(value)
    else:
        number = value
    if number < 0:
        return None, f"{shown(value)} is negative"
    if number > limit:
        return None, f"{shown(value)} is over {limit:,}, the largest count stored"
    return number, None


def cost_problem(cost: Decimal) -> str | None:
    """Why a cost cannot be stored, or None when it can."""
    if not cost.is_finite():
        return f"{cost} is not a finite number"
    if cost < 0:
        return f"{cost} is negative"
    if cost >= MAX_COST:
        return f"{cost:.6E} is over the largest cost stored ({MAX_COST:,} USD)"
    return None
