"""A StatsD server for tests: a UDP socket on loopback that keeps every metric Airflow sends it.

``statsd_metrics(monkeypatch)`` turns Airflow's StatsD metrics on (``[metrics] statsd_on``, host and port
pointing at a fresh listener) and initialises Airflow's stats backend the way the task runner's ``main()``
does in a real worker (``dag.test()`` runs tasks in-process and skips that step), then hands the listener
over; on exit the backend goes back to sending nothing.
"""

from __future__ import annotations

import select
import socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import pytest


@dataclass(frozen=True)
class Metric:
    name: str
    value: float
    kind: str  # "c" counter, "g" gauge, "ms" timer


class StatsdListener:
    """Receives StatsD lines (``name:value|kind``) on 127.0.0.1 in a thread of its own."""

    def __init__(self) -> None:
        self._sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self._sock.bind(("127.0.0.1", 0))
        self.port: int = self._sock.getsockname()[1]
        self._received: list[Metric] = []
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._serve, name="statsd-listener", daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        while not self._stopping.is_set():
            ready, _, _ = select.select([self._sock], [], [], 0.2)
            if ready:
                self._take(self._sock.recv(65_535))

    def _take(self, packet: bytes) -> None:
        for line in packet.decode().splitlines():
            name, _, rest = line.partition(":")
            value, _, kind = rest.partition("|")
            with self._lock:
                self._received.append(Metric(name, float(value), kind.split("|")[0]))

    def close(self) -> None:
        """Stop, keeping whatever is still queued in the socket (sends are synchronous: all of it)."""
        self._stopping.set()
        self._thread.join(timeout=30)
        self._sock.setblocking(False)
        while True:
            try:
                self._take(self._sock.recv(65_535))
            except BlockingIOError:
                break
        self._sock.close()

    def metrics(self, prefix: str = "") -> list[Metric]:
        with self._lock:
            return [m for m in self._received if m.name.startswith(prefix)]

    def total(self, name: str) -> float:
        """The sum of every counter ``name`` received (0 when none arrived)."""
        return sum(m.value for m in self.metrics() if m.name == name and m.kind == "c")

    def values(self, name: str) -> list[float]:
        """Every value received under ``name``, in order."""
        return [m.value for m in self.metrics() if m.name == name]


@contextmanager
def statsd_metrics(monkeypatch: pytest.MonkeyPatch) -> Iterator[StatsdListener]:
    from airflow.sdk._shared.observability.metrics.base_stats_logger import NoStatsLogger
    from airflow.sdk.configuration import conf
    from airflow.sdk.observability import stats
    from airflow.sdk.observability.metrics import stats_utils

    listener = StatsdListener()
    monkeypatch.setenv("AIRFLOW__METRICS__STATSD_ON", "True")
    monkeypatch.setenv("AIRFLOW__METRICS__STATSD_HOST", "127.0.0.1")
    monkeypatch.setenv("AIRFLOW__METRICS__STATSD_PORT", str(listener.port))
    stats.initialize(
        factory=stats_utils.get_stats_factory(),
        export_legacy_names=conf.getboolean("metrics", "legacy_names_on"),
    )
    try:
        yield listener
    finally:
        stats.initialize(factory=NoStatsLogger, export_legacy_names=False)
        listener.close()
