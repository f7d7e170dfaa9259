"""Every table and index of the monitoring database, the column types they use, and the schema digest."""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime
from decimal import Decimal
from functools import lru_cache
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql

# ---------------------------------------------------------------------------- column types


class UTCDateTime(sa.TypeDecorator[datetime]):
    """Timezone-aware UTC datetimes on both databases (SQLite keeps naive UTC text)."""

    impl = sa.DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: sa.Dialect) -> datetime | None:
        if value is None:
            return None
        value = value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: sa.Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


class Money(sa.TypeDecorator[Decimal]):
    """Exact decimal costs: NUMERIC on Postgres, decimal text on SQLite (whose REAL would round)."""

    impl = sa.Numeric(24, 12)
    cache_ok = True

    def load_dialect_impl(self, dialect: sa.Dialect) -> sa.types.TypeEngine[Any]:
        if dialect.name == "sqlite":
            return dialect.type_descriptor(sa.String(40))
        return dialect.type_descriptor(sa.Numeric(24, 12, asdecimal=True))

    def process_bind_param(self, value: Decimal | None, dialect: sa.Dialect) -> Any:
        if value is None:
            return None
        return format(Decimal(value), "f") if dialect.name == "sqlite" else Decimal(value)

    def process_result_value(self, value: Any, dialect: sa.Dialect) -> Decimal | None:
        if value is None:
            return None
        return Decimal(value).normalize() if dialect.name == "sqlite" else Decimal(value)


class SafeText(sa.TypeDecorator[str]):
    """Text that Postgres accepts: a NUL character (legal in JSON strings) becomes U+FFFD."""

    impl = sa.Text
    cache_ok = True

    def process_bind_param(self, value: str | None, dialect: sa.Dialect) -> str | None:
        if value is not None and "\x00" in value:
            return value.replace("\x00", "\ufffd")
        return value


BigId = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
# Rule versions are short numbers ("2"); an LLM judge's is "judge:<name>:<hash>" with a name of up to
# 64 characters (core/judges.py), so the column holds both.
EVALUATOR_VERSION_CHARS = 100
MAX_ID = 2**63 - 1  # the largest value a BigId holds: BIGINT on Postgres, a 64-bit INTEGER on SQLite

# ---------------------------------------------------------------------------- tables


def newest_first_index(
    name: str, leading: list[sa.Column[Any]], started: sa.Column[Any], run_id: sa.Column[Any], include: list[str] | None = None
) -> None:
    """An index in the review app's list order (newest first, undated runs last) after `leading`.

    Postgres needs NULLS LAST spelled out to match the list's ORDER BY; SQLite sorts NULLs last in
    DESC by itself and rejects NULLS LAST in an index, so each gets its own.
    """
    sa.Index(name, *leading, started.desc().nulls_last(), run_id.desc(), postgresql_include=include or []).ddl_if(dialect="postgresql")
    sa.Index(f"{name}_sqlite", *leading, started.desc(), run_id.desc()).ddl_if(dialect="sqlite")


metadata = sa.MetaData()

llm_logs = sa.Table(
    "llm_logs",
    metadata,
    sa.Column("id", BigId, primary_key=True, autoincrement=True),
    sa.Column("filepath", SafeText, nullable=False),
    sa.Column("content_hash", sa.String(64), nullable=False),
    sa.Column("agent_name", SafeText),
    sa.Column("provider", SafeText),
    sa.Column("model", SafeText),
    sa.Column("user_prompt", SafeText),
    sa.Column("instructions", SafeText),
    sa.Column("total_input_tokens", sa.BigInteger),
    sa.Column("total_output_tokens", sa.BigInteger),
    sa.Column("cache_read_tokens", sa.BigInteger),
    sa.Column("cache_write_tokens", sa.BigInteger),
    sa.Column("requests", sa.Integer),
    sa.Column("tool_call_count", sa.Integer),
    sa.Column("tool_names", SafeText),  # JSON array, in call order
    sa.Column("finish_reasons", SafeText),  # JSON array
    sa.Column("assistant_answer", SafeText),
    sa.Column("raw_json", SafeText),
    sa.Column("input_cost", Money),
    sa.Column("output_cost", Money),
    sa.Column("total_cost", Money),
    sa.Column("pricing_status", SafeText),
    sa.Column("price_data_version", sa.String(64)),
    sa.Column("provider_reported_cost", Money),
    sa.Column("run_started_at", UTCDateTime),
    sa.Column("run_finished_at", UTCDateTime),
    sa.Column("duration_seconds", sa.Float),
    sa.Column("parser_version", sa.String(16)),
    # JSON array: values of the log that could not be stored as logged (stored NULL), each with why.
    sa.Column("value_notes", SafeText),
    # JSON object: how many matches each redaction detector replaced in the run's log before it was
    # stored (REDACT); NULL when nothing was.
    sa.Column("redactions", SafeText),
    # "file" for ingested logs, "fake" for generated demo data (deletable as a set).
    sa.Column("origin", sa.String(16), nullable=False, server_default="file"),
    sa.Column("created_at", UTCDateTime, nullable=False, server_default=sa.func.now()),
    sa.UniqueConstraint("content_hash", name="uq_llm_logs_content_hash"),
    # On Postgres ix_llm_logs_run_order (below) leads with run_started_at and serves the same queries.
    sa.Index("ix_llm_logs_run_started_at", "run_started_at").ddl_if(dialect="sqlite"),
    sa.Index("ix_llm_logs_model_run_started_at", "model", "run_started_at"),
    sa.Index("ix_llm_logs_provider_run_started_at", "provider", "run_started_at"),
    sa.Index("ix_llm_logs_agent_name", "agent_name"),
    sa.Index("ix_llm_logs_created_at", "created_at"),
)
# The review app lists runs newest first with undated runs last; Postgres needs an index in exactly
# that order (SQLite sorts NULLs last in DESC already and rejects NULLS LAST in an index).
# It also covers the columns the app filters and sums, so its totals are an index-only scan.
sa.Index(
    "ix_llm_logs_run_order",
    llm_logs.c.run_started_at.desc().nulls_last(),
    llm_logs.c.id.desc(),
    postgresql_include=[
        "provider",
        "model",
        "agent_name",
        "total_input_tokens",
        "total_output_tokens",
        "cache_read_tokens",
        "total_cost",
    ],
).ddl_if(dialect="postgresql")
# The dashboards (Postgres only): a range of runs read from this index alone (ids to join their checks
# and ratings, durations, the run filters), a third of ix_llm_logs_run_order's pages; and the unpriced
# runs, usually few, from a partial index of their own.
sa.Index(
    "ix_llm_logs_dashboards", llm_logs.c.run_started_at, postgresql_include=["id", "duration_seconds", "provider", "model", "agent_name"]
).ddl_if(dialect="postgresql")
sa.Index("ix_llm_logs_unpriced", llm_logs.c.run_started_at, postgresql_where=llm_logs.c.total_cost.is_(None)).ddl_if(dialect="postgresql")
# Word search in prompts and answers (see run_search_document); capped so that a huge answer can
# never exceed the 1 MB limit of a tsvector and fail an ingest.
SEARCH_DOCUMENT_CHARS = 100_000
RUN_SEARCH_DOCUMENT = sa.func.to_tsvector(
    sa.literal_column("'simple'::regconfig"),
    sa.func.left(
        sa.func.coalesce(llm_logs.c.user_prompt, sa.literal_column("''"))
        .op("||")(sa.literal_column("' '"))
        .op("||")(sa.func.coalesce(llm_logs.c.assistant_answer, sa.literal_column("''"))),
        SEARCH_DOCUMENT_CHARS,
    ),
)

# Each run's search document, kept (Postgres only) beside the run rather than recomputed: a search reads
# it from here newest first, or through its GIN index for rare words, and never re-parses a prompt.
# Written with the run (storage/rollups.py); SQLite searches the text itself and leaves this empty.
run_search = sa.Table(
    "run_search",
    metadata,
    sa.Column("log_id", BigId, sa.ForeignKey("llm_logs.id", ondelete="CASCADE"), primary_key=True),
    sa.Column("run_started_at", UTCDateTime),  # the run's, so the list's order is in this table's index
    sa.Column("document", postgresql.TSVECTOR().with_variant(sa.Text(), "sqlite"), nullable=False),
)
sa.Index("ix_run_search_document", run_search.c.document, postgresql_using="gin").ddl_if(dialect="postgresql")
sa.Index("ix_run_search_order", run_search.c.run_started_at.desc().nulls_last(), run_search.c.log_id.desc()).ddl_if(dialect="postgresql")
# Indexes of earlier versions that a newer structure replaced: an upgrade drops them.
DROPPED_INDEXES = (
    "ix_llm_logs_search",  # a GIN index over the document computed from each row: run_search's
    "ix_eval_checks_outcome",  # check name, outcome, run of every check row: check_verdicts's
)

eval_checks = sa.Table(
    "eval_checks",
    metadata,
    sa.Column("id", BigId, primary_key=True, autoincrement=True),
    sa.Column("log_id", BigId, sa.ForeignKey("llm_logs.id", ondelete="CASCADE"), nullable=False),
    sa.Column("check_name", sa.String(64), nullable=False),
    sa.Column("passed", sa.Boolean),  # NULL: not applicable
    sa.Column("score", sa.Float),
    sa.Column("details", SafeText),
    sa.Column("evaluator_version", sa.String(EVALUATOR_VERSION_CHARS), nullable=False),
    sa.Column("created_at", UTCDateTime, nullable=False, server_default=sa.func.now()),
    # Also what reads a run's checks: the check filters read check_verdicts.
    sa.UniqueConstraint("log_id", "check_name", "evaluator_version", name="uq_eval_checks_log_check_version"),
)


def check_outcome_statistics(table: sa.Table) -> None:
    """Postgres assumes a check's outcome is independent of its name, so it guessed 11,000 "not
    applicable" rows for a check that never is, and scanned every run; statistics on the pair fix it."""
    statement = f"CREATE STATISTICS IF NOT EXISTS st_{table.name}_name_passed (mcv) ON check_name, passed FROM {table.name}"
    sa.event.listen(metadata, "after_create", sa.DDL(statement).execute_if(dialect="postgresql"))


check_outcome_statistics(eval_checks)
# The LLM judges' verdicts, a small share of the checks, for the dashboards' judge panels (Postgres only).
sa.Index(
    "ix_eval_checks_judges",
    eval_checks.c.log_id,
    postgresql_include=["check_name", "evaluator_version", "passed"],
    postgresql_where=eval_checks.c.evaluator_version.like("judge:%"),
).ddl_if(dialect="postgresql")
# ANALYZE samples whole pages, and a run's checks share pages: it saw a third of the runs there are
# and guessed 24 checks a run rather than 7. Joins of a day's runs to their checks then looked dear
# enough to read every check row, or to be JIT-compiled (dashboards: 1 s instead of 0.2 s). About
# ten rows a run (the rules, older versions kept, judges); it applies from the next ANALYZE.
sa.event.listen(
    metadata,
    "after_create",
    sa.DDL("ALTER TABLE eval_checks ALTER COLUMN log_id SET (n_distinct = -0.1)").execute_if(dialect="postgresql"),
)
sa.event.listen(metadata, "after_create", sa.DDL("ANALYZE eval_checks").execute_if(dialect="postgresql"))

# The current verdict of each check of each run: the newest row of eval_checks per (run, check), the
# rule the review app's lists apply (storage/rollups.py current_checks). Kept in the same transaction as
# every write of eval_checks (storage/rollups.py), so the app's "check X failed" filter is one range of
# ix_check_verdicts_order in the list's order, whatever the history's length.
check_verdicts = sa.Table(
    "check_verdicts",
    metadata,
    sa.Column("log_id", BigId, sa.ForeignKey("llm_logs.id", ondelete="CASCADE"), primary_key=True),
    sa.Column("check_name", sa.String(64), primary_key=True),
    sa.Column("passed", sa.Boolean),  # NULL: not applicable
    sa.Column("evaluator_version", sa.String(EVALUATOR_VERSION_CHARS), nullable=False),
    # The run's, so the list's order is in this index, and a provider, model or agent filter beside
    # the check filter is applied in it (a provider whose runs never fail that check costs one index
    # range, not a look-up of every failing run).
    sa.Column("run_started_at", UTCDateTime),
    sa.Column("provider", SafeText),
    sa.Column("model", SafeText),
    sa.Column("agent_name", SafeText),
)
newest_first_index(
    "ix_check_verdicts_order",
    [check_verdicts.c.check_name, check_verdicts.c.passed],
    check_verdicts.c.run_started_at,
    check_verdicts.c.log_id,
    include=["provider", "model", "agent_name"],
)
check_outcome_statistics(check_verdicts)

# Runs, tokens and cost per UTC day of run_started_at, provider, model and agent: what the review app's
# totals add up, exact at any moment because every write of llm_logs updates it in the same transaction
# (storage/rollups.py). daily_usage, its Dagster-built sibling, lags the ingest and outlives retention.
run_day_totals = sa.Table(
    "run_day_totals",
    metadata,
    sa.Column("id", BigId, primary_key=True, autoincrement=True),
    # A digest of (day, provider, model, agent): NULLs included, which a unique constraint over the
    # columns themselves would treat as distinct.
    sa.Column("totals_key", sa.String(64), nullable=False),
    sa.Column("day", sa.Date),  # NULL: runs without a start time
    sa.Column("provider", SafeText),
    sa.Column("model", SafeText),
    sa.Column("agent_name", SafeText),
    sa.Column("runs", sa.BigInteger, nullable=False),
    sa.Column("priced_runs", sa.BigInteger, nullable=False),
    sa.Column("input_tokens", sa.BigInteger, nullable=False),
    sa.Column("output_tokens", sa.BigInteger, nullable=False),
    sa.Column("cache_read_tokens", sa.BigInteger, nullable=False),
    sa.Column("total_cost", Money, nullable=False),  # the priced runs' sum
    sa.UniqueConstraint("totals_key", name="uq_run_day_totals_key"),
    sa.Index("ix_run_day_totals_day", "day"),
)

# One row per LLM judge call that gave a verdict (its verdict is the eval_checks row of the same run,
# check and version): tokens and cost priced with genai-prices when the call was made, so the daily
# summary and the dashboards sum what judging cost. Written with the verdict, in one transaction.
judge_calls = sa.Table(
    "judge_calls",
    metadata,
    sa.Column("id", BigId, primary_key=True, autoincrement=True),
    sa.Column("log_id", BigId, sa.ForeignKey("llm_logs.id", ondelete="CASCADE"), nullable=False),
    sa.Column("check_name", sa.String(64), nullable=False),  # the judge's name
    sa.Column("evaluator_version", sa.String(EVALUATOR_VERSION_CHARS), nullable=False),
    sa.Column("model", SafeText, nullable=False),  # the judge's model string, "openai:gpt-4o-mini"
    sa.Column("input_tokens", sa.BigInteger),
    sa.Column("output_tokens", sa.BigInteger),
    sa.Column("cache_read_tokens", sa.BigInteger),
    sa.Column("requests", sa.Integer, nullable=False),  # HTTP attempts, retries included
    sa.Column("cost", Money),  # NULL: genai-prices has no price for the model (never a made-up $0)
    sa.Column("pricing_status", SafeText),
    sa.Column("price_data_version", sa.String(64)),
    sa.Column("latency_seconds", sa.Float),
    sa.Column("created_at", UTCDateTime, nullable=False),
    sa.UniqueConstraint("log_id", "evaluator_version", name="uq_judge_calls_log_version"),
    sa.Index("ix_judge_calls_version", "evaluator_version"),
)

feedback = sa.Table(
    "feedback",
    metadata,
    sa.Column("id", BigId, primary_key=True, autoincrement=True),
    sa.Column("log_id", BigId, sa.ForeignKey("llm_logs.id", ondelete="CASCADE"), nullable=False),
    sa.Column("is_good", sa.Boolean, nullable=False),
    sa.Column("comments", SafeText),
    sa.Column("reference_answer", SafeText),
    sa.Column("reviewer", SafeText),
    sa.Column("created_at", UTCDateTime, nullable=False, server_default=sa.func.now()),
    sa.Column("updated_at", UTCDateTime),
    sa.Index("ix_feedback_log_id", "log_id"),
    sa.Index("ix_feedback_created_at", "created_at"),
    # The review app's "with 👍/👎" filter counts its runs from this index alone, up to its cap.
    sa.Index("ix_feedback_is_good_log_id", "is_good", "log_id"),
)
# The dashboards' newest ratings, in their order (created_at DESC, id DESC), even when many share a time.
sa.Index("ix_feedback_created_at_id", feedback.c.created_at, feedback.c.id).ddl_if(dialect="postgresql")

# A deleted rating leaves no row to notice, so its run's day is kept here: the aggregates sensor
# rebuilds that day's daily_feedback like after any other feedback change.
feedback_deletions = sa.Table(
    "feedback_deletions",
    metadata,
    sa.Column("id", BigId, primary_key=True, autoincrement=True),
    sa.Column("feedback_id", BigId, nullable=False),
    sa.Column("log_id", BigId, nullable=False),
    sa.Column("run_started_at", UTCDateTime),
    sa.Column("deleted_at", UTCDateTime, nullable=False),
    sa.Index("ix_feedback_deletions_deleted_at", "deleted_at"),
)

ingest_errors = sa.Table(
    "ingest_errors",
    metadata,
    sa.Column("id", BigId, primary_key=True, autoincrement=True),
    sa.Column("filepath", SafeText, nullable=False),
    sa.Column("content_hash", sa.String(64), nullable=False),
    sa.Column("error", SafeText, nullable=False),
    sa.Column("quarantined_as", SafeText),
    sa.Column("occurrences", sa.Integer, nullable=False, server_default="1"),
    sa.Column("first_seen", UTCDateTime, nullable=False, server_default=sa.func.now()),
    sa.Column("last_seen", UTCDateTime, nullable=False, server_default=sa.func.now()),
    sa.Column("resolved_at", UTCDateTime),
    sa.UniqueConstraint("content_hash", name="uq_ingest_errors_content_hash"),
    sa.Index("ix_ingest_errors_last_seen", "last_seen"),
)

# Every file the ingest has moved out of the pending set, under its new name. With the default
# prefix marking, a file whose name already starts with the prefix is new unless it is listed here
# (agents named "_search" write "_search_....json"): nothing is skipped on its name alone.
processed_files = sa.Table(
    "processed_files",
    metadata,
    sa.Column("id", BigId, primary_key=True, autoincrement=True),
    sa.Column("name", SafeText, nullable=False),
    sa.Column("processed_as", SafeText, nullable=False),
    sa.Column("content_hash", sa.String(64), nullable=False),
    sa.Column("processed_at", UTCDateTime, nullable=False, server_default=sa.func.now()),
    sa.Index("ix_processed_files_processed_as", "processed_as"),
)

# Files the ingest reads where they are instead of moving them (JSON Lines an agent appends to):
# how far it has read each one. A later pass checks that the bytes it read are unchanged (same
# file, same prefix hash) and reads only what follows; otherwise it reads the file from the start,
# and the runs' unique content hashes keep that free of duplicates.
file_offsets = sa.Table(
    "file_offsets",
    metadata,
    sa.Column("name", SafeText, primary_key=True),  # text form of the name in the log folder
    sa.Column("device", sa.BigInteger, nullable=False),
    sa.Column("inode", sa.BigInteger, nullable=False),
    sa.Column("size", sa.BigInteger, nullable=False),  # the file as it was read: unchanged means nothing new
    sa.Column("mtime_ns", sa.BigInteger, nullable=False),
    sa.Column("bytes_read", sa.BigInteger, nullable=False),  # to the end of the last complete line
    sa.Column("lines_read", sa.BigInteger, nullable=False),  # to number the lines that follow
    sa.Column("prefix_hash", sa.String(64), nullable=False),  # sha256 of the bytes read
    sa.Column("updated_at", UTCDateTime, nullable=False),
)

# Spans of OpenTelemetry traces that are not complete yet (their root span has not arrived): kept
# until the rest of the trace arrives, from a later line or file, or until the trace has been quiet
# for SETTLE_SECONDS; then its runs are stored and its spans deleted.
waiting_spans = sa.Table(
    "waiting_spans",
    metadata,
    sa.Column("id", BigId, primary_key=True, autoincrement=True),
    sa.Column("trace_id", sa.String(64), nullable=False),
    sa.Column("span_id", sa.String(64), nullable=False),
    sa.Column("span_json", SafeText, nullable=False),
    sa.Column("filepath", SafeText, nullable=False),
    sa.Column("received_at", UTCDateTime, nullable=False),
    sa.UniqueConstraint("trace_id", "span_id", name="uq_waiting_spans_trace_span"),
    sa.Index("ix_waiting_spans_received_at", "received_at"),
)

# Every object of a bucket source the ingest is done with, by bucket, key and ETag: objects are never
# renamed, so this is what takes one out of the pending set. A listing gives key and ETag, so a known
# object is skipped without being read; a key overwritten with new bytes has a new ETag and is new.
source_objects = sa.Table(
    "source_objects",
    metadata,
    sa.Column("id", BigId, primary_key=True, autoincrement=True),
    sa.Column("bucket", sa.String(255), nullable=False),
    sa.Column("key", SafeText, nullable=False),  # the whole key in the bucket
    sa.Column("etag", sa.String(255), nullable=False),
    sa.Column("version_id", sa.String(1024)),  # where the bucket keeps versions
    sa.Column("size", sa.BigInteger, nullable=False),
    sa.Column("content_hash", sa.String(64), nullable=False),  # llm_logs' or ingest_errors' key
    sa.Column("outcome", sa.String(16), nullable=False),  # "stored" or "quarantined"
    sa.Column("location", SafeText),  # where it was moved or copied to, if anywhere
    sa.Column("recorded_at", UTCDateTime, nullable=False, server_default=sa.func.now()),
    sa.UniqueConstraint("bucket", "key", "etag", name="uq_source_objects_bucket_key_etag"),
)

# Alerts of failed quality gates, one row per gate and failing day (or quarantined file): written by
# the gate's evaluation, delivered to ALERT_WEBHOOK_URL by the alerts sensor (llm_monitoring/alerts.py
# has the queries). The unique key makes a day alerted once, whatever evaluates it again.
alerts = sa.Table(
    "alerts",
    metadata,
    sa.Column("id", BigId, primary_key=True, autoincrement=True),
    sa.Column("asset", sa.String(255), nullable=False),
    sa.Column("gate", sa.String(255), nullable=False),
    sa.Column("subject", sa.String(255), nullable=False),  # the failing day (YYYY-MM-DD) or a file's content hash
    sa.Column("details", SafeText, nullable=False),  # JSON: what the message says about this subject
    sa.Column("run_id", sa.String(64)),  # the run whose evaluation failed, for the link in the message
    sa.Column("created_at", UTCDateTime, nullable=False),
    sa.Column("attempts", sa.Integer, nullable=False, server_default="0"),
    sa.Column("next_attempt_at", UTCDateTime, nullable=False),  # also the lease of the sender delivering it
    sa.Column("last_error", SafeText),
    sa.Column("sent_at", UTCDateTime),
    sa.UniqueConstraint("asset", "gate", "subject", name="uq_alerts_asset_gate_subject"),
    sa.Index("ix_alerts_due", "sent_at", "next_attempt_at"),
)

# Daily summaries of the runs, one row per UTC day and key, rewritten a window of days at a time
# (llm_monitoring/recompute.py); the history and aggregates assets.
daily_usage = sa.Table(
    "daily_usage",
    metadata,
    sa.Column("id", BigId, primary_key=True, autoincrement=True),
    sa.Column("day", sa.Date, nullable=False),  # UTC day of run_started_at
    sa.Column("provider", SafeText),
    sa.Column("model", SafeText),
    sa.Column("agent_name", SafeText),
    sa.Column("runs", sa.Integer, nullable=False),
    sa.Column("priced_runs", sa.Integer, nullable=False),
    sa.Column("unpriced_runs", sa.Integer, nullable=False),
    sa.Column("input_tokens", sa.BigInteger, nullable=False),
    sa.Column("output_tokens", sa.BigInteger, nullable=False),
    sa.Column("cache_read_tokens", sa.BigInteger, nullable=False),
    sa.Column("cache_write_tokens", sa.BigInteger, nullable=False),
    # Sums over the priced runs only: an unpriced run adds to unpriced_runs, never a made-up $0.
    sa.Column("input_cost", Money, nullable=False),
    sa.Column("output_cost", Money, nullable=False),
    sa.Column("total_cost", Money, nullable=False),
    sa.Column("duration_p50_seconds", sa.Float),
    sa.Column("duration_p95_seconds", sa.Float),
    sa.Column("computed_at", UTCDateTime, nullable=False),
    sa.Index("ix_daily_usage_day", "day"),
)

daily_eval_summary = sa.Table(
    "daily_eval_summary",
    metadata,
    sa.Column("id", BigId, primary_key=True, autoincrement=True),
    sa.Column("day", sa.Date, nullable=False),
    sa.Column("check_name", sa.String(64), nullable=False),
    sa.Column("evaluator_version", sa.String(EVALUATOR_VERSION_CHARS), nullable=False),
    sa.Column("runs", sa.Integer, nullable=False),  # runs with a row for this check and version
    sa.Column("applicable", sa.Integer, nullable=False),  # of which passed is not NULL
    sa.Column("passed", sa.Integer, nullable=False),
    sa.Column("pass_rate", sa.Float),  # passed / applicable; NULL when nothing applied
    # LLM judges only (NULL for rule checks): what their calls of the day cost (judge_calls).
    sa.Column("judge_input_tokens", sa.BigInteger),
    sa.Column("judge_output_tokens", sa.BigInteger),
    sa.Column("judge_cost", Money),  # the priced calls' sum
    sa.Column("judge_unpriced_calls", sa.Integer),
    sa.Column("computed_at", UTCDateTime, nullable=False),
    sa.UniqueConstraint("day", "check_name", "evaluator_version", name="uq_daily_eval_summary_day_check_version"),
)

# daily_eval_summary by the runs' provider, model and agent: what the Eval dashboard sums when those
# variables pick some runs. Written with daily_eval_summary, in the same transaction, by the same rebuild.
daily_eval_breakdown = sa.Table(
    "daily_eval_breakdown",
    metadata,
    sa.Column("id", BigId, primary_key=True, autoincrement=True),
    sa.Column("day", sa.Date, nullable=False),
    sa.Column("provider", SafeText),
    sa.Column("model", SafeText),
    sa.Column("agent_name", SafeText),
    sa.Column("check_name", sa.String(64), nullable=False),
    sa.Column("evaluator_version", sa.String(EVALUATOR_VERSION_CHARS), nullable=False),
    sa.Column("runs", sa.Integer, nullable=False),
    sa.Column("applicable", sa.Integer, nullable=False),
    sa.Column("passed", sa.Integer, nullable=False),
    sa.Column("judge_input_tokens", sa.BigInteger),
    sa.Column("judge_output_tokens", sa.BigInteger),
    sa.Column("judge_cost", Money),
    sa.Column("judge_unpriced_calls", sa.Integer),
    sa.Column("computed_at", UTCDateTime, nullable=False),
    sa.Index("ix_daily_eval_breakdown_day_version", "day", "evaluator_version"),
)

daily_feedback = sa.Table(
    "daily_feedback",
    metadata,
    sa.Column("id", BigId, primary_key=True, autoincrement=True),
    sa.Column("day", sa.Date, nullable=False),  # UTC day of the run the feedback is about
    sa.Column("feedback", sa.Integer, nullable=False),
    sa.Column("good", sa.Integer, nullable=False),
    sa.Column("bad", sa.Integer, nullable=False),
    sa.Column("good_pct", sa.Float),
    sa.Column("computed_at", UTCDateTime, nullable=False),
    sa.UniqueConstraint("day", name="uq_daily_feedback_day"),
)

# The audit trail of retention (llm_monitoring/retention.py): one row per run that deleted anything or
# found nothing to delete (a dry run writes none), with its cutoffs and the rows deleted per table.
retention_log = sa.Table(
    "retention_log",
    metadata,
    sa.Column("id", BigId, primary_key=True, autoincrement=True),
    sa.Column("started_at", UTCDateTime, nullable=False),
    sa.Column("finished_at", UTCDateTime, nullable=False),
    sa.Column("retention_days", sa.Integer),  # RETENTION_DAYS in force; NULL: runs were kept
    sa.Column("run_cutoff", UTCDateTime),  # runs started before it were deleted
    sa.Column("retention_raw_days", sa.Integer),  # RETENTION_RAW_DAYS in force; NULL: raw logs were kept
    sa.Column("raw_cutoff", UTCDateTime),  # raw logs of runs started before it were dropped
    sa.Column("rows_deleted", SafeText, nullable=False),  # JSON object: table -> rows deleted
    sa.Column("raw_logs_dropped", sa.BigInteger, nullable=False),
    sa.Column("triggered_by", SafeText),  # "command line", "schedule", a Dagster run id
    sa.Index("ix_retention_log_started_at", "started_at"),
)

DAILY_TABLES = {table.name: table for table in (daily_usage, daily_eval_summary, daily_eval_breakdown, daily_feedback)}

# The schema this code upgrades a database to: a digest of every table, column and index, so any
# change to the tables above makes ensure_schema upgrade once and then find it in place.
schema_state = sa.Table("schema_state", metadata, sa.Column("version", sa.String(64), nullable=False))


@lru_cache(maxsize=1)
def schema_version() -> str:
    # Computed on first use, once every table of this module is defined.
    shape = [
        (table.name, [(column.name, repr(column.type)) for column in table.columns], sorted(index.name for index in table.indexes))
        for table in metadata.sorted_tables
    ]
    return hashlib.sha256(repr(shape).encode()).hexdigest()
