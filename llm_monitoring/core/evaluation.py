"""LogRecord -> list[CheckResult]: the seven rule-based checks, versioned.

Rules follow the prototype's intent with its known defects fixed (see the README's "Eval checks").
Bump EVALUATOR_VERSION whenever a rule changes: stored rows carry it, and re-evaluation
backfills replace only the rows of the current version.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from functools import lru_cache

from llm_monitoring.core.records import CheckResult, LogRecord

EVALUATOR_VERSION = "2"

_WORD = re.compile(r"[A-Za-z0-9_]+")
_URL = re.compile(r"https?://\S+", re.IGNORECASE)
_SENTENCE_END = re.compile(r"[.!?]\s+")
_LIST_ITEM = re.compile(r"^\s*(?:[-*•+]|\d+[.)])\s+\S", re.MULTILINE)
_REFERENCES_HEADING = re.compile(r"^\W*(references|sources)\W*$", re.IGNORECASE | re.MULTILINE)
_AT_LEAST = re.compile(r"at least (\d+)", re.IGNORECASE)
_AT_MOST = re.compile(r"at most (\d+)", re.IGNORECASE)

CLEAR_MIN_WORDS = 40
CLEAR_MAX_SENTENCE_WORDS = 35
MATCH_MIN_COVERAGE = 0.3
COMPLETE_MIN_WORDS = 120

# Words that say nothing about a prompt's topic; without them, coverage measures the topic.
_STOP_WORDS = frozenset(
    [
        "a",
        "an",
        "and",
        "are",
        "as",
        "at",
        "be",
        "by",
        "can",
        "could",
        "did",
        "do",
        "does",
        "for",
        "from",
        "had",
        "has",
        "have",
        "how",
        "i",
        "if",
        "in",
        "is",
        "it",
        "its",
        "me",
        "my",
        "of",
        "on",
        "or",
        "our",
        "should",
        "so",
        "that",
        "the",
        "their",
        "them",
        "then",
        "there",
        "these",
        "they",
        "this",
        "to",
        "was",
        "we",
        "were",
        "what",
        "when",
        "where",
        "which",
        "who",
        "why",
        "will",
        "with",
        "would",
        "you",
        "your",
        "about",
        "into",
        "than",
        "also",
        "just",
        "please",
        "tell",
    ]
)


def words(text: str | None) -> tuple[str, ...]:
    return _words(text) if text else ()


@lru_cache(maxsize=64)
def _words(text: str) -> tuple[str, ...]:
    # Several checks read the same answer and prompt: tokenize each text once per run.
    return tuple(_WORD.findall(text.lower()))


def search_call_count(record: LogRecord) -> int:
    """Tool calls (each call once) whose tool name contains "search": search, search_wikipedia, text_search..."""
    return sum(1 for name in record.tool_names if "search" in name.lower())


def has_references(record: LogRecord) -> bool:
    answer = record.assistant_answer or ""
    return bool(record.answer_references) or "references" in words(answer) or bool(_URL.search(answer))


def instructions_follow(record: LogRecord) -> CheckResult:
    name = "instructions_follow"
    if "references" not in words(record.instructions):
        return CheckResult(name, None, None, "not applicable: the instructions do not ask for references")
    if not record.assistant_answer:
        return CheckResult(name, False, 0.0, "the instructions ask for references but the run has no answer")
    if has_references(record):
        return CheckResult(name, True, 1.0, "the instructions ask for references and the answer has them")
    return CheckResult(name, False, 0.0, "the instructions ask for references but the answer has none (no URL, no references)")


def instructions_avoid(record: LogRecord) -> CheckResult:
    name = "instructions_avoid"
    instructions = record.instructions or ""
    at_least, at_most = _AT_LEAST.search(instructions), _AT_MOST.search(instructions)
    if not (at_least and at_most):
        return CheckResult(name, None, None, "not applicable: the instructions set no 'at least N' and 'at most M' search limits")
    low, high = int(at_least.group(1)), int(at_most.group(1))
    count = search_call_count(record)
    passed = low <= count <= high
    relation = "within" if passed else ("below" if count < low else "above")
    return CheckResult(name, passed, float(count), f"{count} search calls, {relation} the required [{low}, {high}]")


def answer_clear(record: LogRecord) -> CheckResult:
    name = "answer_clear"
    answer_words = words(record.assistant_answer)
    if not answer_words:
        return CheckResult(name, None, None, "not applicable: the run has no answer")
    sentences = [s for s in _SENTENCE_END.split(record.assistant_answer or "") if _WORD.search(s)]
    average = len(answer_words) / max(len(sentences), 1)
    passed = len(answer_words) >= CLEAR_MIN_WORDS and average <= CLEAR_MAX_SENTENCE_WORDS
    problems = []
    if len(answer_words) < CLEAR_MIN_WORDS:
        problems.append(f"fewer than {CLEAR_MIN_WORDS} words")
    if average > CLEAR_MAX_SENTENCE_WORDS:
        problems.append(f"sentences longer than {CLEAR_MAX_SENTENCE_WORDS} words on average")
    verdict = "clear" if passed else "unclear: " + " and ".join(problems)
    return CheckResult(name, passed, round(average, 2), f"{len(answer_words)} words, {average:.1f} words per sentence: {verdict}")


def answer_match(record: LogRecord) -> CheckResult:
    """Share of the prompt's topic words found in the answer.

    The prototype used Jaccard overlap of the two word sets, which falls with the answer's length,
    so long good answers failed. Coverage of the prompt does not punish length; the Jaccard value
    stays in the details for comparison.
    """
    name = "answer_match"
    prompt_words, answer_words = set(words(record.user_prompt)), set(words(record.assistant_answer))
    if not prompt_words or not answer_words:
        return CheckResult(name, None, None, "not applicable: the run has no prompt or no answer")
    topic = prompt_words - _STOP_WORDS or prompt_words
    coverage = len(topic & answer_words) / len(topic)
    jaccard = len(prompt_words & answer_words) / len(prompt_words | answer_words)
    passed = coverage >= MATCH_MIN_COVERAGE
    verdict = "at or above" if passed else "below"
    return CheckResult(
        name,
        passed,
        round(coverage, 4),
        f"{len(topic & answer_words)} of {len(topic)} prompt topic words in the answer "
        f"(coverage {coverage:.2f}, {verdict} {MATCH_MIN_COVERAGE}; Jaccard {jaccard:.3f})",
    )


def answer_citations(record: LogRecord) -> CheckResult:
    name = "answer_citations"
    answer = record.assistant_answer
    if not answer or not answer.strip():
        return CheckResult(name, None, None, "not applicable: the run has no answer")
    urls = len(_URL.findall(answer))
    section = bool(record.answer_references) or bool(_REFERENCES_HEADING.search(answer)) or "references" in words(answer)
    if urls or section:
        found = [f"{urls} URL{'s' if urls != 1 else ''}"] if urls else []
        found += ["a references section"] if section else []
        return CheckResult(name, True, 1.0, "cites sources: " + " and ".join(found))
    return CheckResult(name, False, 0.0, "no URL and no references section in the answer")


def completeness(record: LogRecord) -> CheckResult:
    name = "completeness"
    answer = record.assistant_answer
    answer_words = words(answer)
    if not answer_words:
        return CheckResult(name, None, None, "not applicable: the run has no answer")
    items = len(_LIST_ITEM.findall(answer or ""))
    passed = len(answer_words) >= COMPLETE_MIN_WORDS or items > 0
    reason = f"{len(answer_words)} words, {items} list items"
    rule = f"needs at least {COMPLETE_MIN_WORDS} words or a list"
    return CheckResult(name, passed, float(len(answer_words)), f"{reason}: {'complete' if passed else rule}")


def tool_call_search(record: LogRecord) -> CheckResult:
    count = search_call_count(record)
    if count:
        names = sorted({n for n in record.tool_names if "search" in n.lower()})
        return CheckResult("tool_call_search", True, float(count), f"{count} search calls ({', '.join(names)})")
    called = ", ".join(sorted(set(record.tool_names))) or "no tools"
    return CheckResult("tool_call_search", False, 0.0, f"no search tool was called (called: {called})")


CHECKS: tuple[Callable[[LogRecord], CheckResult], ...] = (
    instructions_follow,
    instructions_avoid,
    answer_clear,
    answer_match,
    answer_citations,
    completeness,
    tool_call_search,
)
CHECK_NAMES: tuple[str, ...] = tuple(check.__name__ for check in CHECKS)


def evaluate_run(record: LogRecord) -> list[CheckResult]:
    return [check(record) for check in CHECKS]
