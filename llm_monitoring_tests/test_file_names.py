"""Any name the OS can list has one reversible text form, and names the ingest gives always fit."""

import os
import random

import pytest

from llm_monitoring.file_names import NAME_MAX_BYTES, fitting_name, name_from_text, name_text, numbered_name, plain_name_problem

# Characters that make escaping hard: backslashes, escape-like text, undecodable bytes, controls.
TRICKY = ["\\", "x", "u", "d", "8", "0", "f", "F", "a", "9", "7", "\udcff", "\udc80", "\n", "\x7f", "\x00", "é", "\ud800", " "]


def test_text_form_round_trips_any_name_and_is_one_line_of_utf8():
    rng = random.Random(3)
    for _ in range(50_000):
        name = "".join(rng.choice(TRICKY) for _ in range(rng.randint(0, 12)))
        text = name_text(name)
        assert name_from_text(text) == name
        text.encode("utf-8")  # never raises
        assert "\n" not in text and "\x00" not in text


@pytest.mark.parametrize("name", ["run.json", "_search_2025.json", "a\\b.json", "C:\\logs\\x.json", "café 🙂.json", "a\\x4.json"])
def test_ordinary_names_are_their_own_text_form(name: str):
    assert name_text(name) == name


def test_undecodable_bytes_show_as_escapes():
    name = os.fsdecode(b"run-\xff\xfe.json")
    assert name_text(name) == "run-\\xff\\xfe.json"
    assert name_text("literal-\\xff.json") == "literal-\\\\xff.json"  # never confused with the byte


def test_fitted_names_stay_within_the_limit_and_distinct():
    long_names = ["n" * 300 + ".json", "n" * 299 + "m.json", "é" * 200 + ".json", os.fsdecode(b"\xff" * 254 + b".json")]
    fitted = [fitting_name("_" + name) for name in long_names]
    assert all(len(os.fsencode(name)) <= NAME_MAX_BYTES for name in fitted)
    assert len(set(fitted)) == len(fitted)
    assert all(name.endswith(".json") for name in fitted)
    assert fitting_name("_" + "é" * 200 + ".json").encode("utf-8")  # cut between characters, still UTF-8
    numbered = {numbered_name("n" * 254 + ".json", number) for number in range(5)}
    assert len(numbered) == 5 and all(len(os.fsencode(name)) <= NAME_MAX_BYTES for name in numbered)
    assert fitting_name("run.json") == "run.json"


@pytest.mark.parametrize("name", ["", ".", "..", "../x.json", "/etc/passwd", "sub/x.json", "a\x00b"])
def test_paths_are_not_file_names(name: str):
    assert plain_name_problem(name)
