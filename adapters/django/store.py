"""``DjangoStore``: the store protocol on the project's own database, through the ORM.

De-duplication works across processes and hosts because every claim goes
through the ``bounce_middleware_bounceevent`` table: a unique ``key`` decides
which delivery is first, and conditional ``UPDATE``s take and release the
lease (``select_for_update`` would be a no-op on SQLite, so nothing relies on
row locks). A new event costs one ``INSERT`` to claim and one ``UPDATE`` to
record the last handler's success and end the claim.

Every write joins the caller's transaction when there is one: a handler that
writes to the same database calls :meth:`DjangoStore.complete` inside its own
``transaction.atomic()``, and its writes and its completion commit together
(exactly once; see :class:`~.handlers.UserBounceHandler`).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any

from django.db import DatabaseError, IntegrityError, connections, models, router, transaction
from django.db.models import Case, F, Q, Value, When
from django.db.models.functions import Concat
from django.utils import timezone

from bounce_middleware.errors import StoreUnavailable
from bounce_middleware.model import Bounce, BounceKind
from bounce_middleware.store import (
    Claim,
    ClaimState,
    Record,
    address_key,
    kind_of,
    new_token,
    rejected_record,
    rejection_key,
    rejections_can_match,
    storable,
    unavailable,
)

from .models import BounceEvent, RejectedRequest
from .prepared import Statements, execute, statements


class DjangoStore:
    """A :class:`~bounce_middleware.store.Store` in the project's own database.

    ``using`` names the database alias; by default the router's choice for
    writing :class:`~.models.BounceEvent`. Safe across threads (Django gives
    each its own connection) and processes (the database decides).
    ``prepared=False`` runs every statement through the ORM (see :mod:`.prepared`).
    """

    def __init__(self, using: str | None = None, *, prepared: bool = True) -> None:
        self.using = using
        self.prepared = prepared

    def _statements(self, db: str) -> Statements | None:
        return statements(db) if self.prepared else None

    def __repr__(self) -> str:
        return f"DjangoStore(using={self.using!r})"

    @property
    def db(self) -> str:
        """The database alias events are written to."""
        return self.using or router.db_for_write(BounceEvent)

    def claim(self, bounce: Bounce, *, lease_seconds: float) -> Claim:
        """Record the event if new and try to take the right to run its handlers."""
        db = self.db
        now = timezone.now()
        token = new_token()
        expires = now + timedelta(seconds=lease_seconds)
        email = storable(bounce.email)
        key = storable(bounce.key)
        values: dict[str, Any] = {
            "key": key,
            "provider": storable(bounce.provider),
            "email": email,
            "email_key": address_key(email),
            "kind": bounce.kind.value,
            "type": storable(bounce.type),
            "description": storable(bounce.description),
            "body": bounce.body,
            "received_at": now,
            "completed": "",
            "finished": False,
            "attempts": 1,
            "lease_token": token,
            "lease_expires": expires,
        }
        prepared = self._statements(db)
        try:
            if prepared is not None:
                new = prepared.claim.run(db, [values]) == 1
            else:
                new = _insert(db, BounceEvent(**values))
            if new:
                return Claim(bounce.key, ClaimState.NEW, frozenset(), token)
            return self._claim_existing(db, key, bounce.key, now, token, expires)
        except DatabaseError as exc:
            raise unavailable(f"bounce store ({db}): claim", exc) from None

    def _claim_existing(
        self, db: str, stored_key: str, key: str, now: datetime, token: str, expires: datetime
    ) -> Claim:
        events = BounceEvent.objects.using(db).filter(key=stored_key)
        completed: frozenset[str] = frozenset()
        for _ in range(2):
            row = events.values_list("finished", "completed", "lease_expires").first()
            if row is None:  # deleted meanwhile (by an admin); the retry will insert it
                raise StoreUnavailable("bounce store: the event vanished while being claimed")
            finished, completed_text, lease_expires = row
            completed = frozenset(completed_text.splitlines())
            if finished:
                return Claim(key, ClaimState.DONE, completed)
            if lease_expires is not None and lease_expires > now:
                return Claim(key, ClaimState.BUSY, completed)
            taken = events.filter(
                Q(lease_expires__isnull=True) | Q(lease_expires__lte=now), finished=False
            ).update(lease_token=token, lease_expires=expires, attempts=F("attempts") + 1)
            if taken:
                return Claim(key, ClaimState.RESUMED, completed, token)
            # Another delivery took it between our read and our update: read again.
        return Claim(key, ClaimState.BUSY, completed)

    def complete(self, claim: Claim, handler: str, *, finished: bool = False) -> None:
        """Record that one handler finished this event; ``finished`` also ends the claim.

        Inside the caller's ``transaction.atomic()`` on this store's database,
        the write commits or rolls back with the caller's own writes.
        """
        db = self.db
        prepared = self._statements(db)
        if prepared is not None and claim.token:
            # While the claim holds the lease, one prepared statement; else the ORM below.
            sql = prepared.finish if finished else prepared.complete
            params = [handler + "\n", *([True] if finished else []), storable(claim.key)]
            try:
                if execute(db, sql, [*params, claim.token]):
                    return
            except DatabaseError as exc:
                raise unavailable(f"bounce store ({db}): complete", exc) from None
        changes: dict[str, Any] = {"completed": Concat(F("completed"), Value(handler + "\n"))}
        if finished:
            changes.update(_finish(claim.token))
        self._update("complete", claim, changes)

    def release(self, claim: Claim, *, finished: bool) -> None:
        """End a claim; ``finished`` when every wanted handler has completed."""
        if finished:
            self._update("release", claim, _finish(claim.token))
        else:
            self._update("release", claim, {"lease_expires": None, "lease_token": ""}, held=True)

    def _update(
        self, where: str, claim: Claim, changes: dict[str, Any], held: bool = False
    ) -> None:
        db = self.db
        events = BounceEvent.objects.using(db).filter(key=storable(claim.key))
        if held:  # only the lease this claim holds
            events = events.filter(lease_token=claim.token)
        try:
            events.update(**changes)
        except DatabaseError as exc:
            raise unavailable(f"bounce store ({db}): {where}", exc) from None

    def records(
        self,
        *,
        kind: BounceKind | None = None,
        email: str | None = None,
        unfinished: bool = False,
        rejected: bool = False,
        limit: int | None = 100,
    ) -> Sequence[Record]:
        """Stored events (or rejected records), newest first, optionally filtered."""
        if rejected:
            return self._rejected(kind, email, unfinished, limit)
        events = BounceEvent.objects.using(self.using or router.db_for_read(BounceEvent))
        if kind is not None:
            events = events.filter(kind=kind.value)
        if email is not None:
            events = events.filter(email_key=address_key(email))
        if unfinished:
            events = events.filter(finished=False)
        return _read(events, limit, _record)

    def _rejected(
        self, kind: BounceKind | None, email: str | None, unfinished: bool, limit: int | None
    ) -> Sequence[Record]:
        # A rejected record has kind "unknown" and no address.
        if not rejections_can_match(kind, email):
            return []
        rows = RejectedRequest.objects.using(self.using or router.db_for_read(RejectedRequest))
        if unfinished:
            rows = rows.filter(resolved=False)
        return _read(rows, limit, _rejected_record)

    def reject(self, provider: str, body: bytes, reason: str) -> str:
        """Keep an authenticated request refused with 400 (once per provider and body)."""
        key = rejection_key(provider, body)
        db = self.using or router.db_for_write(RejectedRequest)
        row = RejectedRequest(
            key=key, provider=storable(provider), body=body, reason=storable(reason) or "refused"
        )
        try:
            _insert(db, row)  # kept already: the first reason stays
        except DatabaseError as exc:
            raise unavailable(f"bounce store ({db}): reject", exc) from None
        return key

    def resolve(self, key: str) -> None:
        """Mark a rejected record replayed."""
        db = self.using or router.db_for_write(RejectedRequest)
        try:
            RejectedRequest.objects.using(db).filter(key=key).update(resolved=True)
        except DatabaseError as exc:
            raise unavailable(f"bounce store ({db}): resolve", exc) from None

    def close(self) -> None:
        """Nothing to release: Django owns the connections."""


def default_store() -> DjangoStore:
    """The store ``BOUNCE_MIDDLEWARE`` uses unless ``STORE`` says otherwise."""
    return DjangoStore()


def _insert(db: str, row: models.Model) -> bool:
    """INSERT ``row``; False if its unique key is there already."""
    try:
        if connections[db].in_atomic_block:
            # Inside the caller's transaction a savepoint keeps it usable after a
            # duplicate; outside one, the failed INSERT costs nothing.
            with transaction.atomic(using=db):
                row.save(force_insert=True, using=db)
        else:
            row.save(force_insert=True, using=db)
    except IntegrityError:
        return False
    return True


def _finish(token: str) -> dict[str, Any]:
    """Changes that mark the event finished and free the lease if ``token`` still holds it."""
    held = Q(lease_token=token)
    # lease_expires first: MySQL evaluates SET left to right, with values already assigned.
    return {
        "lease_expires": Case(
            When(held, then=Value(None, output_field=models.DateTimeField())),
            default=F("lease_expires"),
        ),
        "lease_token": Case(When(held, then=Value("")), default=F("lease_token")),
        "finished": True,
    }


def _read(rows: Any, limit: int | None, build: Any) -> list[Record]:
    if limit is not None:
        rows = rows[: max(limit, 0)]
    try:
        return [build(row) for row in rows]
    except DatabaseError as exc:
        raise unavailable("bounce store: records", exc) from None


def _record(event: BounceEvent) -> Record:
    return Record(
        key=event.key,
        provider=event.provider,
        email=event.email,
        kind=kind_of(event.kind),
        type=event.type,
        received_at=event.received_at,
        finished=event.finished,
        completed=event.completed_handlers,
        body=bytes(event.body),
        attempts=event.attempts,
    )


def _rejected_record(row: RejectedRequest) -> Record:
    return rejected_record(
        key=row.key,
        provider=row.provider,
        received_at=row.received_at,
        resolved=row.resolved,
        body=bytes(row.body),
        reason=row.reason,
    )
