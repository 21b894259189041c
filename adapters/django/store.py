"""``DjangoStore``: the store protocol on the project's own database.

De-duplication works across processes and hosts because every claim goes
through the ``bounce_middleware_bounceevent`` table: a unique ``key`` decides
which delivery is first, and conditional ``UPDATE``s take and release the
lease (``select_for_update`` would be a no-op on SQLite, so nothing relies on
row locks). A new event costs one ``INSERT`` to claim and one ``UPDATE`` to
release. Those statements, and the completion ``UPDATE``, run as SQL built
once per database from the model's metadata: on this path the ORM's query
building costs several times the statement itself.

A handler that writes to the same database can record its own completion
inside its transaction with :func:`record_completion`; its writes and the
record then commit together, which makes it exactly-once.
"""

from __future__ import annotations

from collections.abc import Sequence
from contextvars import ContextVar
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from django.db import DatabaseError, IntegrityError, connections, router, transaction
from django.db.models import F, Q, Value
from django.db.models.functions import Concat
from django.utils import timezone

from bounce_middleware.errors import StoreUnavailable
from bounce_middleware.model import Bounce, BounceKind
from bounce_middleware.store import Claim, ClaimState, Record, new_token

from .models import BounceEvent
from .sql import event_sql, execute


@dataclass(slots=True)
class _Active:
    """The claim this context holds: handlers completed so far, and those that recorded
    their completion in their own transaction."""

    key: str
    token: str
    using: str
    completed: set[str] = field(default_factory=set)
    recorded: set[str] = field(default_factory=set)

    def completed_text(self, extra: str = "") -> str:
        """``completed`` (plus ``extra``) as stored: one name per line."""
        names = sorted(self.completed | {extra}) if extra else sorted(self.completed)
        return "".join(name + "\n" for name in names)


# Per thread (and per asyncio task), like Django's connections.
_active: ContextVar[_Active | None] = ContextVar("bounce_middleware_active_claim", default=None)


class DjangoStore:
    """A :class:`~bounce_middleware.store.Store` in the project's own database.

    ``using`` names the database alias; by default the router's choice for
    writing :class:`~.models.BounceEvent`. Safe across threads (Django gives
    each its own connection) and processes (the database decides).
    """

    def __init__(self, using: str | None = None) -> None:
        self.using = using

    def _db(self) -> str:
        return self.using or router.db_for_write(BounceEvent)

    def claim(self, bounce: Bounce, *, lease_seconds: float) -> Claim:
        """Record the event if new and try to take the right to run its handlers."""
        db = self._db()
        now = timezone.now()
        token = new_token()
        expires = now + timedelta(seconds=lease_seconds)
        try:
            if self._insert(db, bounce, now, token, expires):
                _active.set(_Active(bounce.key, token, db))
                return Claim(bounce.key, ClaimState.NEW, frozenset(), token)
            return self._claim_existing(db, bounce.key, now, token, expires)
        except DatabaseError as exc:
            raise StoreUnavailable(f"bounce store ({db}): {type(exc).__name__}") from exc

    def _insert(
        self, db: str, bounce: Bounce, now: datetime, token: str, expires: datetime
    ) -> bool:
        sql = event_sql(db)
        values = {
            "key": bounce.key,
            "provider": bounce.provider,
            "email": bounce.email,
            "kind": bounce.kind.value,
            "type": bounce.type,
            "description": bounce.description,
            "body": bounce.body,
            "received_at": now,
            "completed": "",
            "finished": False,
            "attempts": 1,
            "lease_token": token,
            "lease_expires": expires,
        }
        params = sql.insert_params(values)
        # Outside a transaction (the middleware's case) a failed INSERT costs
        # nothing; inside one, a savepoint keeps the caller's transaction usable.
        try:
            if connections[db].in_atomic_block:
                with transaction.atomic(using=db):
                    execute(db, sql.insert, params)
            else:
                execute(db, sql.insert, params)
        except IntegrityError:
            return False
        return True

    def _claim_existing(
        self, db: str, key: str, now: datetime, token: str, expires: datetime
    ) -> Claim:
        events = BounceEvent.objects.using(db).filter(key=key)
        for _ in range(2):
            row = events.values_list("finished", "completed", "lease_expires").first()
            if row is None:  # deleted meanwhile (by an admin); the retry will insert it
                raise StoreUnavailable("bounce event vanished while being claimed")
            finished, completed_text, lease_expires = row
            completed = frozenset(completed_text.splitlines())
            if finished:
                return Claim(key, ClaimState.DONE, completed)
            if isinstance(lease_expires, datetime) and lease_expires > now:
                return Claim(key, ClaimState.BUSY, completed)
            taken = events.filter(
                Q(lease_expires__isnull=True) | Q(lease_expires__lte=now), finished=False
            ).update(lease_token=token, lease_expires=expires, attempts=F("attempts") + 1)
            if taken:
                _active.set(_Active(key, token, db, set(completed)))
                return Claim(key, ClaimState.RESUMED, completed, token)
            # Another delivery took it between our read and our update: read again.
        return Claim(key, ClaimState.BUSY, completed)

    def complete(self, claim: Claim, handler: str, *, finished: bool = False) -> None:
        """Record that one handler finished this event; ``finished`` also ends the claim.

        A handler that recorded itself in its own transaction (``notify_users``)
        costs no write here, so ending the claim stays a single statement.
        """
        self._complete(claim, handler)
        if finished:
            self.release(claim, finished=True)

    def _complete(self, claim: Claim, handler: str) -> None:
        db = self._db()
        active = _active.get()
        try:
            if active is None or active.token != claim.token:
                # Not claimed in this context: append in SQL, whatever is stored.
                BounceEvent.objects.using(db).filter(key=claim.key).update(
                    completed=Concat(F("completed"), Value(handler + "\n"))
                )
            elif handler not in active.recorded:  # else recorded in the handler's transaction
                # Only the lease holder writes ``completed``, so it can write the whole set.
                text = active.completed_text(handler)
                execute(db, event_sql(db).set_completed, [text, claim.key])
                active.completed.add(handler)
        except DatabaseError as exc:
            raise StoreUnavailable(f"bounce store ({db}): {type(exc).__name__}") from exc

    def release(self, claim: Claim, *, finished: bool) -> None:
        """End a claim; ``finished`` when every wanted handler has completed."""
        active = _active.get()
        if active is not None and active.token == claim.token:
            _active.set(None)
        db = self._db()
        sql = event_sql(db)
        try:
            if finished:
                execute(db, sql.finish, [claim.token, claim.token, True, claim.key])
            else:
                execute(db, sql.release, [claim.key, claim.token])
        except DatabaseError as exc:
            raise StoreUnavailable(f"bounce store ({db}): {type(exc).__name__}") from exc

    def close(self) -> None:
        """Nothing to release: Django owns the connections."""

    def records(
        self,
        *,
        kind: BounceKind | None = None,
        email: str | None = None,
        unfinished: bool = False,
        limit: int | None = 100,
    ) -> Sequence[Record]:
        """Stored events, newest first, optionally filtered."""
        events = BounceEvent.objects.using(self.using or router.db_for_read(BounceEvent))
        if kind is not None:
            events = events.filter(kind=kind.value)
        if email is not None:
            events = events.filter(email__iexact=email)
        if unfinished:
            events = events.filter(finished=False)
        if limit is not None:
            events = events[: max(limit, 0)]
        try:
            return [_record(event) for event in events]
        except DatabaseError as exc:
            raise StoreUnavailable(f"bounce store: {type(exc).__name__}") from exc


def default_store() -> DjangoStore:
    """The store ``BOUNCE_MIDDLEWARE`` uses unless ``STORE`` says otherwise."""
    return DjangoStore()


def _record(event: BounceEvent) -> Record:
    return Record(
        key=event.key,
        provider=event.provider,
        email=event.email,
        kind=BounceKind(event.kind),
        type=event.type,
        received_at=event.received_at,
        finished=event.finished,
        completed=event.completed_handlers,
        body=bytes(event.body),
        attempts=event.attempts,
    )


def record_completion(bounce: Bounce, handler: str, using: str) -> bool:
    """Record ``handler`` as completed for ``bounce`` inside the caller's transaction.

    Call it inside ``transaction.atomic(using=using)``, after the handler's own
    writes. It does something only while a :class:`DjangoStore` claim on the
    same database is running this event's handlers; then the completion
    commits (or rolls back) with the handler's writes, and the store does not
    write it a second time. Returns True when it recorded.
    """
    active = _active.get()
    if active is None or active.key != bounce.key or active.using != using:
        return False
    text = active.completed_text(handler)
    execute(using, event_sql(using).set_completed, [text, bounce.key])

    def committed() -> None:
        active.completed.add(handler)
        active.recorded.add(handler)

    transaction.on_commit(committed, using=using)
    return True
