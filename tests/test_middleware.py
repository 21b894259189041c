"""The middleware over WSGI: pass-through, the status table, body limits, handlers, logs."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

import pytest
import webob
from webob import Request
from webtest import TestApp

from bounce_middleware import Bounce, BounceKind, BounceMiddleware, ConfigurationError
from bounce_middleware.testing import (
    auth_headers,
    basic_auth_header,
    postmark_bounce,
    postmark_payload,
)
from tests.auth_cases import AUTH_CASES, AuthCase, assert_auth_case
from tests.conftest import load_payload

if TYPE_CHECKING:
    from _typeshed.wsgi import StartResponse, WSGIEnvironment

PATH = "/postmark/bounce"
USER, PASSWORD = "postmark", "s3cret:with:colons-ünïcode"
AUTH = auth_headers(USER, PASSWORD)


class StreamingBody:
    """A WSGI iterable that records whether the server closed it."""

    def __init__(self, chunks: list[bytes]) -> None:
        self.chunks = chunks
        self.closed = False

    def __iter__(self) -> Iterator[bytes]:
        return iter(self.chunks)

    def close(self) -> None:
        self.closed = True


class DownstreamApp:
    """The application being wrapped; remembers what reached it."""

    def __init__(self) -> None:
        self.calls: list[WSGIEnvironment] = []
        self.bodies: list[StreamingBody] = []

    def __call__(self, environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        self.calls.append(environ)
        body = StreamingBody([b"streamed ", b"from ", environ["PATH_INFO"].encode()])
        self.bodies.append(body)
        start_response(
            "418 I'm a teapot",
            [("Content-Type", "text/x-downstream"), ("X-Downstream", "yes")],
        )
        return body


class Recorder:
    """A handler that records the bounces it was given."""

    def __init__(self) -> None:
        self.seen: list[Bounce] = []

    def __call__(self, bounce: Bounce) -> None:
        self.seen.append(bounce)


@pytest.fixture
def downstream() -> DownstreamApp:
    return DownstreamApp()


@pytest.fixture
def recorder() -> Recorder:
    return Recorder()


@pytest.fixture
def middleware(downstream: DownstreamApp, recorder: Recorder) -> BounceMiddleware:
    return BounceMiddleware(
        downstream,
        path=PATH,
        credentials=["old:retired-password", f"{USER}:{PASSWORD}"],
        handlers=[recorder],
        max_body_size=64 * 1024,
    )


@pytest.fixture
def app(middleware: BounceMiddleware) -> TestApp[Any]:
    return TestApp(middleware, lint=True)


def post(app: TestApp[Any], data: Any, **kwargs: Any) -> Any:
    body = data if isinstance(data, bytes) else json.dumps(data).encode()
    headers = {**AUTH, "Content-Type": "application/json", **kwargs.pop("headers", {})}
    return app.request(
        PATH, method="POST", body=body, headers=headers, expect_errors=True, **kwargs
    )


# --- pass-through -----------------------------------------------------------------------


@pytest.mark.parametrize("path", ["/", "/postmark", "/postmark/bounce/", "/postmark/bounces", "/x"])
def test_other_paths_reach_the_app_untouched(
    app: TestApp[Any], downstream: DownstreamApp, recorder: Recorder, path: str
) -> None:
    response = app.post(path, "{}", headers=AUTH, status=418)
    assert response.body == b"streamed from " + path.encode()
    assert response.headers["X-Downstream"] == "yes"
    assert response.content_type == "text/x-downstream"
    assert len(downstream.calls) == 1
    assert downstream.bodies[0].closed  # close() reached the app's iterable
    assert recorder.seen == []


def test_pass_through_returns_the_apps_iterable_itself(
    middleware: BounceMiddleware, downstream: DownstreamApp
) -> None:
    environ = Request.blank("/elsewhere").environ
    result = middleware(environ, lambda status, headers, exc_info=None: lambda data: None)
    assert result is downstream.bodies[0]
    assert downstream.calls[0] is environ


def test_wsgi_calls_build_no_webob_objects(
    middleware: BounceMiddleware, monkeypatch: pytest.MonkeyPatch
) -> None:
    def forbidden(*args: object, **kwargs: object) -> None:
        raise AssertionError("a WebOb object was built")

    monkeypatch.setattr(webob, "Request", forbidden)
    monkeypatch.setattr(webob, "Response", forbidden)
    app = TestApp(middleware)
    app.get("/anything", status=418)
    app.post(PATH, json.dumps(postmark_bounce()), headers=AUTH, status=200)
    app.post(PATH, "{}", headers=AUTH, status=400)


def test_handle_answers_a_webob_request(middleware: BounceMiddleware) -> None:
    request = Request.blank(PATH, method="POST", headers=AUTH, body=b"[]")
    response = middleware.handle(request)
    assert response.status == "400 Bad Request"
    assert response.content_type == "text/plain"
    assert response.text == "body is a JSON array; expected an object\n"


def test_bounce_path_under_a_script_name_matches_path_info(middleware: BounceMiddleware) -> None:
    app = TestApp(middleware, extra_environ={"SCRIPT_NAME": "/mounted"})
    response = app.post(PATH, json.dumps(postmark_bounce()), headers=AUTH)
    assert response.status_int == 200


# --- the status table ---------------------------------------------------------------------


@pytest.mark.parametrize("case", AUTH_CASES, ids=str)
def test_shared_auth_suite(app: TestApp[Any], case: AuthCase, recorder: Recorder) -> None:
    assert_auth_case(app, PATH, case, USER, PASSWORD)
    assert len(recorder.seen) == (1 if case.status == 200 else 0)


def test_rotated_credentials_both_work(app: TestApp[Any], recorder: Recorder) -> None:
    post(app, postmark_bounce(), headers=auth_headers("old", "retired-password"), status=200)
    post(app, postmark_bounce(), status=200)
    assert len(recorder.seen) == 2


@pytest.mark.parametrize("method", ["GET", "PUT", "DELETE", "PATCH", "HEAD", "OPTIONS"])
def test_methods_other_than_post(app: TestApp[Any], method: str, recorder: Recorder) -> None:
    response = app.request(PATH, method=method, headers=AUTH, expect_errors=True)
    assert response.status_int == 405
    assert response.headers["Allow"] == "POST"
    assert recorder.seen == []


def test_method_is_checked_after_auth(app: TestApp[Any]) -> None:
    response = app.get(PATH, expect_errors=True)
    assert response.status_int == 401


@pytest.mark.parametrize(
    ("body", "status", "reason"),
    [
        (b"not json", 400, "body is not valid JSON"),
        (b"[]", 400, "body is a JSON array; expected an object"),
        (b"[" * 20_000 + b"]" * 20_000, 400, "body is nested too deeply"),
        (b" " * (64 * 1024 + 1), 413, "body is larger than 65536 bytes"),
        (json.dumps({"Type": "HardBounce", "Email": "a@b.c"}).encode(), 400, "required field ID"),
        (json.dumps(postmark_bounce(ID="7")).encode(), 400, "field ID must be an integer"),
        (json.dumps(load_payload("inbound")).encode(), 400, "inbound e-mail"),
        (json.dumps(load_payload("delivery")).encode(), 200, "ignored: Delivery"),
        (json.dumps(load_payload("open")).encode(), 200, "ignored: Open"),
        (json.dumps(load_payload("click")).encode(), 200, "ignored: Click"),
        (json.dumps(load_payload("bounce")).encode(), 200, "accepted"),
        (json.dumps(load_payload("legacy_2010")).encode(), 200, "accepted"),
        (json.dumps(load_payload("spam_complaint")).encode(), 200, "accepted"),
        (json.dumps(load_payload("subscription_change")).encode(), 200, "accepted"),
    ],
    ids=[
        "not-json",
        "not-object",
        "too-deep",
        "too-large",
        "missing-field",
        "wrong-type",
        "inbound",
        "delivery",
        "open",
        "click",
        "bounce",
        "legacy",
        "spam-complaint",
        "subscription-change",
    ],
)
def test_status_table(
    app: TestApp[Any], recorder: Recorder, body: bytes, status: int, reason: str
) -> None:
    response = post(app, body)
    assert response.status_int == status
    assert response.content_type == "text/plain"
    assert response.text.count("\n") == 1
    assert reason in response.text
    dispatched = reason == "accepted"
    assert len(recorder.seen) == (1 if dispatched else 0)


def test_a_handler_error_is_a_500_and_is_logged(
    downstream: DownstreamApp, caplog: pytest.LogCaptureFixture
) -> None:
    def broken(bounce: Bounce) -> None:
        raise RuntimeError("database is down")

    app = TestApp(
        BounceMiddleware(
            downstream, path=PATH, credentials=[f"{USER}:{PASSWORD}"], handlers=[broken]
        )
    )
    with caplog.at_level(logging.INFO, logger="bounce_middleware"):
        response = post(app, postmark_bounce(ID=77))
    assert response.status_int == 500
    assert response.text == "a handler failed; the event will be retried\n"
    assert "database is down" not in response.text
    failure = [r for r in caplog.records if r.exc_info]
    assert failure and "postmark:77" in failure[0].getMessage()


def test_other_handlers_still_run_when_one_fails(downstream: DownstreamApp) -> None:
    ran: list[str] = []

    def first(bounce: Bounce) -> None:
        raise ValueError("boom")

    def second(bounce: Bounce) -> None:
        ran.append(bounce.email)

    app = TestApp(
        BounceMiddleware(
            downstream, path=PATH, credentials=[f"{USER}:{PASSWORD}"], handlers=[first, second]
        )
    )
    assert post(app, postmark_bounce()).status_int == 500
    assert ran == ["john@example.com"]


# --- the body limit ---------------------------------------------------------------------


class CountingInput(io.BytesIO):
    """``wsgi.input`` that counts how many bytes the application read."""

    def __init__(self, data: bytes) -> None:
        super().__init__(data)
        self.consumed = 0

    def read(self, size: int | None = -1) -> bytes:
        chunk = super().read(size)
        self.consumed += len(chunk)
        return chunk


def call_raw(
    middleware: BounceMiddleware, body: bytes, content_length: str | None, **environ: Any
) -> tuple[int, bytes, CountingInput]:
    stream = CountingInput(body)
    req = Request.blank(PATH, method="POST", headers=AUTH)
    req.environ["wsgi.input"] = stream
    req.environ.pop("CONTENT_LENGTH", None)
    if content_length is not None:
        req.environ["CONTENT_LENGTH"] = content_length
    req.environ.update(environ)
    response = req.get_response(middleware)
    return response.status_int, response.body, stream


def test_body_at_the_limit_is_read(middleware: BounceMiddleware, recorder: Recorder) -> None:
    payload = json.dumps(postmark_bounce()).encode()
    body = payload + b" " * (middleware.max_body_size - len(payload))
    status, _, stream = call_raw(middleware, body, str(len(body)))
    assert status == 200
    assert stream.consumed == middleware.max_body_size


def test_declared_length_over_the_limit_reads_nothing(middleware: BounceMiddleware) -> None:
    body = b"x" * (middleware.max_body_size + 1)
    status, text, stream = call_raw(middleware, body, str(len(body)))
    assert status == 413
    assert b"larger than" in text
    assert stream.consumed == 0


def test_length_that_lies_low_reads_only_what_it_declares(middleware: BounceMiddleware) -> None:
    payload = json.dumps(postmark_bounce()).encode()
    status, text, stream = call_raw(middleware, payload + b"x" * 10_000_000, str(len(payload)))
    assert status == 200
    assert stream.consumed == len(payload)


def test_length_that_lies_high_stops_at_end_of_input(middleware: BounceMiddleware) -> None:
    payload = json.dumps(postmark_bounce()).encode()
    status, text, stream = call_raw(middleware, payload, str(middleware.max_body_size))
    assert status == 200
    assert stream.consumed == len(payload)


def test_missing_length_on_a_terminated_stream_is_capped(middleware: BounceMiddleware) -> None:
    body = b"x" * 10_000_000
    status, _, stream = call_raw(middleware, body, None, **{"wsgi.input_terminated": True})
    assert status == 413
    assert stream.consumed == middleware.max_body_size + 1


def test_missing_length_on_a_terminated_stream_under_the_cap(middleware: BounceMiddleware) -> None:
    payload = json.dumps(postmark_bounce()).encode()
    status, _, stream = call_raw(middleware, payload, None, **{"wsgi.input_terminated": True})
    assert status == 200


def test_missing_length_without_termination_reads_nothing(middleware: BounceMiddleware) -> None:
    status, text, stream = call_raw(middleware, b"x" * 10_000_000, None)
    assert status == 400
    assert text == b"body is empty; expected a JSON object\n"
    assert stream.consumed == 0


@pytest.mark.parametrize("length", ["-1", "abc", "1e3", " 12", "0x10"])
def test_malformed_content_length(middleware: BounceMiddleware, length: str) -> None:
    status, text, stream = call_raw(middleware, b"{}", length)
    assert status == 400
    assert text == b"Content-Length is not a number\n"
    assert stream.consumed == 0


def test_default_limit_is_one_mebibyte(downstream: DownstreamApp) -> None:
    assert BounceMiddleware(downstream, path=PATH, credentials=["a:b"]).max_body_size == 1 << 20


# --- handlers -----------------------------------------------------------------------------


def test_handlers_subscribed_to_kinds(middleware: BounceMiddleware, app: TestApp[Any]) -> None:
    hard: list[str] = []
    soft: list[str] = []
    middleware.add_handler(lambda b: hard.append(b.type), kinds={BounceKind.HARD}, name="hard")
    middleware.add_handler(lambda b: soft.append(b.type), kinds=["soft"], name="soft")
    for type_ in ("HardBounce", "SoftBounce", "Transient", "SpamComplaint", "BadEmailAddress"):
        post(app, postmark_bounce(type_), status=200)
    assert hard == ["HardBounce", "BadEmailAddress"]
    assert soft == ["SoftBounce", "Transient"]


def test_handler_names_must_be_unique(middleware: BounceMiddleware, recorder: Recorder) -> None:
    with pytest.raises(ConfigurationError, match="already registered"):
        middleware.add_handler(recorder)
    middleware.add_handler(recorder, name="recorder-again")


def test_handler_default_names_are_qualified(middleware: BounceMiddleware) -> None:
    def on_bounce(bounce: Bounce) -> None:
        pass

    handler = middleware.add_handler(on_bounce)
    assert handler.name.startswith("tests.test_middleware.")
    assert handler.name.endswith("on_bounce")
    assert middleware.handlers[0].name == "tests.test_middleware.Recorder"


def test_unknown_kind_is_a_configuration_error(middleware: BounceMiddleware) -> None:
    with pytest.raises(ConfigurationError, match="kinds are"):
        middleware.add_handler(print, kinds=["hardest"])


def test_handler_receives_a_complete_bounce(app: TestApp[Any], recorder: Recorder) -> None:
    post(app, load_payload("bounce"), status=200)
    (bounce,) = recorder.seen
    assert bounce.key == "postmark:4323372036"
    assert bounce.kind is BounceKind.HARD


# --- configuration ------------------------------------------------------------------------


@pytest.mark.parametrize("credentials", [[], (), ""])
def test_no_credentials_fails_closed(downstream: DownstreamApp, credentials: Any) -> None:
    with pytest.raises(ConfigurationError, match="no credentials"):
        BounceMiddleware(downstream, path=PATH, credentials=credentials)


@pytest.mark.parametrize("credential", ["nocolonsecret", ":s3cretpw", "s3cretuser:"])
def test_malformed_credential_is_refused_without_echoing_it(
    downstream: DownstreamApp, credential: str
) -> None:
    with pytest.raises(ConfigurationError) as info:
        BounceMiddleware(downstream, path=PATH, credentials=[credential])
    assert credential not in str(info.value)


@pytest.mark.parametrize("path", ["postmark/bounce", "", None])
def test_path_must_be_absolute(downstream: DownstreamApp, path: Any) -> None:
    with pytest.raises(ConfigurationError, match="path"):
        BounceMiddleware(downstream, path=path, credentials=["a:b"])


def test_configuration_error_is_a_value_error() -> None:
    assert issubclass(ConfigurationError, ValueError)


# --- logging ------------------------------------------------------------------------------


def test_logs_carry_no_secrets_bodies_or_content(
    app: TestApp[Any], caplog: pytest.LogCaptureFixture
) -> None:
    data = load_payload("bounce")
    with caplog.at_level(logging.DEBUG):
        post(app, data, status=200)
        post(app, data, headers=auth_headers(USER, "wrong-password"), status=401)
        post(app, b'{"secret-body-field": [', status=400)
    text = "\n".join(r.getMessage() for r in caplog.records)
    assert "postmark:4323372036" in text
    assert "HardBounce" in text and "hard" in text
    for secret in (
        PASSWORD,
        "wrong-password",
        basic_auth_header(USER, PASSWORD),
        "SECRET-BOUNCE-CONTENT",
        "secret-body-field",
        "john@example.com",
    ):
        assert secret not in text


def test_testing_payload_factory_by_record_type() -> None:
    assert postmark_payload("Legacy")["BouncedAt"].startswith("2010")
    assert postmark_payload("SubscriptionChange", email="x@y.z")["Recipient"] == "x@y.z"
    assert "FromFull" in postmark_payload("Inbound")


def test_scope_surrounds_each_delivery(downstream: DownstreamApp) -> None:
    events: list[str] = []

    @contextmanager
    def scope() -> Iterator[None]:
        events.append("enter")
        try:
            yield
        finally:
            events.append("exit")

    def handler(bounce: Bounce) -> None:
        events.append("handler")
        if bounce.type == "SoftBounce":
            raise RuntimeError("fails inside the scope")

    app = TestApp(
        BounceMiddleware(
            downstream,
            path=PATH,
            credentials=[f"{USER}:{PASSWORD}"],
            handlers=[handler],
            scope=scope,
        )
    )
    assert post(app, postmark_bounce("HardBounce")).status_int == 200
    assert post(app, postmark_bounce("SoftBounce")).status_int == 500
    assert post(app, b"[]").status_int == 400
    assert post(app, postmark_bounce(), headers=auth_headers(USER, "wrong")).status_int == 401
    # A failed handler's context is left, and a fresh one entered, before anything else runs.
    assert events == ["enter", "handler", "exit"] * 2 + ["enter", "exit"]


@pytest.mark.parametrize(
    ("length", "status"),
    [("\u00b2", 400), ("1\u0663", 400), ("9" * 5000, 413), ("9" * 19, 413)],
    ids=["superscript-two", "arabic-indic-digit", "5000-digits", "19-digits"],
)
def test_content_length_that_int_would_refuse(
    middleware: BounceMiddleware, length: str, status: int
) -> None:
    code, _, stream = call_raw(middleware, b"{}", length)
    assert code == status
    assert stream.consumed == 0


@pytest.mark.parametrize("field", ["Email", "Type", "RecordType", "Tag"])
def test_lone_surrogate_escapes_are_refused(
    app: TestApp[Any], recorder: Recorder, field: str
) -> None:
    body = json.dumps(postmark_bounce()).replace(
        '"' + field + '": "', '"' + field + '": "\\ud800', 1
    )
    assert "\\ud800" in body
    response = post(app, body.encode())
    assert response.status_int == 400
    assert response.text == "body holds an unpaired UTF-16 surrogate escape\n"
    assert recorder.seen == []


def test_paired_surrogate_escapes_are_fine(app: TestApp[Any], recorder: Recorder) -> None:
    body = json.dumps(postmark_bounce(Subject="\U0001f4e7 mail"))  # escaped as a pair
    assert "\\ud83d" in body
    assert post(app, body.encode()).status_int == 200
    assert recorder.seen[0].subject == "\U0001f4e7 mail"


@pytest.mark.parametrize(
    "record_type", ["Open\r\nX-Injected: 1", "x" * 5000, "Dél\u00e9very", "\ud800"]
)
def test_unknown_record_types_are_not_echoed(
    app: TestApp[Any], caplog: pytest.LogCaptureFixture, record_type: str
) -> None:
    body = json.dumps({"RecordType": record_type, "Recipient": "a@example.com"})
    with caplog.at_level(logging.INFO, logger="bounce_middleware"):
        response = post(app, body.encode())
    if "\ud800" in record_type:
        assert response.status_int == 400
        return
    assert response.status_int == 200
    assert response.text == "ignored: unrecognised records are not bounces\n"
    assert all(record_type not in r.getMessage() for r in caplog.records)


def test_a_known_record_type_is_named(app: TestApp[Any]) -> None:
    response = post(app, load_payload("open"))
    assert response.text == "ignored: Open records are not bounces\n"


@pytest.mark.parametrize(
    ("option", "value"), [("lease_seconds", 0), ("lease_seconds", -5), ("retry_after", -1)]
)
def test_lease_and_retry_after_are_checked(
    downstream: DownstreamApp, option: str, value: float
) -> None:
    with pytest.raises(ConfigurationError, match=option):
        options: dict[str, Any] = {option: value}
        BounceMiddleware(downstream, path=PATH, credentials=["a:b"], **options)


@pytest.mark.parametrize("name", ["two\nlines", " padded", "tab\there", ""])
def test_handler_names_must_be_printable(middleware: BounceMiddleware, name: str) -> None:
    if not name:
        # An empty name falls back to the default one.
        assert middleware.add_handler(print, name=name).name == "builtins.print"
        return
    with pytest.raises(ConfigurationError, match="printable"):
        middleware.add_handler(print, name=name)


# --- issue 10: exact answers and safe logs ----------------------------------------------


class FailingInput:
    """``wsgi.input`` whose read() fails the way a server's does when the client goes."""

    def __init__(self, error: Exception, after: bytes = b"") -> None:
        self.error = error
        self.pending = after

    def read(self, size: int = -1) -> bytes:
        if self.pending:
            chunk, self.pending = self.pending, b""
            return chunk
        raise self.error


@pytest.mark.parametrize(
    "error",
    [
        OSError("connection reset by peer"),
        ValueError("I/O operation on closed file"),
        TimeoutError(),
    ],
    ids=["oserror", "valueerror", "timeout"],
)
@pytest.mark.parametrize("after", [b"", b'{"ID": 1, '], ids=["at-once", "midway"])
def test_a_failing_body_read_is_a_400_and_one_log_line(
    middleware: BounceMiddleware,
    recorder: Recorder,
    caplog: pytest.LogCaptureFixture,
    error: Exception,
    after: bytes,
) -> None:
    req = Request.blank(PATH, method="POST", headers=AUTH)
    req.environ["wsgi.input"] = FailingInput(error, after)
    req.environ["CONTENT_LENGTH"] = "500"
    with caplog.at_level(logging.DEBUG, logger="bounce_middleware"):
        response = req.get_response(middleware)
    assert response.status_int == 400
    assert response.text == "could not read the request body\n"
    [record] = caplog.records
    assert record.exc_info is None  # no traceback
    assert type(error).__name__ in record.getMessage()
    assert recorder.seen == []


@pytest.mark.parametrize("zeros", [1, 19, 1300, 5000])
def test_leading_zeros_of_content_length_are_not_size(
    middleware: BounceMiddleware, recorder: Recorder, zeros: int
) -> None:
    status, text, stream = call_raw(middleware, b"", "0" * zeros)
    assert (status, text) == (400, b"body is empty; expected a JSON object\n")
    payload = json.dumps(postmark_bounce()).encode()
    status, text, stream = call_raw(middleware, payload, "0" * zeros + str(len(payload)))
    assert (status, text) == (200, b"accepted\n")
    assert stream.consumed == len(payload)
    assert len(recorder.seen) == 1


def test_nineteen_significant_digits_are_still_too_large(middleware: BounceMiddleware) -> None:
    code, _, stream = call_raw(middleware, b"{}", "000" + "1" * 19)
    assert code == 413
    assert stream.consumed == 0


@pytest.mark.parametrize(
    ("forged", "escaped"),
    [
        (
            "HardBounce\r\nCRITICAL bounce_middleware: database wiped",
            "HardBounce\\r\\nCRITICAL bounce_middleware: database wiped",
        ),
        ("HardBounce\nCRITICAL forged", "HardBounce\\nCRITICAL forged"),
        ("HardBounce\u2028CRITICAL forged", "HardBounce\\u2028CRITICAL forged"),
        ("HardBounce\x1b[2J\x1b[HCRITICAL forged", "HardBounce\\x1b[2J\\x1b[HCRITICAL forged"),
        ("HardBounce\x85CRITICAL forged", "HardBounce\\x85CRITICAL forged"),
    ],
    ids=["crlf", "lf", "line-separator", "terminal-escape", "next-line"],
)
@pytest.mark.parametrize("handler_fails", [False, True], ids=["accepted", "handler-failed"])
def test_request_values_cannot_forge_log_lines(
    downstream: DownstreamApp,
    caplog: pytest.LogCaptureFixture,
    forged: str,
    escaped: str,
    handler_fails: bool,
) -> None:
    def handler(bounce: Bounce) -> None:
        if handler_fails:
            raise RuntimeError("fails")

    app = TestApp(
        BounceMiddleware(
            downstream, path=PATH, credentials=[f"{USER}:{PASSWORD}"], handlers=[handler]
        )
    )
    with caplog.at_level(logging.INFO, logger="bounce_middleware"):
        post(app, postmark_bounce(forged), status=500 if handler_fails else 200)
    [line] = [r.getMessage() for r in caplog.records if "type=" in r.getMessage()]
    assert f"type={escaped} kind=unknown" in line
    assert line.isprintable()


def test_a_very_long_type_is_cut_in_the_log(
    app: TestApp[Any], caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.INFO, logger="bounce_middleware"):
        post(app, postmark_bounce("T" * 50_000), status=200)
    [line] = [r.getMessage() for r in caplog.records if "accepted" in r.getMessage()]
    assert len(line) < 400
    assert "(50000 characters)" in line


def test_without_a_store_a_refused_authenticated_event_is_one_error_line(
    app: TestApp[Any], caplog: pytest.LogCaptureFixture
) -> None:
    body = json.dumps(postmark_bounce(ID="12", email="secret-person@example.com")).encode()
    with caplog.at_level(logging.DEBUG, logger="bounce_middleware"):
        response = post(app, body)
    assert response.status_int == 400
    [record] = caplog.records
    assert record.levelno == logging.ERROR
    message = record.getMessage()
    assert "refused and not kept" in message
    assert "field ID must be an integer, not a string" in message
    assert "secret-person" not in message and "HardBounce" not in message


def test_an_unauthenticated_refusal_is_not_an_error(
    app: TestApp[Any], caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.DEBUG, logger="bounce_middleware"):
        post(app, b"[]", headers=auth_headers(USER, "wrong"), status=401)
    assert [r.levelno for r in caplog.records] == [logging.WARNING]
