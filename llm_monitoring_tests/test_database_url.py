"""Database URLs and errors: passwords never shown, malformed URLs refused in one line, and a lost
connection told apart from a statement the database refused."""

from __future__ import annotations

import pytest
import sqlalchemy as sa

from llm_monitoring.database_url import mask_url
from llm_monitoring.storage.engine import Database
from llm_monitoring.storage.errors import DatabaseUnavailable, InvalidDatabaseUrl, is_connection_error

# Two distinctive halves around each special character: neither may ever be shown.
SECRET_PARTS = ("Zq7kP", "Wx9mR")
SPECIALS = ["@", ":", "/", "#", "?", "&", "=", "%40", "%3A", "%2F", "%25", " ", "@:/#?", "@@"]


def secret(special: str) -> str:
    return special.join(SECRET_PARTS)


def assert_hidden(text: str) -> None:
    for part in SECRET_PARTS:
        assert part not in text, text


@pytest.mark.parametrize("special", SPECIALS)
def test_a_password_with_special_characters_is_never_partly_shown(special: str) -> None:
    url = f"postgresql://monitor:{secret(special)}@127.0.0.1:9/monitoring"
    if url.count("@") > 1:
        # SQLAlchemy and libpq end the password at its first '@', so the host would hold the rest of it.
        with pytest.raises(InvalidDatabaseUrl) as caught:
            Database(url)
        message = str(caught.value)
        assert "write an '@' in the user name or password as %40" in message and "\n" not in message
        assert_hidden(message)
        if " " not in special:
            assert_hidden(mask_url(f"could not connect with {url} (retrying)"))
        return
    database = Database(url)
    try:
        assert_hidden(database.display_url)
        assert_hidden(repr(database))
        assert database.display_url.startswith("postgresql+psycopg://monitor:***@127.0.0.1:9/monitoring")
        with pytest.raises(DatabaseUnavailable) as caught:
            database.ensure_schema()
        assert_hidden(str(caught.value))
        assert "\n" not in str(caught.value)
        if " " not in special:
            # In free text a URL ends at whitespace; a password with a space is masked where the
            # Database shows it (above), by its value.
            assert_hidden(mask_url(f"could not connect with {url} (retrying)"))
    finally:
        database.dispose()


@pytest.mark.parametrize(
    ("url", "reason"),
    [
        ("postgres//monitor:Zq7kPWx9mR@db/monitoring", "it is not a database URL"),
        ("Zq7kPWx9mR", "it is not a database URL"),
        ("postgresql://monitor:Zq7kPWx9mR@127.0.0.1:port/monitoring", "cannot parse it"),
        ("postgresql://monitor:Zq7kPWx9mR@[::1/monitoring", "cannot parse it"),
        ("mysql://monitor:Zq7kPWx9mR@db/monitoring", "its driver is not installed"),
        ("postgresql+nodriver://monitor:Zq7kPWx9mR@db/monitoring", "no such database driver"),
        ("postgresql://monitor:Zq7kP@Wx9mR:@db/monitoring", "it has more than one '@'"),
    ],
)
def test_a_malformed_url_is_refused_in_one_line_without_its_password(url: str, reason: str) -> None:
    with pytest.raises(InvalidDatabaseUrl) as caught:
        Database(url)
    message = str(caught.value)
    assert message.startswith("database URL ") and f"is not usable: {reason}" in message
    assert "\n" not in message
    assert_hidden(message)  # even a value that is no URL at all: it may be a password pasted by mistake
    assert isinstance(caught.value, DatabaseUnavailable)  # every caller that reports an outage reports this too


@pytest.mark.parametrize(
    "url",
    [
        "postgresql://monitor:Zq7kPWx9mR@127.0.0.1:9/monitoring?foo=bar",  # an option the driver refuses
        "postgresql://monitor@127.0.0.1:9/monitoring?password=Zq7kPWx9mR",  # the password as a parameter
        "postgresql://monitor:Zq7kPWx9mR@127.0.0.1:99999/monitoring",  # a port out of range
    ],
)
def test_a_url_the_driver_refuses_is_unavailable_in_one_line(url: str) -> None:
    database = Database(url)
    try:
        assert_hidden(database.display_url)
        with pytest.raises(DatabaseUnavailable) as caught:
            database.ensure_schema()
        assert_hidden(str(caught.value))
        assert "\n" not in str(caught.value)
    finally:
        database.dispose()


def test_mask_url_hides_every_password_in_a_text() -> None:
    text = (
        "from postgresql://a:Zq7kP@Wx9mR@h1/db to postgres://b:Zq7kP/Wx9mR@h2:5432/x "
        "and 'postgresql+psycopg://c:Zq7kP#Wx9mR@h3/y?password=Zq7kP&sslmode=require'"
    )
    masked = mask_url(text)
    assert_hidden(masked)
    assert "postgres://b:***@h2:5432/x" in masked and "sslmode=require" in masked
    assert mask_url("sqlite:////data/monitoring.db") == "sqlite:////data/monitoring.db"
    assert mask_url("postgresql://monitor@db/monitoring") == "postgresql://monitor@db/monitoring"


# ---------------------------------------------------------------------------- outage or refused statement


def dbapi_error(engine: sa.Engine, statement: str, *parameters: object) -> sa.exc.DBAPIError:
    try:
        with engine.connect() as connection:
            connection.exec_driver_sql(statement, *parameters)
    except sa.exc.DBAPIError as error:
        return error
    raise AssertionError(f"{statement} did not fail")


def test_sqlite_statement_errors_are_not_outages(sqlite_url: str, tmp_path) -> None:
    engine = sa.create_engine(sqlite_url)
    try:
        assert not is_connection_error(dbapi_error(engine, "SELECT 'a' LIKE ?", ("%" + "x%" * 30_000,)))
        assert not is_connection_error(dbapi_error(engine, "SELECT * FROM no_such_table"))
    finally:
        engine.dispose()
    missing = sa.create_engine(f"sqlite:///{tmp_path / 'no' / 'such' / 'folder.db'}")
    assert is_connection_error(dbapi_error(missing, "SELECT 1"))


def test_postgres_statement_errors_are_not_outages_and_a_lost_connection_is(postgres_url: str) -> None:
    engine = sa.create_engine(postgres_url.replace("postgresql://", "postgresql+psycopg://"), poolclass=sa.NullPool)
    try:
        deep = "SELECT " + "(" * 20_000 + "1" + ")" * 20_000
        assert not is_connection_error(dbapi_error(engine, deep))  # stack depth limit exceeded (54001)
        assert not is_connection_error(dbapi_error(engine, "SELECT 1/0"))
        assert not is_connection_error(dbapi_error(engine, "SELECT * FROM no_such_table"))
        terminated = dbapi_error(engine, "SELECT pg_terminate_backend(pg_backend_pid())")
        assert is_connection_error(terminated)
    finally:
        engine.dispose()
    refused = sa.create_engine("postgresql+psycopg://monitor@127.0.0.1:9/monitoring")
    assert is_connection_error(dbapi_error(refused, "SELECT 1"))
