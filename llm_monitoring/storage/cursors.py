"""State the ingest keeps between passes: read positions of appended files, and spans of traces not complete yet."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import orjson
import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite

from llm_monitoring.storage.engine import Database, select_in
from llm_monitoring.storage.schema import file_offsets, waiting_spans

# ---------------------------------------------------------------------------- appended files


@dataclass(frozen=True)
class FileOffset:
    """How far the ingest has read a file it leaves in place, and what that file was."""

    name: str  # text form of the name in the log folder
    device: int
    inode: int
    size: int
    mtime_ns: int
    bytes_read: int
    lines_read: int
    prefix_hash: str


_OFFSET_COLUMNS = ("name", "device", "inode", "size", "mtime_ns", "bytes_read", "lines_read", "prefix_hash")


def read_offsets(database: Database, names: Iterable[str]) -> dict[str, FileOffset]:
    """The recorded offsets of `names` (text forms); names never read in place are absent."""
    wanted = list(names)
    if not wanted:
        return {}
    with database.connect() as connection:
        if not sa.inspect(connection).has_table(file_offsets.name):
            return {}  # a database the ingest never wrote to
        columns = [file_offsets.c[name] for name in _OFFSET_COLUMNS]
        rows = select_in(connection, sa.select(*columns), file_offsets.c.name, wanted)
        return {row.name: FileOffset(*row) for row in rows}


def record_offsets(database: Database, offsets: Sequence[FileOffset]) -> None:
    if not offsets:
        return
    now = datetime.now(UTC)
    with database.transaction() as connection:
        insert = postgresql.insert if connection.dialect.name == "postgresql" else sqlite.insert
        statement = insert(file_offsets)
        statement = statement.on_conflict_do_update(
            index_elements=["name"],
            set_={name: statement.excluded[name] for name in (*_OFFSET_COLUMNS[1:], "updated_at")},
        )
        connection.execute(statement, [{**offset.__dict__, "updated_at": now} for offset in offsets])


# ---------------------------------------------------------------------------- spans of incomplete traces


def staged_spans(database: Database, trace_ids: Iterable[str]) -> list[dict[str, Any]]:
    """Spans waiting for the rest of their traces, for the traces named."""
    wanted = list(trace_ids)
    if not wanted:
        return []
    with database.connect() as connection:
        rows = select_in(connection, sa.select(waiting_spans.c.span_json), waiting_spans.c.trace_id, wanted)
        return [orjson.loads(row.span_json) for row in rows]


def stage_spans(database: Database, spans: Sequence[tuple[dict[str, Any], str]]) -> None:
    """Keep (span, file it came from) until its trace is complete; a span kept already is kept once."""
    if not spans:
        return
    now = datetime.now(UTC)
    rows = [
        {
            "trace_id": span["traceId"],
            "span_id": span["spanId"],
            "span_json": orjson.dumps(span).decode(),
            "filepath": filepath,
            "received_at": now,
        }
        for span, filepath in spans
    ]
    with database.transaction() as connection:
        insert = postgresql.insert if connection.dialect.name == "postgresql" else sqlite.insert
        connection.execute(insert(waiting_spans).on_conflict_do_nothing(index_elements=["trace_id", "span_id"]), rows)


def drop_staged_traces(database: Database, trace_ids: Iterable[str]) -> None:
    wanted = sorted(set(trace_ids))
    if not wanted:
        return
    with database.transaction() as connection:
        for start in range(0, len(wanted), 900):
            connection.execute(sa.delete(waiting_spans).where(waiting_spans.c.trace_id.in_(wanted[start : start + 900])))


def quiet_traces(database: Database, before: datetime) -> list[str]:
    """Traces with spans waiting whose last span arrived before `before`: their writer is done."""
    with database.connect() as connection:
        if not sa.inspect(connection).has_table(waiting_spans.name):
            return []
        last = sa.func.max(waiting_spans.c.received_at)
        statement = sa.select(waiting_spans.c.trace_id).group_by(waiting_spans.c.trace_id).having(last < before)
        return list(connection.scalars(statement))


def count_waiting_spans(database: Database) -> tuple[int, int]:
    """(spans, traces) waiting for the rest of their traces."""
    with database.connect() as connection:
        if not sa.inspect(connection).has_table(waiting_spans.name):
            return 0, 0
        row = connection.execute(
            sa.select(sa.func.count(), sa.func.count(sa.distinct(waiting_spans.c.trace_id))).select_from(waiting_spans)
        ).one()
        return int(row[0]), int(row[1])
