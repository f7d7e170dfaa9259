"""The monitoring database, as the seed's users import it: `from llm_monitoring.db import Database`.

A small facade over llm_monitoring/storage/, where the code lives (schema, engine, bulk writes,
queries); code inside the package imports from there.
"""

from llm_monitoring.database_url import mask_url, normalize_url
from llm_monitoring.storage.engine import Database, open_database
from llm_monitoring.storage.errors import DatabaseUnavailable, InvalidDatabaseUrl
from llm_monitoring.storage.schema import eval_checks, feedback, llm_logs, metadata

__all__ = [
    "Database",
    "DatabaseUnavailable",
    "InvalidDatabaseUrl",
    "eval_checks",
    "feedback",
    "llm_logs",
    "mask_url",
    "metadata",
    "normalize_url",
    "open_database",
]
