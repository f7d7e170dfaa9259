"""LLM Log Monitor: browse runs, read their answers, checks and tool calls, and give feedback.

Run with `streamlit run llm_monitoring/app.py` (or `uv run streamlit run llm_monitoring/app.py`).
It reads DATABASE_URL like the rest of the project and writes only feedback.
"""

from __future__ import annotations

import sys
from pathlib import Path

# `streamlit run` executes this file as a script, so the package may not be importable yet.
_PROJECT_ROOT = str(Path(__file__).resolve().parents[1])
if _PROJECT_ROOT not in sys.path:
    sys.path.insert(0, _PROJECT_ROOT)

import json  # noqa: E402
import logging  # noqa: E402
from datetime import UTC, date, datetime, time, timedelta  # noqa: E402
from decimal import Decimal  # noqa: E402
from typing import Any  # noqa: E402

import pandas as pd  # noqa: E402
import streamlit as st  # noqa: E402

from llm_monitoring.app_judges import show_judgements  # noqa: E402
from llm_monitoring.app_runs import show_run_list  # noqa: E402
from llm_monitoring.config import get_settings  # noqa: E402
from llm_monitoring.core.timeline import TimelineEntry, message_timeline  # noqa: E402
from llm_monitoring.feedback import FeedbackError, delete_feedback, save_feedback, update_feedback  # noqa: E402
from llm_monitoring.storage.engine import Database  # noqa: E402
from llm_monitoring.storage.errors import DatabaseUnavailable, DriverError, InvalidDatabaseUrl, is_connection_error  # noqa: E402
from llm_monitoring.storage.review import CHECK_OUTCOMES, FilterOptions, InvalidSearch, RunFilters, filter_options  # noqa: E402
from llm_monitoring.storage.rollups import current_checks, version_sort_key  # noqa: E402
from llm_monitoring.storage.run_detail import run_checks, run_detail, run_feedback, stored_raw_json  # noqa: E402
from llm_monitoring.storage.runs import has_runs_table  # noqa: E402

logger = logging.getLogger("llm_monitoring.app")

ANY = "All"
FEEDBACK_CHOICES = ("Any", "With feedback", "Without feedback", "With 👍", "With 👎")
VERDICTS = ("👍 Yes", "👎 No")
TOOL_TEXT_LIMIT = 4000
RAW_DROPPED = "The raw log of this run was dropped by retention (RETENTION_RAW_DAYS); its parsed columns are kept."


# ---------------------------------------------------------------------------- database


@st.cache_resource(show_spinner=False)
def get_database(url: str) -> Database:
    """One Database (one connection pool) per URL for the whole server, shared by every session."""
    return Database(url)


@st.cache_data(ttl=60, show_spinner=False)
def cached_filter_options(url: str, _database: Database) -> FilterOptions:
    # Keyed by the URL; the options change only when new runs arrive, so a minute is fresh enough.
    return filter_options(_database)


# ---------------------------------------------------------------------------- formatting


def fmt_cost(value: Decimal | None) -> str:
    return "-" if value is None else f"{value:.6f}"


def fmt_int(value: int | None) -> str:
    return "-" if value is None else f"{value:,}"


def fmt_time(value: datetime | None) -> str:
    return "-" if value is None else value.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def fmt_duration(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    if seconds < 60:
        return f"{seconds:.1f} s"
    minutes, rest = divmod(round(seconds), 60)
    return f"{minutes} min {rest} s"


def outcome_label(passed: bool | None) -> str:
    return {True: "✅ pass", False: "❌ fail", None: "➖ n/a"}[passed]


def clip(text: str, limit: int = TOOL_TEXT_LIMIT) -> str:
    if len(text) <= limit:
        return text
    return f"{text[:limit]}\n… ({len(text) - limit:,} more characters in the raw JSON)"


# ---------------------------------------------------------------------------- sidebar


def sidebar_filters(database: Database, options: FilterOptions) -> tuple[RunFilters, int]:
    with st.sidebar:
        st.caption(f"Database: {database_kind(database)}")
        st.header("Filters")
        provider = st.selectbox("Provider", [ANY, *options.providers], key="provider", bind="query-params")
        model = st.selectbox("Model", [ANY, *options.models], key="model", bind="query-params")
        agent = st.selectbox("Agent", [ANY, *options.agents], key="agent", bind="query-params")
        first, last = st.columns(2)
        date_from = first.date_input("From (UTC)", value=None, key="date_from", format="YYYY-MM-DD")
        date_to = last.date_input("To (UTC)", value=None, key="date_to", format="YYYY-MM-DD")
        check = st.selectbox("Check", [ANY, *options.check_names], key="check", bind="query-params")
        outcome = None
        if check != ANY:
            outcome = st.radio("Check result", CHECK_OUTCOMES, index=1, key="check_outcome", horizontal=True)
        feedback_choice = st.selectbox("Feedback", FEEDBACK_CHOICES, key="feedback_filter")
        search = st.text_input("Search prompt and answer", key="search", placeholder="words in the prompt or answer")
        page_size = int(st.number_input("Runs per page", min_value=10, max_value=1000, value=100, step=10, key="page_size"))
    return (
        RunFilters(
            provider=None if provider == ANY else provider,
            model=None if model == ANY else model,
            agent=None if agent == ANY else agent,
            started_from=_day_start(date_from),
            started_before=_day_start(date_to + timedelta(days=1)) if isinstance(date_to, date) else None,
            check_name=None if check == ANY else check,
            check_outcome=outcome,
            has_feedback={"With feedback": True, "Without feedback": False}.get(feedback_choice),
            feedback_is_good={"With 👍": True, "With 👎": False}.get(feedback_choice),
            text=search.strip() or None,
        ),
        page_size,
    )


def database_kind(database: Database) -> str:
    # The kind only: a viewer never sees the URL, host or user (the server's log names the database).
    return {"postgresql": "PostgreSQL", "sqlite": "SQLite"}.get(database.dialect, database.dialect)


def _day_start(day: Any) -> datetime | None:
    return datetime.combine(day, time.min, tzinfo=UTC) if isinstance(day, date) else None


# ---------------------------------------------------------------------------- run detail


def field(column: Any, label: str, value: str) -> None:
    # A lone "-" under a line would make a markdown heading of the label.
    escaped = "\\" + value if value[:1] in "-=#>*+" else value
    column.markdown(f"**{label}**  \n{escaped}")


def show_overview(run: dict[str, Any]) -> None:
    st.subheader(f"Run #{run['id']}")
    cells = st.columns(5)
    field(cells[0], "Provider", run["provider"] or "-")
    field(cells[1], "Model", run["model"] or "-")
    field(cells[2], "Agent", run["agent_name"] or "-")
    field(cells[3], "Run time", fmt_time(run["run_started_at"]))
    field(cells[4], "Duration", fmt_duration(run["duration_seconds"]))
    cells = st.columns(5)
    field(cells[0], "Tokens in / out", f"{fmt_int(run['total_input_tokens'])} / {fmt_int(run['total_output_tokens'])}")
    field(cells[1], "Cache read / write", f"{fmt_int(run['cache_read_tokens'])} / {fmt_int(run['cache_write_tokens'])}")
    tools = ", ".join(_json_list(run["tool_names"])) or "none"
    field(cells[2], "Tool calls", f"{fmt_int(run['tool_call_count'])} ({tools})")
    field(cells[3], "Requests", fmt_int(run["requests"]))
    field(cells[4], "Finish", ", ".join(_json_list(run["finish_reasons"])) or "-")
    cells = st.columns(5)
    field(cells[0], "Input cost (USD)", fmt_cost(run["input_cost"]))
    field(cells[1], "Output cost (USD)", fmt_cost(run["output_cost"]))
    field(cells[2], "Total cost (USD)", fmt_cost(run["total_cost"]))
    field(cells[3], "Pricing status", run["pricing_status"] or "-")
    reported = run["provider_reported_cost"]
    field(cells[4], "Provider-reported cost", fmt_cost(reported))
    st.caption(f"File `{run['filepath']}` · ingested {fmt_time(run['created_at'])} · origin {run['origin']}")
    notes = _json_list(run.get("value_notes"))
    if notes:  # values the log held that no column can (a negative token count, a year 10000): stored as empty
        st.warning("Stored without values the database cannot hold: " + "; ".join(notes), icon="⚠️")
    redacted = redaction_line(run.get("redactions"))
    if redacted:
        st.info(redacted, icon="🛡️")


def redaction_line(text: str | None) -> str | None:
    """What REDACT replaced in this run before it was stored, e.g. "Redacted before storage: 2 email, 1 secret"."""
    try:
        counts = json.loads(text) if text else {}
    except ValueError:
        return None
    if not isinstance(counts, dict) or not counts:
        return None
    return "Redacted before storage: " + ", ".join(f"{count} {name}" for name, count in sorted(counts.items()))


def _json_list(text: str | None) -> list[str]:
    try:
        values = json.loads(text or "[]")
    except ValueError:
        return []
    return [str(value) for value in values] if isinstance(values, list) else []


def show_texts(run: dict[str, Any]) -> None:
    with st.expander("Prompt & Instructions", expanded=True):
        st.markdown("**User prompt**")
        st.code(run["user_prompt"] or "(none)", language=None, wrap_lines=True)
        st.markdown("**Instructions**")
        st.code(run["instructions"] or "(none)", language=None, wrap_lines=True)
    with st.expander("Assistant Answer", expanded=True):
        st.markdown(run["assistant_answer"] or "_(no answer)_")


@st.cache_data(max_entries=16, show_spinner=False)
def cached_raw_json(content_hash: str, log_id: int, _database: Database) -> str:
    # Keyed by the content hash: a stored log never changes (retention only drops it, which the
    # callers check first), and an id reused after a purge is another key. Both expanders and every
    # rerun while they stay open share one read.
    return stored_raw_json(_database, log_id) or ""


@st.cache_data(max_entries=16, show_spinner=False)
def cached_timeline(content_hash: str, log_id: int, _database: Database) -> list[TimelineEntry]:
    return message_timeline(cached_raw_json(content_hash, log_id, _database) or None)


def show_timeline(database: Database, run: dict[str, Any]) -> None:
    timeline = st.expander("Message timeline", key="timeline_open", on_change="rerun")
    if not timeline.open:
        return  # the raw JSON is read only when someone looks
    if not run["has_raw_log"]:
        timeline.info(RAW_DROPPED)
        return
    entries = cached_timeline(run["content_hash"], run["id"], database)
    with timeline:
        if not entries:
            st.info("The raw log has no messages to show.")
        for entry in entries:
            show_timeline_entry(entry)


def show_timeline_entry(entry: TimelineEntry) -> None:
    stamp = f" · {entry.timestamp}" if entry.timestamp else ""
    if entry.kind == "user":
        with st.chat_message("user"):
            st.caption(f"User prompt{stamp}")
            st.markdown(entry.content)
    elif entry.kind == "system":
        with st.chat_message("system", avatar="📋"):
            st.caption(f"System prompt{stamp}")
            st.code(clip(entry.content), language=None, wrap_lines=True)
    elif entry.kind == "tool_call":
        with st.chat_message("tool call", avatar="🔧"):
            st.caption(f"Tool call `{entry.tool_name}`{stamp}")
            st.code(clip(entry.content), language="json", wrap_lines=True)
    elif entry.kind == "tool_return":
        with st.chat_message("tool return", avatar="📄"):
            st.caption(f"Tool return `{entry.tool_name}` · {len(entry.content):,} characters{stamp}")
            st.code(clip(entry.content), language="json", wrap_lines=True)
    elif entry.kind == "retry":
        with st.chat_message("retry", avatar="↩️"):
            st.caption(f"Retry prompt{stamp}")
            st.code(clip(entry.content), language=None, wrap_lines=True)
    elif entry.kind == "thinking":
        with st.chat_message("assistant", avatar="💭"):
            st.caption(f"Thinking{stamp}")
            st.markdown(clip(entry.content))
    else:
        with st.chat_message("assistant"):
            st.caption(f"Answer{' from ' + entry.model if entry.model else ''}{stamp}")
            st.markdown(entry.content)


def show_raw_json(database: Database, run: dict[str, Any]) -> None:
    raw = st.expander("Raw JSON", key="raw_open", on_change="rerun")
    if not raw.open:
        return
    log_id = run["id"]
    if not run["has_raw_log"]:
        raw.info(RAW_DROPPED)
        return
    text = cached_raw_json(run["content_hash"], log_id, database)
    with raw:
        st.caption(f"{len(text.encode('utf-8')) / 1024:,.1f} KB as stored")
        st.download_button("Download", text, file_name=f"run_{log_id}.json", mime="application/json")
        st.code(text, language="json", line_numbers=False, wrap_lines=True, height=500)


def show_checks(database: Database, log_id: int) -> None:
    st.subheader("Eval checks")
    rows = run_checks(database, log_id)
    if not rows:
        st.info("No checks stored for this run.")
        return
    # The same verdicts the list's counts and the check filter use.
    current = current_checks(rows)
    passed = sum(1 for row in current if row["passed"] is True)
    failed = sum(1 for row in current if row["passed"] is False)
    not_applicable = len(current) - passed - failed
    versions = ", v".join(sorted({row["evaluator_version"] for row in current}, key=version_sort_key, reverse=True))
    st.markdown(f"✅ **{passed} passed** · ❌ **{failed} failed** · ➖ {not_applicable} not applicable · evaluator v{versions}")
    st.dataframe(_checks_frame(current), hide_index=True, column_config={"Details": st.column_config.TextColumn(width="large")})
    older = [row for row in rows if not any(row is kept for kept in current)]
    if older:
        with st.expander(f"Earlier evaluator versions ({len(older)} rows)"):
            st.dataframe(_checks_frame(older), hide_index=True)


def _checks_frame(rows: list[dict[str, Any]]) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "Result": [outcome_label(row["passed"]) for row in rows],
            "Check": [row["check_name"] for row in rows],
            "Score": [row["score"] for row in rows],
            "Details": [row["details"] for row in rows],
            "Version": [row["evaluator_version"] for row in rows],
            "Time (UTC)": [row["created_at"].strftime("%Y-%m-%d %H:%M") for row in rows],
        }
    )


# ---------------------------------------------------------------------------- feedback


def show_feedback_history(database: Database, log_id: int) -> list[dict[str, Any]]:
    st.subheader("Feedback")
    entries = run_feedback(database, log_id)
    if not entries:
        st.caption("No feedback yet.")
        return entries
    st.dataframe(
        pd.DataFrame(
            {
                "": ["👍" if entry["is_good"] else "👎" for entry in entries],
                "Comments": [entry["comments"] for entry in entries],
                "Reference answer": [entry["reference_answer"] for entry in entries],
                "Reviewer": [entry["reviewer"] for entry in entries],
                "Time (UTC)": [entry["created_at"].strftime("%Y-%m-%d %H:%M") for entry in entries],
                "Edited": [entry["updated_at"].strftime("%Y-%m-%d %H:%M") if entry["updated_at"] else None for entry in entries],
                "Id": [entry["id"] for entry in entries],
            }
        ),
        hide_index=True,
    )
    return entries


def show_feedback_form(database: Database, log_id: int) -> None:
    notice = st.session_state.get("feedback_notice")
    if notice and notice["log_id"] == log_id:
        st.success(notice["text"], icon="✅")
    if st.session_state.get("feedback_form_run") != log_id or st.session_state.pop("clear_feedback_form", False):
        # A fresh form for each run, so a comment typed for one run is never saved on another.
        st.session_state["feedback_form_run"] = log_id
        st.session_state["fb_verdict"] = None
        st.session_state["fb_comments"] = ""
        st.session_state["fb_reference"] = ""
    with st.form("feedback_form", border=True):
        st.markdown(f"**Your feedback on run #{log_id}**")
        verdict = st.radio("Is the answer good?", VERDICTS, index=None, key="fb_verdict", horizontal=True)
        comments = st.text_area("Comments", key="fb_comments")
        reference = st.text_area("Reference Answer (optional)", key="fb_reference")
        reviewer = st.text_input("Reviewer (optional)", key="fb_reviewer", help="kept for your next feedback")
        submitted = st.form_submit_button("Submit Feedback", type="primary", key="fb_submit")
    if not submitted:
        return
    if verdict is None:
        st.warning("Choose 👍 Yes or 👎 No first.")
        return
    try:
        feedback_id = save_feedback(
            database, log_id, verdict == VERDICTS[0], comments=comments, reference_answer=reference, reviewer=reviewer
        )
    except FeedbackError as error:
        st.error(str(error))
        return
    mark = "👍" if verdict == VERDICTS[0] else "👎"
    st.session_state["feedback_notice"] = {"log_id": log_id, "text": f"Feedback #{feedback_id} {mark} saved for run #{log_id}."}
    st.session_state["clear_feedback_form"] = True
    st.toast(f"Feedback #{feedback_id} saved", icon=mark)
    # Rerun so that the history, the list and the totals include the new feedback at once.
    st.rerun()


def show_feedback_editor(database: Database, log_id: int, entries: list[dict[str, Any]]) -> None:
    if not entries:
        return
    with st.expander("Edit or delete feedback"):
        by_id = {entry["id"]: entry for entry in entries}
        feedback_id = st.selectbox(
            "Feedback",
            list(by_id),
            format_func=lambda key: (
                f"#{key} {'👍' if by_id[key]['is_good'] else '👎'} {by_id[key]['reviewer'] or ''} {(by_id[key]['comments'] or '')[:40]}"
            ),
            key=f"edit_pick_{log_id}",
        )
        entry = by_id[feedback_id]
        with st.form(f"edit_feedback_{feedback_id}"):
            verdict = st.radio("Is the answer good?", VERDICTS, index=0 if entry["is_good"] else 1, horizontal=True)
            comments = st.text_area("Comments", value=entry["comments"] or "")
            reference = st.text_area("Reference Answer", value=entry["reference_answer"] or "")
            reviewer = st.text_input("Reviewer", value=entry["reviewer"] or "")
            confirm_delete = st.checkbox("Delete this feedback")
            save = st.form_submit_button("Save changes")
        if not save:
            return
        try:
            if confirm_delete:
                delete_feedback(database, feedback_id)
                text = f"Feedback #{feedback_id} deleted."
            else:
                update_feedback(
                    database,
                    feedback_id,
                    is_good=verdict == VERDICTS[0],
                    comments=comments,
                    reference_answer=reference,
                    reviewer=reviewer,
                )
                text = f"Feedback #{feedback_id} updated."
        except FeedbackError as error:
            st.error(str(error))
            return
        st.session_state["feedback_notice"] = {"log_id": log_id, "text": text}
        st.rerun()


# ---------------------------------------------------------------------------- page


def show_run(database: Database, log_id: int) -> None:
    run = run_detail(database, log_id)
    if run is None:
        st.warning(f"Run #{log_id} no longer exists.")
        return
    show_overview(run)
    left, right = st.columns([3, 2], gap="large")
    with left:
        show_texts(run)
        show_timeline(database, run)
        show_raw_json(database, run)
    with right:
        show_checks(database, log_id)
        entries = show_feedback_history(database, log_id)
        show_judgements(database, log_id, entries)  # the judges' verdicts next to the reviewers'
        show_feedback_form(database, log_id)
        show_feedback_editor(database, log_id, entries)


def main() -> None:
    # Viewers never see a traceback (it can hold a query, a path, a URL): an unexpected error shows
    # a generic message, and Streamlit writes the traceback to the server's log.
    st.set_option("client.showErrorDetails", "none")
    st.set_page_config(page_title="LLM Log Monitor", page_icon="🔎", layout="wide")
    st.title("LLM Log Monitor")
    st.caption("Browse ingested logs, view evaluation results, and add feedback.")
    url = get_settings().database_url
    try:
        database = get_database(url)
    except InvalidDatabaseUrl as error:
        logger.error("%s", error)
        st.error(f"Check DATABASE_URL: it is not usable ({error.reason}).", icon="⚠️")
        st.stop()
    try:
        # Once the tables exist they stay: ask the catalog only until they appear.
        if not st.session_state.get("schema_ready") and not has_runs_table(database):
            st.sidebar.caption(f"Database: {database_kind(database)}")
            st.info("No runs yet: the tables are created by the first ingest (try `uv run llm-monitoring demo`).")
            return
        st.session_state["schema_ready"] = True
        options = cached_filter_options(url, database)
        filters, page_size = sidebar_filters(database, options)
        log_id = show_run_list(database, filters, page_size)
        if log_id is not None:
            st.divider()
            show_run(database, log_id)
    except InvalidSearch as error:
        st.warning(str(error), icon="🔎")
    except DatabaseUnavailable as error:
        show_unreachable(error)
    except DriverError as error:
        # Only a lost or refused connection is an outage; a statement the database refused says so.
        if is_connection_error(error):
            show_unreachable(database.unavailable(error))
        else:
            lines = database.hide_secrets(str(error.orig or error)).strip().splitlines()
            st.error(f"The database refused this page's query: {lines[0] if lines else type(error).__name__}", icon="⛔")


def show_unreachable(error: DatabaseUnavailable) -> None:
    # The reason names the host and the user: for the server's log, not for viewers.
    logger.error("%s", error)
    st.error("Cannot reach the database; the app's server log says why.", icon="🔌")
    st.caption("Check DATABASE_URL and that the database server is running; this page retries on its next rerun.")


if __name__ == "__main__":
    main()
