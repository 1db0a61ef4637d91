"""The low-credit check: before a verify task spends, is the balance low, and do we warn or fail?

A verify task knows what it may spend only after the free steps (dedupe, syntax check, the verdict
ledger): ``needed`` is one credit per address it is about to send. The balance is LOW when it is below
``needed`` (the run cannot finish: Clearout refuses a bulk list with 1028 and stops instant calls with
1002 part-way) or below the account's own alert level, Clearout's ``low_credit_balance_min_threshold``
(set in the Clearout app; 0 = none). What happens then is the action:

- ``warn`` (default): log a warning, count ``clearout.low_credit`` (:mod:`clearout_provider.metrics`)
  and go on. A bulk list that the balance cannot cover still fails before uploading (the verifier's
  ``check_funds``: Clearout would refuse it anyway); instant calls go on until Clearout stops them, every
  verdict paid for before that kept in the ledger.
- ``fail``: raise :class:`~clearout_provider.exceptions.ClearoutCreditsError` before anything is sent,
  so nothing is spent, and the task's ``on_failure_callback`` (e.g.
  :class:`~clearout_provider.notifications.failure.ClearoutFailureNotifier`) says so.

The action is the operator's ``low_credit`` argument, else ``[clearout] low_credit_action``. Mail.so
publishes no balance: for it there is nothing to check (the check returns None, and says so at debug).

Every balance read here also feeds the ``clearout.credit_balance`` gauge.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Literal, Protocol

from airflow.sdk.configuration import conf

from clearout_provider.exceptions import ClearoutCreditsError

log = logging.getLogger(__name__)

LowCreditAction = Literal["warn", "fail"]
LOW_CREDIT_ACTIONS: tuple[str, ...] = ("warn", "fail")


class Funds(Protocol):
    """What a vendor says about the account's credits (Clearout's :class:`~clearout_provider.clearout.
    models.Credits` is one)."""

    @property
    def available(self) -> int: ...
    @property
    def low_balance_threshold(self) -> int | None: ...
    @property
    def daily_verify_limit_remaining(self) -> int | None: ...


class FundsSource(Protocol):
    """A verifier that may report its account's credits (None: the vendor publishes none)."""

    def funds(self) -> Funds | None: ...


def low_credit_action(value: str | None = None) -> LowCreditAction:
    """``value`` (an operator's ``low_credit``), else ``[clearout] low_credit_action`` (default ``warn``);
    anything else is a ValueError naming the choices."""
    chosen = value if value is not None else conf.get("clearout", "low_credit_action", fallback="warn")
    chosen = (chosen or "warn").strip().lower()
    if chosen == "warn":
        return "warn"
    if chosen == "fail":
        return "fail"
    raise ValueError(f"low_credit must be one of {list(LOW_CREDIT_ACTIONS)}, not {value or chosen!r}")


@dataclass(frozen=True)
class CreditCheck:
    """One balance read before spending, and what it means for ``needed`` credits."""

    verifier: str
    available: int
    needed: int
    threshold: int | None

    @property
    def short(self) -> bool:
        """The balance cannot cover every address about to be sent."""
        return self.available < self.needed

    @property
    def below_threshold(self) -> bool:
        """The balance is under the account's own low-balance alert level."""
        return bool(self.threshold) and self.available < (self.threshold or 0)

    @property
    def low(self) -> bool:
        return self.short or self.below_threshold

    @property
    def message(self) -> str:
        """Why the balance is low, in numbers only (no address, no token)."""
        reasons = []
        if self.short:
            reasons.append(f"this task may spend up to {self.needed:,} (one per address to send)")
        if self.below_threshold:
            reasons.append(f"the account's low-credit threshold is {self.threshold:,}")
        return f"Low {self.verifier} credit balance: {self.available:,} credits left, but " + " and ".join(
            reasons
        )


def check_credits(
    verifier: FundsSource, needed: int, *, action: LowCreditAction, verifier_name: str, dag_id: str
) -> Funds | None:
    """Read the balance before spending ``needed`` credits; warn or fail (see the module docstring).

    Returns what was read (the task measures its spend from it and makes its own hard checks on it), or
    None when the vendor publishes no balance. Raises :class:`ClearoutCreditsError` in ``fail`` mode when
    the balance is low; nothing has been sent then.
    """
    from clearout_provider import metrics

    funds = verifier.funds()
    if funds is None:
        log.debug("%s publishes no credit balance: no low-credit check", verifier_name)
        return None
    check = CreditCheck(verifier_name, funds.available, needed, funds.low_balance_threshold)
    metrics.credit_balance(check.available, verifier=verifier_name, dag_id=dag_id)
    if not check.low:
        return funds
    metrics.low_credit(verifier=verifier_name, dag_id=dag_id, action=action)
    if action == "fail":
        floor = max(check.needed, check.threshold or 0)
        raise ClearoutCreditsError(
            f"{check.message}; low_credit='fail' stopped the task before sending anything",
            required_credits=floor - check.available,
        )
    log.warning("%s; going on (low_credit='warn')", check.message)
    return funds
