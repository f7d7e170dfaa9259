"""The review app's run list: the totals of the filtered runs, one page of them and the pager
(llm_monitoring/app.py shows it above the selected run).

Pages move from the edge of the page on screen (storage.review.PageKey), never by OFFSET: the next
page, the previous one and the newest cost the same at run 10 as at run 10,000,000.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import pandas as pd
import streamlit as st

from llm_monitoring.storage.engine import Database
from llm_monitoring.storage.review import PageKey, RunFilters, list_runs, page_key
from llm_monitoring.storage.review_totals import TOTALS_CAP, RunTotals, run_totals


@dataclass(frozen=True)
class Pager:
    """Where the list is: its page number and the edge it was reached from (None: the newest page)."""

    signature: str  # the filters and page size it belongs to
    number: int = 1
    after: PageKey | None = None
    before: PageKey | None = None


def run_label(row: dict[str, Any]) -> str:
    started = row["run_started_at"].strftime("%Y-%m-%d %H:%M") if row.get("run_started_at") else "no time"
    return f"#{row['id']} • {row.get('model') or '?'} • {row.get('provider') or '?'} • {started}"


def filters_signature(filters: RunFilters, page_size: int) -> str:
    return f"{abs(hash((filters, page_size))) % 10**12}"


# ---------------------------------------------------------------------------- totals
# A check or feedback filter counts up to TOTALS_CAP runs; a text search counts only when asked.


def show_totals(area: Any, totals: RunTotals | None, signature: str, shown_at_least: int) -> None:
    """The totals' metrics in `area`; None: not counted (a text search counts only when asked, since only
    reading every matching run could), with `shown_at_least` runs known to match."""
    runs, tokens_in, tokens_out, cache, cost = area.columns(5)
    if totals is None or not totals.exact:
        at_least = totals.runs if totals is not None else shown_at_least
        runs.metric("Runs", f"{at_least:,}+", help="Counting stopped there: these filters have no running totals.")
        for column, label in ((tokens_in, "Tokens in"), (tokens_out, "Tokens out"), (cache, "Cache read tokens"), (cost, "Cost (USD)")):
            column.metric(label, "-")
        area.button(
            "Count all matching runs",
            key="count_all_button",
            on_click=_count_all,
            args=(signature,),
            help="Reads every matching run: on a long history this can take a while.",
        )
        return
    runs.metric("Runs", f"{totals.runs:,}")
    tokens_in.metric("Tokens in", f"{totals.input_tokens:,}")
    tokens_out.metric("Tokens out", f"{totals.output_tokens:,}")
    cache.metric("Cache read tokens", f"{totals.cache_read_tokens:,}")
    unpriced = f"{totals.unpriced_runs:,} runs without a price are not included" if totals.unpriced_runs else None
    cost.metric("Cost (USD)", f"${totals.total_cost:,.6f}", help=unpriced)


def count_totals(database: Database, filters: RunFilters, *, count_all: bool, whole_list: list[dict[str, Any]] | None) -> RunTotals | None:
    """The totals to show (None: not counted); `whole_list`: the page when it holds every matching run;
    `count_all`: the viewer asked to count every matching run."""
    if whole_list is not None:
        return page_totals(whole_list)
    if count_all:
        return run_totals(database, filters, cap=None)
    if filters.text:
        return None
    return run_totals(database, filters, cap=TOTALS_CAP)


def page_totals(rows: list[dict[str, Any]]) -> RunTotals:
    costs = [row["total_cost"] for row in rows if row["total_cost"] is not None]
    return RunTotals(
        runs=len(rows),
        input_tokens=sum(row["total_input_tokens"] or 0 for row in rows),
        output_tokens=sum(row["total_output_tokens"] or 0 for row in rows),
        cache_read_tokens=sum(row["cache_read_tokens"] or 0 for row in rows),
        total_cost=sum(costs, Decimal(0)),
        unpriced_runs=len(rows) - len(costs),
    )


def _count_all(signature: str) -> None:
    st.session_state["count_all"] = signature


# ---------------------------------------------------------------------------- the page


def runs_frame(rows: list[dict[str, Any]]) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "Run": [row["id"] for row in rows],
            "Time (UTC)": [row["run_started_at"].strftime("%Y-%m-%d %H:%M:%S") if row["run_started_at"] else None for row in rows],
            "Provider": [row["provider"] for row in rows],
            "Model": [row["model"] for row in rows],
            "Agent": [row["agent_name"] for row in rows],
            "Tokens in": [row["total_input_tokens"] for row in rows],
            "Tokens out": [row["total_output_tokens"] for row in rows],
            "Cost (USD)": [float(row["total_cost"]) if row["total_cost"] is not None else None for row in rows],
            "Duration (s)": [row["duration_seconds"] for row in rows],
            "Tools": [row["tool_call_count"] for row in rows],
            "Checks": [f"✅{row['checks_passed']} ❌{row['checks_failed']} ➖{row['checks_not_applicable']}" for row in rows],
            "Feedback": [_votes(row) for row in rows],
            "Prompt": [(row["prompt_preview"] or "").replace("\n", " ") for row in rows],
        }
    )


def _votes(row: dict[str, Any]) -> str:
    parts = (f"👍{row['feedback_good']}" if row["feedback_good"] else "", f"👎{row['feedback_bad']}" if row["feedback_bad"] else "")
    return " ".join(part for part in parts if part)


RUN_COLUMNS = {
    "Run": st.column_config.NumberColumn(format="#%d", width="small"),
    "Tokens in": st.column_config.NumberColumn(format="localized"),
    "Tokens out": st.column_config.NumberColumn(format="localized"),
    "Cost (USD)": st.column_config.NumberColumn(format="$%.6f"),
    "Duration (s)": st.column_config.NumberColumn(format="%.1f"),
    "Prompt": st.column_config.TextColumn(width="large"),
}


def current_pager(signature: str) -> Pager:
    pager = st.session_state.get("pager")
    # New filters start at the newest page.
    return pager if isinstance(pager, Pager) and pager.signature == signature else Pager(signature)


def fetch_page(database: Database, filters: RunFilters, page_size: int, pager: Pager) -> tuple[Pager, list[dict[str, Any]], bool]:
    """The page `pager` points at, with one run more to know whether an older page exists: (the pager
    of the page shown, its rows, whether older runs follow)."""
    if pager.before is not None:
        rows = list_runs(database, filters, limit=page_size + 1, before=pager.before)
        if len(rows) > page_size:
            return pager, rows[1:], True
        # Reached the newest runs (or runs arrived meanwhile): show the newest page.
        pager = Pager(pager.signature)
    rows = list_runs(database, filters, limit=page_size + 1, after=pager.after)
    return pager, rows[:page_size], len(rows) > page_size


def _go(pager: Pager) -> None:
    st.session_state["pager"] = pager


def show_pager(pager: Pager, rows: list[dict[str, Any]], has_older: bool, page_size: int, total: str) -> None:
    newest, newer, older, position = st.columns([1, 1, 1, 4], vertical_alignment="center")
    first_page = pager.number == 1
    newest.button("⏮ Newest", key="page_newest", disabled=first_page, on_click=_go, args=(Pager(pager.signature),))
    if rows:
        newer.button(
            "◀ Newer",
            key="page_newer",
            disabled=first_page,
            on_click=_go,
            args=(Pager(pager.signature, max(1, pager.number - 1), before=page_key(rows[0])),),
        )
        older.button(
            "Older ▶",
            key="page_older",
            disabled=not has_older,
            on_click=_go,
            args=(Pager(pager.signature, pager.number + 1, after=page_key(rows[-1])),),
        )
    first = (pager.number - 1) * page_size + 1 if rows else 0
    last = first + len(rows) - 1 if rows else 0
    position.caption(f"Page {pager.number:,} · runs {first:,}–{last:,} of {total}, newest first")


def show_run_list(database: Database, filters: RunFilters, page_size: int) -> int | None:
    """The totals, the page of runs as a table, the pager and a picker; returns the selected run id
    (newest on first load)."""
    signature = filters_signature(filters, page_size)
    totals_area, table_area = st.container(), st.container()
    pager, rows, has_older = fetch_page(database, filters, page_size, current_pager(signature))
    st.session_state["pager"] = pager
    whole_list = rows if pager.number == 1 and not has_older else None
    totals = count_totals(database, filters, count_all=st.session_state.get("count_all") == signature, whole_list=whole_list)
    shown_at_least = (pager.number - 1) * page_size + len(rows) + int(has_older)
    show_totals(totals_area, totals, signature, shown_at_least)
    if totals is None or not totals.exact:
        total = f"{totals.runs if totals is not None else shown_at_least:,}+"
    else:
        total = f"{totals.runs:,}"
    show_pager(pager, rows, has_older, page_size, total)
    if not rows:
        table_area.info("No runs match these filters.")
        return None

    ids = [row["id"] for row in rows]
    labels = {row["id"]: run_label(row) for row in rows}
    # A table keyed by the page starts afresh on another page: its selection (a row position) never
    # points into a different list.
    table_key = f"runs_table_{signature}_{rows[0]['id']}_{len(rows)}"
    with table_area:
        event = st.dataframe(
            runs_frame(rows),
            key=table_key,
            on_select="rerun",
            selection_mode="single-row",
            hide_index=True,
            column_config=RUN_COLUMNS,
            placeholder="-",  # a missing value reads as in the run's detail, not "None"
            height=min(38 + 35 * len(rows), 420),
        )
    picked_rows = list(event.selection.rows) if event is not None else []
    picked = ids[picked_rows[0]] if picked_rows and picked_rows[0] < len(ids) else None
    # A click in the table selects that run; otherwise the picker keeps its own choice.
    if picked is not None and st.session_state.get("last_table_pick") != (table_key, picked):
        st.session_state["selected_run"] = picked
    st.session_state["last_table_pick"] = (table_key, picked)
    if st.session_state.get("selected_run") not in ids:
        st.session_state["selected_run"] = ids[0]
    return st.selectbox("Run", ids, format_func=labels.__getitem__, key="selected_run", help="or click a row in the table")
