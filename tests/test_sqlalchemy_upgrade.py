"""upgrade_tables: version 0.1's tables, with rows, brought up to the current schema."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime

import pytest
import sqlalchemy as sa
from sqlalchemy import orm

from bounce_middleware import ClaimState
from bounce_middleware.adapters.sqlalchemy import (
    SQLAlchemyStore,
    UserBounceHandler,
    pending_notice,
    upgrade_tables,
)
from tests.sqlalchemy_db import Account, Base, bounce
from tests.sqlalchemy_db import url as url  # noqa: F401 - fixture

# The tables exactly as version 0.1 declared them.
OLD = sa.MetaData(
    naming_convention={
        "ix": "ix_%(table_name)s_%(column_0_N_name)s",
        "uq": "uq_%(table_name)s_%(column_0_N_name)s",
        "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
        "pk": "pk_%(table_name)s",
    }
)
sa.Table(
    "bounce_events",
    OLD,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("key", sa.String(255), unique=True, nullable=False),
    sa.Column("provider", sa.String(32), nullable=False),
    sa.Column("email", sa.String(320), index=True, nullable=False),
    sa.Column("kind", sa.String(16), nullable=False),
    sa.Column("type", sa.String(64), nullable=False),
    sa.Column("received_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("finished", sa.Boolean, nullable=False),
    sa.Column("attempts", sa.Integer, nullable=False),
    sa.Column("lease_token", sa.String(32)),
    sa.Column("lease_until", sa.Float),
    sa.Column("body", sa.LargeBinary, nullable=False),
)
sa.Table(
    "bounce_event_handlers",
    OLD,
    sa.Column(
        "event_key",
        sa.String(255),
        sa.ForeignKey("bounce_events.key", ondelete="CASCADE"),
        primary_key=True,
    ),
    sa.Column("handler", sa.String(255), primary_key=True),
    sa.Column("completed_at", sa.DateTime(timezone=True), nullable=False),
)
sa.Table(
    "bounce_notices",
    OLD,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("user_id", sa.String(64), nullable=False),
    sa.Column("email", sa.String(320), nullable=False),
    sa.Column("event_key", sa.String(255), nullable=False),
    sa.Column("kind", sa.String(16), nullable=False),
    sa.Column("type", sa.String(64), nullable=False),
    sa.Column("description", sa.Text, nullable=False),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("shown_at", sa.DateTime(timezone=True)),
    sa.UniqueConstraint("event_key", "user_id"),
    sa.Index("ix_bounce_notices_user_pending", "user_id", "shown_at"),
)


@pytest.fixture
def old(url: str) -> Iterator[sa.Engine]:
    """A database made by version 0.1, with one finished event and one pending notice."""
    engine = sa.create_engine(url)
    OLD.create_all(engine)
    Base.metadata.create_all(engine)
    when = datetime(2024, 5, 1, tzinfo=UTC)
    with engine.begin() as connection:
        connection.execute(sa.insert(Account), [{"login": "emile", "mail": "Émile@example.com"}])
        connection.execute(
            OLD.tables["bounce_events"].insert(),
            [
                {
                    "key": "postmark:1",
                    "provider": "postmark",
                    "email": "ÉMILE@example.com",
                    "kind": "hard",
                    "type": "HardBounce",
                    "received_at": when,
                    "finished": True,
                    "attempts": 1,
                    "body": b"{}",
                }
            ],
        )
        connection.execute(
            OLD.tables["bounce_event_handlers"].insert(),
            [{"event_key": "postmark:1", "handler": "h", "completed_at": when}],
        )
        connection.execute(
            OLD.tables["bounce_notices"].insert(),
            [
                {
                    "user_id": "1",
                    "email": "ÉMILE@example.com",
                    "event_key": "postmark:1",
                    "kind": "hard",
                    "type": "HardBounce",
                    "description": "gone",
                    "created_at": when,
                }
            ],
        )
    yield engine
    engine.dispose()


def test_old_tables_are_upgraded_in_place(old: sa.Engine) -> None:
    done = upgrade_tables(old)
    assert "dropped index ix_bounce_events_email" in done
    assert {"added bounce_events.email_key", "added bounce_notices.email_key"} <= set(done)
    assert "created bounce_rejections" in done
    inspector = sa.inspect(old)
    assert "ix_bounce_events_email" not in {
        i["name"] for i in inspector.get_indexes("bounce_events")
    }
    if old.dialect.name == "postgresql":
        assert "bounce_events.type is TEXT" in done
        lengths = {
            (table, c["name"]): getattr(c["type"], "length", None)
            for table in ("bounce_events", "bounce_event_handlers", "bounce_notices")
            for c in inspector.get_columns(table)
        }
        assert {k: v for k, v in lengths.items() if v is not None} == {
            ("bounce_events", "lease_token"): 32
        }
    assert upgrade_tables(old) == []  # idempotent

    store = SQLAlchemyStore(old)
    # The old rows are there, their folded addresses filled in.
    [record] = store.records(email="émile@EXAMPLE.com")
    assert (record.key, record.finished, record.completed) == ("postmark:1", True, frozenset({"h"}))
    with orm.Session(old) as session:
        notice = pending_notice(session, 1, "Émile@example.com")
        assert notice is not None and notice.description == "gone"
    # What version 0.1 refused on PostgreSQL is recorded now.
    event, _ = bounce(Type="T" * 100, email="x" * 400 + "@example.com")
    assert store.claim(event, lease_seconds=60).state is ClaimState.NEW
    assert store.reject("postmark", b"[]", "not an object") in {
        r.key for r in store.records(rejected=True)
    }
    UserBounceHandler(Account, "mail", bind=old)(bounce(email="émile@example.com")[0])
    assert len(store.records(email="x" * 400 + "@EXAMPLE.com")) == 1


def test_missing_tables_are_created(url: str) -> None:
    engine = sa.create_engine(url)
    assert len(upgrade_tables(engine)) == 4
    assert upgrade_tables(engine) == []
    engine.dispose()
