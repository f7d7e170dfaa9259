"""The logger of runs started from the command line (`llm-monitoring ingest`, the runner, the watcher)."""

from __future__ import annotations

import logging
import sys

import dagster as dg

LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"  # the format of the commands' own lines


@dg.logger(
    config_schema={"log_level": dg.Field(str, default_value="WARNING", is_required=False)},
    description="The run's own messages (a quarantined file, say) as plain lines on stderr. Dagster's "
    "event records, such as a failed step's stack trace, are kept in the run's record only: the "
    "command reports the run's outcome itself, in one line.",
)
def command_line_logger(init_context: dg.InitLoggerContext) -> logging.Logger:
    run_logger = logging.Logger("llm_monitoring.run", level=init_context.logger_config["log_level"])
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter(LOG_FORMAT))
    handler.addFilter(own_messages_only)
    run_logger.addHandler(handler)
    return run_logger


def own_messages_only(record: logging.LogRecord) -> bool:
    """Keep what the run's code logged (shown without Dagster's run id prefix); drop Dagster's events.

    Dagster hands a logger each record with its context under `dagster_meta` (the attribute its own
    JSON console logger reads): `dagster_event` is set for its events, `orig_message` is the text
    the code logged.
    """
    meta = getattr(record, "dagster_meta", None)
    if not isinstance(meta, dict):
        return True
    if meta.get("dagster_event") is not None or _abandoned_step_note(meta.get("orig_message")):
        return False
    record.msg, record.args = meta.get("orig_message", record.msg), ()
    return True


def _abandoned_step_note(message: object) -> bool:
    """Dagster's note on each step left out after a failed one (the gates after a failed ingest step):
    logged as a plain message, not an event (dagster/_core/execution/plan/active.py), and only a
    consequence of the failure the command reports."""
    return isinstance(message, str) and message.startswith("Dependencies for step ") and message.endswith(". Not executing.")
