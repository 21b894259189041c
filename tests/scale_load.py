"""A fixed number of webhook deliveries spread over several servers at once, timed.

What ``benchmarks/postgres_http.py`` drives its rows with, in two ways:

- :func:`wrk_load`: one ``wrk`` process per server (Debian's ``wrk``, written in
  C: it leaves the two cores to the servers), each running
  ``benchmarks/postmark.lua`` (a distinct Postmark event per request, a fixed
  count of answers) through a small wrapper that also prints wrk's latency
  histogram, so the servers' histograms add up to one exact p50/p99;
- :func:`python_load`: threads posting on kept-alive ``http.client``
  connections (:class:`tests.scale_servers.Provider`), when wrk is missing.

Requests per second are the answers over the longest of the servers' runs
(they start together); every request is a new event.
"""

from __future__ import annotations

import json
import signal
import subprocess
import threading
import time
from collections import Counter
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from benchmarks.http_load import LUA
from tests.scale_app import PATH
from tests.scale_servers import Provider

_WRAPPER = """-- postmark.lua, and its latency histogram once done (value_us:count,...).
dofile("{lua}")
local postmark_done = done
function done(summary, latency, requests)
  postmark_done(summary, latency, requests)
  local parts = {{}}
  for i = 1, #latency do
    local value, count = latency(i)
    parts[#parts + 1] = value .. ":" .. count
  end
  io.write("WRK_LATENCIES " .. table.concat(parts, ",") .. "\\n")
end
"""


@dataclass
class Load:
    """One timed run over one or more servers."""

    answered: int = 0
    not_200: int = 0
    errors: int = 0
    seconds: float = 0.0
    #: Latency in microseconds -> how many answers took it.
    latencies: Counter[int] = field(default_factory=Counter)

    @property
    def rps(self) -> float:
        return self.answered / self.seconds if self.seconds else 0.0

    def percentile_ms(self, fraction: float) -> float:
        """The nearest-rank percentile of the latencies, in milliseconds."""
        total = sum(self.latencies.values())
        rank = max(1, round(fraction * total))
        seen = 0
        for value in sorted(self.latencies):
            seen += self.latencies[value]
            if seen >= rank:
                return value / 1000
        return 0.0


def split(total: int, parts: int) -> list[int]:
    """``total`` shared out over ``parts`` as evenly as whole numbers allow."""
    return [total // parts + (1 if n < total % parts else 0) for n in range(parts)]


def wrk_load(
    wrk: str,
    ports: Sequence[int],
    requests: int,
    connections: int,
    *,
    template: Path,
    id_base: int,
    auth: str,
    workdir: Path,
) -> Load:
    """``requests`` deliveries, ``connections`` at a time, shared by the servers on ``ports``."""
    wrapper = workdir / "postgres_http.lua"
    wrapper.write_text(_WRAPPER.format(lua=LUA))
    processes = []
    for n, (port, count, conns) in enumerate(
        zip(ports, split(requests, len(ports)), split(connections, len(ports)), strict=True)
    ):
        command = [
            wrk, "-t1", f"-c{conns}", "-d300s", "--timeout", "10s", "-s", str(wrapper),
            f"http://127.0.0.1:{port}", "--", PATH, str(count), str(template),
            str(id_base + n * 1_000_000_000), "10000", auth,
        ]  # fmt: skip
        processes.append(subprocess.Popen(command, stdout=subprocess.PIPE, text=True))
    outputs: list[list[str]] = [[] for _ in processes]
    readers = [
        threading.Thread(target=_read_wrk, args=(process, lines))
        for process, lines in zip(processes, outputs, strict=True)
    ]
    for reader in readers:
        reader.start()
    for reader in readers:
        reader.join(timeout=400)
    load = Load()
    for process, lines in zip(processes, outputs, strict=True):
        process.wait(timeout=30)
        result = [line for line in lines if line.startswith("WRK_RESULT ")]
        histogram = [line for line in lines if line.startswith("WRK_LATENCIES ")]
        if not result or not histogram:
            raise SystemExit("wrk printed no result:\n" + "".join(lines))
        figures = json.loads(result[0].removeprefix("WRK_RESULT "))
        load.answered += figures["answered"]
        load.not_200 += figures["not_200"]
        load.errors += figures["errors"]
        load.seconds = max(load.seconds, figures["duration_us"] / 1e6)
        for pair in filter(None, histogram[0].removeprefix("WRK_LATENCIES ").strip().split(",")):
            value, times = pair.split(":")
            load.latencies[int(value)] += int(times)
    return load


def _read_wrk(process: subprocess.Popen[str], lines: list[str]) -> None:
    assert process.stdout is not None
    for line in process.stdout:
        lines.append(line)
        if line.startswith("WRK_THREAD_DONE"):
            # wrk would otherwise wait out its -d duration; SIGINT makes it report now.
            process.send_signal(signal.SIGINT)


def python_load(ports: Sequence[int], bodies: Sequence[bytes], connections: int) -> Load:
    """Each body delivered once, by ``connections`` threads shared by the servers, each
    thread on one kept-alive connection to its server."""
    provider = Provider(ports)
    per_server = split(connections, len(ports))
    lanes = [server for server, count in enumerate(per_server) for _ in range(count)]
    shares = [bodies[n :: len(lanes)] for n in range(len(lanes))]
    go = threading.Barrier(len(lanes) + 1)

    def lane(server: int, share: Sequence[bytes]) -> list[tuple[int, float]]:
        go.wait(timeout=60)
        answers = []
        for body in share:
            attempt = provider.post(body, server)
            answers.append((attempt.status, attempt.seconds))
        return answers

    try:
        with ThreadPoolExecutor(max_workers=len(lanes)) as pool:
            futures = [pool.submit(lane, s, share) for s, share in zip(lanes, shares, strict=True)]
            go.wait(timeout=60)
            started = time.perf_counter()
            answers = [answer for future in futures for answer in future.result()]
            seconds = time.perf_counter() - started
    finally:
        provider.close()
    load = Load(seconds=seconds)
    for status, took in answers:
        if status == 0:
            load.errors += 1
            continue
        load.answered += 1
        load.not_200 += status != 200
        load.latencies[round(took * 1e6)] += 1
    return load
