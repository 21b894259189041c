"""Celery for :mod:`bounce_middleware.handoff`: the webhook queues keys, a worker runs handlers.

``BounceMiddleware(..., store=..., handoff=CeleryHandoff(celery_app))`` (in
settings: ``bounce.celery_app = myproject.celery:app``) records each event,
sends its key to the task ``bounce_middleware.deliver`` and answers 200 at
once. Importing this module registers that task and ``bounce_middleware.sweep``
with every Celery app (shared tasks).

In the worker, the task runs with the store, routes, handlers and scope of
the application's own middleware, found in this order: a middleware built in
the worker process with a handoff of this Celery app (a Flask app made at
start-up, a Pyramid app loaded by the celery module); the application named by
the Celery setting ``bounce_middleware_app`` (``module:attr``, read as
``bounce-middleware replay --app`` reads it); a framework's own loader (the
Django adapter builds it from ``BOUNCE_MIDDLEWARE``).
"""

from __future__ import annotations

import logging
import math
import random
import threading
from collections.abc import Callable, Sequence
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from celery import Celery, Task, shared_task

from .errors import ConfigurationError
from .handoff import run_queued, sweep
from .text import loggable

if TYPE_CHECKING:
    from .receiver import Receiver

logger = logging.getLogger("bounce_middleware")

#: The task that delivers one queued event; its only argument is the event's key.
DELIVER_TASK = "bounce_middleware.deliver"
#: The task that queues again the events left unfinished (Celery beat runs it).
SWEEP_TASK = "bounce_middleware.sweep"
#: The Celery setting naming the application (``module:attr``) a worker loads.
APP_SETTING = "bounce_middleware_app"

#: Finds the receiver for a Celery app in a worker, or returns None (a framework's loader).
ReceiverLoader = Callable[[Celery], "Receiver | None"]


class CeleryHandoff:
    """Hands events to Celery: one ``bounce_middleware.deliver`` message per event key.

    ``queue`` routes the messages (default: Celery's routing). In the worker,
    a failed delivery (a handler raised, the store failed, another worker
    holds the event) is retried up to ``max_retries`` times, ``retry_backoff``
    seconds after the first try and twice as long each time after, at most
    ``retry_backoff_max`` (with ``retry_jitter``, a random delay between half
    and all of it). After the last retry the event waits, unfinished, for the
    sweeper, which queues again events first received over
    ``sweep_older_than`` seconds ago. ``publish_retries``: how many times the
    webhook retries sending a message to an unreachable broker before it
    answers 200 anyway (the event is recorded; the sweeper queues it).
    """

    def __init__(
        self,
        app: Celery,
        *,
        queue: str | None = None,
        max_retries: int = 8,
        retry_backoff: float = 2.0,
        retry_backoff_max: float = 600.0,
        retry_jitter: bool = True,
        sweep_older_than: float = 900.0,
        publish_retries: int = 1,
    ) -> None:
        if not callable(getattr(app, "send_task", None)):
            raise ConfigurationError(f"CeleryHandoff needs a Celery app, not {type(app).__name__}")
        if max_retries < 0 or publish_retries < 0:
            raise ConfigurationError("max_retries and publish_retries must be 0 or more")
        for name, seconds in (
            ("retry_backoff", retry_backoff),
            ("retry_backoff_max", retry_backoff_max),
            ("sweep_older_than", sweep_older_than),
        ):
            if not (seconds > 0 and math.isfinite(seconds)):
                raise ConfigurationError(f"{name} must be a positive number of seconds")
        self.app = app
        self.queue = queue
        self.max_retries = max_retries
        self.retry_backoff = retry_backoff
        self.retry_backoff_max = retry_backoff_max
        self.retry_jitter = retry_jitter
        self.sweep_older_than = sweep_older_than
        self.publish_retries = publish_retries
        #: The receiver built with this handoff (the last one), run by this process's worker.
        self.receiver: Receiver | None = None

    def __repr__(self) -> str:
        return f"CeleryHandoff({self.app.main or 'celery'!r}, queue={self.queue!r})"

    def bind(self, receiver: Receiver) -> None:
        """Remember ``receiver``: a worker of this process delivers with it."""
        self.receiver = receiver
        with _LOCK:
            _BOUND[id(self.app)] = (self.app, receiver)

    def enqueue(self, keys: Sequence[str]) -> None:
        """Send one ``bounce_middleware.deliver`` message per key; raise if the broker fails."""
        send(self.app, keys, queue=self.queue, publish_retries=self.publish_retries)

    def countdown(self, retries: int) -> float:
        """Seconds before retry number ``retries + 1``: exponential, capped, maybe jittered."""
        delay = min(self.retry_backoff_max, self.retry_backoff * 2.0 ** min(retries, 60))
        return random.uniform(delay / 2, delay) if self.retry_jitter else delay

    def sweep(self, older_than: timedelta | None = None) -> int:
        """Queue again the events of the bound receiver's store left unfinished longer
        than ``older_than`` (default ``sweep_older_than``); return how many."""
        if self.receiver is None or self.receiver.store is None:
            raise ConfigurationError("this CeleryHandoff is not part of a middleware with a store")
        limit = older_than if older_than is not None else timedelta(seconds=self.sweep_older_than)
        return sweep(self.receiver.store, self.enqueue, limit)


def send(
    app: Celery, keys: Sequence[str], *, queue: str | None = None, publish_retries: int = 1
) -> None:
    """Send ``keys`` to the deliver task through ``app``'s broker, on one connection."""
    options: dict[str, Any] = {
        "retry": publish_retries > 0,
        "retry_policy": {
            "max_retries": publish_retries,
            "interval_start": 0,
            "interval_step": 0.1,
            "interval_max": 0.2,
        },
        "ignore_result": True,
    }
    if queue is not None:
        options["queue"] = queue
    with app.producer_or_acquire() as producer:
        for key in keys:
            app.send_task(DELIVER_TASK, args=(key,), producer=producer, **options)


def sweep_schedule(every: float = 300.0, older_than: float | None = None) -> dict[str, Any]:
    """A ``beat_schedule`` entry that runs the sweeper every ``every`` seconds:
    ``app.conf.beat_schedule.update(sweep_schedule())``."""
    kwargs = {} if older_than is None else {"older_than": older_than}
    return {SWEEP_TASK: {"task": SWEEP_TASK, "schedule": every, "kwargs": kwargs}}


# -- in the worker -------------------------------------------------------------------

_LOCK = threading.RLock()
_BOUND: dict[int, tuple[Celery, Receiver]] = {}
_LOADERS: list[ReceiverLoader] = []


def add_receiver_loader(loader: ReceiverLoader) -> None:
    """Let a framework build the receiver in a worker that has not built one."""
    with _LOCK:
        if loader not in _LOADERS:
            _LOADERS.append(loader)


def receiver_for(app: Celery) -> Receiver:
    """The receiver this worker delivers with for ``app`` (see the module's docstring)."""
    with _LOCK:
        bound = _BOUND.get(id(app))
        if bound is not None and bound[0] is app:
            return bound[1]
        receiver = _load(app)
        _BOUND[id(app)] = (app, receiver)
        return receiver


def _load(app: Celery) -> Receiver:
    spec = app.conf.get(APP_SETTING)
    if spec:
        # The finder replay uses: a middleware, a WSGI app wrapping one, or a factory.
        from .cli.common import CommandError
        from .cli.finder import load_middleware

        try:
            return load_middleware(str(spec)).receiver
        except CommandError as exc:
            raise ConfigurationError(f"Celery setting {APP_SETTING}: {exc}") from None
    for loader in list(_LOADERS):
        receiver = loader(app)
        if receiver is not None:
            return receiver
    raise ConfigurationError(
        "this worker has no BounceMiddleware to deliver with: build the application in the "
        f"worker, or set app.conf.{APP_SETTING} = 'module:attr' naming it"
    )


def _handoff_of(receiver: Receiver, app: Celery) -> CeleryHandoff:
    handoff = receiver.handoff
    # A middleware configured without Celery still delivers what was queued, with defaults.
    return handoff if isinstance(handoff, CeleryHandoff) else CeleryHandoff(app)


@shared_task(bind=True, name=DELIVER_TASK, acks_late=True, ignore_result=True)
def deliver(task: Task[Any, Any], key: str) -> str:
    """Run the pending handlers of the queued event ``key``; retry with backoff."""
    receiver = receiver_for(task.app)
    handoff = _handoff_of(receiver, task.app)
    outcome = run_queued(receiver, key)
    if not outcome.retry:
        return outcome.value
    retries = task.request.retries or 0
    if retries >= handoff.max_retries:
        logger.error(
            "queued bounce %s: still %s after %d retries; left for the sweeper",
            loggable(key),
            outcome.value,
            retries,
        )
        return outcome.value
    countdown = handoff.countdown(retries)
    logger.warning(
        "queued bounce %s: %s; retry %d of %d in %.1f s",
        loggable(key),
        outcome.value,
        retries + 1,
        handoff.max_retries,
        countdown,
    )
    raise task.retry(countdown=countdown, max_retries=handoff.max_retries)


@shared_task(bind=True, name=SWEEP_TASK, ignore_result=True)
def sweep_task(task: Task[Any, Any], older_than: float | None = None) -> int:
    """Queue again the events left unfinished longer than ``older_than`` seconds
    (default: the handoff's ``sweep_older_than``); return how many."""
    receiver = receiver_for(task.app)
    handoff = _handoff_of(receiver, task.app)
    if receiver.store is None:
        raise ConfigurationError("the sweeper needs the middleware's store")
    seconds = handoff.sweep_older_than if older_than is None else older_than
    return sweep(receiver.store, handoff.enqueue, timedelta(seconds=seconds))
