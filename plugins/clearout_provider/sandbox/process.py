"""Run the sandbox in a child process: used by the test fixtures, the demo and the benchmarks.

A child process (not a thread) keeps the server's CPU and memory apart from the code under test and
makes the HTTP path exactly the one users take.
"""

from __future__ import annotations

import dataclasses
import os
import socket
import subprocess
import sys
import time
from pathlib import Path
from types import TracebackType
from typing import Any, Self

import requests

from clearout_provider.sandbox.settings import SandboxSettings


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port that was free a moment ago on ``host``."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]


class SandboxProcess:
    """``with SandboxProcess(SandboxSettings(credits=10)) as sb: sb.url`` — a live sandbox server."""

    def __init__(
        self,
        settings: SandboxSettings | None = None,
        *,
        host: str = "127.0.0.1",
        port: int | None = None,
        log_path: Path | None = None,
        startup_timeout: float = 30.0,
    ) -> None:
        self.settings = settings or SandboxSettings()
        self.host = host
        self.port = port or free_port(host)
        self.log_path = log_path
        self.startup_timeout = startup_timeout
        self._proc: subprocess.Popen[bytes] | None = None

    @property
    def pid(self) -> int | None:
        """Process id of the running server (None when stopped), e.g. to read its memory use."""
        return self._proc.pid if self._proc else None

    @property
    def url(self) -> str:
        """Root URL of the server, e.g. ``http://127.0.0.1:8765``."""
        return f"http://{self.host}:{self.port}"

    @property
    def clearout_url(self) -> str:
        """Base URL to put in a ``clearout`` connection's host field."""
        return f"{self.url}/clearout/v2"

    def clearout_stats(self) -> dict[str, Any]:
        """The Clearout side's own counters (``GET /clearout/v2/_sandbox/stats``: credits, calls, lists):
        the server-side witness tests and benchmarks read, since the hooks retry and hide some answers."""
        auth = {"Authorization": self.settings.clearout_token}
        resp = requests.get(f"{self.clearout_url}/_sandbox/stats", headers=auth, timeout=30)
        resp.raise_for_status()
        return resp.json()

    def clevertap_stats(self) -> dict[str, int]:
        """The CleverTap side's request counters (``GET /clevertap/1/_sandbox/stats``, its ``stats``)."""
        headers = {
            "X-CleverTap-Account-Id": self.settings.clevertap_account_id,
            "X-CleverTap-Passcode": self.settings.clevertap_passcode,
        }
        resp = requests.get(f"{self.url}/clevertap/1/_sandbox/stats", headers=headers, timeout=30)
        resp.raise_for_status()
        return resp.json()["stats"]

    def command(self) -> list[str]:
        """The command line that starts this server (every non-default setting spelled out)."""
        cmd = [
            sys.executable,
            "-m",
            "clearout_provider.sandbox",
            "--host",
            self.host,
            "--port",
            str(self.port),
        ]
        defaults = SandboxSettings()
        for field in dataclasses.fields(SandboxSettings):
            value = getattr(self.settings, field.name)
            if value != getattr(defaults, field.name):
                option = "--" + field.name.replace("_", "-")
                if isinstance(value, bool):
                    cmd.append(option if value else "--no-" + option[2:])
                else:
                    cmd += [option, str(value)]
        return cmd

    def start(self) -> Self:
        """Start the server and block until ``/healthz`` answers (or raise with its output)."""
        out = open(self.log_path, "ab") if self.log_path else subprocess.DEVNULL  # noqa: SIM115
        self._proc = subprocess.Popen(
            self.command(), stdout=out, stderr=subprocess.STDOUT, env=os.environ.copy()
        )
        deadline = time.monotonic() + self.startup_timeout
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                raise RuntimeError(f"sandbox exited with code {self._proc.returncode}; see {self.log_path}")
            try:
                if requests.get(f"{self.url}/healthz", timeout=1).ok:
                    return self
            except requests.ConnectionError:
                pass
            time.sleep(0.1)
        self.stop()
        raise RuntimeError(f"sandbox did not answer /healthz within {self.startup_timeout}s")

    def stop(self) -> None:
        """Terminate the server (SIGTERM, then SIGKILL after 10 s)."""
        if self._proc and self._proc.poll() is None:
            self._proc.terminate()
            try:
                self._proc.wait(10)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait()
        self._proc = None

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()
