"""Values checked at the edge: what the columns cannot hold is stored as NULL with the reason, never a crash."""

import json
from datetime import UTC, datetime
from decimal import Decimal

import pytest
import sqlalchemy as sa

from llm_monitoring import recompute
from llm_monitoring.core.limits import MAX_COST, MAX_COUNT, MAX_REQUESTS
from llm_monitoring.core.parsing import parse_run_log
from llm_monitoring.core.pricing import price_run
from llm_monitoring.ingest import run_from_bytes
from llm_monitoring.storage.bulk import store_runs
from llm_monitoring.storage.engine import Database
from llm_monitoring.storage.schema import llm_logs
from llm_monitoring_tests.poison import log_bytes, log_document

WHEN = datetime(2026, 1, 1, tzinfo=UTC)


def parse(raw: bytes):
    return parse_run_log(raw, fallback_time=WHEN)


@pytest.mark.parametrize(
    ("literal", "problem"),
    [
        (str(2**70), "is over 9,223,372,036,854,775,807"),
        ("1e308", "is over"),
        ("1e400", "not a finite number"),
        ("NaN", "not a finite number"),
        ("-Infinity", "not a finite number"),
        ("-5", "is negative"),
        ("12.5", "not a whole number"),
    ],
)
def test_a_token_count_the_column_cannot_hold_is_null_with_a_note_and_unpriced(literal: str, problem: str):
    raw = log_bytes("count", input_tokens="@").replace(b'"@"', literal.encode())
    record = parse(raw)
    assert record.input_tokens is None and record.output_tokens == 20
    assert any(note.startswith("input_tokens:") and problem in note for note in record.value_notes), record.value_notes
    price = price_run(record)
    assert price.total_cost is None and price.status.startswith("invalid_usage: input_tokens:")


def test_counts_that_overflow_only_when_summed_over_responses_are_dropped():
    document = log_document("sum")
    response = document["messages"][1]
    response["usage"]["output_tokens"] = MAX_COUNT
    document["messages"].append({**response, "provider_response_id": "second"})
    response["provider_response_id"] = "first"
    record = parse(json.dumps(document).encode())
    assert record.output_tokens is None and record.input_tokens == 200
    assert any("add up to" in note for note in record.value_notes)


def test_a_negative_count_in_one_response_invalidates_the_sum():
    document = log_document("neg")
    response = document["messages"][1]
    document["messages"].append({**response, "usage": {"input_tokens": -1000, "output_tokens": 5}, "provider_response_id": "b"})
    response["provider_response_id"] = "a"
    record = parse(json.dumps(document).encode())
    assert record.input_tokens is None  # never 100 - 1000
    assert price_run(record).status.startswith("invalid_usage")


def test_stored_negative_counts_of_older_versions_are_never_priced_negative():
    record = parse(log_bytes("legacy"))
    legacy = type(record)(**{**record.__dict__, "input_tokens": -5, "value_notes": ()})
    price = price_run(legacy)
    assert price.total_cost is None and price.status.startswith("invalid_usage: input_tokens: -5 is negative")


def test_request_counts_and_reported_costs_beyond_their_columns_are_dropped():
    document = log_document("limits", details={"cost": 1e300})
    document["usage"] = {"input_tokens": 10, "output_tokens": 5, "requests": MAX_REQUESTS + 1}
    record = parse(json.dumps(document).encode())
    assert record.requests is None and record.provider_reported_cost is None
    assert [note.partition(":")[0] for note in record.value_notes] == ["provider_reported_cost", "requests"]
    assert price_run(record).status == "priced"  # the token counts are fine


def test_a_computed_cost_beyond_the_column_is_not_stored():
    record = parse(log_bytes("pricey", input_tokens=MAX_COUNT))
    price = price_run(record)
    assert price.total_cost is None
    assert price.status.startswith("invalid_usage: the cost of these token counts cannot be stored")
    assert "is over the largest cost stored" in price.status


@pytest.mark.parametrize("stamp", ["9999-12-31T23:00:00-05:00", "0001-01-01T01:00:00+05:00"])
def test_a_timestamp_that_overflows_in_utc_is_ignored_with_a_note(stamp: str):
    document = log_document("time")
    for message in document["messages"]:
        message["timestamp"] = stamp
        for part in message["parts"]:
            part["timestamp"] = stamp
    record = parse(json.dumps(document).encode())
    assert record.run_started_at == WHEN  # dated like a log without timestamps
    assert any("outside the years 1 to 9999" in note for note in record.value_notes)


def test_lone_surrogates_anywhere_become_replacement_characters():
    raw = log_bytes("surrogate").replace(b"question about", b"question \\udc80 about")
    document = json.loads(raw)
    document["messages"][1]["parts"] = [{"part_kind": "tool-call", "tool_name": "final_result", "args": '{"answer": "a\\ud800b"}'}]
    document["output"] = None
    record = parse(json.dumps(document).encode().replace(b"question about", b"question \\udc80 about"))
    assert "\ufffd" in record.user_prompt and record.assistant_answer == "a\ufffdb"
    for text in (record.user_prompt, record.assistant_answer):
        text.encode("utf-8")


def test_limits_are_those_of_the_columns():
    assert isinstance(llm_logs.c.total_input_tokens.type, sa.BigInteger) and MAX_COUNT == 2**63 - 1
    assert isinstance(llm_logs.c.requests.type, sa.Integer) and not isinstance(llm_logs.c.requests.type, sa.BigInteger)
    assert MAX_REQUESTS == 2**31 - 1
    money = llm_logs.c.total_cost.type.impl
    assert money.precision - money.scale == 12 and Decimal(10) ** 12 == MAX_COST


def test_invalid_usage_survives_repricing(database: Database):
    run = run_from_bytes(log_bytes("reprice", input_tokens=-5), "reprice.json", fallback_time=WHEN)
    store_runs(database, [run])
    report = recompute.reprice(database, datetime(2025, 1, 1, tzinfo=UTC), datetime(2027, 1, 1, tzinfo=UTC))
    assert report.runs == 1
    with database.connect() as connection:
        row = connection.execute(
            sa.select(llm_logs.c.total_input_tokens, llm_logs.c.pricing_status, llm_logs.c.value_notes, llm_logs.c.total_cost)
        ).one()
    assert row.total_input_tokens is None and row.total_cost is None
    assert row.pricing_status.startswith("invalid_usage: input_tokens: -5 is negative")
    assert json.loads(row.value_notes) == ["input_tokens: -5 is negative"]
