"""What a verify task sends: the prepared addresses minus those the verdict ledger already answers.

Both verify paths (instant calls and bulk lists) plan through here, so "ask the ledger first" is decided
once. The plan is written into the task folder (the reused verdicts as Parquet, the upload file of what
is left), so a deferred bulk task that resumes on another worker joins exactly the verdicts it planned
with.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from airflow.sdk import ObjectStoragePath

from clearout_provider.contacts import (
    NORMALISED_EMAIL,
    Freshness,
    PreparedContacts,
    StoragePath,
    read_upload,
    resolve_path,
    upload_csv,
)
from clearout_provider.results import VERDICT_SCHEMA
from clearout_provider.verification.ledger import VerdictLedger, recorded_by
from clearout_provider.verification.model import DecidedBy

log = logging.getLogger(__name__)

#: The task folder's copy of the verdicts taken from the ledger (read again when a deferred task resumes).
REUSED_FILE = "ledger-reused.parquet"


@dataclass(frozen=True)
class VerifyPlan:
    """The addresses to send and the verdicts already known.

    ``upload_path``: CSV (header ``Email``) of the addresses to send, None when there are none.
    ``reused_path``: Parquet verdict table of the addresses the ledger answered (decided_by "ledger").
    """

    upload_path: Path | ObjectStoragePath | None
    reused_path: Path | ObjectStoragePath
    to_send: int
    reused: int

    def emails(self) -> list[str]:
        """The addresses to send, in upload-file order (for instant calls on small inputs)."""
        return [] if self.upload_path is None else read_upload(self.upload_path).to_pylist()


def plan_verification(
    prepared: PreparedContacts,
    ledger: VerdictLedger,
    freshness: Freshness,
    context: Mapping[str, Any],
) -> VerifyPlan:
    """Split ``prepared``'s unique addresses into those the ledger answers and those to send.

    The upload file of the remainder is written beside the prepared one under a name carrying its
    content hash, so the same remainder always gives the same file (Clearout's duplicate check, 2043,
    relies on that).
    """
    folder = resolve_path(prepared.upload_path).parent
    addresses = read_upload(prepared.upload_path) if prepared.counts.to_verify else pa.array([], pa.string())
    known = ledger.lookup(addresses, freshness, always_from=recorded_by(context))
    reused_path = folder / REUSED_FILE
    with reused_path.open("wb") as stream:
        pq.write_table(known, stream)
    remaining = pc.filter(addresses, pc.invert(pc.is_in(addresses, value_set=known[NORMALISED_EMAIL])))
    if known.num_rows:
        log.info(
            "Verdict ledger: %d of %d addresses were verified recently (or by an earlier try): "
            "not sent again",
            known.num_rows,
            len(addresses),
        )
    upload: Path | ObjectStoragePath | None = None
    if len(remaining):
        upload = prepared.upload_path if not known.num_rows else _write_upload(folder, remaining)
    return VerifyPlan(upload, reused_path, to_send=len(remaining), reused=known.num_rows)


def read_reused(path: StoragePath) -> pa.Table:
    """The verdicts a plan took from the ledger (empty when the file is gone: nothing was reused)."""
    local = resolve_path(path)
    if not local.exists():
        return VERDICT_SCHEMA.empty_table()
    with local.open("rb") as stream:
        return pq.read_table(stream).cast(VERDICT_SCHEMA)


def not_sent(addresses: pa.Array | list[str], decided_by: DecidedBy, reason: str | None = None) -> pa.Table:
    """Verdict-table rows WITHOUT a verdict for ``addresses`` (a dry run, or no answer): no status, the
    reason in ``verdict_reason``. The load writes nothing for them and they stay due."""
    emails = pa.array(addresses, pa.string()) if isinstance(addresses, list) else addresses
    n = len(emails)
    columns: dict[str, Any] = {
        name: pa.nulls(n, VERDICT_SCHEMA.field(name).type) for name in VERDICT_SCHEMA.names
    }
    columns |= {
        NORMALISED_EMAIL: emails,
        "verified_email": emails,
        "verdict_reason": pa.array([reason] * n, pa.string()),
        "decided_by": pa.array([decided_by.value] * n, pa.string()),
    }
    return pa.table(columns, schema=VERDICT_SCHEMA)


def _write_upload(folder: Path | ObjectStoragePath, addresses: pa.Array) -> Path | ObjectStoragePath:
    """An upload file exactly as prepare_contacts writes one (:func:`contacts.upload_csv`).

    Named by its hash.
    """
    content = upload_csv(addresses)
    path = folder / f"clearout-upload-{hashlib.sha256(content).hexdigest()[:16]}.csv"
    with path.open("wb") as stream:
        stream.write(content)
    return path
