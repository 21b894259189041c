"""Timing machinery: prepared environs, a server-like driver, interleaved repeats.

Each row is timed as a batch of in-process WSGI calls made the way a server
makes them (call the app, iterate the body, call ``close()``), with every
environ built before the clock starts. Rows take turns within each repeat,
in a rotated order, so that a noisy neighbour slows all of them alike; the
figure kept is the median of the repeats, with min and max beside it.
"""

from __future__ import annotations

import gc
import io
import itertools
import json
import shutil
import statistics
import tempfile
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from bounce_middleware.testing import basic_auth_header, postmark_bounce

if TYPE_CHECKING:
    from _typeshed.wsgi import WSGIApplication, WSGIEnvironment

_BASE_ENVIRON: dict[str, Any] = {
    "SCRIPT_NAME": "",
    "QUERY_STRING": "",
    "SERVER_NAME": "127.0.0.1",
    "SERVER_PORT": "8000",
    "SERVER_PROTOCOL": "HTTP/1.1",
    "REMOTE_ADDR": "127.0.0.1",
    "HTTP_HOST": "127.0.0.1:8000",
    "HTTP_USER_AGENT": "bench/1.0",
    "HTTP_ACCEPT": "*/*",
    "wsgi.version": (1, 0),
    "wsgi.url_scheme": "http",
    "wsgi.errors": io.StringIO(),
    "wsgi.multithread": False,
    "wsgi.multiprocess": True,
    "wsgi.run_once": False,
}

_event_ids = itertools.count(7_000_000_000)


def get_environ(path: str) -> dict[str, Any]:
    """A GET request for ``path``, as a WSGI server would build it."""
    environ = dict(_BASE_ENVIRON)
    environ.update(REQUEST_METHOD="GET", PATH_INFO=path, **{"wsgi.input": io.BytesIO(b"")})
    return environ


# The start of a bounce message dump, as Postmark's ``Content`` carries it: it brings the
# payload to the 1.2-1.3 KB of a real hard bounce.
_CONTENT = (
    "Return-Path: <>\r\nReceived: from mx1.example.net (mx1.example.net [192.0.2.25])\r\n"
    " by pm-mta.example.com with ESMTPS id 4N8Qk52Wz3z9vDx; Tue, 5 Nov 2019 16:33:54 +0000\r\n"
    "From: Mail Delivery System <MAILER-DAEMON@mx1.example.net>\r\nTo: bounces@example.com\r\n"
    "Subject: Undelivered Mail Returned to Sender\r\nAuto-Submitted: auto-replied\r\n"
    "Content-Type: multipart/report; report-type=delivery-status;\r\n"
    ' boundary="B4E1A2C0F3.1572971634/mx1.example.net"\r\n\r\n'
    "This is the mail system at host mx1.example.net.\r\n"
    "I'm sorry to have to inform you that your message could not\r\n"
    "be delivered to one or more recipients.\r\n"
)


@contextmanager
def workdir(prefix: str, *, keep: bool) -> Iterator[Path]:
    """A fresh temporary directory for one run, removed afterwards unless ``keep``."""
    path = Path(tempfile.mkdtemp(prefix=prefix))
    try:
        yield path
    finally:
        if keep:
            print(f"kept {path}")
        else:
            shutil.rmtree(path, ignore_errors=True)


def bounce_body(email: str) -> bytes:
    """A HardBounce for ``email`` with a new Postmark ``ID`` (about 1.3 KB of JSON)."""
    payload = postmark_bounce(ID=next(_event_ids), email=email, Content=_CONTENT)
    return json.dumps(payload).encode()


def post_environ(path: str, body: bytes, user: str, password: str) -> dict[str, Any]:
    """A Postmark webhook POST of ``body`` to ``path`` with Basic credentials."""
    environ = dict(_BASE_ENVIRON)
    environ.update(
        REQUEST_METHOD="POST",
        PATH_INFO=path,
        CONTENT_TYPE="application/json",
        CONTENT_LENGTH=str(len(body)),
        HTTP_AUTHORIZATION=basic_auth_header(user, password),
        **{"wsgi.input": io.BytesIO(body)},
    )
    return environ


def request_environ(path: str, headers: Mapping[str, str], body: bytes) -> dict[str, Any]:
    """A POST of ``body`` to ``path`` with ``headers`` (any case), as a server builds it."""
    environ = dict(_BASE_ENVIRON)
    environ.update(
        REQUEST_METHOD="POST",
        PATH_INFO=path,
        CONTENT_LENGTH=str(len(body)),
        **{"wsgi.input": io.BytesIO(body)},
    )
    for name, value in headers.items():
        key = name.upper().replace("-", "_")
        environ[key if key in ("CONTENT_TYPE", "CONTENT_LENGTH") else "HTTP_" + key] = value
    return environ


def _start_response(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Any:
    return None


def drive(app: WSGIApplication, environs: Iterable[WSGIEnvironment]) -> None:
    """Serve every environ as a server does: call, iterate the body, close it."""
    start_response = _start_response
    for environ in environs:
        body = app(environ, start_response)
        for _chunk in body:
            pass
        close = getattr(body, "close", None)
        if close is not None:
            close()


@dataclass
class Reply:
    """One answer, for checks: status line, headers and body."""

    status: str
    headers: list[tuple[str, str]]
    body: bytes

    @property
    def code(self) -> int:
        """The status code."""
        return int(self.status.split(" ", 1)[0])


def call(app: WSGIApplication, environ: WSGIEnvironment) -> Reply:
    """Serve one environ and keep the answer (checks only; never timed)."""
    seen: list[Any] = []

    def start_response(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Any:
        seen[:] = [status, headers]

    result = app(environ, start_response)
    try:
        body = b"".join(result)
    finally:
        close = getattr(result, "close", None)
        if close is not None:
            close()
    return Reply(seen[0], seen[1], body)


class CheckFailed(SystemExit):
    """A row's answers or rows written are not what they must be: the run stops."""


def fail(row: str, message: str) -> CheckFailed:
    """The error a failed check raises: names the row, stops the run."""
    return CheckFailed(f"row {row} failed its check: {message}")


def expect(row: str, condition: bool, message: str) -> None:
    """Raise :func:`fail` unless ``condition``."""
    if not condition:
        raise fail(row, message)


#: Prepares ``n`` requests and returns the callable that serves them (timed).
Prepare = Callable[[int], Callable[[], None]]


@dataclass
class Row:
    """One line of the table."""

    key: str
    label: str
    #: Check answers and rows written; raise :class:`CheckFailed` otherwise.
    check: Callable[[], None]
    prepare: Prepare
    #: Called after each timed batch with its size: check the rows it wrote.
    verify: Callable[[int], None] = lambda n: None
    #: Largest batch (database rows keep their tables and memory small).
    max_batch: int = 1_000_000
    #: Smallest batch (a row whose requests carry 1,000 events needs only a few).
    min_batch: int = 10
    #: Events each request carries: samples are per event (a batch row: its batch size).
    events: int = 1
    samples: list[float] = field(default_factory=list)  #: seconds per event, one per repeat

    @property
    def median(self) -> float:
        """Median seconds per event (per request, for a one-event row) over the repeats."""
        return statistics.median(self.samples)


def calibrate(row: Row, target_seconds: float) -> int:
    """A batch size whose run takes about ``target_seconds`` (after a warm-up)."""
    n = row.min_batch
    while True:
        runner = row.prepare(n)
        start = time.perf_counter()
        runner()
        elapsed = time.perf_counter() - start
        row.verify(n)
        if elapsed > target_seconds / 10 or n >= row.max_batch:
            break
        n *= 10
    per_request = elapsed / n
    return max(row.min_batch, min(row.max_batch, int(target_seconds / per_request)))


def run_interleaved(
    rows: Sequence[Row],
    repeats: int,
    batches: dict[str, int],
    progress: Callable[[str], None] = lambda text: None,
) -> None:
    """Time every row ``repeats`` times, rows taking turns in a rotated order."""
    for repeat in range(repeats):
        order = list(rows[repeat % len(rows) :]) + list(rows[: repeat % len(rows)])
        for row in order:
            n = batches[row.key]
            runner = row.prepare(n)
            gc.collect()
            start = time.perf_counter()
            runner()
            elapsed = time.perf_counter() - start
            row.verify(n)
            row.samples.append(elapsed / (n * row.events))
        progress(f"repeat {repeat + 1}/{repeats} done")


def abba(first: Row, second: Row, rounds: int, sizes: dict[str, int]) -> list[float]:
    """Ratios ``second / first`` from back-to-back batches in A-B-B-A order.

    For the pass-through targets, where the difference sought (1%) is smaller
    than what a neighbour's load changes between two repeats: the two rows
    alternate within a fraction of a second, and the A-B-B-A order cancels a
    load that rises or falls steadily meanwhile.
    """
    ratios = []
    for _ in range(rounds):
        elapsed = {first.key: 0.0, second.key: 0.0}
        for row in (first, second, second, first):
            n = sizes[row.key]
            runner = row.prepare(n)
            start = time.perf_counter()
            runner()
            elapsed[row.key] += (time.perf_counter() - start) / (n * row.events)
            row.verify(n)
        ratios.append(elapsed[second.key] / elapsed[first.key])
    return ratios
