"""Stored runs over several days, parsed, priced and evaluated the way the ingest does it."""

from __future__ import annotations

import json
import random
from collections.abc import Callable
from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import dagster as dg
import sqlalchemy as sa

from llm_monitoring.ingest import content_hash, run_from_bytes
from llm_monitoring.samples import PROFILES, AgentProfile, make_run_log, write_sample_logs
from llm_monitoring.storage.bulk import RunToStore, store_runs
from llm_monitoring.storage.engine import Database
from llm_monitoring.storage.judgements import Judgement

RANGE_START = "dagster/asset_partition_range_start"
RANGE_END = "dagster/asset_partition_range_end"


def day_at(day: date, hour: int = 9, minute: int = 0) -> datetime:
    return datetime.combine(day, time(hour, minute), tzinfo=UTC)


def sample_run(
    rng: random.Random,
    started: datetime,
    profile: AgentProfile,
    mutate: Callable[[dict[str, Any]], None] | None = None,
) -> RunToStore:
    log = make_run_log(rng, started, profile=profile)
    if mutate:
        mutate(log)
    raw = json.dumps(log).encode()
    return run_from_bytes(raw, f"logs/{profile.agent_name}_{content_hash(raw)[:12]}.json")


def store_day(
    database: Database,
    day: date,
    count: int,
    *,
    seed: int = 0,
    profiles: tuple[AgentProfile, ...] = PROFILES,
    mutate: Callable[[dict[str, Any]], None] | None = None,
) -> list[int]:
    """Store `count` runs started on `day` (one every 7 minutes from 09:00 UTC); returns their ids."""
    rng = random.Random(f"{day}-{seed}")
    runs = [sample_run(rng, day_at(day) + timedelta(minutes=7 * index), profiles[index % len(profiles)], mutate) for index in range(count)]
    return sorted(store_runs(database, runs).inserted.values())


def store_days(database: Database, first: date, days: int, per_day: int, **options: Any) -> dict[date, list[int]]:
    return {
        first + timedelta(days=offset): store_day(database, first + timedelta(days=offset), per_day, **options) for offset in range(days)
    }


def unknown_model(log: dict[str, Any]) -> None:
    """The agent switched to a model genai-prices does not know."""
    log["model"] = "mystery-model-9000"
    for message in log["messages"]:
        if message.get("kind") == "response":
            message["model_name"] = "mystery-model-9000"


def gives_up(log: dict[str, Any]) -> None:
    """The agent stopped answering: a short non-answer without references."""
    log["output"] = "I don't know."


def range_tags(first: str, last: str) -> dict[str, str]:
    return {RANGE_START: first, RANGE_END: last}


def run_job(name: str, instance: dg.DagsterInstance, *, first: str, last: str, run_config: dict | None = None) -> dg.ExecuteInProcessResult:
    """Execute a job of the project's definitions over a range of day partitions, as one run."""
    from llm_monitoring.definitions import defs

    return defs.resolve_job_def(name).execute_in_process(instance=instance, tags=range_tags(first, last), run_config=run_config or {})


def materializations(result: dg.ExecuteInProcessResult) -> dict[str, list[dg.AssetMaterialization]]:
    found: dict[str, list[dg.AssetMaterialization]] = {}
    for event in result.get_asset_materialization_events():
        materialization = event.event_specific_data.materialization
        found.setdefault(materialization.asset_key.to_user_string(), []).append(materialization)
    return found


def metadata(materialization: dg.AssetMaterialization) -> dict[str, Any]:
    return {key: value.value for key, value in materialization.metadata.items()}


def check_results(result: dg.ExecuteInProcessResult) -> dict[str, Any]:
    return {evaluation.asset_check_key.name: evaluation for evaluation in result.get_asset_check_evaluations()}


def select(database: Database, statement: sa.Select) -> list[Any]:
    with database.connect() as connection:
        return list(connection.execute(statement))


def day_of(moment: datetime) -> date:
    return moment.astimezone(UTC).date()


def write_logs(
    folder: Path,
    count: int,
    *,
    seed: int,
    start: datetime,
    spread: timedelta = timedelta(hours=1),
    mutate: Callable[[dict[str, Any]], None] | None = None,
    prefix: str = "",
) -> list[Path]:
    """Run-log files as an agent writes them (see samples.write_sample_logs), each changed by `mutate`."""
    paths = write_sample_logs(folder, count, seed=seed, start=start, spread=spread, prefix=prefix)
    if mutate:
        for path in paths:
            log = json.loads(path.read_text(encoding="utf-8"))
            mutate(log)
            path.write_text(json.dumps(log), encoding="utf-8")
    return paths


JUDGE_VERSION = "judge:helpfulness:0123456789ab"


def judge_verdict(
    log_id: int,
    created_at: datetime,
    *,
    version: str = JUDGE_VERSION,
    passed: bool | None = True,
    reason: str = "test",
    input_tokens: int | None = 500,
    output_tokens: int | None = 40,
    cost: Decimal | None = Decimal("0.000125"),
) -> Judgement:
    """An LLM judge's verdict on a run with the call that gave it: priced when it has a cost."""
    return Judgement(
        log_id=log_id,
        check_name=version.split(":")[1],
        evaluator_version=version,
        passed=passed,
        score=0.5 if passed is None else float(passed),
        reason=reason,
        model="openai:gpt-4o-mini",
        input_tokens=input_tokens,
        output_tokens=output_tokens,
        cache_read_tokens=0,
        requests=1,
        cost=cost,
        pricing_status="unpriced" if cost is None else "priced",
        price_data_version="test",
        latency_seconds=0.1,
        created_at=created_at,
    )
