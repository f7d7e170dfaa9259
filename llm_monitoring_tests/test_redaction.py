"""Redaction before storage: the detectors, the raw log kept valid JSON, the settings, and a log full
of personal data and keys ingested with REDACT=all leaving none of it in any table."""

from __future__ import annotations

import hashlib
import json
import random
import shutil
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa
from streamlit.testing.v1 import AppTest

from llm_monitoring.config import InvalidSetting
from llm_monitoring.core.formats import parse_stored_run
from llm_monitoring.core.redaction import DETECTOR_NAMES, InvalidRedaction, Redactor, detector_names
from llm_monitoring.ingest import run_from_bytes
from llm_monitoring.policies import current_redactor
from llm_monitoring.recompute import reevaluate
from llm_monitoring.runner import run_ingest
from llm_monitoring.samples import PROFILES, make_run_log
from llm_monitoring.storage.bulk import store_runs
from llm_monitoring.storage.engine import Database
from llm_monitoring.storage.schema import llm_logs, metadata

APP = Path(__file__).resolve().parents[1] / "llm_monitoring" / "app.py"
EVERYTHING = Redactor.of(DETECTOR_NAMES)

PLANTED = {
    "email": "jane.doe@example.com",
    "card": "4111 1111 1111 1111",
    "phone": "+1 415-555-0132",
    "openai": "sk-proj-Ab3dEf6hIj9kLm2nOp5qRs8tUv1wXy4z",
    "aws": "AKIAIOSFODNN7EXAMPLE",
}


def redact(text: str, redactor: Redactor = EVERYTHING) -> tuple[str, Counter[str]]:
    counts: Counter[str] = Counter()
    return redactor.text(text, counts) or "", counts


# ---------------------------------------------------------------------------- detectors


@pytest.mark.parametrize(
    ("detector", "value"),
    [
        ("email", "jane.doe+billing@mail.example.co.uk"),
        ("email", "a_b-c@sub-domain.example.org"),
        ("card", "4111111111111111"),
        ("card", "5500-0000-0000-0004"),
        ("card", "3782 822463 10005"),  # Amex, grouped 4-6-5
        ("phone", "+44 20 7946 0958"),
        ("phone", "(415) 555-0199"),
        ("phone", "415.555.0199"),
        ("phone", "020 7946 0958"),
        ("ip", "192.168.10.254"),
        ("ip", "2001:db8:85a3::8a2e:370:7334"),
        ("secret", "sk-ant-api03-" + "aB3" * 30),
        ("secret", "sk-Ab3dEf6hIj9kLm2nOp5qRs8tUv1wXy4zAb3dEf6hIj9kLm"),
        ("secret", "AKIAIOSFODNN7EXAMPLE"),
        ("secret", "aws_secret_access_key = wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"),
        ("secret", "ghp_" + "a1B2c3D4e5" * 4),
        ("secret", "github_pat_11ABCDEFG0123456789_abcdefghijklmnopqrstuvwxyz"),
        ("secret", "AIzaSyA-1234567890abcdefghijklmnopqrstu"),
        ("secret", "xoxb-123456789012-1234567890123-AbCdEfGhIjKlMnOpQrStUvWx"),
        ("secret", "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0.dozjgNryP4J3jVmNHl0w5N_XgL0n3I9PlFUP0THsR8U"),
        ("secret", "-----BEGIN RSA PRIVATE KEY-----\nMIIEpAIBAAKCAQEA7\nabc/def+==\n-----END RSA PRIVATE KEY-----"),
        ("secret", "-----BEGIN OPENSSH PRIVATE KEY-----\nb3BlbnNzaC1rZXktdjEAAAAA (cut off"),
    ],
)
def test_each_detector_replaces_what_it_is_for_with_its_marker(detector: str, value: str):
    text, counts = redact(f"see: {value}, then stop.")
    assert value not in text
    assert text == f"see: [REDACTED:{detector}], then stop." or (detector == "secret" and "PRIVATE KEY" in value)
    assert counts == {detector: 1}


@pytest.mark.parametrize(
    "text",
    [
        "gpt-4o-mini-2024-07-18 and claude-3-5-sonnet-20241022",  # model names with dates
        "2026-01-05T09:00:00.123456+00:00",  # timestamps
        "resp_1a2b3c4d5e6f7a8b call_0011223344556677",  # ids
        "4111 1111 1111 1112",  # fails the Luhn check
        "1234567812345678",  # Luhn-valid but no card issuer starts with 1
        "version 1.2.3, port 8080, 99.5% of 120 000 tokens",
        "999.1.1.1 is no address",  # an octet over 255
        "std::vector<int> and a::b",  # C++, not IPv6
        "12:30:45 and 00:1a:2b:3c:4d:5e",  # a time and a MAC address
        "task-management-framework-for-teams and sk-learn-compatible-estimators",  # prose, not keys
        "user@localhost and @decorator and email me",  # no domain
        "call 123-456-7890",  # area codes never start with 1
    ],
)
def test_ordinary_text_is_left_alone(text: str):
    assert redact(text) == (text, Counter())


def test_the_digits_of_a_key_are_never_counted_as_a_card_or_a_phone():
    text, counts = redact("key sk-proj-4111111111111111abcDEF and AKIA4111111111111111")
    assert counts == {"secret": 2}
    assert text == "key [REDACTED:secret] and [REDACTED:secret]"


@pytest.mark.parametrize(
    ("setting", "names"),
    [
        ("", ("secret",)),
        ("all", DETECTOR_NAMES),
        ("none", ()),
        (" Email , card ", ("email", "card")),
        ("phone,secret", ("secret", "phone")),  # secrets always first
    ],
)
def test_redact_setting(setting: str, names: tuple[str, ...]):
    assert detector_names(setting) == names


@pytest.mark.parametrize("setting", ["emails", "email,cards", ",", "all,email"])
def test_a_redact_setting_naming_no_detector_is_one_error_listing_them(setting: str):
    with pytest.raises(
        InvalidRedaction, match=r"REDACT=.*(unknown detector|no detector named).*secret, email, card, ip, phone, or all, or none"
    ):
        detector_names(setting)


# ---------------------------------------------------------------------------- the raw log stays JSON


def test_raw_log_is_redacted_as_json_and_stays_valid_next_to_escapes_and_unicode():
    document = {
        "messages": [{"parts": [{"content": "Grüße,\n" + PLANTED["email"] + '\t"quoted" \\ ' + PLANTED["card"]}]}],
        PLANTED["email"]: ["a key as a key", 3, 4.5, None, True],
        "big": 123456789012345678901234567890,
    }
    text = json.dumps(document, indent=2)
    counts: Counter[str] = Counter()
    redacted = EVERYTHING.json_text(text, counts)
    parsed = json.loads(redacted)
    assert parsed["messages"][0]["parts"][0]["content"] == 'Grüße,\n[REDACTED:email]\t"quoted" \\ [REDACTED:card]'
    assert parsed["[REDACTED:email]"] == ["a key as a key", 3, 4.5, None, True]
    assert parsed["big"] == document["big"]
    assert counts == {"email": 2, "card": 1}
    assert "Grüße" in redacted  # written as text, not \\u escapes


def test_a_log_with_nothing_to_redact_is_kept_byte_for_byte():
    text = json.dumps(make_run_log(random.Random(1), datetime(2026, 1, 5, tzinfo=UTC), profile=PROFILES[0]), indent=2)
    counts: Counter[str] = Counter()
    assert EVERYTHING.json_text(text, counts) is text
    assert not counts


def test_an_escaped_character_cannot_hide_a_value_from_the_quick_scan():
    text = '{"content": "write to jane\\u0040example.com or \\u0073k-proj-Ab3dEf6hIj9kLm2nOp5qRs8tUv1wXy4z"}'
    counts: Counter[str] = Counter()
    redacted = json.loads(EVERYTHING.json_text(text, counts))
    assert redacted == {"content": "write to [REDACTED:email] or [REDACTED:secret]"}


def test_extra_patterns_from_a_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    patterns = tmp_path / "patterns.yaml"
    patterns.write_text("patterns:\n  employee_id: 'EMP-[0-9]{6}'\n")
    monkeypatch.setenv("REDACT_PATTERNS_FILE", str(patterns))
    monkeypatch.setenv("REDACT", "email")
    redactor = current_redactor()
    assert redactor.names == ("email", "employee_id")
    assert redact("EMP-123456 wrote to a@b.io", redactor) == (
        "[REDACTED:employee_id] wrote to [REDACTED:email]",
        Counter(employee_id=1, email=1),
    )
    patterns.write_text("patterns:\n  secret: 'x+'\n")
    with pytest.raises(InvalidSetting, match="pattern 'secret': the name is a built-in detector's"):
        current_redactor()
    patterns.write_text("patterns:\n  broken: '(unclosed'\n")
    with pytest.raises(InvalidSetting, match="pattern 'broken': not a valid regular expression"):
        current_redactor()
    monkeypatch.setenv("REDACT", "none")  # none means nothing, extra patterns included
    assert not current_redactor().active


# ---------------------------------------------------------------------------- ingest with REDACT=all


def planted_log(started: datetime) -> dict:
    log = make_run_log(random.Random(5), started, profile=PROFILES[0])
    secrets = " ".join(PLANTED.values())
    prompt = log["messages"][0]["parts"][0]
    prompt["content"] = f"Please update my account: {secrets}"
    log["messages"][1]["parts"][0]["args"] = json.dumps({"query": f"account of {PLANTED['email']} card {PLANTED['card']}"})
    log["messages"][2]["parts"][0]["content"] = [{"filename": "crm.md", "content": f"Customer phone {PLANTED['phone']}"}]
    log["messages"][-1]["parts"][0]["content"] = f"Done. I used key {PLANTED['openai']} and {PLANTED['aws']} for {PLANTED['email']}."
    log["output"] = log["messages"][-1]["parts"][0]["content"]
    return log


def every_stored_text(database: Database) -> str:
    """Every row of every table, as text."""
    parts = []
    with database.connect() as connection:
        for table in metadata.sorted_tables:
            parts += [repr(tuple(row)) for row in connection.execute(sa.select(table))]
    return "\n".join(parts)


def test_with_redact_all_no_planted_value_is_in_any_column_of_any_table_and_the_counts_are_stored(
    env, database: Database, logs_dir: Path, monkeypatch: pytest.MonkeyPatch
):
    monkeypatch.setenv("REDACT", "all")
    started = datetime(2026, 1, 5, 9, tzinfo=UTC)
    raw = json.dumps(planted_log(started), indent=2).encode()
    (logs_dir / "account.json").write_bytes(raw)
    assert all(value in raw.decode() for value in PLANTED.values())

    assert run_ingest().metadata["runs_stored"] == 1
    stored = every_stored_text(database)
    for name, value in PLANTED.items():
        assert value not in stored, f"the {name} {value!r} was stored"
        assert value.replace(" ", "") not in stored
    with database.connect() as connection:
        row = connection.execute(sa.select(llm_logs)).one()
    # Every occurrence in the log: the prompt, the tool call and return, the answer and its copy in "output".
    assert json.loads(row.redactions) == {"secret": 6, "email": 4, "card": 2, "phone": 2}
    assert row.content_hash == hashlib.sha256(raw).hexdigest()  # the file's bytes, as before
    assert "[REDACTED:email]" in row.user_prompt and "[REDACTED:secret]" in row.assistant_answer
    record = parse_stored_run(row.raw_json)  # still a run log the parser reads
    assert record.model == "gpt-4o-mini" and record.input_tokens == row.total_input_tokens
    outcome = reevaluate(database, started - timedelta(days=1), started + timedelta(days=1)).outcome
    assert (outcome.evaluated, outcome.skipped) == (1, 0)

    # The same bytes again: the hash of the original is stored, so nothing new is stored.
    shutil.copy(logs_dir / "_account.json", logs_dir / "again.json")
    assert run_ingest().metadata["already_stored"] == 1


def test_by_default_keys_are_redacted_and_other_values_kept(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.delenv("REDACT", raising=False)
    raw = json.dumps(planted_log(datetime(2026, 1, 5, 9, tzinfo=UTC))).encode()
    run = run_from_bytes(raw, "account.json")
    assert PLANTED["openai"] not in run.raw_json and PLANTED["aws"] not in run.raw_json
    assert PLANTED["email"] in run.raw_json and PLANTED["card"] in run.raw_json
    assert json.loads(run.redactions) == {"secret": 6}
    monkeypatch.setenv("REDACT", "none")
    unredacted = run_from_bytes(raw, "account.json")
    assert unredacted.raw_json == raw.decode() and unredacted.redactions is None


def test_the_review_app_says_what_was_redacted(sqlite_url: str, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("REDACT", "all")
    monkeypatch.setenv("DATABASE_URL", sqlite_url)
    database = Database(sqlite_url)
    database.ensure_schema()
    store_runs(database, [run_from_bytes(json.dumps(planted_log(datetime(2026, 1, 5, 9, tzinfo=UTC))).encode(), "account.json")])
    database.dispose()
    app = AppTest.from_file(str(APP), default_timeout=60)
    app.run()
    assert not app.exception
    assert [item.value for item in app.info] == ["Redacted before storage: 2 card, 4 email, 2 phone, 6 secret"]
