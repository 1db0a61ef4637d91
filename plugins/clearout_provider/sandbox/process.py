"""Run the sandbox in a child process: used by the test fixtures, the demo and the benchmarks.

A child process (not a thread) keeps the server's CPU and memory apart from the code under test and
makes the HTTP path exactly the one users take. Reliability tests also drive the server's life through it:
:meth:`SandboxProcess.restart` (gracefully or with SIGKILL, same port and settings, so with a
``state_dir`` the account survives) and the runtime fault switches (:meth:`~SandboxProcess.set_faults`,
:meth:`~SandboxProcess.faults`, :meth:`~SandboxProcess.reset_faults`; meanings in :mod:`.faults`).
Readiness is always awaited by polling ``/healthz`` (up to ``startup_timeout``, 120 s by default: the
machines that run the tests are often CPU-bound), never by sleeping a fixed time.
"""

from __future__ import annotations

import dataclasses
import os
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import IO, Any, Self

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
        startup_timeout: float = 120.0,
    ) -> None:
        self.settings = settings or SandboxSettings()
        self.host = host
        self.port = port or free_port(host)
        self.log_path = log_path
        self.startup_timeout = startup_timeout
        self._proc: subprocess.Popen[bytes] | None = None
        self._out: IO[bytes] | None = None

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

    @property
    def mailso_url(self) -> str:
        """Base URL to put in a ``mailso`` connection's host field."""
        return f"{self.url}/mailso/v1"

    @property
    def _auth(self) -> dict[str, str]:
        return {"Authorization": self.settings.clearout_token}

    def clearout_stats(self) -> dict[str, Any]:
        """The Clearout side's own counters (``GET /clearout/v2/_sandbox/stats``: credits, calls, lists):
        the server-side witness tests and benchmarks read, since the hooks retry and hide some answers."""
        resp = requests.get(f"{self.clearout_url}/_sandbox/stats", headers=self._auth, timeout=30)
        resp.raise_for_status()
        return resp.json()

    @property
    def _clevertap_auth(self) -> dict[str, str]:
        return {
            "X-CleverTap-Account-Id": self.settings.clevertap_account_id,
            "X-CleverTap-Passcode": self.settings.clevertap_passcode,
        }

    def clevertap_stats(self) -> dict[str, int]:
        """The CleverTap side's request counters (``GET /clevertap/1/_sandbox/stats``, its ``stats``)."""
        resp = requests.get(
            f"{self.url}/clevertap/1/_sandbox/stats", headers=self._clevertap_auth, timeout=30
        )
        resp.raise_for_status()
        return resp.json()["stats"]

    def raise_clevertap_events(self, name: str, profiles: Sequence[Mapping[str, str]]) -> None:
        """Upload event ``name`` (now) for each profile (``{"objectId": ...}`` or ``{"identity": ...}``),
        as an app does when its users act, e.g. change their email (the hooks upload profiles only)."""
        now = int(time.time())
        for start in range(0, len(profiles), 1000):  # CleverTap's records per upload call
            records = [
                {"type": "event", **ref, "evtName": name, "ts": now, "evtData": {}}
                for ref in profiles[start : start + 1000]
            ]
            resp = requests.post(
                f"{self.url}/clevertap/1/upload",
                json={"d": records},
                headers=self._clevertap_auth,
                timeout=120,
            )
            resp.raise_for_status()
            if resp.json().get("status") != "success":
                raise RuntimeError(f"uploading {name!r} events failed: {resp.text[:300]}")

    def mailso_stats(self) -> dict[str, Any]:
        """The Mail.so side's ledger and counters (``GET /mailso/v1/_sandbox/stats``: credits used,
        validations, batches created, faults): what was really charged, whatever the client saw."""
        headers = {"x-mails-api-key": self.settings.mailso_api_key}
        resp = requests.get(f"{self.mailso_url}/_sandbox/stats", headers=headers, timeout=30)
        resp.raise_for_status()
        return resp.json()

    def faults(self) -> dict[str, Any]:
        """The current fault switches (``GET /_sandbox/faults``): every switch name → its value."""
        resp = requests.get(f"{self.url}/_sandbox/faults", headers=self._auth, timeout=30)
        resp.raise_for_status()
        return resp.json()

    def set_faults(self, **overrides: Any) -> dict[str, Any]:
        """Change fault switches while the server runs (``set_faults(stuck_lists=True)``); all or none.

        Returns every switch as it now stands; an unknown switch or a bad value raises ``ValueError``
        with the server's explanation (and changes nothing).
        """
        resp = requests.post(f"{self.url}/_sandbox/faults", json=overrides, headers=self._auth, timeout=30)
        if resp.status_code == 400:
            raise ValueError(resp.json()["error"])
        resp.raise_for_status()
        return resp.json()

    def reset_faults(self) -> dict[str, Any]:
        """Every fault switch back to its start-up value (from ``settings``); returns them."""
        resp = requests.delete(f"{self.url}/_sandbox/faults", headers=self._auth, timeout=30)
        resp.raise_for_status()
        return resp.json()

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
                elif isinstance(value, tuple):
                    cmd += [option, ",".join(value)]
                else:
                    cmd += [option, str(value)]
        return cmd

    def start(self, timeout: float | None = None) -> Self:
        """Start the server and poll ``/healthz`` until it answers (up to ``timeout``, default
        ``startup_timeout``); raise with the end of its output when it exits or never answers."""
        self._out = open(self.log_path, "ab") if self.log_path else tempfile.TemporaryFile()  # noqa: SIM115
        self._proc = subprocess.Popen(
            self.command(), stdout=self._out, stderr=subprocess.STDOUT, env=os.environ.copy()
        )
        ceiling = self.startup_timeout if timeout is None else timeout
        deadline = time.monotonic() + ceiling
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                code, output = self._proc.returncode, self._output_tail()
                self.stop()
                raise RuntimeError(f"sandbox exited with code {code}: {output}")
            try:
                if requests.get(f"{self.url}/healthz", timeout=1).ok:
                    return self
            except requests.ConnectionError:
                pass
            time.sleep(0.1)
        self.stop()
        raise RuntimeError(f"sandbox did not answer /healthz within {ceiling}s")

    def _output_tail(self, limit: int = 4000) -> str:
        """The last ``limit`` bytes the (exited) server printed: its start-up error, typically."""
        if self.log_path is not None:
            data = self.log_path.read_bytes()[-limit:]
        elif self._out is not None:  # the unnamed temporary file the output went to
            self._out.seek(max(0, self._out.seek(0, os.SEEK_END) - limit))
            data = self._out.read()
        else:
            data = b""
        return data.decode("utf-8", "replace").strip()

    def stop(self, *, kill: bool = False) -> None:
        """Stop the server: SIGTERM (it saves its state and exits; SIGKILL after 10 s), or SIGKILL at once
        with ``kill`` — a crash, which the state on disk must survive."""
        if self._proc and self._proc.poll() is None:
            if kill:
                self._proc.kill()
            else:
                self._proc.terminate()
            try:
                self._proc.wait(10)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait()
        self._proc = None
        if self._out is not None:
            self._out.close()
            self._out = None

    def restart(self, *, kill: bool = False, timeout: float = 120.0) -> Self:
        """Stop the server (SIGKILL with ``kill``) and start it again on the same port with the same
        settings, waiting up to ``timeout`` s for ``/healthz``. With a ``state_dir`` the Clearout account
        and the CleverTap profiles carry over; fault switches start again from ``settings``."""
        self.stop(kill=kill)
        return self.start(timeout=timeout)

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()
