"""How assets show their rows in Dagster's metadata panel."""

from __future__ import annotations

from collections.abc import Sequence
from decimal import Decimal
from typing import Any


def markdown_table(rows: Sequence[dict[str, Any]], fields: Sequence[str], limit: int = 10) -> str:
    """A small markdown preview of rows, for `dg.MetadataValue.md` in Dagster's metadata panel."""
    if not rows:
        return "_no rows_"
    shown = rows[:limit]
    lines = ["| " + " | ".join(fields) + " |", "|" + "---|" * len(fields)]
    for row in shown:
        lines.append("| " + " | ".join(_cell(row.get(field)) for field in fields) + " |")
    if len(rows) > limit:
        lines.append(f"\n_{len(rows) - limit} more rows_")
    return "\n".join(lines)


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, Decimal):
        return f"{value:.6f}"
    if isinstance(value, float):
        return f"{value:.3f}"
    return str(value).replace("|", "\\|")
