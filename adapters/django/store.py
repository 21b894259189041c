"""``DjangoStore``: the store protocol on the project's own database, through the ORM.

De-duplication works across processes and hosts because every claim goes
through the ``bounce_middleware_bounceevent`` table: a unique ``key`` decides
which delivery is first, and conditional ``UPDATE``s take and release the
lease (``select_for_update`` would be a no-op on SQLite, so nothing relies on
row locks). A new event costs one ``INSERT`` to claim and one ``UPDATE`` to
record the last handler's success and end the claim; a batch of events costs
one transaction of a few statements to claim, and one to settle (:mod:`.batch`).

Every write joins the caller's transaction when there is one: a handler that
writes to the same database calls :meth:`DjangoStore.complete` inside its own
``transaction.atomic()``, and its writes and its completion commit together
(exactly once; see :class:`~.handlers.UserBounceHandler`). There, a completion
is recorded only while the delivery still holds its lease: once another
delivery took the event over, ``complete`` raises and the handler's
transaction rolls back, so only one of them commits its writes.

After a database error outside a transaction, a connection the error broke
(e.g. the server ended it) is closed, so that the next try reconnects.
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
from bounce_middleware.retention import StoreCounts
from bounce_middleware.store import (
    Claim,
    ClaimState,
    Record,
    Settlement,
    new_token,
    rejection_key,
    storable,
)

from . import pruning
from .batch import claim_many, event_values, settle_many
from .db import store_unavailable
from .models import BounceEvent, RejectedRequest
from .prepared import Statements, execute, statements
from .records import event_records, rejected_records


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
        values = event_values(bounce, token, now, expires)
        key = values["key"]
        prepared = self._statements(db)
        try:
            if prepared is not None:
                new = prepared.claim.run(db, [values]) == 1
            else:
                new = _insert(db, BounceEvent(**values)) is None
            if new:
                return Claim(bounce.key, ClaimState.NEW, frozenset(), token)
            return self._claim_existing(db, key, bounce.key, now, token, expires)
        except DatabaseError as exc:
            raise store_unavailable(db, "claim", exc) from None

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
                # Read what completed again: a delivery whose lease expired may have
                # committed a completion between the read above and this takeover.
                completed_text = events.values_list("completed", flat=True).first() or ""
                return Claim(key, ClaimState.RESUMED, frozenset(completed_text.splitlines()), token)
            # Another delivery took it between our read and our update: read again.
        return Claim(key, ClaimState.BUSY, completed)

    def claim_many(self, bounces: Sequence[Bounce], *, lease_seconds: float) -> list[Claim]:
        """:meth:`claim` each of ``bounces`` in one transaction (see :mod:`.batch`)."""
        db = self.db
        try:
            return claim_many(db, bounces, lease_seconds=lease_seconds, prepared=self.prepared)
        except DatabaseError as exc:
            raise store_unavailable(db, "claim_many", exc) from None

    def complete(self, claim: Claim, handler: str, *, finished: bool = False) -> None:
        """Record that one handler finished this event; ``finished`` also ends the claim.

        Inside the caller's ``transaction.atomic()`` on this store's database,
        the write commits or rolls back with the caller's own writes, and is
        made only while ``claim`` still holds the lease: once another delivery
        took the event over (this one's lease expired), it raises
        :class:`~bounce_middleware.errors.StoreUnavailable` so that the
        caller's transaction rolls back (the other delivery runs the handler).
        Outside a transaction a late completion is recorded all the same (the
        handler ran: at least once).
        """
        db = self.db
        held_only = bool(claim.token) and connections[db].in_atomic_block
        try:
            if claim.token and self._complete_held(db, claim, handler, finished):
                return
            if held_only:
                raise StoreUnavailable(
                    f"bounce store ({db}): complete: the lease was taken over by another "
                    "delivery; this delivery's transaction must roll back"
                )
            # The lease is not ours (any more): record the completion, leave the lease.
            changes: dict[str, Any] = {"completed": Concat(F("completed"), Value(handler + "\n"))}
            if finished:
                changes["finished"] = True
            BounceEvent.objects.using(db).filter(key=storable(claim.key)).update(**changes)
        except DatabaseError as exc:
            raise store_unavailable(db, "complete", exc) from None

    def _complete_held(self, db: str, claim: Claim, handler: str, finished: bool) -> bool:
        """Record the completion if ``claim`` holds the lease (one ``UPDATE``); False if not."""
        prepared = self._statements(db)
        if prepared is not None:
            sql = prepared.finish if finished else prepared.complete
            params = [handler + "\n", *([True] if finished else []), storable(claim.key)]
            return execute(db, sql, [*params, claim.token]) > 0
        changes: dict[str, Any] = {"completed": Concat(F("completed"), Value(handler + "\n"))}
        if finished:
            changes.update(finished=True, lease_token="", lease_expires=None)
        events = BounceEvent.objects.using(db).filter(
            key=storable(claim.key), lease_token=claim.token
        )
        return events.update(**changes) > 0

    def release(self, claim: Claim, *, finished: bool) -> None:
        """End a claim; ``finished`` when every wanted handler has completed."""
        if finished:
            self._update("release", claim, _finish(claim.token))
        else:
            self._update("release", claim, {"lease_expires": None, "lease_token": ""}, held=True)

    def settle_many(self, settlements: Sequence[Settlement]) -> None:
        """:meth:`complete` each settlement's handlers and :meth:`release` its claim,
        in one transaction.

        Inside the caller's ``transaction.atomic()``, each is completed and released
        in turn, with :meth:`complete`'s rule there: a completion whose lease was
        taken over raises, so that the caller's transaction rolls back.
        """
        db = self.db
        try:
            if not connections[db].in_atomic_block:
                settle_many(db, settlements, prepared=self.prepared)
                return
            with transaction.atomic(using=db):
                for settlement in settlements:
                    for handler in settlement.completed:
                        self.complete(settlement.claim, handler)
                    self.release(settlement.claim, finished=settlement.finished)
        except DatabaseError as exc:
            raise store_unavailable(db, "settle_many", exc) from None

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
            raise store_unavailable(db, where, exc) from None

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
            return rejected_records(self.using, kind, email, unfinished, limit)
        return event_records(self.using, kind, email, unfinished, limit)

    def reject(self, provider: str, body: bytes, reason: str) -> str:
        """Keep an authenticated request refused with 400 (once per provider and body)."""
        key = rejection_key(provider, body)
        db = self.using or router.db_for_write(RejectedRequest)
        row = RejectedRequest(
            key=key, provider=storable(provider), body=body, reason=storable(reason) or "refused"
        )
        try:
            refused = _insert(db, row)
            # Kept already (the first reason stays) only if the row is there: the
            # INSERT may have been refused by another constraint or a trigger.
            rows = RejectedRequest.objects.using(db)
            if refused is not None and not rows.filter(key=key).exists():
                raise store_unavailable(db, "reject", refused)
        except DatabaseError as exc:
            raise store_unavailable(db, "reject", exc) from None
        return key

    def resolve(self, key: str) -> None:
        """Mark a rejected record replayed."""
        db = self.using or router.db_for_write(RejectedRequest)
        try:
            RejectedRequest.objects.using(db).filter(key=key).update(resolved=True)
        except DatabaseError as exc:
            raise store_unavailable(db, "resolve", exc) from None

    def prune(self, before: datetime, *, limit: int) -> int:
        """Delete at most ``limit`` finished events received before ``before``, oldest first."""
        return pruning.prune(self.db, before, limit=limit)

    def counts(self, *, before: datetime | None = None) -> StoreCounts:
        """Count events, unfinished events and rejected requests (and, with ``before``,
        the finished events received before it)."""
        return pruning.counts(self.using, before)

    def close(self) -> None:
        """Nothing to release: Django owns the connections."""


def default_store() -> DjangoStore:
    """The store ``BOUNCE_MIDDLEWARE`` uses unless ``STORE`` says otherwise."""
    return DjangoStore()


def _insert(db: str, row: models.Model) -> IntegrityError | None:
    """INSERT ``row``; the IntegrityError that refused it (e.g. its key exists), else None."""
    try:
        if connections[db].in_atomic_block:
            # Inside the caller's transaction a savepoint keeps it usable after a
            # duplicate; outside one, the failed INSERT costs nothing.
            with transaction.atomic(using=db):
                row.save(force_insert=True, using=db)
        else:
            row.save(force_insert=True, using=db)
    except IntegrityError as exc:
        return exc
    return None


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
