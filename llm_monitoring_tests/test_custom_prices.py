"""Your own dated prices (PRICES_FILE): the file's rules, precedence over genai-prices, the ingest
pricing a real gpt-4o-mini log at them, and a re-pricing after the file is edited."""

from __future__ import annotations

import hashlib
import shutil
from dataclasses import replace
from datetime import UTC, date, datetime
from decimal import Decimal
from pathlib import Path

import dagster as dg
import pytest
import sqlalchemy as sa

from llm_monitoring.config import InvalidSetting
from llm_monitoring.core.custom_prices import InvalidPricesFile, parse_custom_prices
from llm_monitoring.core.parsing import parse_run_log
from llm_monitoring.core.pricing import PRICE_DATA_VERSION, price_run
from llm_monitoring.defs.history.assets import log_costs
from llm_monitoring.defs.resources import DatabaseResource
from llm_monitoring.policies import custom_prices
from llm_monitoring.runner import run_ingest
from llm_monitoring.storage.engine import Database
from llm_monitoring.storage.schema import llm_logs
from llm_monitoring_tests.conftest import FIXTURES, fixture_bytes
from llm_monitoring_tests.history_data import metadata

GPT_4O_MINI_LOG = "streamed_no_top_usage.json"  # a pydantic-ai gpt-4o-mini run with cache reads
MTOK = Decimal(1_000_000)


def prices(text: str, source: str = "prices.yaml"):
    return parse_custom_prices(text.encode(), source)


ENTRY = """
prices:
  - provider: openai
    model: gpt-4o-mini*
    from: 2024-01-01
    input_mtok: 1.00
    cache_read_mtok: 0.50
    output_mtok: 2.00
"""


def record(**changes):
    return replace(parse_run_log(fixture_bytes(GPT_4O_MINI_LOG)), **changes)


# ---------------------------------------------------------------------------- the file


def test_a_matching_entry_prices_uncached_input_cache_reads_and_output_at_its_own_rates():
    run = record(input_tokens=10_000, cache_read_tokens=4_000, cache_write_tokens=1_000, output_tokens=500, requests=3)
    text = ENTRY.replace("output_mtok: 2.00", "output_mtok: 2.00\n    cache_write_mtok: 1.25\n    request: 0.001")
    table = prices(text)
    price = price_run(run, table)
    expected_input = (5_000 * Decimal("1.00") + 4_000 * Decimal("0.50") + 1_000 * Decimal("1.25")) / MTOK
    assert price.input_cost == expected_input
    assert price.output_cost == 500 * Decimal("2.00") / MTOK
    assert price.total_cost == expected_input + price.output_cost + 3 * Decimal("0.001")
    assert price.price_data_version == table.version == f"prices:{hashlib.sha256(text.encode()).hexdigest()[:8]}"
    assert price.status == "priced (price file entry 1 (openai gpt-4o-mini*))"


def test_cache_prices_default_to_the_input_price():
    run = record(input_tokens=1_000, cache_read_tokens=400, cache_write_tokens=100, output_tokens=0)
    price = price_run(run, prices(ENTRY.replace("    cache_read_mtok: 0.50\n", "")))
    assert price.input_cost == 1_000 * Decimal("1.00") / MTOK


def test_a_self_hosted_model_genai_prices_does_not_know_becomes_priceable():
    run = record(provider="ollama", model="llama3.1:70b-instruct")
    assert price_run(run).status.startswith("unknown_model")
    table = prices("prices:\n  - {provider: ollama, model: 'llama3.1:*', from: 2020-01-01, input_mtok: 0.2, output_mtok: 0.4}\n")
    price = price_run(run, table)
    assert price.priced and price.total_cost == (run.input_tokens * Decimal("0.2") + run.output_tokens * Decimal("0.4")) / MTOK
    other = record(provider="ollama", model="mistral")
    assert "no entry of the price file prices.yaml matches" in price_run(other, table).status


def test_models_and_providers_match_case_insensitively_and_other_runs_keep_genai_prices():
    table = prices(ENTRY)
    assert price_run(record(provider="OpenAI", model="GPT-4o-mini-2024-07-18"), table).price_data_version == table.version
    other = price_run(record(model="gpt-4o"), table)
    assert other.price_data_version == PRICE_DATA_VERSION and other.priced
    assert price_run(record(provider="azure"), table).price_data_version == PRICE_DATA_VERSION


@pytest.mark.parametrize(
    ("day", "entry"),
    [
        (date(2024, 12, 31), 1),  # the last day of the first price (until is inclusive)
        (date(2025, 1, 1), 2),  # the first day of the second
        (date(2025, 6, 1), 3),  # an exact model name beats a glob whatever their days
        (date(2023, 12, 31), None),  # before every entry: genai-prices
    ],
)
def test_dated_ranges_and_precedence(day: date, entry: int | None):
    table = prices(
        """
prices:
  - {provider: openai, model: gpt-4o-mini*, from: 2024-01-01, until: 2024-12-31, input_mtok: 1, output_mtok: 1}
  - {provider: openai, model: gpt-4o-mini*, from: 2025-01-01, input_mtok: 2, output_mtok: 2}
  - {provider: openai, model: gpt-4o-mini, from: 2025-06-01, input_mtok: 3, output_mtok: 3}
"""
    )
    found = table.find("openai", "gpt-4o-mini", datetime(day.year, day.month, day.day, 23, 59, tzinfo=UTC))
    assert (found.number if found else None) == entry


def test_a_later_dated_entry_overrides_an_open_ended_one_without_an_until():
    table = prices(
        """
prices:
  - {provider: openai, model: gpt-4o-mini*, from: 2024-01-01, input_mtok: 1, output_mtok: 1}
  - {provider: openai, model: gpt-4o-mini*, from: 2025-03-01, input_mtok: 2, output_mtok: 2}
"""
    )
    assert table.find("openai", "gpt-4o-mini", date(2025, 2, 28)).number == 1
    assert table.find("openai", "gpt-4o-mini", date(2025, 3, 1)).number == 2


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("prices:\n  - {provider: openai, model: x, from: 2024-01-01, input_mtok: 1}\n", "entry 1 (openai x): missing output_mtok"),
        (
            "prices:\n  - {provider: openai, model: a, from: 2024-01-01, input_mtok: 1, output_mtok: 1}\n"
            "  - {provider: openai, model: b, from: 2024-01-01, imput_mtok: 1, output_mtok: 1}\n",
            "entry 2 (openai b): unknown field imput_mtok",
        ),
        (
            "prices:\n  - {provider: openai, model: x, from: 2024-13-01, input_mtok: 1, output_mtok: 1}\n",
            "entry 1 (openai x): from must be a day",
        ),
        (
            "prices:\n  - {provider: openai, model: x, from: 2024-01-01, input_mtok: -1, output_mtok: 1}\n",
            "input_mtok must be a number of USD of 0",
        ),
        ("prices:\n  - {provider: openai, model: x, from: 2024-01-01, input_mtok: cheap, output_mtok: 1}\n", "input_mtok must be a number"),
        (
            "prices:\n  - {provider: openai, model: x, from: 2024-02-01, until: 2024-01-01, input_mtok: 1, output_mtok: 1}\n",
            "until (2024-01-01) is before from (2024-02-01)",
        ),
        ("prices:\n  - just a string\n", "entry 1: an entry must be a mapping"),
        ("models:\n  - {}\n", "must hold one key, 'prices:'"),
        ("prices: [\n", "is not valid YAML at line"),
    ],
)
def test_a_malformed_file_is_one_clear_error_naming_the_entry(text: str, message: str):
    with pytest.raises(InvalidPricesFile, match=r"price file prices\.yaml") as caught:
        prices(text)
    assert message in str(caught.value)
    assert "\n" not in str(caught.value)


def test_prices_file_setting_defaults_to_prices_yaml_when_present_and_refuses_a_missing_file(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("PRICES_FILE", raising=False)
    assert custom_prices() is None
    (tmp_path / "prices.yaml").write_text(ENTRY)
    assert custom_prices().version == f"prices:{hashlib.sha256(ENTRY.encode()).hexdigest()[:8]}"
    monkeypatch.setenv("PRICES_FILE", str(tmp_path / "missing.yaml"))
    with pytest.raises(InvalidSetting, match=r"PRICES_FILE .*missing\.yaml does not exist"):
        custom_prices()
    (tmp_path / "bad.yaml").write_text("prices:\n  - {provider: openai}\n")
    monkeypatch.setenv("PRICES_FILE", str(tmp_path / "bad.yaml"))
    with pytest.raises(InvalidSetting, match="entry 1: missing model, from, input_mtok, output_mtok"):
        custom_prices()


# ---------------------------------------------------------------------------- ingest and re-pricing


def stored_cost(database: Database) -> sa.Row:
    with database.connect() as connection:
        return connection.execute(
            sa.select(
                llm_logs.c.total_input_tokens,
                llm_logs.c.cache_read_tokens,
                llm_logs.c.total_output_tokens,
                llm_logs.c.input_cost,
                llm_logs.c.output_cost,
                llm_logs.c.total_cost,
                llm_logs.c.price_data_version,
                llm_logs.c.pricing_status,
                llm_logs.c.run_started_at,
            )
        ).one()


def expected(row: sa.Row, input_rate: str, read_rate: str, output_rate: str) -> tuple[Decimal, Decimal, Decimal]:
    input_cost = (
        (row.total_input_tokens - row.cache_read_tokens) * Decimal(input_rate) + row.cache_read_tokens * Decimal(read_rate)
    ) / MTOK
    output_cost = row.total_output_tokens * Decimal(output_rate) / MTOK
    return input_cost, output_cost, input_cost + output_cost


def reprice_day(instance: dg.DagsterInstance, day: str) -> dict:
    """The log_costs asset (the re-pricing step of reprice_logs) over one day; its metadata."""
    result = dg.materialize([log_costs], partition_key=day, resources={"database": DatabaseResource()}, instance=instance)
    assert result.success
    [event] = result.get_asset_materialization_events()
    return metadata(event.event_specific_data.materialization)


def test_ingested_gpt_4o_mini_log_costs_exactly_the_file_price_and_repricing_an_edited_file_shows_the_diff(
    env, database: Database, logs_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, instance: dg.DagsterInstance
):
    price_file = tmp_path / "my-prices.yaml"
    price_file.write_text(ENTRY)
    monkeypatch.setenv("PRICES_FILE", str(price_file))
    shutil.copy(FIXTURES / GPT_4O_MINI_LOG, logs_dir / GPT_4O_MINI_LOG)

    assert run_ingest().metadata["runs_stored"] == 1
    row = stored_cost(database)
    assert row.cache_read_tokens > 0 and row.total_input_tokens > row.cache_read_tokens
    assert (row.input_cost, row.output_cost, row.total_cost) == expected(row, "1.00", "0.50", "2.00")
    assert row.price_data_version == f"prices:{hashlib.sha256(ENTRY.encode()).hexdigest()[:8]}"
    assert row.pricing_status == "priced (price file entry 1 (openai gpt-4o-mini*))"

    edited = ENTRY.replace("input_mtok: 1.00", "input_mtok: 3.00")
    price_file.write_text(edited)
    day = row.run_started_at.astimezone(UTC).date().isoformat()
    costs = reprice_day(instance, day)
    after = stored_cost(database)
    assert (after.input_cost, after.output_cost, after.total_cost) == expected(row, "3.00", "0.50", "2.00")
    assert after.price_data_version == f"prices:{hashlib.sha256(edited.encode()).hexdigest()[:8]}"
    delta = after.total_cost - row.total_cost
    assert costs["runs_with_new_cost"] == 1 and costs["runs_priced_from_file"] == 1
    assert Decimal(str(costs["cost_delta_usd"])) == pytest.approx(delta, abs=Decimal("1e-9"))
    assert costs["prices_file"].startswith(after.price_data_version + f" ({price_file}")
    assert "openai/gpt-4o-mini" in costs["by_model"]

    # The entry removed: the run goes back to genai-prices.
    price_file.write_text("prices: []\n")
    reprice_day(instance, day)
    back = stored_cost(database)
    assert back.price_data_version == PRICE_DATA_VERSION and back.total_cost != after.total_cost
