"""A DAG's watermark: the start of its last successful run, kept where every worker can read it.

An incremental DAG asks only for what changed since its watermark, and advances it as its LAST step:
a failed run leaves it where it was, so the next run asks again from the same point and nobody is
skipped. It lives in the data dir (``<data dir>/watermarks/<dag_id>.json``, local or any object store;
see :mod:`clearout_provider.run_files`) rather than in Airflow's own run history because an
event-triggered run has no logical date to count from, and a plain file says plainly what the next run
will ask for (delete it to start over).
"""

from __future__ import annotations

import json
from datetime import UTC, datetime

from clearout_provider.run_files import base_folder


class Watermark:
    """The watermark of ``dag_id`` under the data dir (``workdir`` overrides it, as for task folders)."""

    def __init__(self, dag_id: str, workdir: str | None = None) -> None:
        self.path = base_folder(workdir) / "watermarks" / f"{dag_id}.json"

    def read(self) -> datetime | None:
        """When the last successful run started, or None before the first one."""
        if not self.path.exists():
            return None
        try:
            value = json.loads(self.path.read_text())["since"]
            moment = datetime.fromisoformat(value)
        except (ValueError, KeyError, TypeError) as exc:
            raise ValueError(
                f"The watermark {self.path} is unreadable ({exc}); fix it or delete it to start over"
            ) from None
        return moment if moment.tzinfo else moment.replace(tzinfo=UTC)

    def advance(self, to: datetime) -> None:
        """Move the watermark to ``to`` (never backwards: a slow older run cannot undo a newer one)."""
        if to.tzinfo is None:
            raise ValueError("a watermark must be timezone-aware")
        current = self.read()
        if current is not None and current >= to:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.path.write_text(json.dumps({"since": to.astimezone(UTC).isoformat()}))
