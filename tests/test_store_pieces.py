"""The pieces every store shares (bounce_middleware.store), against real drivers' errors.

``unavailable()`` turns a driver error into the StoreUnavailable the middleware
logs and answers 503 with: it must say what went wrong and never quote a
value the failed statement carried (an address, a body).
"""

from __future__ import annotations

import secrets
import sqlite3
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
import sqlalchemy as sa

from bounce_middleware import BounceKind, StoreUnavailable
from bounce_middleware.model import fold_address
from bounce_middleware.store import kind_of, rejection_key, storable, unavailable
from tests.postgres import PostgresServer
from tests.store_cases import DJANGO_POSTGRESQL

ADDRESS = "ann.secret@example.com"


@pytest.fixture
def pg(postgres: PostgresServer) -> Iterator[psycopg.Connection]:
    """A connection to a fresh database, with a table whose address is unique."""
    with psycopg.connect(postgres.url(postgres.create_database()), autocommit=True) as conn:
        conn.execute("CREATE TABLE person (email text UNIQUE)")
        conn.execute("INSERT INTO person VALUES (%s)", (ADDRESS,))
        yield conn


def caught(call: object) -> BaseException:
    assert callable(call)
    with pytest.raises(Exception) as raised:
        call()
    return raised.value


def test_a_psycopg_error_with_the_address_in_its_detail_is_not_quoted(
    pg: psycopg.Connection,
) -> None:
    error = caught(lambda: pg.execute("INSERT INTO person VALUES (%s)", (ADDRESS,)))
    assert isinstance(error, psycopg.errors.UniqueViolation)
    assert ADDRESS in str(error)  # the driver's own message quotes it...
    message = str(unavailable("bounce store", error))
    assert message == "bounce store: UniqueViolation"  # ...ours never does


def test_the_same_error_wrapped_by_sqlalchemy_is_not_quoted(
    postgres: PostgresServer, pg: psycopg.Connection
) -> None:
    database = pg.info.dbname
    engine = sa.create_engine(postgres.url(database, driver="postgresql+psycopg"))
    try:
        with engine.begin() as conn:
            error = caught(
                lambda: conn.execute(sa.text("INSERT INTO person VALUES (:e)"), {"e": ADDRESS})
            )
    finally:
        engine.dispose()
    assert isinstance(error, sa.exc.IntegrityError)
    assert ADDRESS in str(error)
    assert str(unavailable("bounce store", error)) == "bounce store: UniqueViolation"


def test_a_described_error_says_its_first_line_only(
    postgres: PostgresServer, pg: psycopg.Connection
) -> None:
    # A real OperationalError (lock_not_available) whose DETAIL quotes an address,
    # as a trigger or a future server message might.
    pg.execute(
        """CREATE FUNCTION refuse() RETURNS trigger LANGUAGE plpgsql AS $$
           BEGIN RAISE EXCEPTION USING ERRCODE = '55P03', MESSAGE = 'row is locked',
               DETAIL = 'Key (email)=(' || NEW.email || ') is locked.'; END $$"""
    )
    pg.execute(
        "CREATE TRIGGER refuse BEFORE INSERT ON person FOR EACH ROW EXECUTE FUNCTION refuse()"
    )
    other = "bob.secret@example.com"
    raw = caught(lambda: pg.execute("INSERT INTO person VALUES (%s)", (other,)))
    assert isinstance(raw, psycopg.OperationalError)
    assert other in str(raw)
    assert str(unavailable("bounce store", raw)) == "bounce store: LockNotAvailable"
    engine = sa.create_engine(postgres.url(pg.info.dbname, driver="postgresql+psycopg"))
    try:
        with engine.begin() as conn:
            wrapped = caught(
                lambda: conn.execute(sa.text("INSERT INTO person VALUES (:e)"), {"e": other})
            )
    finally:
        engine.dispose()
    assert isinstance(wrapped, sa.exc.OperationalError)
    message = str(unavailable("bounce store", wrapped))
    assert message == "bounce store: LockNotAvailable (row is locked)"


def test_a_connection_error_is_described_with_control_characters_escaped(
    postgres: PostgresServer,
) -> None:
    error = caught(lambda: psycopg.connect(postgres.url("no\tsuch\x1b[31m"), connect_timeout=5))
    assert isinstance(error, psycopg.OperationalError)
    message = str(unavailable("bounce store", error))
    assert message.startswith("bounce store: OperationalError (connection failed: ")
    assert 'database "no\\tsuch\\x1b[31m" does not exist)' in message
    assert message.isprintable()


def test_a_sqlite_error_is_described_without_its_parameters(tmp_path: Path) -> None:
    conn = sqlite3.connect(tmp_path / "db.sqlite3")
    try:
        conn.execute("CREATE TABLE person (email TEXT UNIQUE)")
        conn.execute("INSERT INTO person VALUES (?)", (ADDRESS,))
        error = caught(lambda: conn.execute("INSERT INTO person VALUES (?)", (ADDRESS,)))
    finally:
        conn.close()
    assert isinstance(error, sqlite3.IntegrityError)
    message = str(unavailable("bounce store", error))
    assert message == "bounce store: IntegrityError (UNIQUE constraint failed: person.email)"
    assert ADDRESS not in message


def test_a_sqlite_error_names_what_is_wrong_with_the_file(tmp_path: Path) -> None:
    path = tmp_path / "db.sqlite3"
    path.write_bytes(b"not a database " * 100)
    conn = sqlite3.connect(path)
    try:
        error = caught(lambda: conn.execute("SELECT * FROM sqlite_master"))
    finally:
        conn.close()
    assert str(unavailable("store", error)) == "store: DatabaseError (file is not a database)"


@pytest.mark.parametrize(
    ("alias", "expected"),
    [
        pytest.param(
            "default",
            "store: IntegrityError (UNIQUE constraint failed: person.email)",
            marks=pytest.mark.django_db(transaction=True),
            id="django-sqlite",
        ),
        pytest.param(
            DJANGO_POSTGRESQL,
            "store: UniqueViolation",
            marks=pytest.mark.django_db(transaction=True, databases=[DJANGO_POSTGRESQL]),
            id="django-postgresql",
        ),
    ],
)
def test_a_django_wrapped_error_is_not_quoted(alias: str, expected: str) -> None:
    from django.db import IntegrityError, connections

    with connections[alias].cursor() as cursor:
        cursor.execute("CREATE TEMPORARY TABLE person (email TEXT UNIQUE)")
        cursor.execute("INSERT INTO person VALUES (%s)", [ADDRESS])
        error = caught(lambda: cursor.execute("INSERT INTO person VALUES (%s)", [ADDRESS]))
        cursor.execute("DROP TABLE person")
    # Django raises its own class, with the driver's error as __cause__.
    assert isinstance(error, IntegrityError)
    assert str(unavailable("store", error)) == expected


def test_an_error_without_a_message_names_its_class() -> None:
    assert str(unavailable("store", sqlite3.OperationalError())) == "store: OperationalError"
    assert isinstance(unavailable("store", RuntimeError("x")), StoreUnavailable)
    assert str(unavailable("store", RuntimeError(ADDRESS))) == "store: RuntimeError"


def test_kind_of_falls_back_to_unknown() -> None:
    assert kind_of("hard") is BounceKind.HARD
    assert kind_of("auto_reply") is BounceKind.AUTO_REPLY
    assert kind_of("forwarded") is BounceKind.UNKNOWN
    assert kind_of("") is BounceKind.UNKNOWN
    assert kind_of("HARD") is BounceKind.UNKNOWN


def test_storable_replaces_nul_only() -> None:
    text = secrets.token_hex(8) + "é✉"
    assert storable(text) is text
    assert storable("a\x00b\x00") == "a\ufffdb\ufffd"
    assert storable("") == ""


def test_rejection_key_is_per_provider_and_body() -> None:
    key = rejection_key("postmark", b"{}")
    assert key == (
        "postmark:rejected:sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a"
    )
    assert rejection_key("sendgrid", b"{}") != key
    assert rejection_key("postmark", b"{} ") != key


def test_fold_address_is_nfkc_then_casefold() -> None:
    assert fold_address("Émile@Example.COM") == "émile@example.com"
    assert fold_address("E\u0301mile@example.com") == "émile@example.com"
    assert fold_address("STRASSE@x") == fold_address("straße@x") == "strasse@x"
    assert fold_address("ﬁona@x") == "fiona@x"
