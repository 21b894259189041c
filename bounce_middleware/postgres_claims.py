"""The SQL of :class:`~bounce_middleware.postgres_store.PostgresStore`'s claims and leases.

Every operation is ONE statement, run in autocommit mode: atomic by itself,
whatever other servers do at the same moment, with no table lock and no retry.

- A claim is ``INSERT ... ON CONFLICT (key) DO UPDATE ... WHERE`` the stored
  event is unfinished and its lease free or expired: the unique key decides
  which of any number of concurrent deliveries, on any host, records the event
  (``NEW``) or takes an expired lease over (``RESUMED``); a conflicting
  insert waits for the other transaction and then sees its row. When nothing
  was written, the same statement reads the row: ``DONE`` or ``BUSY``.
- Leases are compared with the server's clock (``now()``), so the application
  hosts' clocks need not agree.
- A batch is the same statement over ``unnest`` of arrays: rows are inserted,
  and locked, in key order, so that two batches sharing events wait for each
  other instead of deadlocking; ids are drawn in the batch's order, so a
  listing shows the batch as if it had been claimed event by event.
- A completion is an ``INSERT ... ON CONFLICT DO NOTHING`` keyed by the
  event's id; the one that finishes the event also updates it, in the same
  statement. A lease is freed only by the claim whose token holds it.
"""

from __future__ import annotations

import secrets
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from .model import Bounce
from .store import Claim, ClaimState, Settlement, address_key, new_token, storable

if TYPE_CHECKING:
    from psycopg import Connection
    from psycopg.rows import TupleRow

__all__ = ["claim", "claim_many", "complete", "release", "settle_many"]

_STATES = {state.value: state for state in ClaimState}

# Completed handlers of e; a row this very statement inserted (attempts = 1) has none.
_COMPLETED = """CASE WHEN e.attempts = 1 THEN '{}'::text[]
    ELSE ARRAY(SELECT handler FROM bounce_completion WHERE event = e.id) END"""

_TAKE = """ON CONFLICT (key) DO UPDATE
        SET lease_token = excluded.lease_token,
            lease_expires = excluded.lease_expires,
            attempts = e.attempts + 1
        WHERE e.finished_at IS NULL AND (e.lease_expires IS NULL OR e.lease_expires <= now())"""

# The fallback SELECT sees the statement's snapshot: a row another delivery inserted
# after it began is not there at all, and its key gets no row back (BUSY: it is leased).
_CLAIM = f"""WITH claimed AS (
    INSERT INTO bounce_event AS e (key, provider, email, email_key, kind, type,
        received_at, attempts, body, lease_token, lease_expires)
    VALUES (%(key)s, %(provider)s, %(email)s, %(email_key)s, %(kind)s, %(type)s,
        now(), 1, %(body)s, %(token)s, now() + make_interval(secs => %(lease)s))
    {_TAKE}
    RETURNING CASE WHEN e.attempts = 1 THEN 'new' ELSE 'resumed' END AS state,
        {_COMPLETED} AS completed
)
SELECT state, completed FROM claimed
UNION ALL
SELECT CASE WHEN e.finished_at IS NULL THEN 'busy' ELSE 'done' END,
    ARRAY(SELECT handler FROM bounce_completion WHERE event = e.id)
FROM bounce_event AS e
WHERE e.key = %(key)s AND NOT EXISTS (SELECT FROM claimed)"""

# nextval is called explicitly because the ids must follow the batch's order while the
# rows are written in key order: the column's default would number them in key order
# (a listing, and replay, would then run a batch's events sorted by key). It is why the
# role needs USAGE on bounce_event_id_seq; an identity default needs no such grant.
_CLAIM_MANY = f"""WITH batch AS MATERIALIZED (
    SELECT b.*, nextval('bounce_event_id_seq') AS id
    FROM unnest(%(keys)s::text[], %(providers)s::text[], %(emails)s::text[],
        %(email_keys)s::text[], %(kinds)s::text[], %(types)s::text[], %(bodies)s::bytea[],
        %(tokens)s::text[]) AS b(key, provider, email, email_key, kind, type, body, token)
), claimed AS (
    INSERT INTO bounce_event AS e (id, key, provider, email, email_key, kind, type,
        received_at, attempts, body, lease_token, lease_expires)
    SELECT id, key, provider, email, email_key, kind, type,
        now(), 1, body, token, now() + make_interval(secs => %(lease)s)
    FROM batch ORDER BY key
    {_TAKE}
    RETURNING e.key, CASE WHEN e.attempts = 1 THEN 'new' ELSE 'resumed' END AS state,
        {_COMPLETED} AS completed
)
SELECT key, state, completed FROM claimed
UNION ALL
SELECT e.key, CASE WHEN e.finished_at IS NULL THEN 'busy' ELSE 'done' END,
    ARRAY(SELECT handler FROM bounce_completion WHERE event = e.id)
FROM bounce_event AS e
WHERE e.key = ANY(%(keys)s::text[]) AND e.key NOT IN (SELECT key FROM claimed)"""

_INSERT_COMPLETION = """INSERT INTO bounce_completion (event, handler, completed_at)
    SELECT id, %(handler)s, now() FROM bounce_event WHERE key = %(key)s
    ON CONFLICT (event, handler) DO NOTHING"""

# SET expressions all see the row as it was, so the token test holds for both.
_FREE = """lease_token = CASE WHEN e.lease_token = %(token)s THEN NULL ELSE e.lease_token END,
    lease_expires = CASE WHEN e.lease_token = %(token)s THEN NULL ELSE e.lease_expires END"""

_COMPLETE_AND_FINISH = f"""WITH completion AS ({_INSERT_COMPLETION})
UPDATE bounce_event AS e SET finished_at = coalesce(e.finished_at, now()), {_FREE}
WHERE e.key = %(key)s"""

# A release that neither finishes the event nor holds its lease writes nothing.
_RELEASE = f"""UPDATE bounce_event AS e
SET finished_at = CASE WHEN %(finished)s THEN coalesce(e.finished_at, now())
        ELSE e.finished_at END,
    {_FREE}
WHERE e.key = %(key)s AND (%(finished)s OR e.lease_token = %(token)s)"""

# The events are locked in key order before anything else is written (see _CLAIM_MANY).
# An event settled twice in one batch (a delivery whose lease ran out, and the one that
# took it over) brings every token: whichever holds the lease frees it, as one release
# after the other would.
_SETTLE_MANY = """WITH settled AS MATERIALIZED (
    SELECT e.id, s.tokens, s.finished
    FROM (SELECT key, array_agg(token) AS tokens, bool_or(finished) AS finished
          FROM unnest(%(keys)s::text[], %(tokens)s::text[], %(finished)s::boolean[])
              AS u(key, token, finished)
          GROUP BY key) AS s
    JOIN bounce_event AS e ON e.key = s.key
    ORDER BY e.key
    FOR NO KEY UPDATE OF e
), completion AS (
    INSERT INTO bounce_completion (event, handler, completed_at)
    SELECT e.id, h.handler, now()
    FROM unnest(%(handler_keys)s::text[], %(handlers)s::text[]) AS h(key, handler)
    JOIN bounce_event AS e ON e.key = h.key
    ON CONFLICT (event, handler) DO NOTHING
)
UPDATE bounce_event AS e
SET finished_at = CASE WHEN s.finished THEN coalesce(e.finished_at, now()) ELSE e.finished_at END,
    lease_token = CASE WHEN e.lease_token = ANY(s.tokens) THEN NULL ELSE e.lease_token END,
    lease_expires = CASE WHEN e.lease_token = ANY(s.tokens) THEN NULL ELSE e.lease_expires END
FROM settled AS s
WHERE e.id = s.id AND (s.finished OR e.lease_token = ANY(s.tokens))"""


def claim(conn: Connection[TupleRow], bounce: Bounce, *, lease_seconds: float) -> Claim:
    """Claim one event, in one statement."""
    email = storable(bounce.email)
    token = new_token()
    row = conn.execute(
        _CLAIM,
        {
            "key": storable(bounce.key),
            "provider": storable(bounce.provider),
            "email": email,
            "email_key": address_key(email),
            "kind": bounce.kind.value,
            "type": storable(bounce.type),
            "body": bounce.body,
            "token": token,
            "lease": float(lease_seconds),
        },
    ).fetchone()
    state, completed = row if row is not None else ("busy", [])
    return _claim(bounce.key, state, completed, token)


def _claim(key: str, state: str, completed: Sequence[str], token: str) -> Claim:
    decided = _STATES[state]
    runs = decided in (ClaimState.NEW, ClaimState.RESUMED)
    return Claim(key, decided, frozenset(completed), token if runs else "")


def claim_many(
    conn: Connection[TupleRow], bounces: Sequence[Bounce], *, lease_seconds: float
) -> list[Claim]:
    """Claim every event of a batch, each as :func:`claim` would, in order, in one statement.

    Two bounces whose keys the store keeps alike (:func:`storable`) are claimed
    once: the later one is as a second claim right after the first would be.
    """
    rows: dict[str, Bounce] = {}
    for bounce in bounces:
        rows.setdefault(storable(bounce.key), bounce)
    keys = list(rows)
    emails = [storable(b.email) for b in rows.values()]
    # One read of the random source for the batch: a token per event, as new_token() makes.
    random = secrets.token_hex(8 * len(keys))
    tokens = [random[16 * n : 16 * n + 16] for n in range(len(keys))]
    params: dict[str, Any] = {
        "keys": keys,
        "providers": [storable(b.provider) for b in rows.values()],
        "emails": emails,
        "email_keys": [address_key(email) for email in emails],
        "kinds": [b.kind.value for b in rows.values()],
        "types": [storable(b.type) for b in rows.values()],
        "bodies": [b.body for b in rows.values()],
        "tokens": tokens,
        "lease": float(lease_seconds),
    }
    decided = {
        key: (state, completed) for key, state, completed in conn.execute(_CLAIM_MANY, params)
    }
    token_of = dict(zip(keys, tokens, strict=True))
    claims: list[Claim] = []
    first: dict[str, Claim] = {}
    for bounce in bounces:
        key = storable(bounce.key)
        earlier = first.get(key)
        if earlier is not None:
            state = ClaimState.BUSY if earlier.runs_handlers else earlier.state
            claims.append(Claim(bounce.key, state, earlier.completed))
            continue
        state_value, completed = decided.get(key, ("busy", []))
        made = _claim(bounce.key, state_value, completed, token_of[key])
        first[key] = made
        claims.append(made)
    return claims


def complete(conn: Connection[TupleRow], claim: Claim, handler: str, *, finished: bool) -> None:
    """Record one handler's success; ``finished`` also ends the claim as finished."""
    params = {"handler": storable(handler), "key": storable(claim.key), "token": claim.token}
    conn.execute(_COMPLETE_AND_FINISH if finished else _INSERT_COMPLETION, params)


def release(conn: Connection[TupleRow], claim: Claim, *, finished: bool) -> None:
    """End a claim: mark the event finished (if ``finished``), and free the lease only if
    the claim's token still holds it."""
    conn.execute(_RELEASE, {"finished": finished, "token": claim.token, "key": storable(claim.key)})


def settle_many(conn: Connection[TupleRow], settlements: Sequence[Settlement]) -> None:
    """Record each settlement's completed handlers, then release its claim: one statement."""
    keys = [storable(s.claim.key) for s in settlements]
    done = sorted(
        {
            (key, storable(name))
            for key, s in zip(keys, settlements, strict=True)
            for name in s.completed
        }
    )
    conn.execute(
        _SETTLE_MANY,
        {
            "keys": keys,
            "tokens": [s.claim.token for s in settlements],
            "finished": [s.finished for s in settlements],
            "handler_keys": [key for key, _ in done],
            "handlers": [name for _, name in done],
        },
    )
