"""Deterministic writer of realistic pydantic-ai run logs, for the demo, tests, benchmarks and fake data.

The logs have the shape pydantic-ai's `ModelMessagesTypeAdapter` dumps plus the top-level fields
agents commonly add (agent_name, system_prompt, provider, model, tools, usage, output).
"""

from __future__ import annotations

import json
import random
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

SIZES_KB = (5, 30, 90)


@dataclass(frozen=True)
class AgentProfile:
    agent_name: str
    provider: str
    model: str
    response_model: str
    instructions: str
    tools: tuple[str, ...]
    structured: bool = False


PROFILES: tuple[AgentProfile, ...] = (
    AgentProfile(
        "faq_agent",
        "openai",
        "gpt-4o-mini",
        "gpt-4o-mini-2024-07-18",
        "You are a helpful assistant for a course FAQ. Use the search tool to find relevant answers. "
        "Always include references by citing the filename of the source material you used.",
        ("search",),
    ),
    AgentProfile(
        "docs_search",
        "openai",
        "gpt-4o",
        "gpt-4o-2024-08-06",
        "You are a search assistant for the documentation. Perform at least 3 and at most 6 distinct searches "
        "before answering. Include a References section listing the files you used.",
        ("search", "read_file"),
        structured=True,
    ),
    AgentProfile(
        "wikiagent",
        "google-gla",
        "gemini-2.5-flash",
        "gemini-2.5-flash",
        "You answer questions with Wikipedia. Search first, then fetch pages, and cite the page URLs.",
        ("search_wikipedia", "get_page"),
    ),
    AgentProfile(
        "k8s_agent",
        "groq",
        "llama-3.3-70b-versatile",
        "llama-3.3-70b-versatile",
        "You are a Kubernetes expert. Use hybrid_search_tool to look up the docs; answer concisely.",
        ("hybrid_search_tool",),
    ),
    AgentProfile(
        "support_bot",
        "anthropic",
        "claude-3-5-sonnet-latest",
        "claude-3-5-sonnet-20241022",
        "You are a support assistant. Be brief and friendly.",
        ("lookup_order",),
    ),
)

TOPICS = (
    ("How do I monitor data drift in production?", "data drift", "monitoring/data_drift.md"),
    ("Can I still join the course after the start date?", "late enrollment", "faq/joining.md"),
    ("How do I run Docker on Windows?", "Docker on Windows", "setup/docker_windows.md"),
    ("Where do capybaras live?", "capybara habitat", "wiki/Capybara"),
    ("How do I create a namespace in Kubernetes?", "Kubernetes namespaces", "docs/namespaces.md"),
    ("What is a dbt model?", "dbt models", "docs/dbt_models.md"),
    ("How do I fix the 'No matching signature' error in BigQuery?", "BigQuery errors", "faq/bigquery.md"),
    ("Where is my order #4521?", "order status", "orders/4521"),
)

_FILLER = (
    "The documentation describes the configuration options, the defaults and the trade-offs in detail. "
    "Each section links to examples that can be run locally, and the reference lists every parameter. "
)

# Tool returns are retrieved documents: varied prose, not one repeated sentence. Real logs compress
# about 3.5x (lz4); text drawn from this vocabulary and sentence pool compresses about the same,
# so storage and throughput figures measured on samples hold for real logs.
_WORDS = [
    "the",
    "a",
    "of",
    "to",
    "and",
    "in",
    "is",
    "for",
    "that",
    "with",
    "on",
    "as",
    "by",
    "this",
    "be",
    "are",
    "from",
    "or",
    "it",
    "can",
    "an",
    "at",
    "you",
    "your",
    "which",
    "when",
    "if",
    "each",
    "not",
    "more",
    "all",
    "one",
    "use",
    "used",
    "using",
    "also",
    "other",
    "data",
    "file",
    "files",
    "model",
    "models",
    "query",
    "value",
    "values",
    "table",
    "tables",
    "run",
    "runs",
    "step",
    "steps",
    "user",
    "users",
    "set",
    "default",
    "option",
    "options",
    "config",
    "configuration",
    "server",
    "client",
    "request",
    "response",
    "error",
    "errors",
    "token",
    "tokens",
    "cache",
    "time",
    "date",
    "version",
    "release",
    "update",
    "install",
    "build",
    "test",
    "tests",
    "check",
    "checks",
    "index",
    "search",
    "result",
    "results",
    "page",
    "pages",
    "section",
    "document",
    "example",
    "examples",
    "local",
    "remote",
    "network",
    "service",
    "services",
    "container",
    "image",
    "images",
    "cluster",
    "node",
    "nodes",
    "namespace",
    "resource",
    "resources",
    "policy",
    "access",
    "key",
    "keys",
    "secret",
    "role",
    "schema",
    "column",
    "columns",
    "row",
    "rows",
    "pipeline",
    "job",
    "jobs",
    "task",
    "tasks",
    "schedule",
    "event",
    "events",
    "log",
    "logs",
    "metric",
    "metrics",
    "alert",
    "dashboard",
    "source",
    "target",
    "output",
    "input",
    "format",
    "path",
    "folder",
    "name",
    "names",
    "type",
    "types",
    "field",
    "fields",
    "list",
    "map",
    "function",
    "method",
    "class",
    "object",
    "instance",
    "process",
    "memory",
    "disk",
    "limit",
    "limits",
    "size",
    "count",
    "number",
    "first",
    "last",
    "new",
    "old",
    "same",
    "different",
    "important",
    "required",
    "optional",
    "available",
    "supported",
    "recommended",
    "possible",
    "simple",
    "small",
    "large",
    "fast",
    "slow",
    "safe",
    "secure",
    "public",
    "private",
    "manual",
    "automatic",
    "current",
    "previous",
    "following",
    "before",
    "after",
    "during",
]


def _pseudo_words(rng: random.Random, count: int) -> list[str]:
    syllables = ["ka", "ro", "mi", "ten", "dra", "vo", "lis", "pe", "nur", "sa", "qui", "to", "bel", "ar", "zen", "ho"]
    return ["".join(rng.choice(syllables) for _ in range(rng.randint(2, 4))) for _ in range(count)]


def _sentence_pool(size: int = 280) -> tuple[str, ...]:
    rng = random.Random(20260105)
    vocabulary = list(_WORDS) + _pseudo_words(rng, 1200)
    # Zipf-like: common words often, the long tail rarely, as in prose.
    weights = [1.0 / (rank + 1) for rank in range(len(vocabulary))]
    pool = []
    for _ in range(size):
        words = rng.choices(vocabulary, weights=weights, k=rng.randint(7, 22))
        if rng.random() < 0.3:
            words.insert(rng.randrange(len(words)), str(rng.randint(2, 9999)))
        pool.append(" ".join(words).capitalize() + rng.choice((". ", ". ", ". ", ", ", "; ", ".\n")))
    return tuple(pool)


_SENTENCES = _sentence_pool()


def document_text(seed: str, chars: int) -> str:
    """`chars` characters of retrieved-document prose, the same for the same seed."""
    rng = random.Random(seed)
    sentences: list[str] = []
    length = 0
    while length < chars:
        batch = rng.choices(_SENTENCES, k=max(8, (chars - length) // 80))
        sentences += batch
        length += sum(map(len, batch))
    return "".join(sentences)[:chars]


def make_run_log(rng: random.Random, started: datetime, *, size_kb: int = 5, profile: AgentProfile | None = None) -> dict[str, Any]:
    profile = profile or rng.choice(PROFILES)
    question, topic, source_file = rng.choice(TOPICS)
    searches = rng.randint(1, 6) if "at least 3" not in profile.instructions else rng.randint(2, 7)
    clock = started
    messages: list[dict[str, Any]] = [
        {
            "parts": [{"content": question, "timestamp": clock.isoformat(), "part_kind": "user-prompt"}],
            "instructions": profile.instructions,
            "kind": "request",
        }
    ]
    # Tool-return bodies make up most of a real log's size; pad them to reach the requested size.
    body_chars = max(200, (size_kb * 1024 - 3000) // max(searches, 1))
    totals = {"input_tokens": 0, "output_tokens": 0, "cache_read_tokens": 0}
    tool_calls = 0
    search_tool = next((tool for tool in profile.tools if "search" in tool), None)
    for index in range(searches if search_tool else 0):
        clock += timedelta(seconds=rng.uniform(0.5, 3.0))
        call_id = f"call_{rng.getrandbits(64):016x}"
        usage = _usage(rng, 600 + index * 900, 40)
        for key in totals:
            totals[key] += usage[key]
        messages.append(
            _response(
                rng,
                clock,
                profile,
                [
                    {
                        "tool_name": search_tool,
                        "args": json.dumps({"query": f"{topic} {index}"}),
                        "tool_call_id": call_id,
                        "part_kind": "tool-call",
                    }
                ],
                usage,
                "tool_call",
            )
        )
        tool_calls += 1
        clock += timedelta(seconds=rng.uniform(0.1, 1.0))
        content = [{"filename": source_file, "content": document_text(call_id, body_chars)}]
        messages.append(
            {
                "parts": [
                    {
                        "tool_name": search_tool,
                        "content": content,
                        "tool_call_id": call_id,
                        "timestamp": clock.isoformat(),
                        "part_kind": "tool-return",
                    }
                ],
                "kind": "request",
            }
        )
    clock += timedelta(seconds=rng.uniform(1.0, 6.0))
    answer = _answer(rng, topic, source_file)
    usage = _usage(rng, 900 + searches * 1000, rng.randint(80, 600))
    for key in totals:
        totals[key] += usage[key]
    output: Any = answer
    if profile.structured:
        output = {
            "found_answer": True,
            "title": topic.capitalize(),
            "sections": [{"heading": "Answer", "content": answer, "references": [source_file]}],
            "references": [{"title": topic, "filename": source_file}],
        }
        parts = [{"tool_name": "final_result", "args": json.dumps(output), "tool_call_id": "call_final", "part_kind": "tool-call"}]
        final = _response(rng, clock, profile, parts, usage, "tool_call")
        messages.append(final)
        # Streamed runs repeat their final response: the parser must count it once.
        messages.append(
            {
                "parts": [
                    {
                        "tool_name": "final_result",
                        "content": "Final result processed.",
                        "tool_call_id": "call_final",
                        "part_kind": "tool-return",
                    }
                ],
                "kind": "request",
            }
        )
        messages.append(dict(final))
    else:
        messages.append(_response(rng, clock, profile, [{"content": answer, "part_kind": "text"}], usage, "stop"))
    return {
        "agent_name": profile.agent_name,
        "system_prompt": [profile.instructions],
        "provider": profile.provider,
        "model": profile.model,
        "tools": list(profile.tools),
        "messages": messages,
        "usage": {
            **totals,
            "cache_write_tokens": 0,
            "requests": len([m for m in messages if m["kind"] == "response"]) - (1 if profile.structured else 0),
            "tool_calls": tool_calls,
        },
        "output": output,
    }


def _usage(rng: random.Random, input_tokens: int, output_tokens: int) -> dict[str, int]:
    input_tokens += rng.randint(0, 400)
    cache_read = (input_tokens // 1024) * 1024 // 2 if rng.random() < 0.4 else 0
    return {"input_tokens": input_tokens, "cache_write_tokens": 0, "cache_read_tokens": cache_read, "output_tokens": output_tokens}


def _response(
    rng: random.Random, moment: datetime, profile: AgentProfile, parts: list[dict[str, Any]], usage: dict[str, int], finish: str
) -> dict[str, Any]:
    return {
        "parts": parts,
        "usage": dict(usage),
        "model_name": profile.response_model,
        "timestamp": moment.isoformat(),
        "kind": "response",
        "provider_name": profile.provider,
        "provider_response_id": f"resp_{rng.getrandbits(64):016x}",
        "finish_reason": finish,
    }


def _answer(rng: random.Random, topic: str, source_file: str) -> str:
    steps = rng.randint(0, 4)
    lines = [f"Here is what the documentation says about {topic}."]
    lines += [f"{n}. Step {n} explains one part of {topic} and how to apply it in practice." for n in range(1, steps + 1)]
    if rng.random() < 0.7:
        lines.append(f"\nReferences: {source_file} (https://example.org/{source_file})")
    lines += [_FILLER.strip()] * rng.randint(0, 3)
    return "\n".join(lines)


def write_sample_logs(
    folder: str | Path,
    count: int,
    *,
    seed: int = 0,
    start: datetime | None = None,
    spread: timedelta = timedelta(hours=24),
    sizes_kb: tuple[int, ...] = (5,),
    prefix: str = "",
) -> list[Path]:
    """Write `count` logs into `folder`, the same bytes for the same arguments; returns their paths."""
    rng = random.Random(seed)
    start = start or datetime(2026, 1, 5, 9, 0, tzinfo=UTC)
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for index in range(count):
        started = start + spread * (index / max(count, 1))
        profile = PROFILES[index % len(PROFILES)]
        log = make_run_log(rng, started, size_kb=sizes_kb[index % len(sizes_kb)], profile=profile)
        path = folder / f"{prefix}{profile.agent_name}_{started:%Y%m%d_%H%M%S}_{seed:03d}{index:05d}.json"
        path.write_text(json.dumps(log, indent=2), encoding="utf-8")
        paths.append(path)
    return paths
