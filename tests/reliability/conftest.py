"""Fixtures of the fault matrix: the clean reference night (once per session) and a fresh world per test.

At the end of the session the matrix is printed as one table (scenario, outcome, contacts in/out,
credits expected/charged): see :data:`world.TABLE`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from world import RETRIES, TABLE, Reference, Row, World, account_settings, clean_night, make_world

from clearout_provider.sandbox import SandboxProcess


@pytest.fixture(scope="session")
def reference(airflow_db: None, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Reference]:
    """One fault-free night on a fresh account: what every scenario's account must end up holding."""
    folder = tmp_path_factory.mktemp("reference")
    with (
        pytest.MonkeyPatch.context() as monkeypatch,
        SandboxProcess(
            account_settings(state_dir=str(folder / "sandbox-state")), log_path=folder / "sandbox.log"
        ) as server,
    ):
        world = make_world(server, monkeypatch, folder)
        night = clean_night(world)
        verified = night.xcom("verified")
        end = world.end_state()
        TABLE.append(
            Row(
                "clean night (the reference)",
                "ok",
                len(end.profiles),
                len(end.profiles),
                end.credits_used,
                end.credits_used,
            )
        )
        yield Reference(
            end, night.exported or 0, night.to_verify or 0, tuple(v["result_path"] for v in verified)
        )


@pytest.fixture
def world(
    airflow_db: None,
    sandbox_factory: Callable[..., SandboxProcess],
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> Callable[..., World]:
    """``world(**sandbox settings)``: a fresh account identical to the reference's, plus those settings;
    ``retries`` sets the DAG's task retries (default :data:`world.RETRIES`)."""

    def make(retries: int = RETRIES, **settings: Any) -> World:
        server = sandbox_factory(account_settings(**settings, state_dir=str(tmp_path / "sandbox-state")))
        return make_world(server, monkeypatch, tmp_path, retries)

    return make


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """A scenario runs several nights (each with retries): a hang guard above the suite's default."""
    for item in items:
        if Path(__file__).parent in item.path.parents:
            item.add_marker(pytest.mark.timeout(1800))


def pytest_terminal_summary(terminalreporter: Any) -> None:
    if not TABLE:
        return
    header = ("scenario", "outcome", "contacts in", "contacts out", "credits expected", "credits charged")
    rows = [header] + [
        (
            r.scenario,
            r.outcome,
            str(r.contacts_in),
            str(r.contacts_out),
            str(r.credits_expected),
            str(r.credits_charged),
        )
        for r in TABLE
    ]
    widths = [max(len(row[i]) for row in rows) for i in range(len(header))]
    terminalreporter.section("fault matrix (tests/reliability)")
    for n, row in enumerate(rows):
        terminalreporter.write_line(" | ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)))
        if n == 0:
            terminalreporter.write_line("-+-".join("-" * w for w in widths))
