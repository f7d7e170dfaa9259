"""What people read: counts with the right plural, pass rates that say what they count, "-" for a missing value."""

import json
import random
from datetime import UTC, datetime
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from llm_monitoring.cli import format_summary
from llm_monitoring.core.windows import days_label, parse_days, stretches
from llm_monitoring.core.wording import plural
from llm_monitoring.ingest import run_from_bytes
from llm_monitoring.samples import PROFILES, make_run_log
from llm_monitoring.storage.bulk import store_runs
from llm_monitoring.storage.engine import Database

APP = Path(__file__).resolve().parents[1] / "llm_monitoring" / "app.py"


@pytest.mark.parametrize(("count", "text"), [(0, "0 runs"), (1, "1 run"), (2, "2 runs"), (1200, "1,200 runs")])
def test_plural(count: int, text: str):
    assert plural(count, "run") == text


def test_days_are_written_as_stretches_and_read_back():
    days = parse_days(["2026-01-09", "2026-01-10..2026-01-12", "2026-02-01"])
    assert stretches(days) == [(min(days), datetime(2026, 1, 12).date()), (datetime(2026, 2, 1).date(),) * 2]
    assert days_label(days) == "2026-01-09..2026-01-12, 2026-02-01"
    assert days_label([]) == "none"
    with pytest.raises(ValueError, match="'2026-13-01'"):
        parse_days(["2026-13-01"])


def store_one_run_per_model(database: Database) -> None:
    rng = random.Random(3)
    started = datetime(2026, 1, 5, 9, tzinfo=UTC)
    store_runs(
        database,
        [
            run_from_bytes(json.dumps(make_run_log(rng, started, profile=profile)).encode(), f"logs/{profile.agent_name}.json")
            for profile in PROFILES[:2]
        ],
    )


def test_summary_says_one_run_and_passed_of_applicable(sqlite_url: str):
    database = Database(sqlite_url)
    database.ensure_schema()
    store_one_run_per_model(database)
    lines = format_summary(database).splitlines()
    database.dispose()
    assert any(line.startswith("  openai/gpt-4o-mini: 1 run, $") for line in lines), lines
    search = next(line for line in lines if line.strip().startswith("tool_call_search"))
    assert search.split() == ["tool_call_search", "100%", "(2", "passed", "of", "2", "applicable)"]


def test_runs_table_shows_a_missing_value_as_in_the_detail(sqlite_url: str, monkeypatch: pytest.MonkeyPatch):
    database = Database(sqlite_url)
    database.ensure_schema()
    store_one_run_per_model(database)
    database.dispose()
    monkeypatch.setenv("DATABASE_URL", sqlite_url)
    app = AppTest.from_file(str(APP), default_timeout=60)
    app.run()
    assert not app.exception
    assert app.dataframe[0].proto.placeholder == "-"
