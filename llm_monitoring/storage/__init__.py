"""The only SQL of the project: SQLAlchemy 2 Core on SQLite and Postgres, split by concern.

Internal code imports from the modules here; llm_monitoring.db is the small facade for users.
"""
