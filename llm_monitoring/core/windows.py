"""UTC days: windows of run times, stretches of consecutive days, and how they are written for people."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, date, datetime, time, timedelta


def day_range(start: datetime, end: datetime) -> tuple[date, date]:
    """The UTC days [first, end) a window [start, end) of run times covers."""
    start, end = start.astimezone(UTC), end.astimezone(UTC)
    end_day = end.date() if end.time() == time(0) else end.date() + timedelta(days=1)
    return start.date(), end_day


def first_day_from(moment: datetime) -> date:
    """The first UTC day that starts at `moment` or later."""
    moment = moment.astimezone(UTC)
    return moment.date() if moment.time() == time(0) else moment.date() + timedelta(days=1)


def window_label(start: datetime, end: datetime) -> str:
    """A window [start, end) of run times for people: "[2026-01-05 00:00, 2026-01-08 00:00) UTC"."""
    return f"[{start:%Y-%m-%d %H:%M}, {end:%Y-%m-%d %H:%M}) UTC"


def days_between(first: date, end: date) -> list[date]:
    """Every day of [first, end)."""
    return [first + timedelta(days=offset) for offset in range((end - first).days)]


def day_start(day: date) -> datetime:
    return datetime.combine(day, time(0), tzinfo=UTC)


def stretches(days: Iterable[date], merge_gap_days: int = 1) -> list[tuple[date, date]]:
    """Sorted days -> inclusive (first, last) stretches; days at most `merge_gap_days` apart share one
    (1: only consecutive days)."""
    found: list[tuple[date, date]] = []
    for day in sorted(set(days)):
        if found and (day - found[-1][1]).days <= merge_gap_days:
            found[-1] = (found[-1][0], day)
        else:
            found.append((day, day))
    return found


def days_label(days: Iterable[date], limit: int = 12) -> str:
    """Days for a sentence: "2026-01-09", "2026-01-09..2026-01-11, 2026-02-01"; "none" when empty.
    Past `limit` stretches the rest is counted, not listed."""
    spans = stretches(days)
    if not spans:
        return "none"
    parts = [str(first) if first == last else f"{first}..{last}" for first, last in spans[:limit]]
    if len(spans) > limit:
        hidden = sum((last - first).days + 1 for first, last in spans[limit:])
        parts.append(f"and {hidden} more days")
    return ", ".join(parts)


def parse_days(texts: Iterable[str]) -> set[date]:
    """ "2026-01-09" and inclusive "2026-01-01..2026-01-31" as days; a malformed text raises ValueError
    naming it."""
    days: set[date] = set()
    for text in texts:
        first_text, _, last_text = text.strip().partition("..")
        try:
            first = date.fromisoformat(first_text)
            last = date.fromisoformat(last_text) if last_text else first
        except ValueError:
            raise ValueError(f"not a day or a range of days (YYYY-MM-DD or YYYY-MM-DD..YYYY-MM-DD): {text!r}") from None
        if last < first:
            raise ValueError(f"range ends before it starts: {text!r}")
        days.update(days_between(first, last + timedelta(days=1)))
    return days
