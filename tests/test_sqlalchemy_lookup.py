"""UserBounceHandler's address lookup: users on a bind of their own, folding on each database."""

from __future__ import annotations

import sqlite3
import unicodedata
from pathlib import Path
from typing import Any, ClassVar

import pytest
import sqlalchemy as sa
from sqlalchemy import orm

from bounce_middleware.adapters.sqlalchemy import UserBounceHandler, create_all, session_scope
from bounce_middleware.adapters.sqlalchemy.users import folded
from bounce_middleware.model import fold_address
from tests.postgres import PostgresServer
from tests.sqlalchemy_db import Account, Base, all_notices, bounce, database_url
from tests.sqlalchemy_db import url as url  # noqa: F401 - fixtures

# Users whose stored address differs from the bounced one only by case or Unicode form.
FOLDED_PAIRS = [
    ("straße@example.de", "STRASSE@example.de"),
    ("STRASSE@example.de", "straße@example.de"),
    ("Ａnn@example.com", "ann@example.com"),  # a fullwidth capital A (NFKC: "A")
    ("ΟΔΥΣΣΕΥΣ@example.gr", "οδυσσευς@example.gr"),  # a capital sigma, a final sigma
    ("Émile@example.com", "ÉMILE@EXAMPLE.COM"),
]


def two_databases(tmp_path: Path) -> tuple[sa.Engine, sa.Engine]:
    """The library's tables in ``main.sqlite3``, the app's users in ``users.sqlite3``."""
    main = sa.create_engine(f"sqlite:///{tmp_path / 'main.sqlite3'}")
    users = sa.create_engine(f"sqlite:///{tmp_path / 'users.sqlite3'}")
    create_all(main)
    Base.metadata.create_all(users)
    with orm.Session(users) as session, session.begin():
        session.add_all(
            [Account(login="emile", mail="Émile@example.com"), Account(login="bob", mail="b@x")]
        )
    return main, users


def test_users_on_a_bind_of_their_own(tmp_path: Path) -> None:
    main, users = two_databases(tmp_path)
    # An app's sessions: the bounce tables on the default bind, users on their own
    # (what Flask-SQLAlchemy's __bind_key__ amounts to).
    factory = orm.sessionmaker(bind=main, binds={Account: users})
    handler = UserBounceHandler(Account, "mail", unit_of_work=lambda: session_scope(factory))
    handler(bounce(email="émile@example.com", ID=1)[0])
    handler(bounce(email="B@X", ID=2)[0])
    assert [n.user_id for n in all_notices(main)] == ["1", "2"]
    main.dispose()
    users.dispose()


class CountingConnection(sqlite3.Connection):
    """A real SQLite connection that counts the SQL functions registered on it."""

    registered: ClassVar[list[str]] = []

    def create_function(self, name: str, *args: Any, **kwargs: Any) -> None:
        if name == "bounce_fold":  # SQLAlchemy registers functions of its own
            CountingConnection.registered.append(name)
        super().create_function(name, *args, **kwargs)


def test_the_fold_function_is_registered_once_per_connection(tmp_path: Path) -> None:
    main, _ = two_databases(tmp_path)
    users = sa.create_engine(
        f"sqlite:///{tmp_path / 'users.sqlite3'}", connect_args={"factory": CountingConnection}
    )
    CountingConnection.registered.clear()
    factory = orm.sessionmaker(bind=main, binds={Account: users})
    handler = UserBounceHandler(Account, "mail", unit_of_work=lambda: session_scope(factory))
    for n in range(3):
        handler(bounce(email="émile@example.com", ID=10 + n)[0])
    assert CountingConnection.registered == ["bounce_fold"]  # one pooled connection
    assert [n.user_id for n in all_notices(main)] == ["1", "1", "1"]
    users.dispose()  # a new DB-API connection registers it again
    handler(bounce(email="émile@example.com", ID=13)[0])
    assert CountingConnection.registered == ["bounce_fold", "bounce_fold"]
    main.dispose()
    users.dispose()


@pytest.mark.parametrize(("stored", "bounced"), FOLDED_PAIRS)
def test_addresses_fold_on_sqlite_and_postgresql(
    url: str,  # noqa: F811 - the fixture
    stored: str,
    bounced: str,
) -> None:
    engine = sa.create_engine(url)
    Base.metadata.create_all(engine)
    create_all(engine)
    with orm.Session(engine) as session, session.begin():
        session.add_all([Account(login="u", mail=stored), Account(login="other", mail="o@x")])
    UserBounceHandler(Account, "mail", bind=engine)(bounce(email=bounced)[0])
    assert [n.user_id for n in all_notices(engine)] == ["1"]
    engine.dispose()


def documented_difference(char: str) -> bool:
    """What ``address_matches`` documents as still folding differently on PostgreSQL."""
    folded = fold_address(char)
    point = ord(char)
    return (
        (len(folded) > 1 and folded != "ss")  # a folding into several characters
        or "CHEROKEE" in unicodedata.name(char, "")
        or point == 0x0345  # COMBINING GREEK YPOGEGRAMMENI
        or 0x1C80 <= point <= 0x1C88  # historic Cyrillic letter forms
    )


def test_postgresql_folds_every_other_character_as_python(
    postgres: PostgresServer, tmp_path: Path
) -> None:
    engine = sa.create_engine(database_url("postgresql", tmp_path, postgres))
    characters = [
        chr(point)
        for point in range(1, 0x110000)
        if not 0xD800 <= point <= 0xDFFF and fold_address(chr(point)) != chr(point)
    ]
    column = sa.column("c", sa.Text)
    with engine.connect() as connection:
        # What the handler's query compares, applied to every character at once.
        expression = folded(connection.dialect, column)
        characters_table = sa.func.unnest(sa.bindparam("cs", type_=sa.ARRAY(sa.Text)))
        query = sa.select(column, expression).select_from(
            characters_table.table_valued("c").render_derived(name="t")
        )
        rows = connection.execute(query, {"cs": characters}).all()
    assert len(rows) == len(characters)
    differing = [c for c, pg in rows if pg != fold_address(c)]
    assert "ß" not in differing and "ẞ" not in differing and "ς" not in differing
    assert [c for c in differing if not documented_difference(c)] == []
    engine.dispose()
