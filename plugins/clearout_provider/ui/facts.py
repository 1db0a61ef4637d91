"""What a run's report says, read back from the report files wherever the runs keep them.

A list-cleaning run leaves ``report.md`` and ``report.html`` in its report task's folder,
``<data dir>/<dag_id>/<run_id>/<task>/`` (:mod:`clearout_provider.run_files`), on local disk or any
fsspec store: everything here goes through :class:`~airflow.sdk.ObjectStoragePath`.

The facts come from ``report.md``: its tables are the one form of the numbers every report ever
written holds (last month's reports have no other), and :mod:`clearout_provider.report` escapes each
cell, so a cell never holds a stray ``|``. This module is the only reader of that format; the
round-trip tests (a report written by :func:`~clearout_provider.report.write_report`, read back here)
fail the moment the two drift apart.
"""

from __future__ import annotations

import re
from collections.abc import Collection, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime

from airflow.sdk import ObjectStoragePath

from clearout_provider.clearout.statuses import STATUS_LABELS
from clearout_provider.run_files import folder_name
from clearout_provider.verification.model import Verdict
from clearout_provider.verification.verifier import SPECS

REPORT_MARKDOWN = "report.md"
REPORT_HTML = "report.html"

#: Status label in the report (Clearout's words, or a neutral verdict capitalised for Mail.so) -> value.
_STATUS_BY_LABEL: dict[str, str] = {
    **{verdict.value.capitalize(): verdict.value for verdict in Verdict},
    **{label: status.value for status, label in STATUS_LABELS.items()},
}
#: Statuses counted as invalid and as unknown in the trend, in either verifier's words.
INVALID_STATUSES = frozenset({"invalid", Verdict.UNDELIVERABLE.value})
UNKNOWN_STATUSES = frozenset({"unknown", Verdict.UNKNOWN.value})
#: Who decided a verdict -> the verifier it belongs to (local and ledger deciders belong to none).
_VERIFIER_BY_DECIDER: dict[str, str] = {
    str(decider): spec.name
    for spec in SPECS.values()
    for decider in (spec.instant, spec.instant_failed, spec.bulk)
}
_RUN_LINE_ITEM = re.compile(r"\*\*(.+?)\*\* (.*?)(?= · \*\*|$)")
_ESCAPED = re.compile(r"\\(.)")
_NUMBER = re.compile(r"\d[\d,]*")


class ReportFormatError(ValueError):
    """A ``report.md`` that is not a list-cleaning report (or a format this reader does not know)."""


@dataclass(frozen=True)
class ReportFacts:
    """The numbers of one run's report that the runs page lists and the trend draws.

    ``verifier`` is the verifier that decided verdicts in the run ("" when none did: every address was
    local, fresh or from the verdict ledger). ``credits_spent`` is None when the run did not measure
    it (a lower bound when only some chunks did). ``statuses``: result rows by status value.
    ``written_at``: when ``report.md`` was last written (UTC; the run's end, as the store tells it; None
    when the store does not say). ``folder``: where the report files are.
    """

    dag_id: str
    run_id: str
    mode: str
    verifier: str
    dry_run: bool
    verified: int
    credits_spent: int | None
    unsubscribed: int
    statuses: dict[str, int]
    adds_up: bool
    written_at: datetime | None
    folder: ObjectStoragePath

    @property
    def invalid_share(self) -> float:
        """Share of the verified rows that are invalid (undeliverable)."""
        return self._share(INVALID_STATUSES)

    @property
    def unknown_share(self) -> float:
        """Share of the verified rows whose verifier could not tell."""
        return self._share(UNKNOWN_STATUSES)

    def _share(self, statuses: frozenset[str]) -> float:
        if not self.verified:
            return 0.0
        return sum(n for status, n in self.statuses.items() if status in statuses) / self.verified


# ------------------------------------------------------------------------------------------ parsing


def _unescape(cell: str) -> str:
    """A Markdown cell as the report wrote it (``report._md`` escapes ``\\ | < >``) -> its text."""
    return _ESCAPED.sub(r"\1", cell.strip())


def _tables(markdown: str) -> dict[str, list[list[str]]]:
    """Every table's body rows, keyed by its section title (``## ...``); a table before any section
    title is keyed by its first header cell ("At a glance")."""
    tables: dict[str, list[list[str]]] = {}
    title, rows, in_table = "", None, False
    for line in markdown.splitlines():
        if line.startswith("## "):
            title, in_table = _unescape(line[3:]), False
        elif line.startswith("| ") and line.endswith(" |"):
            cells = [_unescape(c) for c in line[2:-2].split(" | ")]
            if not in_table:  # the header row: the table starts here
                rows = tables.setdefault(title or cells[0], [])
                in_table = True
            elif rows is not None:
                rows.append(cells)
        elif not line.startswith("|---"):
            in_table = False
    return tables


def _number(text: str) -> int | None:
    """The first whole number in ``text`` ("1,234", "≥ 1,234 (1 chunk(s) not measured)"); None if none."""
    found = _NUMBER.search(text)
    return int(found.group().replace(",", "")) if found else None


def parse_report(markdown: str, folder: ObjectStoragePath, written_at: datetime | None = None) -> ReportFacts:
    """The facts of a ``report.md`` (its text) found in ``folder``; ReportFormatError if it is not one."""
    lines = markdown.splitlines()
    if not lines or not lines[0].startswith("# ") or len(lines) < 3:
        raise ReportFormatError("no report title")
    run = {_unescape(k): _unescape(v) for k, v in _RUN_LINE_ITEM.findall(lines[2])}
    tables = _tables(markdown)
    glance = {row[0]: row[1] for row in tables.get("At a glance", []) if len(row) >= 2}
    missing = [k for k in ("DAG", "run", "mode") if k not in run]
    missing += [k for k in ("verified this run", "credits spent", "unsubscribed") if k not in glance]
    if missing:
        raise ReportFormatError(f"the report has no {', '.join(missing)}")
    statuses: dict[str, int] = {}
    for row in tables.get("Verification status", []):
        status = _STATUS_BY_LABEL.get(row[0], row[0].lower())
        statuses[status] = statuses.get(status, 0) + (_number(row[1]) or 0)
    verifiers = {_VERIFIER_BY_DECIDER.get(row[0], "") for row in tables.get("Who decided each verdict", [])}
    verifiers.discard("")
    return ReportFacts(
        dag_id=run["DAG"],
        run_id=run["run"],
        mode=run["mode"],
        verifier=", ".join(sorted(verifiers)),
        dry_run="dry run" in run,
        verified=_number(glance["verified this run"]) or 0,
        credits_spent=_number(glance["credits spent"]),
        unsubscribed=_number(glance["unsubscribed"]) or 0,
        statuses=statuses,
        adds_up=glance.get("accounting", "").startswith("✓"),
        written_at=written_at,
        folder=folder,
    )


# ------------------------------------------------------------------------------------------ reading


def read_report(folder: ObjectStoragePath) -> ReportFacts:
    """The facts of the report in ``folder`` (FileNotFoundError without one, ReportFormatError)."""
    path = folder / REPORT_MARKDOWN
    return parse_report(path.read_text(encoding="utf-8"), folder, _modified(path))


def _modified(path: ObjectStoragePath) -> datetime | None:
    """When the store last wrote ``path`` (local disks and the common object stores say; others may not)."""
    try:
        return datetime.fromtimestamp(float(path.stat().st_mtime), UTC)
    except (AttributeError, KeyError, OSError, TypeError, ValueError):
        return None


def _report_folders(base: ObjectStoragePath, dag_ids: Collection[str]) -> Iterator[ObjectStoragePath]:
    """Folders holding a report, below the folders of ``dag_ids`` only (a DAG's folder is its id)."""
    for dag_id in sorted(dag_ids):
        dag_folder = base / dag_id
        if dag_folder.is_dir():
            for path in dag_folder.glob(f"*/*/{REPORT_MARKDOWN}"):
                yield path.parent


def read_reports(base: ObjectStoragePath, dag_ids: Collection[str]) -> list[ReportFacts]:
    """The facts of every report of the DAGs ``dag_ids`` under ``base``.

    Only the named DAGs' folders are read (the caller passes those its user may see). A report whose
    text names another DAG than its folder does is left out, as is any file that is not a report.
    """
    found = []
    for folder in _report_folders(base, dag_ids):
        try:
            facts = read_report(folder)
        except (ReportFormatError, FileNotFoundError, UnicodeDecodeError):
            continue
        if facts.dag_id == folder.parent.parent.name:
            found.append(facts)
    return found


def find_report(base: ObjectStoragePath, dag_id: str, run_id: str) -> ReportFacts | None:
    """The report of one run, or None when the run wrote none (yet). Reads that run's folder only."""
    run_folder = base / dag_id / folder_name(run_id)
    for path in run_folder.glob(f"*/{REPORT_MARKDOWN}") if run_folder.is_dir() else ():
        try:
            facts = read_report(path.parent)
        except (ReportFormatError, FileNotFoundError, UnicodeDecodeError):
            continue
        if (facts.dag_id, facts.run_id) == (dag_id, run_id):
            return facts
    return None


def report_markdown(facts: ReportFacts) -> str:
    """The run's ``report.md`` as written."""
    return (facts.folder / REPORT_MARKDOWN).read_text(encoding="utf-8")


def report_html(facts: ReportFacts) -> str | None:
    """The run's ``report.html`` as written (a whole self-contained page), or None when it is missing."""
    path = facts.folder / REPORT_HTML
    return path.read_text(encoding="utf-8") if path.exists() else None
