"""Real ``celery worker`` and ``celery beat`` processes for the Celery tests.

Each runs ``tests.celery_app`` (see there for the environment it reads) from
the repository root, logging to a file the test reads on failure.
"""

from __future__ import annotations

import itertools
import json
import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
#: Seconds any wait may take before the test fails.
WAIT = 60.0

_names = itertools.count(1)


@dataclass
class Setup:
    """What every process of one test shares: broker, store, ledger, options."""

    broker: str
    store: str
    ledger: str
    workdir: Path
    options: dict[str, Any] = field(default_factory=dict)

    def env(self) -> dict[str, str]:
        """The environment of a worker or beat process."""
        return {
            **os.environ,
            "BOUNCE_CELERY_BROKER": self.broker,
            "BOUNCE_CELERY_STORE": self.store,
            "BOUNCE_CELERY_LEDGER": self.ledger,
            "BOUNCE_CELERY_OPTIONS": json.dumps(self.options),
            "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])),
        }


class CeleryProcess:
    """One ``celery`` subprocess; :meth:`kill` ends it as the OOM killer would."""

    def __init__(self, setup: Setup, command: list[str], name: str) -> None:
        self.name = name
        self.log = setup.workdir / f"{name}.log"
        with self.log.open("wb") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "celery", "-A", "tests.celery_app:app", *command],
                env=setup.env(),
                cwd=ROOT,
                stdout=log,
                stderr=subprocess.STDOUT,
            )

    def output(self) -> str:
        """Everything the process logged so far."""
        return self.log.read_text(errors="replace")

    def wait_for(self, text: str, timeout: float = WAIT) -> None:
        """Wait until the log holds ``text``; fail (with the log) if the process ends first."""
        deadline = time.monotonic() + timeout
        while text not in self.output():
            if self.process.poll() is not None:
                raise AssertionError(f"{self.name} exited early:\n{self.output()}")
            if time.monotonic() > deadline:
                raise AssertionError(f"{self.name}: no {text!r} in {timeout} s:\n{self.output()}")
            time.sleep(0.05)

    def alive(self) -> bool:
        """True while the process runs."""
        return self.process.poll() is None

    def kill(self) -> None:
        """SIGKILL: no clean-up, no acknowledgement."""
        if self.alive():
            self.process.kill()
        self.process.wait(15)

    def stop(self) -> None:
        """A warm shutdown (SIGTERM), then SIGKILL if it lingers."""
        if self.alive():
            self.process.terminate()
            try:
                self.process.wait(15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(15)


def start_worker(setup: Setup) -> CeleryProcess:
    """A solo worker (one task at a time, in the worker process itself), once ready."""
    name = f"worker{next(_names)}"
    worker = CeleryProcess(
        setup,
        [
            "worker",
            "-P",
            "solo",
            "-n",
            f"{name}@%h",
            "-Q",
            "bounce-tests",
            "--without-gossip",
            "--without-mingle",
            "--without-heartbeat",
            "-l",
            "INFO",
        ],
        name,
    )
    worker.wait_for(" ready.")
    return worker


def start_beat(setup: Setup) -> CeleryProcess:
    """``celery beat`` with the sweeper's schedule (``sweep_every`` seconds)."""
    name = f"beat{next(_names)}"
    beat = CeleryProcess(
        setup,
        ["beat", "-s", str(setup.workdir / f"{name}-schedule"), "-l", "INFO"],
        name,
    )
    beat.wait_for("beat: Starting...")
    return beat


@contextmanager
def running(*processes: CeleryProcess) -> Iterator[None]:
    """Stop ``processes`` on the way out, whatever happened."""
    try:
        yield
    finally:
        for process in processes:
            process.stop()


def wait_until(condition: Callable[[], bool], what: str, *logs: CeleryProcess) -> None:
    """Poll ``condition`` until true; fail naming ``what``, with the processes' logs."""
    deadline = time.monotonic() + WAIT
    while not condition():
        if time.monotonic() > deadline:
            shown = "\n".join(f"--- {p.name}\n{p.output()}" for p in logs)
            raise AssertionError(f"timed out waiting for {what}\n{shown}")
        time.sleep(0.1)
