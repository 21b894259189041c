"""What the SQLAlchemy adapter's tests share: an app's user model, databases, bounces.

Import the fixtures into a test module (``from tests.sqlalchemy_db import engine``)
to use them there. ``engine`` runs a test on SQLite and on the real PostgreSQL
server of ``tests/postgres.py``.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy import orm

from bounce_middleware import Bounce
from bounce_middleware.adapters.sqlalchemy import Notice, create_all
from bounce_middleware.providers.postmark import parse_postmark
from bounce_middleware.testing import postmark_bounce

from .postgres import PostgresServer

DATABASES = ["sqlite", "postgresql"]


class Base(orm.DeclarativeBase):
    """The application's own declarative base (not the library's)."""


class Account(Base):
    """An application's user table: its own names, an address that may be NULL."""

    __tablename__ = "accounts"

    pk: orm.Mapped[int] = orm.mapped_column(primary_key=True)
    login: orm.Mapped[str] = orm.mapped_column(sa.String(50), unique=True)
    mail: orm.Mapped[str | None] = orm.mapped_column(sa.Text)


ACCOUNTS = [
    ("ann", "Ann@Example.com"),
    ("ann2", "ann@example.COM"),
    ("bob", "bob@example.com"),
    ("nomail", None),
    ("emile", "Émile@example.com"),
]


def bounce(type: str = "HardBounce", **fields: Any) -> tuple[Bounce, bytes]:
    """A parsed Postmark bounce and its body."""
    body = json.dumps(postmark_bounce(type, **fields)).encode()
    [parsed] = parse_postmark(body).events
    return parsed, body


def database_url(kind: str, tmp_path: Path, postgres: PostgresServer | None) -> str:
    """A new, empty database of ``kind`` (``sqlite`` or ``postgresql``)."""
    if kind == "sqlite":
        return f"sqlite:///{tmp_path / 'db.sqlite3'}"
    assert postgres is not None
    return postgres.url(postgres.create_database(), driver="postgresql+psycopg")


@pytest.fixture(params=DATABASES)
def url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A new database, on SQLite and on the real PostgreSQL server."""
    postgres = request.getfixturevalue("postgres") if request.param == "postgresql" else None
    return database_url(request.param, tmp_path, postgres)


def make_engine(url: str) -> sa.Engine:
    """The app's tables with :data:`ACCOUNTS` (pk 1..5), and the library's tables."""
    engine = sa.create_engine(url)
    Base.metadata.create_all(engine)
    create_all(engine)
    with orm.Session(engine) as session, session.begin():
        session.add_all([Account(login=login, mail=mail) for login, mail in ACCOUNTS])
    return engine


@pytest.fixture
def engine(url: str) -> Iterator[sa.Engine]:
    """:func:`make_engine` on SQLite, then on PostgreSQL."""
    engine = make_engine(url)
    yield engine
    engine.dispose()


def all_notices(engine: sa.Engine) -> list[Notice]:
    """Every notice, oldest first."""
    with orm.Session(engine) as session:
        return list(session.scalars(sa.select(Notice).order_by(Notice.id)))
