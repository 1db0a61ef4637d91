"""The Verifier interface: what the verify operators and the instant-call runner need from a vendor.

Two things per verifier. Its :class:`VerifierSpec`, plain data every module may read (which column is its
headline status, who decided, whether it charges for "unknown", what the local syntax check writes in its
words). And, when a task runs, an :class:`InstantVerifier`: one address in, one verdict row out (the
result columns of :mod:`.model`), with the per-item failures named so that :func:`~clearout_provider.
instant_calls.call_each` records them as that address's outcome and stops on anything else (auth,
credits, an outage after the hook's retries). :func:`instant_verifier` builds one from a connection id;
the vendor classes (:class:`clearout_provider.clearout.verifier.ClearoutVerifier`,
:class:`clearout_provider.mailso.verifier.MailsoVerifier`) are imported only then, so this module stays
cheap for DAG parsing.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from clearout_provider.clearout import statuses as clearout_statuses
from clearout_provider.mailso import statuses as mailso_statuses
from clearout_provider.verification.model import DecidedBy


@dataclass(frozen=True)
class VerifierSpec:
    """What the neutral pipeline knows about one verifier (no I/O, no client)."""

    name: str
    label: str
    #: The result column of the verifier's own status words (reports count by it).
    headline_column: str
    instant: DecidedBy
    instant_failed: DecidedBy
    bulk: DecidedBy
    #: Whether an "unknown" verdict costs a credit (Clearout: free; Mail.so: every validation costs one).
    charges_unknown: bool
    #: The result columns the local syntax pre-check writes, as the verifier answers a syntax error.
    local_syntax: Mapping[str, Any]


SPECS: dict[str, VerifierSpec] = {
    "clearout": VerifierSpec(
        name="clearout",
        label="Clearout",
        headline_column="clearout_status",
        instant=DecidedBy.CLEAROUT_INSTANT,
        instant_failed=DecidedBy.CLEAROUT_INSTANT_FAILED,
        bulk=DecidedBy.CLEAROUT_BULK,
        charges_unknown=False,
        local_syntax=clearout_statuses.SYNTAX_VERDICT,
    ),
    "mailso": VerifierSpec(
        name="mailso",
        label="Mail.so",
        headline_column="verdict",
        instant=DecidedBy.MAILSO_INSTANT,
        instant_failed=DecidedBy.MAILSO_INSTANT_FAILED,
        bulk=DecidedBy.MAILSO_BATCH,
        charges_unknown=True,
        local_syntax=mailso_statuses.SYNTAX_VERDICT,
    ),
}
VERIFIERS: tuple[str, ...] = tuple(SPECS)


def spec(verifier: str) -> VerifierSpec:
    """The spec of ``verifier``, or a ValueError naming the choices."""
    try:
        return SPECS[verifier]
    except KeyError:
        raise ValueError(f"Unknown verifier {verifier!r}: choose one of {list(VERIFIERS)}") from None


def local_syntax_verdict(verifier: str) -> dict[str, Any]:
    """The result columns of a locally rejected address, in ``verifier``'s words."""
    return dict(spec(verifier).local_syntax)


class InstantVerifier(Protocol):
    """One address at a time, for the instant operator and the sign-up DAG (thread-safe: one per task)."""

    spec: VerifierSpec
    #: Failures that concern one address only (recorded as its outcome; the batch goes on).
    item_failures: tuple[type[Exception], ...]

    def verify_one(self, email: str) -> dict[str, Any]:
        """The verdict row (result columns, no ``normalised_email``) for ``email``; raises on no answer."""
        ...

    def balance(self) -> int | None:
        """Credits left, when the vendor says (to report what a run spent); None when it does not."""
        ...

    def close(self) -> None:
        """Release the connection pool."""
        ...


def instant_verifier(verifier: str, conn_id: str | None = None, **options: Any) -> InstantVerifier:
    """An :class:`InstantVerifier` for ``verifier`` on connection ``conn_id`` (its default when None).

    ``options`` are the vendor's own (Clearout: ``timeout_ms``).
    """
    spec(verifier)
    if verifier == "mailso":
        from clearout_provider.mailso.verifier import MailsoVerifier

        return MailsoVerifier(conn_id, **options)
    from clearout_provider.clearout.verifier import ClearoutVerifier

    return ClearoutVerifier(conn_id, **options)
