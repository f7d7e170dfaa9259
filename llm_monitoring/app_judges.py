"""The review app's LLM judges panel: each judge's verdict and reason on a run, next to the run's feedback,
and whether it agrees with the reviewers' ratings (llm_monitoring/app.py shows it)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import pandas as pd
import streamlit as st

from llm_monitoring.storage.engine import Database
from llm_monitoring.storage.run_detail import run_judgements


def agreement_note(passed: bool | None, ratings: Sequence[bool]) -> str:
    """How a verdict compares with the run's ratings: "agrees with 2 of 3 ratings", or "-" without any."""
    if passed is None or not ratings:
        return "-"
    agreeing = sum(1 for good in ratings if good == passed)
    return f"agrees with {agreeing} of {len(ratings)} rating{'s' if len(ratings) != 1 else ''}"


def _frame(rows: Sequence[Mapping[str, Any]], ratings: Sequence[bool]) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "Verdict": [{True: "✅ pass", False: "❌ fail"}.get(row["passed"], "➖ n/a") for row in rows],
            "Judge": [row["check_name"] for row in rows],
            "Score": [row["score"] for row in rows],
            "Reason": [row["details"] for row in rows],
            "Reviewers": [agreement_note(row["passed"], ratings) for row in rows],
            "Model": [row["model"] for row in rows],
            "Cost (USD)": [float(row["cost"]) if row["cost"] is not None else None for row in rows],
            "Version": [row["evaluator_version"] for row in rows],
            "Time (UTC)": [row["created_at"].strftime("%Y-%m-%d %H:%M") for row in rows],
        }
    )


COLUMNS = {
    "Reason": st.column_config.TextColumn(width="large"),
    "Cost (USD)": st.column_config.NumberColumn(format="$%.6f"),
}


def show_judgements(database: Database, log_id: int, feedback: Sequence[Mapping[str, Any]]) -> None:
    st.subheader("LLM judges")
    rows = run_judgements(database, log_id)
    if not rows:
        st.caption("No judge has judged this run (judges.yaml, `llm-monitoring judge run`).")
        return
    ratings = [bool(entry["is_good"]) for entry in feedback]
    # Newest first: each judge's first row is its current verdict; a changed rubric left the others.
    current: dict[str, Mapping[str, Any]] = {}
    for row in rows:
        current.setdefault(row["check_name"], row)
    older = [row for row in rows if current[row["check_name"]] is not row]
    st.dataframe(_frame(list(current.values()), ratings), hide_index=True, column_config=COLUMNS)
    if older:
        with st.expander(f"Earlier judge versions ({len(older)} verdicts)"):
            st.dataframe(_frame(older, ratings), hide_index=True, column_config=COLUMNS)
