"""``bounce-middleware replay`` on real stores: failed handlers, rejected requests run through
today's parser (issue 10: nothing authenticated is dropped), and what ``--app`` says when it
cannot find the middleware. The application and its stores are in ``tests/cli_project.py``.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
from webtest import TestApp

from bounce_middleware.cli import main
from bounce_middleware.store import rejection_key
from bounce_middleware.testing import auth_headers, postmark_bounce

from .cli_project import (
    NOT_POSTMARK,
    PATH,
    USER,
    Project,
    body_of,
    deliver,
    refusal,
)
from .cli_project import any_project as any_project  # noqa: F401 - fixtures
from .cli_project import project as project  # noqa: F401


def test_replay_completes_only_the_handlers_that_failed(
    project: Project, capsys: pytest.CaptureFixture[str]
) -> None:
    done = deliver(project, 200, email="ann@example.com")
    project.broken.touch()
    pending = deliver(project, 500, email="bob@example.com")
    assert project.calls_made() == [f"steady {done}", f"flaky {done}", f"steady {pending}"]
    replay = ["replay", "--store", project.store_url, "--app", project.spec]

    # Still broken: the replay fails again and says so.
    assert main(replay) == 1
    out = capsys.readouterr().out
    assert f"{pending} HardBounce bob@example.com: ran flaky -> 500" in out
    assert "0 ok, 1 failed" in out

    project.broken.unlink()
    assert main([*replay, "--dry-run"]) == 0
    assert f"{pending} HardBounce bob@example.com: would run flaky" in capsys.readouterr().out
    assert project.calls_made() == [f"steady {done}", f"flaky {done}", f"steady {pending}"]

    assert main(replay) == 0
    out = capsys.readouterr().out
    assert f"{pending} HardBounce bob@example.com: ran flaky -> 200 accepted" in out
    assert "replayed 1 event(s): 1 ok, 0 failed" in out
    assert project.calls_made() == [
        f"steady {done}",
        f"flaky {done}",
        f"steady {pending}",
        f"flaky {pending}",
    ]

    assert main(replay) == 0
    assert capsys.readouterr().out == "nothing to replay: every recorded bounce is finished\n"
    # And the provider's own redelivery, should it still come, runs nothing.
    app = TestApp(project.module.create_app())
    bob = postmark_bounce(ID=int(pending.split(":")[1]), email="bob@example.com")
    app.post_json(PATH, bob, headers=auth_headers(USER, "pw"), status=200)
    assert len(project.calls_made()) == 4


def test_replay_uses_the_middlewares_own_store_without_store(
    project: Project, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("BOUNCE_STORE", raising=False)
    project.broken.touch()
    pending = deliver(project, 500)
    project.broken.unlink()

    assert main(["replay", "--app", f"{project.module.__name__}.create_app"]) == 0

    assert f"{pending} HardBounce john@example.com: ran flaky -> 200" in capsys.readouterr().out


def test_a_dry_run_says_what_would_run_and_never_reports_ok(
    project: Project, capsys: pytest.CaptureFixture[str]
) -> None:
    project.broken.touch()
    pending = deliver(project, 500, email="bob@example.com")
    project.broken.unlink()
    calls = project.calls_made()

    assert main(["replay", "--store", project.store_url, "--app", project.spec, "--dry-run"]) == 0

    out = capsys.readouterr().out
    assert out.splitlines() == [
        f"{pending} HardBounce bob@example.com: would run flaky",
        "would replay 1 event(s): 1 ready, 0 would be skipped",
        "dry run: no handler was run and the store was not changed",
    ]
    assert " ok" not in out  # it used to say "checked 1 event(s): 1 ok" with nothing run
    assert project.calls_made() == calls
    [event] = project.listing("--unfinished")
    assert event["key"] == pending


# -- rejected requests -----------------------------------------------------------------------


def test_replay_runs_rejected_requests_through_todays_parser_and_resolves_them(
    any_project: Project, capsys: pytest.CaptureFixture[str]
) -> None:
    ann, event = body_of(email="ann@example.com")
    parses_now = any_project.reject(ann, "field Email is missing")
    never = any_project.reject(NOT_POSTMARK, "body is not a Postmark record")
    replay = ["replay", "--app", any_project.spec]

    # A dry run parses them again, and says what would happen, running nothing.
    assert main([*replay, "--dry-run"]) == 1
    assert capsys.readouterr().out.splitlines() == [
        f"{parses_now} (rejected {any_project.received(parses_now)}): parses now as {event} "
        "HardBounce ann@example.com: would run steady, flaky, and be resolved",
        f"{never} (rejected {any_project.received(never)}): still refused: {refusal(NOT_POSTMARK)}",
        "would replay 2 rejected request(s): 1 parse now, 1 still refused",
        "dry run: no handler was run and the store was not changed",
    ]
    assert any_project.calls_made() == []
    assert len(any_project.listing("--rejected", "--unfinished")) == 2

    # The real run: dispatched like any event, and resolved; the other stays, with its reason.
    assert main(replay) == 1
    out = capsys.readouterr().out
    ran = f"parses now as {event} HardBounce ann@example.com: ran steady, flaky -> 200 accepted"
    assert f"{ran}; resolved" in out
    still = (
        f"{never} (rejected {any_project.received(never)}): still refused: {refusal(NOT_POSTMARK)}"
    )
    assert still in out
    assert out.splitlines()[-1] == "replayed 2 rejected request(s): 1 resolved, 1 still rejected"
    assert any_project.calls_made() == [f"steady {event}", f"flaky {event}"]
    [recorded] = any_project.listing()
    assert (recorded["key"], recorded["finished"]) == (event, True)
    assert [(r["key"], r["resolved"]) for r in any_project.listing("--rejected")] == [
        (never, False),
        (parses_now, True),
    ]

    # Once resolved, never again; what is still refused is tried, and reported, each time.
    assert main(replay) == 1
    out = capsys.readouterr().out
    assert parses_now not in out
    assert out.splitlines()[-1] == "replayed 1 rejected request(s): 0 resolved, 1 still rejected"
    assert len(any_project.calls_made()) == 2


def test_a_rejected_request_whose_handler_fails_becomes_an_ordinary_pending_event(
    any_project: Project, capsys: pytest.CaptureFixture[str]
) -> None:
    body, event = body_of(email="bob@example.com")
    key = any_project.reject(body, "field Email is missing")
    any_project.broken.touch()
    replay = ["replay", "--app", any_project.spec]

    assert main(replay) == 1

    out = capsys.readouterr().out
    assert (
        f"parses now as {event} HardBounce bob@example.com: ran steady, flaky -> 500 a handler "
        "failed; the event will be retried; resolved; `replay` runs the failed handlers again"
    ) in out
    assert [r["resolved"] for r in any_project.listing("--rejected")] == [True]
    assert [r["key"] for r in any_project.listing("--unfinished")] == [event]

    any_project.broken.unlink()
    assert main(replay) == 0
    out = capsys.readouterr().out
    assert f"{event} HardBounce bob@example.com: ran flaky -> 200 accepted" in out
    assert "rejected" not in out
    assert any_project.calls_made() == [f"steady {event}", f"flaky {event}"]
    assert key == rejection_key("postmark", body)


def test_a_request_refused_before_an_upgrade_is_kept_and_replayed_after_it(
    any_project: Project, capsys: pytest.CaptureFixture[str]
) -> None:
    # End to end: the middleware refuses (400) and keeps the body; the upgrade; the replay.
    any_project.old_parser.touch()
    event = deliver(any_project, 400, email="ann@example.com")
    [kept] = any_project.listing("--rejected")
    assert (kept["reason"], kept["resolved"]) == ("field Email is missing", False)

    any_project.old_parser.unlink()
    assert main(["replay", "--app", any_project.spec]) == 0

    assert "replayed 1 rejected request(s): 1 resolved, 0 still rejected" in capsys.readouterr().out
    assert any_project.calls_made() == [f"steady {event}", f"flaky {event}"]
    assert [r["resolved"] for r in any_project.listing("--rejected")] == [True]


# -- what --app says when it cannot find the middleware ---------------------------------------


@pytest.mark.parametrize(
    ("attr", "message"),
    [
        ("create_app", None),
        ("broken_factory", "calling broken_factory() failed: RuntimeError: the database is down"),
        ("wrong_factory", "wrong_factory() returned a str with no BounceMiddleware in it"),
        ("steady", "no BounceMiddleware in steady, and it is not an application factory: it "
         "needs arguments (bounce)"),
        ("CALLS", "no BounceMiddleware in this PosixPath; name the BounceMiddleware (WSGI or "
         "ASGI), an app wrapping it (found through .app, .wsgi_app, .application or a "
         "Starlette/FastAPI middleware stack), or a function of no arguments returning either"),
        ("no_such_attribute", "has no attribute 'no_such_attribute'"),
    ],
)  # fmt: skip
def test_every_app_failure_says_what_is_wrong(
    project: Project, capsys: pytest.CaptureFixture[str], attr: str, message: str | None
) -> None:
    # No --store: the middleware's own store, once --app has found the middleware.
    status = main(["replay", "--app", f"{project.module.__name__}:{attr}"])

    err = capsys.readouterr().err
    if message is None:
        assert (status, err) == (0, "")
        return
    assert status == 2
    assert err.startswith(
        f"bounce-middleware replay: error: --app {project.module.__name__}:{attr}: "
    )
    assert message in err
    assert "Traceback" not in err


def test_an_app_module_that_fails_on_import_says_how(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "failing_app_for_cli_tests.py").write_text(
        'raise RuntimeError("DATABASE_URL is not set")\n'
    )
    monkeypatch.syspath_prepend(str(tmp_path))

    assert main(["replay", "--store", "memory://", "--app", "failing_app_for_cli_tests:app"]) == 2

    err = capsys.readouterr().err
    assert err.startswith("bounce-middleware replay: error: --app failing_app_for_cli_tests:app: ")
    assert err.endswith(": RuntimeError: DATABASE_URL is not set\n")  # the type, not hidden
    assert err.count("\n") == 1
    sys.modules.pop("failing_app_for_cli_tests", None)


def test_replay_escapes_control_characters_from_stored_payloads(
    project: Project, capsys: pytest.CaptureFixture[str]
) -> None:
    project.broken.touch()
    deliver(project, 500, type="Hard\x1b[31mBounce\r\nFORGED", email="ann\x07@example.com")
    assert main(["replay", "--store", project.store_url, "--app", project.spec]) == 1
    out = capsys.readouterr().out
    assert "Hard\\x1b[31mBounce\\r\\nFORGED" in out
    assert "ann\\x07@example.com" in out
    assert not any(c in out for c in "\x1b\r\x07")
