"""``bounce-middleware list`` on real stores: recorded bounces, and rejected requests.

The application and its stores are in ``tests/cli_project.py``.
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from bounce_middleware.cli import main
from bounce_middleware.store import rejection_key

from .cli_project import (
    NOT_POSTMARK,
    Project,
    body_of,
    deliver,
)
from .cli_project import any_project as any_project  # noqa: F401 - fixtures
from .cli_project import project as project  # noqa: F401


def test_list_shows_recorded_bounces_newest_first(
    project: Project, capsys: pytest.CaptureFixture[str]
) -> None:
    done = deliver(project, 200, email="ann@example.com")
    project.broken.touch()
    pending = deliver(project, 500, type="SoftBounce", email="bob@example.com")

    assert main(["list", "--store", project.store_url]) == 0

    header, first, second = capsys.readouterr().out.splitlines()
    assert header.split() == [
        "RECEIVED", "KIND", "TYPE", "EMAIL", "STATE", "TRIES", "KEY", "COMPLETED", "HANDLERS"
    ]  # fmt: skip
    bob = ["soft", "SoftBounce", "bob@example.com", "pending", "1", pending, "steady"]
    ann = ["hard", "HardBounce", "ann@example.com", "done", "1", done, "flaky,", "steady"]
    assert first.split()[2:] == bob  # after the date and time
    assert second.split()[2:] == ann


def test_list_filters_and_json(project: Project, capsys: pytest.CaptureFixture[str]) -> None:
    deliver(project, 200, email="ann@example.com")
    deliver(project, 200, type="SoftBounce", email="Bob@Example.com")
    capsys.readouterr()

    def listing(*options: str) -> list[dict[str, Any]]:
        assert main(["list", "--store", project.store_url, "--json", *options]) == 0
        result: list[dict[str, Any]] = json.loads(capsys.readouterr().out)
        return result

    assert [r["email"] for r in listing()] == ["Bob@Example.com", "ann@example.com"]
    assert [r["email"] for r in listing("--kind", "hard")] == ["ann@example.com"]
    assert [r["email"] for r in listing("--email", "bob@example.com")] == ["Bob@Example.com"]
    assert listing("--unfinished") == []
    [newest] = listing("--limit", "1")
    assert newest["completed"] == ["flaky", "steady"]
    assert newest["finished"] is True
    assert main(["list", "--store", project.store_url, "--limit", "1"]) == 0
    assert "(the newest 1 shown; --limit 0 shows all)" in capsys.readouterr().out
    assert main(["list", "--store", project.store_url, "--kind", "complaint"]) == 0
    assert capsys.readouterr().out == "no recorded bounces match\n"


def test_list_rejected_shows_each_rejected_request_and_the_counts(
    any_project: Project, capsys: pytest.CaptureFixture[str]
) -> None:
    garbage = any_project.reject(NOT_POSTMARK, "body is not a Postmark record")
    ann, _ = body_of(email="ann@example.com")
    refused = any_project.reject(ann, "field Email is missing")
    done = any_project.reject(body_of()[0], "field ID is missing", resolved=True)

    assert main(["list", *any_project.where, "--rejected"]) == 0

    header, *rows, counts = capsys.readouterr().out.splitlines()
    assert header.split() == ["RECEIVED", "PROVIDER", "STATE", "KEY", "REASON"]
    assert [row.split()[2:] for row in rows] == [  # after the date and time, newest first
        ["postmark", "resolved", done, "field", "ID", "is", "missing"],
        ["postmark", "unresolved", refused, "field", "Email", "is", "missing"],
        ["postmark", "unresolved", garbage, "body", "is", "not", "a", "Postmark", "record"],
    ]
    assert counts == (
        "3 rejected request(s): 2 unresolved, 1 resolved; "
        "`bounce-middleware replay` runs the unresolved ones again"
    )
    assert refused == rejection_key("postmark", ann)

    unresolved = any_project.listing("--rejected", "--unfinished")
    assert [(r["key"], r["resolved"]) for r in unresolved] == [(refused, False), (garbage, False)]
    assert unresolved[0] == {
        "key": refused,
        "provider": "postmark",
        "received_at": unresolved[0]["received_at"],
        "reason": "field Email is missing",
        "resolved": False,
        "body_bytes": len(ann),
    }
    assert [r["key"] for r in any_project.listing("--rejected", "--limit", "1")] == [done]
    assert "ann@example.com" not in json.dumps(unresolved)  # the body is never shown


def test_list_of_events_points_at_unresolved_rejected_requests(
    any_project: Project, capsys: pytest.CaptureFixture[str]
) -> None:
    any_project.reject(b"{}", "body is not a Postmark record")

    assert main(["list", *any_project.where]) == 0

    assert capsys.readouterr().out.splitlines() == [
        "no recorded bounces yet",
        "(1 rejected request(s) not yet replayed: bounce-middleware list --rejected shows them)",
    ]
    assert main(["list", *any_project.where, "--rejected"]) == 0
    assert "1 unresolved, 0 resolved" in capsys.readouterr().out


def test_list_rejected_when_there_are_none(
    any_project: Project, capsys: pytest.CaptureFixture[str]
) -> None:
    deliver(any_project, 200)

    assert main(["list", *any_project.where, "--rejected"]) == 0

    assert capsys.readouterr().out == (
        "no rejected requests: every authenticated request was accepted\n"
    )
