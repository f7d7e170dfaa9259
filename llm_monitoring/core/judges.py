"""LLM judges, the pure part: their declaration (judges.yaml), rubric rendering, the verdict schema,
versions, sampling and the cost estimate heuristic. No I/O: llm_monitoring/judging.py reads the file,
calls the models and stores the verdicts.

A judge's verdict is stored like a rule check's (eval_checks, check_name = the judge's name) with
evaluator_version `judge:<name>:<hash>`, the hash of its model, its rubric and JUDGE_PROTOCOL: a run
judged by one version is never sent again, and a changed rubric or model is a new version.
"""

from __future__ import annotations

import hashlib
import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from llm_monitoring.core.evaluation import CHECK_NAMES
from llm_monitoring.core.records import ToolCall

JUDGE_VERSION_PREFIX = "judge:"
# Bump when the fixed text around a rubric (JUDGE_INSTRUCTIONS, field clipping, the verdict schema)
# changes: every judge then gets a new version, since its verdicts were given to other words.
JUDGE_PROTOCOL = "1"

RUBRIC_FIELDS = ("prompt", "instructions", "answer", "reference_answer", "tool_calls")
_PLACEHOLDER = re.compile(r"\{(\w+)\}")
# A judge reads the run through its rubric: one huge answer must not exceed the judge's context window.
MAX_FIELD_CHARS = 20_000
MAX_TOOL_ARGS_CHARS = 500

JUDGE_INSTRUCTIONS = (
    "You judge one run of an AI agent against the rubric the user gives you, which quotes the run. "
    "Give your verdict: passed (true when the run meets the rubric), score (from 0 to 1: how well it meets it) "
    "and reason (one or two sentences saying why). Judge only what the rubric asks."
)

# Providers the installed pydantic-ai-slim extras serve (openai, anthropic, google, groq).
SUPPORTED_PROVIDERS = ("openai", "openai-chat", "openai-responses", "anthropic", "google", "google-cloud", "groq")
# pydantic-ai 2 renamed these; judges.yaml files written for 1.x keep working.
LEGACY_PROVIDERS = {"google-gla": "google", "google-vertex": "google-cloud"}
# The genai-prices provider that prices each pydantic-ai provider's calls.
PRICE_PROVIDERS = {"openai-chat": "openai", "openai-responses": "openai", "google-cloud": "google"}
OPENAI_COMPATIBLE = ("openai", "openai-chat")  # prefixes a judge with base_url may use

_NAME = re.compile(r"[A-Za-z][A-Za-z0-9_-]{0,63}")
_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


class JudgeConfigError(ValueError):
    """judges.yaml declares something a judge cannot be; the message names the file, the judge and the field."""


class Verdict(BaseModel):
    """What a judge answers, as a structured output the model must fill in."""

    passed: bool = Field(description="True when the run meets the rubric.")
    score: float = Field(ge=0, le=1, description="How well the run meets the rubric, from 0 (not at all) to 1 (fully).")
    reason: str = Field(description="One or two sentences saying why.")


class Judge(BaseModel):
    """One judge of judges.yaml, validated."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str
    model: str = Field(description="A pydantic-ai model string: openai:gpt-4o-mini, anthropic:..., google:..., groq:...")
    rubric: str
    base_url: str | None = Field(default=None, description="An OpenAI-compatible server (vLLM, Ollama, LiteLLM)")
    api_key_env: str | None = Field(default=None, description="With base_url: the variable holding that server's key")
    sample_rate: float = Field(default=1.0, ge=0, le=1)
    concurrency: int = Field(default=8, ge=1, le=256)
    max_cost_usd: Decimal | None = Field(default=None, gt=0)
    on_ingest: bool = False

    @field_validator("name")
    @classmethod
    def _name(cls, name: str) -> str:
        if not _NAME.fullmatch(name):
            raise ValueError("must start with a letter and hold only letters, digits, '_' or '-', at most 64 characters")
        if name in CHECK_NAMES:
            raise ValueError(f"{name!r} is the name of a rule check; choose another")
        return name

    @field_validator("model")
    @classmethod
    def _model(cls, model: str) -> str:
        provider, _, model_name = model.strip().partition(":")
        provider = LEGACY_PROVIDERS.get(provider, provider)
        if not model_name:
            raise ValueError(f"must be provider:model, such as openai:gpt-4o-mini, got {model!r}")
        if provider not in SUPPORTED_PROVIDERS:
            raise ValueError(f"provider {provider!r} is not one of {', '.join(SUPPORTED_PROVIDERS)}")
        return f"{provider}:{model_name}"

    @field_validator("rubric")
    @classmethod
    def _rubric(cls, rubric: str) -> str:
        used = set(_PLACEHOLDER.findall(rubric))
        unknown = sorted(used - set(RUBRIC_FIELDS))
        if unknown:
            raise ValueError(f"unknown placeholder {{{unknown[0]}}}; a rubric may use {', '.join(f'{{{f}}}' for f in RUBRIC_FIELDS)}")
        if not used:
            raise ValueError(f"quotes nothing of the run: use at least one of {', '.join(f'{{{f}}}' for f in RUBRIC_FIELDS)}")
        return rubric

    @field_validator("base_url")
    @classmethod
    def _base_url(cls, base_url: str | None) -> str | None:
        if base_url is not None and not re.match(r"https?://[^/\s]+", base_url):
            raise ValueError(f"must be an http:// or https:// URL, got {base_url!r}")
        return base_url

    @field_validator("api_key_env")
    @classmethod
    def _api_key_env(cls, name: str | None) -> str | None:
        if name is not None and not _ENV_NAME.fullmatch(name):
            raise ValueError(f"must be the name of an environment variable, got {name!r}")
        return name

    @model_validator(mode="after")
    def _server(self) -> Judge:
        if self.base_url and self.provider not in OPENAI_COMPATIBLE:
            raise ValueError(
                f"with base_url the model must be openai:NAME or openai-chat:NAME (an OpenAI-compatible server), got {self.model!r}"
            )
        if self.api_key_env and not self.base_url:
            raise ValueError("api_key_env is for a judge with base_url; the providers read their own keys (OPENAI_API_KEY, ...)")
        return self

    @property
    def provider(self) -> str:
        return self.model.partition(":")[0]

    @property
    def model_name(self) -> str:
        return self.model.partition(":")[2]

    @property
    def price_provider(self) -> str:
        return PRICE_PROVIDERS.get(self.provider, self.provider)

    @property
    def version(self) -> str:
        digest = hashlib.sha256(f"{JUDGE_PROTOCOL}\n{self.model}\n{self.rubric}".encode()).hexdigest()[:12]
        return f"{JUDGE_VERSION_PREFIX}{self.name}:{digest}"

    @property
    def uses_tool_calls(self) -> bool:
        return "{tool_calls}" in self.rubric


def is_judge_version(version: str | None) -> bool:
    return bool(version) and str(version).startswith(JUDGE_VERSION_PREFIX)


def parse_judges(document: Any, source: str = "judges.yaml") -> tuple[Judge, ...]:
    """The judges of a loaded judges.yaml (`{"judges": [...]}`), or JudgeConfigError naming the judge and field."""
    if document is None:
        return ()
    if not isinstance(document, Mapping) or set(document) - {"judges"}:
        raise JudgeConfigError(f"{source}: expected one key, 'judges', holding a list of judges")
    entries = document.get("judges") or []
    if not isinstance(entries, list):
        raise JudgeConfigError(f"{source}: 'judges' must be a list, got {type(entries).__name__}")
    judges: list[Judge] = []
    for number, entry in enumerate(entries, start=1):
        label = f"judge #{number}"
        if isinstance(entry, Mapping) and isinstance(entry.get("name"), str):
            label = f"judge {entry['name']!r}"
        if not isinstance(entry, Mapping):
            raise JudgeConfigError(f"{source}: {label}: expected a mapping of fields, got {type(entry).__name__}")
        try:
            judge = Judge.model_validate(dict(entry))
        except ValidationError as error:
            raise JudgeConfigError(f"{source}: {label}: {_first_problem(error)}") from None
        if any(other.name == judge.name for other in judges):
            raise JudgeConfigError(f"{source}: {label}: field 'name': declared twice")
        judges.append(judge)
    return tuple(judges)


def _first_problem(error: ValidationError) -> str:
    problem = error.errors()[0]
    field = ".".join(str(part) for part in problem["loc"]) or "judge"
    if problem["type"] == "extra_forbidden":
        return f"field {field!r}: unknown field (known: {', '.join(Judge.model_fields)})"
    if problem["type"] == "missing":
        return f"field {field!r}: required"
    message = problem["msg"].removeprefix("Value error, ")
    shown = problem.get("input")
    suffix = f" (got {shown!r})" if problem["type"] != "value_error" and not isinstance(shown, Mapping) else ""
    return f"field {field!r}: {message}{suffix}" if problem["loc"] else f"{message}"


def select_judges(judges: Sequence[Judge], names: Sequence[str]) -> tuple[Judge, ...]:
    """The judges named (all of them when `names` is empty); an unknown name raises JudgeConfigError."""
    if not names:
        return tuple(judges)
    known = {judge.name: judge for judge in judges}
    unknown = [name for name in names if name not in known]
    if unknown:
        declared = ", ".join(known) or "none"
        raise JudgeConfigError(f"no judge named {unknown[0]!r} (declared: {declared})")
    return tuple(known[name] for name in dict.fromkeys(names))


# ---------------------------------------------------------------------------- what a judge reads


@dataclass(frozen=True)
class RunFields:
    """The parts of a stored run a rubric can quote."""

    prompt: str | None
    instructions: str | None
    answer: str | None
    reference_answer: str | None = None
    tool_calls: tuple[ToolCall, ...] = ()


def clip(text: str | None, limit: int = MAX_FIELD_CHARS) -> str:
    if not text:
        return ""
    if len(text) <= limit:
        return text
    return f"{text[:limit]}\n[... {len(text) - limit:,} more characters not shown]"


def format_tool_calls(tool_calls: Sequence[ToolCall]) -> str:
    if not tool_calls:
        return "(no tool calls)"
    return "\n".join(f"- {call.tool_name}({clip(call.args, MAX_TOOL_ARGS_CHARS)})" for call in tool_calls)


def render_rubric(rubric: str, run: RunFields) -> str:
    """The rubric with its placeholders replaced by the run's text; other braces are left as written."""
    values = {
        "prompt": clip(run.prompt) or "(no prompt)",
        "instructions": clip(run.instructions) or "(no instructions)",
        "answer": clip(run.answer) or "(no answer)",
        "reference_answer": clip(run.reference_answer) or "(no reference answer)",
        "tool_calls": clip(format_tool_calls(run.tool_calls)),
    }
    return _PLACEHOLDER.sub(lambda match: values.get(match.group(1), match.group(0)), rubric)


def sampled(content_hash: str, rate: float) -> bool:
    """Whether a run is in a judge's sample: decided by the run's content hash alone, so the same runs are
    sampled every time, by every judge with the same rate, and after a rubric change."""
    if rate >= 1:
        return True
    return int(content_hash[:16], 16) / 16**16 < rate


# ---------------------------------------------------------------------------- the estimate

# About four characters a token for English text (OpenAI's rule of thumb); the tool schema of the
# verdict and the message framing add about 150 tokens to every call, and a verdict with a one- or
# two-sentence reason is about 60 output tokens.
CHARS_PER_TOKEN = 4
CALL_OVERHEAD_TOKENS = 150
VERDICT_OUTPUT_TOKENS = 60


def estimate_input_tokens(prompt: str) -> int:
    return math.ceil((len(JUDGE_INSTRUCTIONS) + len(prompt)) / CHARS_PER_TOKEN) + CALL_OVERHEAD_TOKENS
