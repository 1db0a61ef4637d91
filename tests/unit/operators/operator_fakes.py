"""What the operator tests of this folder share: a task context, contacts files, and fake Clearout answers.

The operators run for real (files, verdict ledger, result join); only the hook is replaced, so each test
says exactly which calls reach Clearout or CleverTap and what they answer.
"""

from __future__ import annotations

import csv
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from unittest import mock

from clearout_provider.clearout.models import Credits, VerifyResult
from clearout_provider.sandbox.clearout_verdicts import cancelled, verdict_for
from clearout_provider.verdicts import BULK_RESULT_COLUMNS


def task_context(
    task_id: str, *, dag_id: str = "unit_dag", run_id: str = "manual__1", try_number: int = 1
) -> dict:
    """The part of an Airflow context the operators read: the task instance (its XCom pushes recorded)."""
    ti = mock.MagicMock(dag_id=dag_id, run_id=run_id, task_id=task_id, map_index=-1, try_number=try_number)
    return {"ti": ti}


def contacts_csv(path: Path, emails: list[str]) -> str:
    """A CleverTap-like export with an ``Email`` column; returns its path as the operators take it."""
    lines = ["identity,Email"] + [f"{1000 + i},{email}" for i, email in enumerate(emails)]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return str(path)


def instant_answer(email: str) -> VerifyResult:
    """What Clearout's instant API answers for ``email`` (the sandbox's deterministic verdicts)."""
    return VerifyResult.from_api(verdict_for(email).as_instant(datetime.now(UTC)))


def credits(*balances: int) -> list[Credits]:
    """Successive ``get_credits()`` answers."""
    return [Credits(available=b) for b in balances]


def calls_of(method: mock.Mock) -> list[Any]:
    """The first positional argument of every call of a mocked hook method, in call order."""
    return [c.args[0] for c in method.call_args_list]


def write_bulk_result(upload: Path, dest: Path, *, processed: int | None = None) -> None:
    """Clearout's result of the bulk list ``upload``: its rows, then the verdict columns (as the sandbox).

    ``processed``: a list cancelled after that many rows; the rest carry "Request Cancelled" (605).
    """
    with upload.open(newline="", encoding="utf-8") as source:
        header, *rows = list(csv.reader(source))
    at = datetime.now(UTC)
    done = len(rows) if processed is None else processed
    with dest.open("w", newline="", encoding="utf-8") as out:
        writer = csv.writer(out)
        writer.writerow([*header, *BULK_RESULT_COLUMNS])
        for n, row in enumerate(rows):
            verdict = verdict_for(row[0]) if n < done else cancelled(row[0])
            writer.writerow([*row, *verdict.as_bulk_row(at)])
