"""Redaction of personal data and secrets before anything is stored: detectors, markers, counts.

Each detector is a regular expression over ASCII text (so a match never holds a character JSON
escapes) plus, where a pattern alone would match too much, a check of the candidate: the Luhn
checksum of a card number, the octets of an IP address, the digit count of a phone number. A match
becomes `[REDACTED:<detector>]`. Secrets go first, so that the digits inside a key are never
counted as a card or a phone number.

A raw log is redacted as JSON: its strings (keys and values) are redacted and the document is
written again, so it stays valid and parses to the same structure. A log in which no detector can
match (one scan of the text) is kept byte for byte as it was.

Pure: no settings and no files (llm_monitoring/policies.py reads REDACT and the patterns file).
"""

from __future__ import annotations

import ipaddress
import json
import re
from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field, replace
from functools import lru_cache
from typing import Any

import re2

from llm_monitoring.core.records import CheckResult, LogRecord, ToolCall

MARKER = "[REDACTED:{}]"
ALL = "all"
NONE = "none"
DEFAULT_SETTING = "secret"


class InvalidRedaction(ValueError):
    """A REDACT value or an extra-patterns file that cannot be used; the message says which part."""


@dataclass(frozen=True)
class Detector:
    name: str
    pattern: re.Pattern[str]
    # Whether a candidate match is real (a checksum, a range); None: every match is.
    valid: Callable[[str], bool] | None = None
    # A looser pattern that matches wherever `pattern` could match, in a string or in the JSON text
    # of a log (even next to an escape sequence, \n before an e-mail address), run by RE2: Python's
    # regular expressions scan text at a few MB/s where no literal starts them (the look-behinds and
    # checks of `pattern` need them), RE2's automaton at 100 MB/s and more. So a log, and each of its
    # strings, meets `pattern` only when its trigger matched.
    trigger: str = ""
    # A faster test still, where one substring says it ("@" for an e-mail address).
    quick: Callable[[str], bool] | None = None

    def possible_in(self, text: str) -> bool:
        if self.quick is not None and not self.quick(text):
            return False
        return not self.trigger or _compiled_trigger(self.trigger).search(text) is not None

    def redact(self, text: str, counts: Counter[str]) -> str:
        if not self.possible_in(text):
            return text
        marker = MARKER.format(self.name)

        def replace_match(match: re.Match[str]) -> str:
            found = match.group(0)
            if self.valid is not None and not self.valid(found):
                return found
            counts[self.name] += 1
            return marker

        return self.pattern.sub(replace_match, text)


# ---------------------------------------------------------------------------- checks of candidates


def luhn_valid(digits: str) -> bool:
    total = 0
    for position, character in enumerate(reversed(digits)):
        value = ord(character) - 48
        if position % 2:
            value = value * 2 - 9 if value > 4 else value * 2
        total += value
    return total % 10 == 0


def _card(candidate: str) -> bool:
    digits = re.sub(r"[ -]", "", candidate)
    # Issuers' first digits (2 and 5 Mastercard, 3 Amex/Diners/JCB, 4 Visa, 6 Discover/UnionPay):
    # a long number starting otherwise is an id, not a card.
    return 13 <= len(digits) <= 19 and digits[0] in "23456" and luhn_valid(digits)


def _phone(candidate: str) -> bool:
    digits = sum(character.isdigit() for character in candidate)
    if candidate.startswith("+"):
        return 8 <= digits <= 15  # E.164: country code and number, 15 digits at most
    if candidate.startswith("0"):
        return 9 <= digits <= 12
    bare = re.sub(r"\D", "", candidate)
    # North American numbers: area code and exchange start with 2-9.
    return len(bare) == 10 and bare[0] in "23456789" and bare[3] in "23456789"


def _ip(candidate: str) -> bool:
    try:
        address = ipaddress.ip_address(candidate)
    except ValueError:
        return False
    if address.version == 6:
        # "d::" (std::vector) and "::1" parse as addresses: ask for three groups at least.
        return sum(1 for group in candidate.split(":") if group) >= 3
    return True


def _random_token(candidate: str) -> bool:
    # Keys are random: a letter and a digit somewhere after the prefix. "sk-learn-compatible-models" is prose.
    body = candidate.split("-", 1)[-1]
    return any(character.isdigit() for character in body) and any(character.isalpha() for character in body)


# ---------------------------------------------------------------------------- the detectors

_A = re.ASCII

_SECRET_PATTERNS = (
    # OpenAI (sk-..., sk-proj-..., sk-svcacct-...) and Anthropic (sk-ant-api03-...) keys.
    r"(?<![A-Za-z0-9_-])sk-[A-Za-z0-9_-]{20,}",
    # AWS access key ids, and a secret access key where it is named.
    r"(?<![A-Z0-9])(?:AKIA|ASIA|ABIA|ACCA|AGPA|AIDA|AIPA|ANPA|ANVA|AROA|APKA|ASCA|A3T[A-Z0-9])[A-Z0-9]{16}(?![A-Z0-9])",
    r"(?i:aws_?secret_?access_?key)[\"' ]*[:=][\"' ]*[A-Za-z0-9/+=]{40}(?![A-Za-z0-9/+=])",
    # GitHub tokens (classic and fine-grained).
    r"(?<![A-Za-z0-9_])gh[pousr]_[A-Za-z0-9]{36,255}",
    r"(?<![A-Za-z0-9_])github_pat_[A-Za-z0-9_]{22,255}",
    # Google API keys and OAuth access tokens.
    r"(?<![A-Za-z0-9_-])AIza[0-9A-Za-z_-]{35}",
    r"(?<![A-Za-z0-9_-])ya29\.[0-9A-Za-z_-]{20,}",
    # Slack tokens and incoming-webhook URLs.
    r"(?<![A-Za-z0-9_-])xox[abposr]-[A-Za-z0-9-]{10,}",
    r"(?<![A-Za-z0-9_-])xapp-[A-Za-z0-9-]{10,}",
    r"https://hooks\.slack\.com/services/[A-Za-z0-9_/]{20,}",
    # JSON Web Tokens: base64url header and payload, both JSON objects ("eyJ" is '{"').
    r"(?<![A-Za-z0-9_-])eyJ[A-Za-z0-9_-]{8,}\.eyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]*",
    # Private keys in PEM, to their END line (or the end of the text when it was cut off).
    r"-----BEGIN (?:[A-Z0-9]+ )*PRIVATE KEY(?: BLOCK)?-----(?:.*?-----END (?:[A-Z0-9]+ )*PRIVATE KEY(?: BLOCK)?-----|.*\Z)",
)


def _secret_valid(candidate: str) -> bool:
    if candidate.startswith("sk-"):
        return _random_token(candidate)
    return True


DETECTORS: dict[str, Detector] = {
    detector.name: detector
    for detector in (
        Detector(
            "secret",
            re.compile("|".join(f"(?:{pattern})" for pattern in _SECRET_PATTERNS), _A | re.DOTALL),
            _secret_valid,
            trigger=r"sk-|A(?:KIA|SIA|BIA|CCA|GPA|IDA|IPA|NPA|NVA|ROA|PKA|SCA|3T[A-Z0-9])[A-Z0-9]{16}|(?i:secret_?access)|gh[pousr]_|github_pat_"
            r"|AIza|ya29\.|xox[abposr]-|xapp-|hooks\.slack\.com|eyJ|-----BEGIN",
        ),
        Detector(
            "email",
            # The look-behind starts a match only where a run of address characters starts, so a long
            # run without "@" is scanned once, not once per character.
            re.compile(
                r"(?<![A-Za-z0-9._%+-])[A-Za-z0-9._%+-]{1,64}@(?:[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?\.)+[A-Za-z]{2,24}(?![A-Za-z0-9-])",
                _A,
            ),
            trigger=r"[A-Za-z0-9._%+-]@[A-Za-z0-9]",
            quick=lambda text: "@" in text,
        ),
        Detector(
            "card",
            # Not inside a word, a decimal fraction or a dashed id (a UUID's digits can pass the checksum).
            re.compile(r"(?<![0-9A-Za-z_.,-])(?:[0-9][ -]?){12,18}[0-9](?![0-9A-Za-z_-])", _A),
            _card,
            trigger=r"[0-9](?:[ -]?[0-9]){12}",
        ),
        Detector(
            "ip",
            re.compile(
                r"(?<![0-9.])(?:[0-9]{1,3}\.){3}[0-9]{1,3}(?!\.?[0-9])"
                r"|(?<![0-9A-Fa-f:])(?:[0-9A-Fa-f]{0,4}:){2,7}[0-9A-Fa-f]{0,4}(?![0-9A-Fa-f:])",
                _A,
            ),
            _ip,
            trigger=r"[0-9]\.[0-9]{1,3}\.[0-9]{1,3}\.[0-9]|[0-9A-Fa-f]{1,4}::|::[0-9A-Fa-f]{1,4}|[0-9A-Fa-f]{1,4}(?::[0-9A-Fa-f]{1,4}){3}",
        ),
        Detector(
            "phone",
            re.compile(
                # International (+44 20 7946 0958, +1-415-555-0100), national with a trunk 0
                # (020 7946 0958), North American ((415) 555-0100, 415.555.0100).
                r"(?<![\w+])\+[0-9]{1,3}(?:[ .-]?\(?[0-9]{1,4}\)?){2,5}(?![0-9])"
                r"|(?<![\w])0[0-9]{2,4}[ -][0-9]{3,4}[ -]?[0-9]{3,4}(?![0-9])"
                r"|(?<![\w])(?:\([0-9]{3}\) ?|[0-9]{3}[ .-])[0-9]{3}[ .-][0-9]{4}(?![0-9])",
                _A,
            ),
            _phone,
            trigger=r"\+[0-9][0-9 .()-]{6,}[0-9]|0[0-9]{2,4}[ -][0-9]{3}|\([0-9]{3}\)|[0-9]{3}[ .-][0-9]{3}[ .-][0-9]{4}",
        ),
    )
}
DETECTOR_NAMES = tuple(DETECTORS)  # the order they run in: secrets first


def detector_names(setting: str) -> tuple[str, ...]:
    """The detectors a REDACT value names: a comma list, `all` or `none` (empty: the default)."""
    text = setting.strip().lower() or DEFAULT_SETTING
    names = [name.strip() for name in text.split(",") if name.strip()]
    if names == [ALL]:
        return DETECTOR_NAMES
    if names == [NONE]:
        return ()
    unknown = [name for name in names if name not in DETECTORS]
    if unknown or not names:
        problem = f"unknown detector {', '.join(map(repr, unknown))}" if unknown else "no detector named"
        raise InvalidRedaction(f"REDACT={setting!r}: {problem}; use a comma list of {', '.join(DETECTOR_NAMES)}, or all, or none")
    return tuple(name for name in DETECTOR_NAMES if name in names)


_PATTERN_NAME = re.compile(r"[a-z][a-z0-9_]{0,31}")


def extra_detectors(patterns: Mapping[str, Any], source: str) -> tuple[Detector, ...]:
    """Detectors from an extra-patterns file's `patterns:` mapping (name -> regular expression)."""
    detectors = []
    for name, pattern in patterns.items():
        where = f"redaction patterns file {source}, pattern {name!r}"
        if not isinstance(name, str) or not _PATTERN_NAME.fullmatch(name):
            raise InvalidRedaction(f"{where}: a name is lower-case letters, digits and _ (at most 32)")
        if name in DETECTORS:
            raise InvalidRedaction(f"{where}: the name is a built-in detector's; choose another")
        if not isinstance(pattern, str) or not pattern:
            raise InvalidRedaction(f"{where}: the pattern must be a regular expression, got {pattern!r}")
        try:
            compiled = re.compile(pattern)
        except re.error as error:
            raise InvalidRedaction(f"{where}: not a valid regular expression ({error})") from None
        if compiled.match(""):
            raise InvalidRedaction(f"{where}: the pattern matches empty text")
        detectors.append(Detector(name, compiled))
    return tuple(detectors)


# ---------------------------------------------------------------------------- the redactor


@dataclass(frozen=True)
class Redaction:
    """What was redacted: matches per detector."""

    counts: Mapping[str, int] = field(default_factory=dict)

    @property
    def total(self) -> int:
        return sum(self.counts.values())

    def as_json(self) -> str | None:
        return json.dumps(dict(sorted(self.counts.items()))) if self.counts else None


@dataclass(frozen=True)
class Redactor:
    detectors: tuple[Detector, ...] = ()

    @classmethod
    def of(cls, names: Iterable[str], extra: Iterable[Detector] = ()) -> Redactor:
        return cls((*(DETECTORS[name] for name in names), *extra))

    @property
    def active(self) -> bool:
        return bool(self.detectors)

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(detector.name for detector in self.detectors)

    def text(self, text: str | None, counts: Counter[str]) -> str | None:
        if not text:
            return text
        for detector in self.detectors:
            text = detector.redact(text, counts)
        return text

    def might_match(self, text: str) -> bool:
        """False only when no detector can match in any string of the JSON text `text`.

        Detectors match ASCII characters JSON writes as they are; a writer that escapes such a
        character anyway (\\u0040 for "@") hides it from the triggers, so the strings are looked at."""
        # Extra patterns have no trigger: a log is then looked at string by string.
        if any(not detector.trigger for detector in self.detectors):
            return True
        return any(detector.possible_in(text) for detector in self.detectors) or _ESCAPED_ASCII.search(text) is not None

    def json_text(self, text: str, counts: Counter[str]) -> str:
        """A JSON document with every string redacted, written again; `text` itself when nothing matched."""
        if not self.active or not self.might_match(text):
            return text
        found: Counter[str] = Counter()
        document = json.loads(text)
        redacted = self._walk(document, found)
        if not found:
            return text
        counts.update(found)
        written = json.dumps(redacted, ensure_ascii=False)
        if _LONE_SURROGATE.search(written):
            # A lone surrogate (an escaped half of a pair) cannot be stored as UTF-8: keep it escaped.
            written = json.dumps(redacted)
        return written

    def _walk(self, node: Any, counts: Counter[str]) -> Any:
        if isinstance(node, str):
            return self.text(node, counts)
        if isinstance(node, list):
            return [self._walk(item, counts) for item in node]
        if isinstance(node, dict):
            return {self.text(key, counts): self._walk(value, counts) for key, value in node.items()}
        return node

    def record(self, record: LogRecord, counts: Counter[str]) -> LogRecord:
        """The record's texts redacted. Provider and model stay: they name what priced the run."""
        text = self.text
        return replace(
            record,
            agent_name=text(record.agent_name, counts),
            user_prompt=text(record.user_prompt, counts),
            instructions=text(record.instructions, counts),
            assistant_answer=text(record.assistant_answer, counts),
            tool_calls=tuple(
                ToolCall(text(call.tool_name, counts) or "", text(call.args, counts) or "", call.tool_call_id) for call in record.tool_calls
            ),
            answer_references=tuple(text(reference, counts) or "" for reference in record.answer_references),
            value_notes=tuple(text(note, counts) or "" for note in record.value_notes),
        )

    def checks(self, checks: Iterable[CheckResult], counts: Counter[str]) -> list[CheckResult]:
        return [replace(check, details=self.text(check.details, counts)) if check.details else check for check in checks]


@lru_cache(maxsize=16)
def _compiled_trigger(trigger: str) -> Any:
    return re2.compile(trigger)


_LONE_SURROGATE = re.compile("[\ud800-\udfff]")
_ESCAPED_ASCII = re.compile(r"\\u00[2-7][0-9A-Fa-f]")

NO_REDACTION = Redactor()


@dataclass(frozen=True)
class RedactedRun:
    raw_json: str
    record: LogRecord
    checks: list[CheckResult]
    redaction: Redaction


def redact_run(redactor: Redactor, raw_json: str, record: LogRecord, checks: Iterable[CheckResult]) -> RedactedRun:
    """A run's raw log, record and check details redacted, with the count per detector.

    The count is of the matches replaced in the log itself (a value it repeats counts each time);
    the columns hold copies of its strings, and count only where they found more (a text the
    parser joined from parts)."""
    raw_counts: Counter[str] = Counter()
    column_counts: Counter[str] = Counter()
    redacted_raw = redactor.json_text(raw_json, raw_counts)
    redacted_record = redactor.record(record, column_counts)
    redacted_checks = redactor.checks(checks, Counter())  # details quote the log: not counted again
    return RedactedRun(redacted_raw, redacted_record, redacted_checks, Redaction(dict(raw_counts | column_counts)))
