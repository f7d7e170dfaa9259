"""Feedback from Python and from the command line, on real SQLite and Postgres databases."""

from __future__ import annotations

from pathlib import Path

import pytest

from llm_monitoring.cli import main as cli_main
from llm_monitoring.feedback import (
    MAX_TEXT_CHARS,
    FeedbackError,
    FeedbackNotFound,
    InvalidFeedback,
    RunNotFound,
    delete_feedback,
    get_feedback,
    import_feedback,
    list_feedback,
    parse_id,
    save_feedback,
    update_feedback,
)
from llm_monitoring.storage.engine import Database
from llm_monitoring.storage.runs import count_rows
from llm_monitoring.storage.schema import feedback
from llm_monitoring_tests.test_app import sample_logs, store_logs


@pytest.fixture
def run_ids(database: Database) -> list[int]:
    return store_logs(database, sample_logs(3))


def test_seed_snippet_works_verbatim(monkeypatch: pytest.MonkeyPatch, database_url: str) -> None:
    monkeypatch.setenv("DATABASE_URL", database_url)
    seeded = Database(database_url)
    seeded.ensure_schema()
    [log_id] = store_logs(seeded, sample_logs(1))
    assert log_id == 1
    seeded.dispose()

    from llm_monitoring.db import Database as SeedDatabase
    from llm_monitoring.feedback import save_feedback as seed_save_feedback

    db = SeedDatabase()
    db.ensure_schema()
    new_id = seed_save_feedback(db, log_id=1, is_good=True, comments="Looks good", reference_answer=None)
    assert isinstance(new_id, int)
    [entry] = list_feedback(db, 1)
    assert (entry.id, entry.is_good, entry.comments, entry.reference_answer, entry.reviewer) == (new_id, True, "Looks good", None, None)
    assert entry.created_at.tzinfo is not None and entry.updated_at is None
    db.dispose()


def test_missing_run_raises_an_error_naming_it_and_stores_nothing(database: Database, run_ids: list[int]) -> None:
    with pytest.raises(RunNotFound, match=r"run #9999 does not exist") as caught:
        save_feedback(database, 9999, False, comments="?")
    assert caught.value.log_id == 9999
    assert count_rows(database, feedback) == 0


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        ({"log_id": "1", "is_good": True}, r"log_id must be an integer, got str '1'"),
        ({"log_id": True, "is_good": True}, r"log_id must be an integer, got bool"),
        ({"log_id": 1.0, "is_good": True}, r"log_id must be an integer, got float"),
        ({"log_id": 0, "is_good": True}, r"log_id must be a positive integer"),
        ({"log_id": 1, "is_good": "yes"}, r"is_good must be True or False, got str 'yes'"),
        ({"log_id": 1, "is_good": 1}, r"is_good must be True or False, got int 1"),
        ({"log_id": 1, "is_good": True, "comments": 5}, r"comments must be a string or None, got int 5"),
        ({"log_id": 1, "is_good": True, "reference_answer": ["a"]}, r"reference_answer must be a string or None"),
        ({"log_id": 1, "is_good": True, "reviewer": b"ana"}, r"reviewer must be a string or None"),
    ],
)
def test_wrong_types_are_refused_with_a_message_and_store_nothing(
    database: Database, run_ids: list[int], arguments: dict[str, object], message: str
) -> None:
    with pytest.raises(InvalidFeedback, match=message):
        save_feedback(database, **arguments)  # type: ignore[arg-type]
    with pytest.raises(TypeError):  # InvalidFeedback is a TypeError, for callers that expect one
        save_feedback(database, **arguments)  # type: ignore[arg-type]
    assert count_rows(database, feedback) == 0


def test_reviewer_is_stored_and_blank_texts_are_none(database: Database, run_ids: list[int]) -> None:
    feedback_id = save_feedback(database, run_ids[0], True, comments="  ", reference_answer="", reviewer="ana")
    entry = get_feedback(database, feedback_id)
    assert (entry.comments, entry.reference_answer, entry.reviewer) == (None, None, "ana")


def test_update_changes_only_given_fields_and_stamps_updated_at(database: Database, run_ids: list[int]) -> None:
    feedback_id = save_feedback(database, run_ids[0], True, comments="fine", reviewer="ana")
    updated = update_feedback(database, feedback_id, is_good=False, reference_answer="The answer is 42")
    assert (updated.is_good, updated.comments, updated.reference_answer, updated.reviewer) == (False, "fine", "The answer is 42", "ana")
    assert updated.updated_at is not None and updated.updated_at >= updated.created_at
    cleared = update_feedback(database, feedback_id, comments=None)
    assert cleared.comments is None and cleared.reference_answer == "The answer is 42"
    with pytest.raises(InvalidFeedback):
        update_feedback(database, feedback_id, is_good="no")  # type: ignore[arg-type]
    with pytest.raises(FeedbackNotFound, match="feedback #777 does not exist"):
        update_feedback(database, 777, is_good=True)


def test_delete_removes_one_feedback(database: Database, run_ids: list[int]) -> None:
    kept = save_feedback(database, run_ids[0], True)
    removed = save_feedback(database, run_ids[0], False)
    delete_feedback(database, removed)
    assert [entry.id for entry in list_feedback(database, run_ids[0])] == [kept]
    with pytest.raises(FeedbackNotFound):
        delete_feedback(database, removed)


def test_list_is_newest_first_and_filters_by_run_and_reviewer(database: Database, run_ids: list[int]) -> None:
    first = save_feedback(database, run_ids[0], True, reviewer="ana")
    second = save_feedback(database, run_ids[1], False, reviewer="bo")
    third = save_feedback(database, run_ids[0], False, reviewer="bo")
    assert [entry.id for entry in list_feedback(database)] == [third, second, first]
    assert [entry.id for entry in list_feedback(database, run_ids[0])] == [third, first]
    assert [entry.id for entry in list_feedback(database, reviewer="bo")] == [third, second]
    assert [entry.id for entry in list_feedback(database, limit=1)] == [third]


def test_feedback_goes_when_its_run_is_deleted(database: Database, run_ids: list[int]) -> None:
    save_feedback(database, run_ids[0], True)
    with database.transaction() as connection:
        connection.exec_driver_sql(f"DELETE FROM llm_logs WHERE id = {run_ids[0]}")
    assert list_feedback(database) == []


def test_csv_import_stores_good_rows_and_reports_bad_ones_by_line(tmp_path: Path, database: Database, run_ids: list[int]) -> None:
    a, b, c = run_ids
    path = tmp_path / "feedback.csv"
    path.write_text(
        "log_id,is_good,comments,reference_answer,reviewer\n"
        f"{a},yes,good one,,ana\n"  # line 2
        f"{b},maybe,,,\n"  # line 3: bad verdict
        f'{c},no,"two\nlines",ref,bo\n'  # lines 4-5
        "9999,1,,,\n"  # line 6: no such run
        "x,1,,,\n",  # line 7: not an id
        encoding="utf-8",
    )
    report = import_feedback(database, path)
    assert [(error.line, error.message) for error in report.errors] == [
        (3, "is_good must be true/false (or yes/no, good/bad, 1/0), got 'maybe'"),
        (6, "run #9999 does not exist in llm_logs"),
        (7, "log_id must be an integer, got 'x'"),
    ]
    stored = {entry.log_id: entry for entry in list_feedback(database)}
    assert set(stored) == {a, c}
    assert (stored[a].is_good, stored[a].comments, stored[a].reference_answer, stored[a].reviewer) == (True, "good one", None, "ana")
    assert (stored[c].is_good, stored[c].comments, stored[c].reviewer) == (False, "two\nlines", "bo")

    again = import_feedback(database, path)
    assert again.stored_ids == [] and again.duplicates == 2
    assert count_rows(database, feedback) == 2


def test_jsonl_import_reports_bad_json_and_unknown_fields(tmp_path: Path, database: Database, run_ids: list[int]) -> None:
    a, b, _ = run_ids
    path = tmp_path / "feedback.jsonl"
    path.write_text(
        f'{{"log_id": {a}, "is_good": true, "comments": "ok"}}\n'
        "\n"
        f'{{"log_id": {b}, "is_good": \n'
        f'{{"log_id": {b}, "is_good": false, "rating": 3}}\n'
        f'["not", "an", "object"]\n'
        f'{{"log_id": {b}, "is_good": "👎", "reviewer": "cy"}}\n',
        encoding="utf-8",
    )
    report = import_feedback(database, path)
    assert [error.line for error in report.errors] == [3, 4, 5]
    assert "invalid JSON" in report.errors[0].message and "rating" in report.errors[1].message
    assert sorted((entry.log_id, entry.is_good) for entry in list_feedback(database)) == [(a, True), (b, False)]


def test_cli_adds_feedback_and_refuses_a_missing_run(
    monkeypatch: pytest.MonkeyPatch, database: Database, database_url: str, run_ids: list[int], capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("DATABASE_URL", database_url)
    log_id = run_ids[1]
    assert cli_main(["feedback", str(log_id), "--bad", "--comment", "too short", "--reference", "longer", "--reviewer", "ana"]) == 0
    assert f"stored for run #{log_id}" in capsys.readouterr().out
    [entry] = list_feedback(database, log_id)
    assert (entry.is_good, entry.comments, entry.reference_answer, entry.reviewer) == (False, "too short", "longer", "ana")

    assert cli_main(["feedback", "9999", "--good"]) == 1
    assert "run #9999 does not exist" in capsys.readouterr().err
    assert count_rows(database, feedback) == 1

    with pytest.raises(SystemExit):
        cli_main(["feedback", str(log_id)])  # neither --good nor --bad
    with pytest.raises(SystemExit):
        cli_main(["feedback", str(log_id), "--good", "--bad"])
    with pytest.raises(SystemExit):
        cli_main(["feedback", "abc", "--good"])


def test_cli_import_reports_line_numbers_and_stores_the_good_rows(
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    database: Database,
    database_url: str,
    run_ids: list[int],
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setenv("DATABASE_URL", database_url)
    path = tmp_path / "import.csv"
    path.write_text(f"log_id,is_good\n{run_ids[0]},good\n{run_ids[1]},???\n", encoding="utf-8")
    assert cli_main(["feedback", "import", str(path)]) == 1
    captured = capsys.readouterr()
    assert "line 3: is_good must be" in captured.err
    assert "1 stored, 0 already stored, 1 rejected" in captured.out
    assert [entry.log_id for entry in list_feedback(database)] == [run_ids[0]]

    assert cli_main(["feedback", "list", str(run_ids[0])]) == 0
    assert f"run #{run_ids[0]}" in capsys.readouterr().out


# ---------------------------------------------------------------------------- malformed input


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("42", None),
        (" #42 ", None),
        ("0042", None),
        ("9223372036854775807", None),
        ("9223372036854775808", "is beyond the largest id the database holds"),
        ("99999999999999999999999999999", "is beyond the largest id the database holds"),
        ("9" * 5000, "is beyond the largest id the database holds"),  # int() refuses 4,301 digits
        ("²", "must be an integer written with the digits 0-9, got '²'"),
        ("٤٢", "must be an integer written with the digits 0-9"),
        ("1_000", "must be an integer, got '1_000'"),
        ("-3", "must be a positive integer, got '-3'"),
        ("0", "must be a positive integer, got 0"),
        ("1.0", "must be an integer, got '1.0'"),
        ("1e3", "must be an integer, got '1e3'"),
        ("", "log_id is missing"),
        ("  ", "log_id is missing"),
        ("\udcff", "must be an integer, got '\\udcff'"),
    ],
)
def test_id_text_is_plain_ascii_digits_within_the_column(text: str, message: str | None) -> None:
    if message is None:
        assert parse_id(text) == int(text.strip().lstrip("#"))
        return
    with pytest.raises(InvalidFeedback) as caught:
        parse_id(text)
    assert message in str(caught.value)
    assert len(str(caught.value)) < 200  # one readable line, however long the input


def test_ids_beyond_the_column_are_refused_from_python_too(database: Database, run_ids: list[int]) -> None:
    for log_id in (2**63, 10**5000, -1):
        with pytest.raises(InvalidFeedback):
            save_feedback(database, log_id, True)
    with pytest.raises(RunNotFound):
        save_feedback(database, 2**63 - 1, True)  # the largest id fits the column: the run is just not there
    assert count_rows(database, feedback) == 0


def test_text_that_cannot_be_stored_is_refused_by_name(database: Database, run_ids: list[int]) -> None:
    with pytest.raises(InvalidFeedback, match=r"comments contains a lone surrogate \(U\+D800 at character 3\)"):
        save_feedback(database, run_ids[0], True, comments="ok\ud800")
    with pytest.raises(InvalidFeedback, match=r"reference_answer has 1,000,001 characters; at most 1,000,000"):
        save_feedback(database, run_ids[0], True, reference_answer="x" * (MAX_TEXT_CHARS + 1))
    assert count_rows(database, feedback) == 0


def test_csv_import_reports_every_malformed_row_by_line_and_stores_the_rest(tmp_path: Path, database: Database, run_ids: list[int]) -> None:
    a, b, c = run_ids
    long_field = "x" * 200_000  # beyond the csv module's own limit of 131,072 characters
    too_long = "y" * MAX_TEXT_CHARS + "\n3,yes\n"  # a row-like line inside the field must not become a row
    rows = [
        b"log_id,is_good,comments,reference_answer,reviewer",
        f"{a},yes,{long_field},,ana".encode(),  # 2: stored, whole
        b"99999999999999999999999,yes,,,",  # 3
        b"9223372036854775808,yes,,,",  # 4
        b"9223372036854775807,yes,,,",  # 5: fits the column, no such run
        "²,yes,,,".encode(),  # 6
        "٤٢,yes,,,".encode(),  # 7
        b"-3,yes,,,",  # 8
        b"1.5,yes,,,",  # 9
        b",yes,,,",  # 10
        f"{b},,,,".encode(),  # 11
        f'{b},no,"{too_long}",,'.encode(),  # 12-14
        b"%d,no,caf\xe9,," % b,  # 15: Latin-1, not UTF-8
        b"%d,no,\xed\xa0\x80,," % b,  # 16: an encoded lone surrogate, not UTF-8 either
        f"{b},yes,,,,,".encode(),  # 17
        f"{c},bad,the last row,,bo".encode(),  # 18: stored: reading went on after every error
    ]
    path = tmp_path / "feedback.csv"
    path.write_bytes(b"\r\n".join(rows) + b"\r\n")

    report = import_feedback(database, path)

    assert [(error.line, error.message) for error in report.errors] == [
        (3, "log_id '99999999999999999999999' is beyond the largest id the database holds (9223372036854775807)"),
        (4, "log_id '9223372036854775808' is beyond the largest id the database holds (9223372036854775807)"),
        (5, "run #9223372036854775807 does not exist in llm_logs"),
        (6, "log_id must be an integer written with the digits 0-9, got '²'"),
        (7, "log_id must be an integer written with the digits 0-9, got '٤٢'"),
        (8, "log_id must be a positive integer, got '-3'"),
        (9, "log_id must be an integer, got '1.5'"),
        (10, "log_id is missing"),
        (11, "is_good is missing"),
        (12, "comments has 1,000,007 characters; at most 1,000,000 are stored"),
        (15, "not valid UTF-8 (byte 0xE9 in 'comments'); save the file as UTF-8"),
        (16, "not valid UTF-8 (byte 0xED in 'comments'); save the file as UTF-8"),
        (17, "7 values for 5 columns"),
    ]
    stored = {entry.log_id: entry for entry in list_feedback(database)}
    assert set(stored) == {a, c} and report.stored_ids
    assert stored[a].comments == long_field and stored[c].comments == "the last row"


def test_jsonl_import_reports_every_malformed_line(tmp_path: Path, database: Database, run_ids: list[int]) -> None:
    a, b, _ = run_ids
    lines = [
        f'{{"log_id": {a}, "is_good": true}}'.encode(),  # 1: stored
        b'{"log_id": 99999999999999999999999, "is_good": true}',  # 2
        b'{"log_id": 1e400, "is_good": true}',  # 3
        b'{"log_id": 1.0, "is_good": true}',  # 4
        b'{"log_id": -3, "is_good": true}',  # 5
        '{"log_id": "²", "is_good": true}'.encode(),  # 6
        f'{{"log_id": {b}, "is_good": true, "comments": "\\ud800"}}'.encode(),  # 7
        f'{{"log_id": {b}, "is_good": true, "comments": "caf\xe9"}}'.encode("latin-1"),  # 8
        b"[" * 100_000 + b"]" * 100_000,  # 9
        b'{"log_id": 1' + b"0" * 5000 + b', "is_good": true}',  # 10
        b'{"log_id": true, "is_good": true}',  # 11
        f'{{"log_id": {b}, "is_good": 2}}'.encode(),  # 12
        f'{{"log_id": {b}, "is_good": false, "reviewer": {{"name": "x"}}}}'.encode(),  # 13
        b'{"log_id": null, "is_good": true}',  # 14
        f'{{"log_id": {b}, "is_good": false, "comments": "fine"}}'.encode(),  # 15: stored
    ]
    path = tmp_path / "feedback.jsonl"
    path.write_bytes(b"\n".join(lines) + b"\n")

    report = import_feedback(database, path)

    messages = {error.line: error.message for error in report.errors}
    assert sorted(messages) == list(range(2, 15))
    assert "is beyond the largest id" in messages[2]
    assert messages[3] == "log_id must be an integer, got float inf"
    assert messages[4] == "log_id must be an integer, got float 1.0"
    assert messages[5] == "log_id must be a positive integer, got -3"
    assert messages[6] == "log_id must be an integer written with the digits 0-9, got '²'"
    assert messages[7].startswith("comments contains a lone surrogate (U+D800")
    assert messages[8].startswith("not valid UTF-8 (byte 0xE9 at column")
    assert messages[9] == "invalid JSON: nested too deeply"
    assert messages[10].startswith("invalid JSON: Exceeds the limit (4300 digits)")
    assert messages[11] == "log_id must be an integer, got bool True"
    assert messages[12] == "is_good must be True or False, got int 2"
    assert messages[13].startswith("reviewer must be a string or None, got dict")
    assert messages[14] == "log_id is missing"
    assert all(len(message) < 200 for message in messages.values())
    assert sorted((entry.log_id, entry.comments) for entry in list_feedback(database)) == [(a, None), (b, "fine")]


@pytest.mark.parametrize("suffix", [".csv", ".jsonl"])
def test_utf16_file_is_refused_in_one_line(tmp_path: Path, database: Database, run_ids: list[int], suffix: str) -> None:
    path = tmp_path / f"feedback{suffix}"
    path.write_text(f"log_id,is_good\n{run_ids[0]},yes\n", encoding="utf-16")
    with pytest.raises(FeedbackError, match=r"the file is UTF-16 text; save it as UTF-8"):
        import_feedback(database, path)
    assert count_rows(database, feedback) == 0


def test_cli_validates_a_log_id_as_the_import_does(
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    database: Database,
    database_url: str,
    run_ids: list[int],
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setenv("DATABASE_URL", database_url)
    for text in ("²", "-3", "99999999999999999999999", "1.0", "٤٢"):
        path = tmp_path / "one.csv"
        path.write_text(f"log_id,is_good\n{text},yes\n", encoding="utf-8")
        assert cli_main(["feedback", "import", str(path)]) == 1
        imported = capsys.readouterr().err.split("line 2: ", 1)[1].strip()
        with pytest.raises(SystemExit) as caught:
            cli_main(["feedback", text, "--good"])
        assert caught.value.code == 2
        assert capsys.readouterr().err.strip().endswith(imported.replace("log_id", "LOG_ID"))
        with pytest.raises(SystemExit):
            cli_main(["feedback", "list", text])
        assert "Traceback" not in capsys.readouterr().err
    # The largest id the column holds is a valid id, on SQLite and Postgres alike.
    assert cli_main(["feedback", str(2**63 - 1), "--good"]) == 1
    assert f"run #{2**63 - 1} does not exist" in capsys.readouterr().err
    assert cli_main(["feedback", str(run_ids[0]), "--good", "--comment", "caf\udce9"]) == 1
    assert "comments contains a lone surrogate (U+DCE9" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        cli_main(["feedback", "list", "--limit", "-5"])
    assert count_rows(database, feedback) == 0
