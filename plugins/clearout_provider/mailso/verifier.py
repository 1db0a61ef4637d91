"""MailsoVerifier: Mail.so behind the neutral verifier interface, one address at a time or in batches.

One address: ``GET /validate`` (:meth:`MailsoVerifier.verify_one`, what the instant runner calls). Many:
``POST /batch`` then poll until ``finished_at`` is set (:meth:`MailsoVerifier.verify_in_batches`). A
batch is paid for when it is created and re-posting creates (and charges) a new one, so each batch id is
written to a :class:`~clearout_provider.instant_calls.Checkpoint` BEFORE waiting: a retried task adopts
the batches its earlier try created instead of posting them again, and every answer goes to the verdict
ledger journal as soon as its batch is read.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import asdict
from typing import Any

from clearout_provider.exceptions import MailsoBadRequest, MailsoProtocolError
from clearout_provider.hooks.mailso import MailsoHook
from clearout_provider.instant_calls import Checkpoint
from clearout_provider.mailso.models import MailsoValidation
from clearout_provider.mailso.statuses import verdict_row
from clearout_provider.masking import mask_email
from clearout_provider.verification.model import DecidedBy
from clearout_provider.verification.verifier import SPECS

log = logging.getLogger(__name__)

#: Mail.so failures that concern one address only: refused as input, or an unreadable answer.
MAILSO_ITEM_FAILURES: tuple[type[Exception], ...] = (MailsoBadRequest, MailsoProtocolError)


def _row(validation: MailsoValidation, decided_by: DecidedBy) -> dict[str, Any]:
    return verdict_row(asdict(validation), decided_by=decided_by)


class MailsoVerifier:
    """Mail.so validation through one :class:`MailsoHook` (its rate limiter paces every thread).

    :param conn_id: a ``mailso`` connection (``mailso_default`` when None).
    :param poll_interval: seconds between polls of a running batch.
    :param batch_timeout: how long one batch may run before the task fails (the batch id is kept, so a
        retry collects it without paying again).
    """

    spec = SPECS["mailso"]
    item_failures = MAILSO_ITEM_FAILURES

    def __init__(
        self, conn_id: str | None = None, *, poll_interval: float = 5.0, batch_timeout: float = 3600.0
    ) -> None:
        self.hook = MailsoHook(conn_id or MailsoHook.default_conn_name)
        self.poll_interval = poll_interval
        self.batch_timeout = batch_timeout

    def verify_one(self, email: str) -> dict[str, Any]:
        return _row(self.hook.validate(email), DecidedBy.MAILSO_INSTANT)

    def balance(self) -> int | None:
        """Mail.so publishes no balance endpoint: spending is counted from the answers (one each)."""
        return None

    def close(self) -> None:
        self.hook.close()

    def verify_in_batches(
        self,
        emails: Sequence[str],
        checkpoint: Checkpoint,
        on_result: Callable[[str, dict[str, Any]], None],
    ) -> dict[str, dict[str, Any]]:
        """Validate ``emails`` (normalised, unique) as batches of the connection's ``batch_size``.

        ``on_result(address, row)`` gets every answer as its batch is read (journal it there). Returns the
        rows by address sent; an address a finished batch does not answer gets no row (no verdict: it
        stays due). Batches recorded in ``checkpoint`` by an earlier try are collected, not re-posted.
        """
        size = self.hook.batch_size
        chunks = [list(emails[i : i + size]) for i in range(0, len(emails), size)]
        known = checkpoint.load()
        # Create every batch first (each id checkpointed at once), then collect them: Mail.so works on
        # them side by side, so a night of N batches waits about as long as its largest one.
        running: list[tuple[str, list[str]]] = []
        for number, chunk in enumerate(chunks):
            key = f"batch-{number}-{chunk[0]}-{len(chunk)}"
            batch_id = known.get(key, {}).get("batch_id")
            if batch_id is None:
                batch_id = self.hook.create_batch(chunk).id
                checkpoint.add(key, {"batch_id": batch_id})
            else:
                log.info("Collecting Mail.so batch %s created by an earlier try (not re-posted)", batch_id)
            running.append((batch_id, chunk))
        rows: dict[str, dict[str, Any]] = {}
        for batch_id, chunk in running:
            batch = self.hook.wait_for_batch(
                batch_id, poll_interval=self.poll_interval, timeout=self.batch_timeout
            )
            sent = {address.casefold(): address for address in chunk}
            for validation in batch.emails:
                address = sent.get(validation.email.strip().casefold())
                if address is None:
                    log.warning(
                        "Mail.so batch %s answered an address not sent: %s",
                        batch_id,
                        mask_email(validation.email),
                    )
                    continue
                row = _row(validation, DecidedBy.MAILSO_BATCH)
                on_result(address, row)
                rows[address] = row
        return rows
